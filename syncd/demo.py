"""`syncd demo`: the bundled simulators on loopback, a seeded phonebook, one real sync, and what changed.

Needs no credentials and no network beyond 127.0.0.1; everything it creates lives in a temporary
directory that is removed at the end (unless `--keep DIR`).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from syncd.errors import EXIT_OK, EXIT_TEMPFAIL

if TYPE_CHECKING:
    from syncd.run_summary import RunSummary
    from syncd.sim.launch import Simulators

NEXT_STEPS = """\
To point syncd at your real PBX and vendors:
  1. Copy config/syncd.example.toml to /etc/syncd/syncd.toml; set [pbx] base_url and client_id and
     give each secret as client_secret_file / token_file / api_key_file (systemd LoadCredential=).
  2. Check it without touching anything:   syncd --config /etc/syncd/syncd.toml check-config
     Then import the vendor ids you know:   syncd --config /etc/syncd/syncd.toml links import ids.csv
  3. See what a sync would change:          syncd --config /etc/syncd/syncd.toml --sync-now --dry-run
     and install the systemd unit (systemd/syncd.service) to keep the phonebook complete.
"""


STATE_FILE = "simulators.json"  # the simulators' state in a kept demo directory (see `resume_demo`)

# the PBX endpoints that change the phonebook
PBX_WRITES = ("company_contact/create", "company_contact/update", "company_contact/delete")


def second_run_report(
    *, vendor_calls: int, credits: int, pbx_writes: int, seconds: float | None, first_seconds: float | None
) -> str:
    """Both halves of the second run's claim, as measured at the simulators, and how long it took."""
    took = "" if seconds is None else f"  it took {seconds:.1f} s"
    if took and first_seconds is not None:
        took += f" (the first run {first_seconds:.1f} s)"
    return (
        f"  bought: {vendor_calls} vendor calls, {credits} credits\n"
        f"  written: {pbx_writes} PBX writes\n" + (took + "\n" if took else "")
    )


def _vendor_calls(sims: Simulators) -> int:
    return sum(sum(s.calls.values()) for s in (sims.insideview, sims.leadfeeder, sims.contactout))


def _pbx_writes(sims: Simulators) -> int:
    return sum(sims.pbx.calls[name] for name in PBX_WRITES)


def _duration(summary: RunSummary) -> float | None:
    if summary.ended_at is None:
        return None
    return float((summary.ended_at - summary.started_at).total_seconds())


