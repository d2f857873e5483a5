"""The command line of the operator contract (../shared/CONTRACT.md).

Every failure ends as one clear message and a documented exit status, never a traceback:
0 done, 1 some contacts failed, 2 usage, 75 lock held / service unreachable, 78 configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from syncd import __version__
from syncd.errors import EXIT_CONFIG, EXIT_PARTIAL, EXIT_USAGE, SyncdError
from syncd.logs import configure_logging, get_logger, redact

if TYPE_CHECKING:
    from syncd.config import Config
    from syncd.progress import Progress

# The commands' modules (engine, daemon, report, store...) are imported by the command that needs them:
# they bring httpx, SQLAlchemy, APScheduler and rich, which `syncd --help` and `syncd demo` do not need.

log = get_logger("syncd")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"syncd: error: {message}\n")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (a usage error, exit 2, otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value

    return parse


MAX_ID = 2**63 - 1  # contact ids are 64-bit in the store


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        default=default,
        help="config file (default: $SYNCD_CONFIG, then /etc/syncd/syncd.toml)",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=default,
        help="JSON lines or console lines (default: JSON unless stdout is a terminal)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS if suppress else 0,
        help="more detail (-vv: debug)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="warnings and errors only"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="syncd",
        description="Keeps a Yeastar P-Series PBX company phonebook complete from InsideView, Leadfeeder and ContactOut.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    _common(parser, suppress=False)
    parser.add_argument("--sync-now", action="store_true", help="run one full sync, then exit")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --sync-now: plan from the cached vendor answers and print every change and what a real "
        "run would buy; writes nothing to the PBX and buys nothing",
    )
    parser.add_argument(
        "--buy",
        action="store_true",
        help="with --dry-run: first buy (and cache) the vendor answers the plan needs",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "check-config", help="validate the config and the credentials' presence; reaches nothing"
    )
    _common(p, suppress=True)

    p = sub.add_parser(
        "check", help="reach every configured service once (buys nothing) and report what fails"
    )
    _common(p, suppress=True)
    p.add_argument("--json", action="store_true", help="JSON even on a terminal")

    p = sub.add_parser(
        "status", help="last runs, next scheduled run, credits spent this month, pending journal"
    )
    _common(p, suppress=True)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument(
        "--runs", type=_int_in(1, 10_000), default=10, metavar="N", help="how many recent runs (default 10)"
    )

    p = sub.add_parser("history", help="the change log")
    _common(p, suppress=True)
    p.add_argument("--contact", type=_int_in(1, MAX_ID), metavar="ID", help="only this PBX contact")
    p.add_argument("--since", metavar="ISO8601", help="only changes at or after this time")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument("--limit", type=_int_in(1, MAX_ID), metavar="N", help="at most N changes (newest last)")

    p = sub.add_parser("owners", help="who owns each managed field: a person or syncd, since when")
    _common(p, suppress=True)
    p.add_argument("--contact", type=_int_in(1, MAX_ID), metavar="ID", help="only this PBX contact")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    owners_sub = p.add_subparsers(dest="owners_command", metavar="ACTION", parser_class=_Parser)
    reset = owners_sub.add_parser("reset", help="give person-owned fields back to syncd (kept in history)")
    _common(reset, suppress=True)
    reset.add_argument(
        "--contact",
        type=_int_in(1, MAX_ID),
        metavar="ID",
        default=argparse.SUPPRESS,  # keeps an `owners --contact ID reset`
        help="only this PBX contact",
    )
    reset.add_argument("--field", metavar="F", help="only this field (email, title or a number slot)")

    p = sub.add_parser("links", help="vendor identity links")
    _common(p, suppress=True)
    links_sub = p.add_subparsers(dest="links_command", metavar="ACTION", parser_class=_Parser, required=True)
    imp = links_sub.add_parser("import", help="import pbx_contact_id,vendor,vendor_id rows from a CSV file")
    _common(imp, suppress=True)
    imp.add_argument("file", metavar="FILE.csv", type=Path)

    p = sub.add_parser("demo", help="run a full sync against the bundled simulators on loopback")
    _common(p, suppress=True)
    p.add_argument(
        "--contacts",
        type=_int_in(1, 500_000),
        default=300,
        metavar="N",
        help="size of the seeded phonebook (default 300, at most 500000)",
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the generated phonebook")
    p.add_argument("--keep", metavar="DIR", type=Path, help="keep the demo's config and state store in DIR")
    p.add_argument(
        "--resume",
        metavar="DIR",
        type=Path,
        help="serve a demo kept with --keep DIR again (same ports, same phonebook) until Ctrl-C",
    )
    return parser


def _verbosity(args: argparse.Namespace) -> int:
    if getattr(args, "quiet", False):
        return 0
    return 1 + int(getattr(args, "verbose", 0) or 0)


def _json_logs(args: argparse.Namespace) -> bool | None:
    fmt = getattr(args, "log_format", None)
    return None if fmt in (None, "auto") else fmt == "json"


def _fail(message: str, code: int) -> int:
    print(f"syncd: {redact(message)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dry_run and not args.sync_now:
        parser.error("--dry-run needs --sync-now")
    if args.buy and not args.dry_run:
        parser.error("--buy needs --dry-run")
    if args.command and args.sync_now:
        parser.error(f"--sync-now cannot be combined with {args.command}")
    configure_logging(json=_json_logs(args), verbosity=_verbosity(args))
    try:
        return _dispatch(args)
    except SyncdError as exc:
        code = exc.exit_code
        kind = "configuration error" if code == EXIT_CONFIG else "error"
        # one line on stderr, not an event as well: the events of a run already went there
        return _fail(f"{kind}: {exc}", code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # last resort: a bug, reported without secrets and without a traceback dump
        log.exception("syncd.crashed", error=f"{type(exc).__name__}: {exc}")
        return _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_PARTIAL)


def run_once(
    config: Config, *, dry_run: bool = False, buy: bool = False, progress: Progress | None = None
) -> int:
    """`syncd --sync-now [--dry-run [--buy]]`: one run under the store's lock, its plan (dry run) and its
    summary printed; returns the exit status."""
    from syncd.engine import run_locked
    from syncd.progress import for_terminal
    from syncd.report import print_plan, print_summary

    summary = run_locked(config, dry_run=dry_run, buy=buy, progress=progress or for_terminal())
    if dry_run:
        print_plan(summary)
    print_summary(summary)
    return summary.exit_code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from syncd.demo import run_demo

        # the demo prints its own account of the run; events only with -v
        configure_logging(json=_json_logs(args), verbosity=max(0, _verbosity(args) - 1))

        if args.resume is not None:
            from syncd.demo import resume_demo

            return resume_demo(args.resume)
        return run_demo(contacts=args.contacts, seed=args.seed, keep=args.keep, json_logs=_json_logs(args))

    from syncd.config import default_config_path, load_config

    path = Path(args.config) if args.config else default_config_path()
    config = load_config(path)
    if _json_logs(args) is None and config.log.format != "auto":
        configure_logging(json=config.log.format == "json", verbosity=_verbosity(args))
    for key, section in [
        ("pbx", config.pbx),
        *((f"vendors.{v}", config.vendor(v)) for v in config.vendors.configured()),
    ]:
        if section is not None and section.verify_tls is False:
            log.warning("tls.verification_disabled", key=f"{key}.verify_tls")

    if args.command == "check-config":
        from syncd.report import check_config

        return check_config(config)
    if args.command == "check":
        from syncd.check import check_services

        return check_services(config, as_json=True if args.json else None)
    if args.command == "status":
        from syncd.report import show_status

        return show_status(config, as_json=args.json, runs=args.runs)
    if args.command == "history":
        from syncd.report import show_history

        return show_history(
            config, contact=args.contact, since=args.since, as_json=args.json, limit=args.limit
        )
    if args.command == "owners":
        from syncd.owners import reset_owners, show_owners

        if args.owners_command == "reset":
            return reset_owners(config, contact=args.contact, field=args.field)
        return show_owners(config, contact=args.contact, as_json=args.json)
    if args.command == "links":
        from syncd.links import import_links_file

        return asyncio.run(import_links_file(config, args.file))
    if args.sync_now:
        return run_once(config, dry_run=args.dry_run, buy=args.buy)

    from syncd.daemon import run_daemon

    return run_daemon(config, path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
