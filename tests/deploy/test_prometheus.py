"""deploy/prometheus/syncd-rules.yml and deploy/grafana/syncd.json against Debian's real `prometheus` tools.

- `promtool check rules` and `promtool test rules` (the unit-test file fires and clears every alert);
- `promtool check metrics` on a live daemon's `/metrics`;
- a real `prometheus` server on loopback (a free port, a temporary storage directory, started and stopped
  here) that loads the rules and scrapes a daemon running against the simulators; every dashboard panel's
  query is evaluated through its HTTP API and must return data, and every rule must evaluate cleanly.

`make test` and `.ci/run` install the package where it is missing (.ci/install-prometheus); where it cannot
be installed these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sim.dataset import Dataset
from syncd.sim.launch import Simulators
from tests.daemon.conftest import DaemonProcess, wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "syncd-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "syncd-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "syncd.json"
ALERTS = {
    "SyncdNoSuccessfulRun",
    "SyncdRunsFailing",
    "SyncdSchedulePaused",
    "SyncdVendorStopped",
    "SyncdVendorBudgetAbove90",
    "SyncdJournalPending",
}

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package `prometheus`; .ci/install-prometheus installs it as root)",
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus not installed (Debian package `prometheus`; .ci/install-prometheus installs it as root)",
)


def promtool(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alert_names(text: str) -> set[str]:
    return set(re.findall(r"^\s*- alert: (\w+)\s*$", text, re.M))


# --- the rules, offline ---------------------------------------------------------------------------------


def test_the_rules_file_has_every_alert_the_operators_asked_for() -> None:
    assert alert_names(RULES.read_text(encoding="utf-8")) == ALERTS


@needs_promtool
def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


@needs_promtool
def test_promtool_test_rules_fires_and_clears_every_alert() -> None:
    text = RULE_TESTS.read_text(encoding="utf-8")
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", text))
    cleared = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", text))
    assert fired == ALERTS, f"never shown firing: {ALERTS - fired}"
    assert cleared == ALERTS, f"never shown cleared: {ALERTS - cleared}"
    done = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: with the budget threshold moved from 90% to 99% they do."""
    broken = RULES.read_text(encoding="utf-8").replace("> 0.9\n", "> 0.99\n")
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(broken, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    assert "SyncdVendorBudgetAbove90" in done.stdout + done.stderr


# --- the dashboard, offline -------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, Grafana's variables replaced as Grafana would."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "30s").replace('job=~"$job"', 'job=~"syncd"')
            assert "$" not in expr, f"{panel['title']}: a variable the test does not know: {expr}"
            out.append((panel["title"], expr))
    return out


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    text = json.dumps(board)
    for series in (
        "syncd_runs_total",
        "syncd_field_changes_total",
        "syncd_vendor_lookups_total",
        "syncd_vendor_credits_total",
        "syncd_vendor_month_credits",
        "syncd_vendor_monthly_budget",
        "syncd_errors_total",
        "syncd_run_duration_seconds_bucket",
    ):
        assert series in text, f"no panel shows {series}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["description"]
    spots = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]}
    assert len(spots) == len(board["panels"]), "two panels in the same place"


# --- a live daemon, a real Prometheus ------------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int]]:
    port = free_port()
    with Simulators(Dataset(12)) as sims:
        config = write_config(
            sims,
            tmp_path / "syncd.toml",
            f"sqlite:///{tmp_path / 'state.db'}",
            interval="2s",
            extra=f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n',
        )
        proc = DaemonProcess(config)
        try:
            proc.wait_event("run.finished")
            yield proc, port
        finally:
            proc.stop()
            proc.kill()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


@needs_promtool
def test_promtool_check_metrics_on_a_live_daemon(daemon: tuple[DaemonProcess, int]) -> None:
    _proc, port = daemon
    text = fetch(f"http://127.0.0.1:{port}/metrics")
    for name in ("syncd_runs_total", "syncd_schedule_interval_seconds", "syncd_vendor_month_credits"):
        assert name in text
    done = promtool("check", "metrics", stdin=text)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (done.stdout + done.stderr).strip(), f"promtool lint findings: {done.stdout}{done.stderr}"


class PrometheusServer:
    def __init__(self, workdir: Path, target_port: int) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shutil.copy(RULES, workdir / RULES.name)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES.name}\n"
            "scrape_configs:\n  - job_name: syncd\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n",
            encoding="utf-8",
        )
        self.log = (workdir / "prometheus.log").open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        self.logfile = workdir / "prometheus.log"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.logfile.read_text()[-3000:]}")
        try:
            fetch(f"{self.url}/-/ready")
        except OSError:
            return False
        return True

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = json.loads(fetch(f"{self.url}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    values = [float(item["value"][1]) for item in result]
    return [v for v in values if math.isfinite(v)]


@needs_prometheus
def test_a_real_prometheus_scrapes_the_daemon_and_every_panel_returns_data(
    daemon: tuple[DaemonProcess, int], tmp_path: Path
) -> None:
    proc, port = daemon
    prometheus = PrometheusServer(tmp_path, port)
    try:
        wait_until(prometheus.ready, "prometheus ready")

        def scraped() -> bool:
            up = prometheus.api("query", query='up{job="syncd"}')["result"]
            return bool(up) and up[0]["value"][1] == "1"

        wait_until(scraped, "prometheus scraping the daemon")
        runs_seen = len(proc.find("run.finished"))

        def two_runs_scraped() -> bool:
            # increase()/rate() over 30s need runs inside that window, seen by several scrapes
            proc.check_alive()
            result = prometheus.api(
                "query", query='sum(increase(syncd_runs_total{job="syncd", outcome=~"ok|partial"}[30s]))'
            )["result"]
            return (
                len(proc.find("run.finished")) >= runs_seen + 2
                and bool(finite_values(result))
                and (finite_values(result)[0] > 0)
            )

        wait_until(two_runs_scraped, "two more runs scraped", timeout=90)
        empty = []
        for title, expr in dashboard_queries():
            result = prometheus.api("query", query=expr)["result"]
            print(f"{title}: {expr} -> {[(r['metric'], r['value'][1]) for r in result]}")
            if not finite_values(result):
                empty.append(f"{title}: {expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)

        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert {r["name"] for r in rules} == ALERTS
        for rule in rules:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        # a healthy daemon against healthy simulators: nothing fires
        firing = [a for a in prometheus.api("alerts")["alerts"] if a["state"] == "firing"]
        assert not firing, firing
    finally:
        prometheus.stop()
    assert prometheus.proc.returncode == 0, prometheus.logfile.read_text()[-3000:]