def run_demo(
    *,
    contacts: int = 300,
    seed: int = 42,
    keep: Path | None = None,
    json_logs: bool | None = None,
    stream: TextIO | None = None,
) -> int:
    from syncd.config import load_config
    from syncd.engine import run_locked
    from syncd.links import import_links_file
    from syncd.progress import for_terminal
    from syncd.report import print_summary
    from syncd.sim.dataset import Dataset
    from syncd.sim.launch import Simulators
    from syncd.store import StateStore

    out = stream or sys.stdout
    workdir = keep or Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        out.write(
            f"syncd demo: starting the PBX, InsideView, Leadfeeder and ContactOut simulators on 127.0.0.1 "
            f"with a seeded phonebook of {contacts} contacts...\n"
        )
        with Simulators(Dataset(contacts, seed=seed)) as sims:
            state_url = f"sqlite:///{workdir / 'state.db'}"
            config_path = sims.write_config(workdir / "syncd.toml", state_url)
            links_path = sims.write_links(workdir / "links.csv", conflicts=True)
            for name, server in sims.servers.items():
                out.write(f"  {name:<11} {server.url}\n")
            config = load_config(config_path)
            out.write(f"\nImporting the vendor ids an operator knows ({links_path.name}):\n")
            out.flush()
            asyncio.run(import_links_file(config, links_path, stream=out))
            out.write("\nRunning one full sync (pull, enrich, merge, push):\n")
            out.flush()
            first = run_locked(config, progress=for_terminal())
            print_summary(first)
            code = first.exit_code
            store = StateStore.open(state_url)
            try:
                changes = store.history()
                last_run = store.recent_runs(1)[0]
                credits = store.credits_for_month(last_run.started_at.strftime("%Y-%m"))
            finally:
                store.close()
            out.write(f"\n{len(changes)} field changes were written to the PBX simulator. A few of them:\n")
            seen: set[str] = set()
            for change in changes:
                if change.field in seen:
                    continue
                seen.add(change.field)
                out.write(
                    f"  contact {change.contact_id:>4}  {change.field:<16} {change.old or '(empty)'!s:>18} -> "
                    f"{change.new}   [{change.source}]\n"
                )
                if len(seen) >= 6:
                    break
            out.write(
                "  credits spent: "
                + (", ".join(f"{k} {v}" for k, v in sorted(credits.items())) or "none")
                + "\n"
            )
            mismatches = {
                vendor: tally["identity_mismatches"]
                for vendor, tally in (last_run.counts.get("vendors") or {}).items()
                if isinstance(tally, dict) and tally.get("identity_mismatches")
            }
            if mismatches:
                out.write(
                    "  identity mismatches refused (a linked id that names someone else; nothing written): "
                    + ", ".join(f"{k} {v}" for k, v in sorted(mismatches.items()))
                    + "\n"
                )
            out.write("\nA second run finds nothing to buy and nothing to write:\n")
            out.flush()
            vendors_before, writes_before = _vendor_calls(sims), _pbx_writes(sims)
            second = run_locked(config, progress=for_terminal())
            print_summary(second)
            out.write(
                second_run_report(
                    vendor_calls=_vendor_calls(sims) - vendors_before,
                    credits=sum(second.credits.values()),
                    pbx_writes=_pbx_writes(sims) - writes_before,
                    seconds=_duration(second),
                    first_seconds=_duration(first),
                )
                + "\n"
            )
            if keep:
                sims.save_state(workdir / STATE_FILE)
        if keep:
            out.write(
                f"Config, links, state store and the simulators' state kept in {workdir}\n"
                f"  serve the same simulators again:   syncd demo --resume {workdir}\n"
                f"  then, in another terminal:          syncd --config {config_path} --sync-now --dry-run\n\n"
            )
        out.write(NEXT_STEPS)
        return code if code != EXIT_OK else second.exit_code
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def resume_demo(keep: Path, *, stream: TextIO | None = None, stop: threading.Event | None = None) -> int:
    """`syncd demo --resume DIR`: serve a kept demo's simulators again, on the same ports and against the
    phonebook its last run left, until Ctrl-C (or SIGTERM, or `stop`); the phonebook is saved back at
    exit, so a resumed demo can be resumed again. Exit 78 when DIR holds no kept demo."""
    from syncd.errors import EXIT_CONFIG
    from syncd.sim.launch import Simulators

    out = stream or sys.stdout
    state, config_path = keep / STATE_FILE, keep / "syncd.toml"
    if not state.is_file() or not config_path.is_file():
        sys.stderr.write(f"syncd demo: {keep} holds no kept demo (run syncd demo --keep {keep} first)\n")
        return EXIT_CONFIG
    sims = Simulators.resume(state)
    done = stop or threading.Event()
    if stop is None:
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        sims.start()
    except OSError as exc:
        sys.stderr.write(f"syncd demo: cannot serve the kept demo's ports again ({exc.strerror})\n")
        return EXIT_TEMPFAIL
    try:
        out.write(f"syncd demo: serving the kept demo in {keep} again ({len(sims.pbx.backup())} contacts)\n")
        for name, server in sims.servers.items():
            out.write(f"  {name:<11} {server.url}\n")
        out.write(
            "Try, in another terminal:\n"
            f"  syncd --config {config_path} --sync-now --dry-run\n"
            f"  syncd --config {config_path} --sync-now\n"
            f"  syncd --config {config_path} history\n"
            f"  syncd --config {config_path} status\n"
            "Ctrl-C stops the simulators and keeps their phonebook for the next --resume.\n"
        )
        out.flush()
        done.wait()
        sims.save_state(state)
    finally:
        sims.stop()
    out.write("syncd demo: stopped; the phonebook is saved\n")
    return EXIT_OK
