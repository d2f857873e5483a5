"""`python -m bench [pull|enrich|merge|push ...] [--contacts N] [--updates N]`: syncd's benchmark.

Prints one table per benchmark and writes every figure, with the machine's facts, to
bench/results/<UTC timestamp>.json (and bench/results/latest.json). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.common import RESULTS, machine

BENCHMARKS = ("pull", "enrich", "merge", "push")


def _runner(name: str, args: argparse.Namespace) -> Callable[[], dict[str, Any]]:
    if name == "pull":
        from bench.pull import bench_pull

        return lambda: bench_pull(args.contacts)
    if name == "enrich":
        from bench.enrich import bench_enrich

        return lambda: bench_enrich(
            args.enrich_contacts or args.contacts, args.enrich_wall_contacts, args.contactout_fetch
        )
    if name == "merge":
        from bench.merge import bench_merge

        return lambda: bench_merge(args.contacts)
    from bench.push import bench_push

    return lambda: bench_push(args.updates, tuple(args.push_concurrency))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--contacts", type=int, default=100_000, help="phonebook size (default 100,000)")
    parser.add_argument(
        "--enrich-contacts",
        type=int,
        default=None,
        help="phonebook size for the enrichment only (default --contacts)",
    )
    parser.add_argument(
        "--enrich-wall-contacts",
        type=int,
        default=30_000,
        help="when the enrichment size is larger, a second run at this size for the wall time (0: none)",
    )
    parser.add_argument(
        "--contactout-fetch",
        choices=("inline", "after_match"),
        default=None,
        help="override ContactOut's contact_fetch mode (default: the provider's own default)",
    )
    parser.add_argument(
        "--updates", type=int, default=2_000, help="updates pushed by the push benchmark (default 2,000)"
    )
    parser.add_argument(
        "--push-concurrency",
        type=int,
        nargs="+",
        default=[4, 16],
        help="push_concurrency values to run (default 4 16)",
    )
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    print(
        f"syncd benchmark at {report['machine']['revision']}, {report['machine']['cpus']} CPUs, "
        f"load average {report['machine']['loadavg_at_start']} (other work on the machine skews wall times)"
    )
    for name in names:
        started = time.perf_counter()
        report[name] = _runner(name, args)()
        report[name]["benchmark_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2, default=str)
    (RESULTS / f"{stamp}.json").write_text(text, encoding="utf-8")
    (RESULTS / "latest.json").write_text(text, encoding="utf-8")
    print(f"\nfigures written to {RESULTS / f'{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
