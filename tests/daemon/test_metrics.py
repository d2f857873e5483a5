"""Metrics fed from run summaries and failures, served over HTTP on loopback."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.engine import RunSummary
from syncd.errors import ConfigError, MassLossError, ServiceUnavailable, StoreError
from syncd.metrics import Metrics, MetricsServer
from syncd.model import FieldChange

NOW = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


def summary() -> RunSummary:
    return RunSummary(
        run_id="r1",
        mode="daemon",
        started_at=NOW,
        ended_at=NOW,
        outcome="partial",
        counts={
            "seen": 5,
            "updated": 2,
            "vendors": {
                "insideview": {
                    "asked": 3,
                    "cached": 1,
                    "found": 2,
                    "not_found": 1,
                    "errors": 1,
                    "credits": 4,
                },
                "contactout": {
                    "asked": 1,
                    "cached": 0,
                    "found": 1,
                    "not_found": 0,
                    "errors": 0,
                    "credits": 2,
                },
            },
        },
        credits={"insideview": 4, "contactout": 2},
        failures=[(7, "contact/update: errcode 40002 PARAMETER ERROR")],
        applied=[
            FieldChange(1, "email", "", "a@example.com", "insideview", "fill_empty"),
            FieldChange(1, "title", "", "CEO", "insideview", "fill_empty"),
            FieldChange(2, "email", "", "b@example.com", "contactout", "fill_empty"),
        ],
    )


@pytest.fixture
def served() -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics()
    server = MetricsServer(metrics, "127.0.0.1", 0)
    try:
        yield metrics, server
    finally:
        server.stop()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_counters_from_runs_failures_and_skips(served: tuple[Metrics, MetricsServer]) -> None:
    metrics, server = served
    assert value(scrape(server.url), "syncd_runs_total", outcome="ok") == 0  # present before any run

    metrics.run_started()
    assert value(scrape(server.url), "syncd_run_in_progress") == 1
    metrics.observe_run(summary(), 2.5)
    metrics.observe_run(summary(), 3.5)
    metrics.observe_failure(ServiceUnavailable("pbx", "HTTP 503 (gave up after 6 attempts)"), 9.0)
    metrics.observe_failure(MassLossError("the PBX lists 2 of 400 contacts"), 0.5)
    metrics.observe_failure(StoreError("disk full"), 0.1)
    metrics.observe_skipped()

    s = scrape(server.url)
    assert value(s, "syncd_run_in_progress") == 0
    assert value(s, "syncd_runs_total", outcome="partial") == 2
    assert value(s, "syncd_runs_total", outcome="failed") == 2
    assert value(s, "syncd_runs_total", outcome="aborted") == 1
    assert value(s, "syncd_runs_total", outcome="skipped") == 1
    assert value(s, "syncd_run_duration_seconds_count") == 5  # skips are not runs
    assert value(s, "syncd_run_duration_seconds_sum") == pytest.approx(15.6)
    assert value(s, "syncd_contacts_seen_total") == 10
    assert value(s, "syncd_last_run_contacts_seen") == 5
    assert value(s, "syncd_field_changes_total", field="email", source="insideview") == 2
    assert value(s, "syncd_field_changes_total", field="title", source="insideview") == 2
    assert value(s, "syncd_field_changes_total", field="email", source="contactout") == 2
    assert value(s, "syncd_vendor_lookups_total", vendor="insideview", result="asked") == 6
    assert value(s, "syncd_vendor_lookups_total", vendor="insideview", result="cached") == 2
    assert value(s, "syncd_vendor_lookups_total", vendor="contactout", result="found") == 2
    assert value(s, "syncd_vendor_credits_total", vendor="insideview") == 8
    assert value(s, "syncd_vendor_credits_total", vendor="contactout") == 4
    assert value(s, "syncd_errors_total", service="pbx") == 2 + 1 + 1  # 2 rejected contacts, 503s, mass loss
    assert value(s, "syncd_errors_total", service="insideview") == 2
    assert value(s, "syncd_errors_total", service="store") == 1
    assert value(s, "syncd_last_run_timestamp_seconds", outcome="partial") > 0


def test_separate_registries_do_not_collide() -> None:
    first, second = Metrics(), Metrics()
    first.observe_skipped()
    assert first.registry.get_sample_value("syncd_runs_total", {"outcome": "skipped"}) == 1
    assert second.registry.get_sample_value("syncd_runs_total", {"outcome": "skipped"}) == 0


def test_listen_problems(served: tuple[Metrics, MetricsServer]) -> None:
    _metrics, server = served
    with pytest.raises(ServiceUnavailable, match="address in use"):
        MetricsServer(Metrics(), "127.0.0.1", server.port)
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        MetricsServer(Metrics(), "192.0.2.1", 9464)  # TEST-NET-1: not an address of this host


def test_unreachable_and_interrupted_runs_are_counted_as_such() -> None:
    metrics = Metrics()
    assert metrics.registry.get_sample_value("syncd_runs_total", {"outcome": "unreachable"}) == 0
    down = summary()
    down.outcome, down.failures = "unreachable", []
    down.vendor_stops = {"contactout": "unavailable"}
    down.counts["vendors"]["contactout"]["stopped"] = "unavailable"
    metrics.observe_run(down, 1.0)
    stopped = summary()
    stopped.outcome = "interrupted"
    metrics.observe_run(stopped, 1.0)
    sample = metrics.registry.get_sample_value
    assert sample("syncd_runs_total", {"outcome": "unreachable"}) == 1
    assert sample("syncd_runs_total", {"outcome": "interrupted"}) == 1
    assert sample("syncd_errors_total", {"service": "contactout"}) == 1  # the vendor dropped as unreachable
    assert sample("syncd_errors_total", {"service": "insideview"}) == 2  # its error results, both runs
    assert down.exit_code == 75
