"""Bad input everywhere a person supplies it: the config (every key of the model, generated from its
fields: wrong types, out of range, unknown keys), secrets, TOML itself, links CSVs (encodings, columns,
duplicates, ids, a huge file), and the command line. Each gets a clear message and the documented exit
status (78 config, 2 usage, 1 rejected rows), never a traceback or an internal error.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic import BaseModel

from syncd.cli import main
from syncd.config import (
    ContactOutConfig,
    EnrichConfig,
    FieldsConfig,
    InsideViewConfig,
    LeadfeederConfig,
    LogConfig,
    MetricsConfig,
    PbxConfig,
    SyncConfig,
)
from syncd.links import MAX_FILE_BYTES
from syncd.report import LINKS_REJECTED_CAP
from tests.reliability.site import CRASH_MARKERS, Site, add_figure, record_output

SECRET = "inline-secret-7f3a9"

# --- the command line, in this process ------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def syncd(*argv: str) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: usage errors, --help, --version
            code = exc.code if isinstance(exc.code, int) else 1
    record_output(f"bad input: syncd {' '.join(argv)[:200]}", out.getvalue(), err.getvalue())
    return Outcome(code, out.getvalue(), err.getvalue())


def assert_clean_failure(result: Outcome, code: int, *fragments: str) -> None:
    text = result.out + result.err
    for marker in CRASH_MARKERS:
        assert marker not in text, text[-2000:]
    assert result.code == code, f"exit {result.code}, expected {code}:\n{text[-2000:]}"
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text[-2000:]}"
    assert SECRET not in text, "a secret was echoed"


# --- configs generated from the model ---------------------------------------------------------------------

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("sync", SyncConfig),
    ("pbx", PbxConfig),
    ("enrich", EnrichConfig),
    ("fields", FieldsConfig),
    ("vendors.insideview", InsideViewConfig),
    ("vendors.leadfeeder", LeadfeederConfig),
    ("vendors.contactout", ContactOutConfig),
    ("metrics", MetricsConfig),
    ("log", LogConfig),
]
SECRET_FORMS = {"client_secret", "token", "api_key"}  # the inline forms; *_env and *_file are tested apart


def base_config(tmp: Path) -> dict[str, dict[str, Any]]:
    """A valid config with every section present."""
    return {
        "sync": {"interval": "15m", "state_url": f"sqlite:///{tmp / 'state.db'}", "default_region": "US"},
        "pbx": {"base_url": "http://127.0.0.1:9", "client_id": "pbx-client", "client_secret": SECRET},
        "enrich": {"order": ["insideview", "leadfeeder", "contactout"], "refresh_after": "30d"},
        "fields": {"email": "fill_empty", "numbers": "fill_empty", "title": "fill_empty"},
        "vendors.insideview": {
            "base_url": "http://127.0.0.1:9",
            "login_url": "http://127.0.0.1:9",
            "client_id": "iv-client",
            "client_secret": SECRET,
        },
        "vendors.leadfeeder": {"base_url": "http://127.0.0.1:9", "api_key": SECRET, "account_id": "123456"},
        "vendors.contactout": {"base_url": "http://127.0.0.1:9", "token": SECRET},
        "metrics": {"enabled": False, "listen": "127.0.0.1:9464"},
        "log": {"format": "auto"},
    }


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def toml(config: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


VALUES: dict[str, Any] = {
    "string": "not a valid value!",
    "integer": 12345,
    "float": 1.5,
    "boolean": True,
    "array": [1, "two"],
    "table": {"x": 1},
    "date": date(2020, 1, 1),
}


def _flatten(annotation: Any) -> Iterator[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _flatten(get_args(annotation)[0])
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _flatten(arg)
    else:
        yield annotation


def accepted_kinds(annotation: Any) -> set[str]:
    """The TOML value kinds a field could possibly take (anything else must be refused)."""
    kinds: set[str] = set()
    for tp in _flatten(annotation):
        origin = get_origin(tp)
        if tp is bool:
            kinds.add("boolean")
        elif tp is int:
            kinds.add("integer")
        elif tp is float:
            kinds |= {"integer", "float"}
        elif tp in (str, timedelta) or (isinstance(tp, type) and issubclass(tp, (str, Enum))):
            kinds.add("string")
        elif origin in (tuple, list):
            kinds.add("array")
    return kinds


def out_of_range(metadata: list[Any], accepted: set[str]) -> list[Any]:
    """Values just outside the field's declared bounds."""
    values: list[Any] = []
    for rule in metadata:
        if isinstance(rule, annotated_types.Ge):
            values.append(rule.ge - (1 if "float" not in accepted else 0.5))
        elif isinstance(rule, annotated_types.Gt):
            values.append(rule.gt)
        elif isinstance(rule, annotated_types.Le):
            values.append(rule.le + 1)
        elif isinstance(rule, annotated_types.Lt):
            values.append(rule.lt)
        elif isinstance(rule, annotated_types.MinLen) and rule.min_length > 0:
            values.append("")
    if "float" in accepted:
        values += [math.inf, math.nan]
    return values


@dataclass
class Case:
    name: str
    section: str
    key: str
    value: Any
    must_fail: bool


def config_cases() -> list[Case]:
    cases: list[Case] = []
    for section, model in SECTIONS:
        for name, info in model.model_fields.items():
            key = info.alias or name
            accepted = accepted_kinds(info.annotation)
            for kind, value in VALUES.items():
                if key in SECRET_FORMS and kind == "string":
                    continue  # any string is a valid inline secret
                cases.append(Case(f"{section}.{key}={kind}", section, key, value, kind not in accepted))
            for value in out_of_range(list(info.metadata), accepted):
                cases.append(Case(f"{section}.{key}={value!r}", section, key, value, True))
            if any(k in accepted for k in ("string",)) and key not in SECRET_FORMS:
                cases.append(Case(f"{section}.{key}=''", section, key, "", key not in {"cron"}))
        first = next(iter(model.model_fields.values()))
        typo = (first.alias or next(iter(model.model_fields)))[:-1] + "x"
        cases.append(Case(f"{section}.{typo} (unknown)", section, typo, "1", True))
    return cases


CONFIG_CASES = config_cases()


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, int]]:
    counts = {"config": 0, "links": 0, "command_line": 0}
    yield counts
    add_figure("bad_inputs_tried", counts)


def test_every_key_of_the_model_is_refused_clearly_when_wrong(
    tmp_path: Path, figures: dict[str, int]
) -> None:
    refused = accepted = 0
    path = tmp_path / "syncd.toml"
    for case in CONFIG_CASES:
        config = base_config(tmp_path)
        config[case.section][case.key] = case.value
        path.write_text(toml(config), encoding="utf-8")
        path.chmod(0o600)
        result = syncd("--config", str(path), "check-config")
        figures["config"] += 1
        if result.code == 0:
            assert not case.must_fail, f"{case.name}: accepted, but it is wrong:\n{result.out}"
            accepted += 1
            continue
        # refused: exit 78, and the message names the key (a secret's forms are named as their group)
        key = case.key.removesuffix("_env").removesuffix("_file")
        assert_clean_failure(result, 78, "configuration error", f"{case.section}.{key}")
        refused += 1
    assert refused > 200, refused


def test_the_wrong_value_is_named_and_secrets_are_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    config = base_config(tmp_path)
    config["vendors.leadfeeder"]["api_key"] = 987654321  # a number where the secret belongs
    config["sync"]["interval"] = "every hour"
    path.write_text(toml(config), encoding="utf-8")
    result = syncd("--config", str(path), "check-config")
    assert_clean_failure(
        result, 78, "vendors.leadfeeder.api_key", "sync.interval", '"every hour"'
    )  # both problems, one a line
    assert "987654321" not in result.err


SECRET_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("env unset", {"client_secret_env": "SYNCD_TEST_UNSET_VAR"}, "environment variable SYNCD_TEST_UNSET_VAR"),
    ("env not a name", {"client_secret_env": "hunter2-secret!"}, "does not look like one"),
    ("file missing", {"client_secret_file": "/nonexistent/secret"}, "not found"),
    ("file is a directory", {"client_secret_file": "/tmp"}, "is a directory"),
    ("two forms", {"client_secret": SECRET, "client_secret_env": "HOME"}, "give only one"),
    ("no form", {}, "required"),
    ("empty file", {"client_secret_file": "EMPTY"}, "is empty"),
    ("not UTF-8 file", {"client_secret_file": "LATIN1"}, "not UTF-8"),
]


@pytest.mark.parametrize(("label", "forms", "message"), SECRET_CASES, ids=[c[0] for c in SECRET_CASES])
def test_secret_sources_are_refused_clearly(
    tmp_path: Path, label: str, forms: dict[str, Any], message: str, figures: dict[str, int]
) -> None:
    (tmp_path / "EMPTY").write_bytes(b"")
    (tmp_path / "LATIN1").write_bytes(b"s\xe9cret")
    config = base_config(tmp_path)
    pbx = {k: v for k, v in config["pbx"].items() if k != "client_secret"}
    config["pbx"] = {**pbx, **forms}
    path = tmp_path / "syncd.toml"
    path.write_text(toml(config), encoding="utf-8")
    result = syncd("--config", str(path), "check-config")
    figures["config"] += 1
    assert_clean_failure(result, 78, "pbx.client_secret", message)
    assert "hunter2-secret!" not in result.err


TOML_CASES: list[tuple[str, bytes, str]] = [
    ("truncated", b'[sync]\ninterval = "15', "invalid TOML"),
    ("duplicate key", b'[sync]\ninterval = "15m"\ninterval = "5m"\n', "invalid TOML"),
    ("not UTF-8", b'[sync]\ninterval = "15m"\n# caf\xe9\n', "not UTF-8"),
    ("binary", bytes(range(256)), "not UTF-8"),
    ("empty", b"", "pbx"),
    ("unknown section", b'[syncc]\ninterval = "15m"\n', "unknown section"),
    ("unknown vendor", b'[vendors.hubspot]\ntoken = "x"\n', "unknown vendor"),
    ("array of tables", b"[[pbx]]\nbase_url = 1\n", "pbx"),
]


@pytest.mark.parametrize(("label", "content", "message"), TOML_CASES, ids=[c[0] for c in TOML_CASES])
def test_broken_config_files_exit_78(
    tmp_path: Path, label: str, content: bytes, message: str, figures: dict[str, int]
) -> None:
    path = tmp_path / "syncd.toml"
    path.write_bytes(content)
    figures["config"] += 1
    assert_clean_failure(syncd("--config", str(path), "check-config"), 78, message)


def test_missing_and_unreadable_config_paths_exit_78(tmp_path: Path, figures: dict[str, int]) -> None:
    for path, message in [(tmp_path / "nope.toml", "not found"), (tmp_path, "is a directory")]:
        for command in (["check-config"], ["status"], ["--sync-now"]):
            figures["config"] += 1
            assert_clean_failure(syncd("--config", str(path), *command), 78, message)


# --- links CSVs -----------------------------------------------------------------------------------------

HEADER = "pbx_contact_id,vendor,vendor_id\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with Site(tmp_path_factory.mktemp("links"), 30) as site:
        site.write_config()
        yield site


def iv(cid: int) -> str:
    return f"{cid},insideview,{16_000_000 + cid}"


LINKS_CASES: list[tuple[str, bytes, int, list[str]]] = [
    ("utf-8", (HEADER + iv(1) + "\n").encode(), 0, ["1 link(s) imported"]),
    ("utf-8 BOM", (HEADER + iv(1) + "\n").encode("utf-8-sig"), 0, ["1 link(s) imported"]),
    ("utf-16 BOM", (HEADER + iv(1) + "\n").encode("utf-16"), 0, ["1 link(s) imported"]),
    ("utf-16-le, no BOM", (HEADER + iv(1) + "\n").encode("utf-16-le"), 0, ["1 link(s) imported"]),
    ("utf-16-be, no BOM", (HEADER + iv(1) + "\n").encode("utf-16-be"), 0, ["1 link(s) imported"]),
    ("CRLF", (HEADER + iv(1) + "\n").replace("\n", "\r\n").encode(), 0, ["1 link(s) imported"]),
    (
        "columns reordered, one extra",
        b"vendor_id,note,VENDOR,pbx_contact_id\n16000001,x,insideview,1\n",
        0,
        [],
    ),
    (
        "latin-1 (odd length)",
        b"pbx_contact_id,vendor,vendor_id\n1,contactout,https://www.linkedin.com/in/j\xfcrgen\n",
        2,
        ["not UTF-8", "byte"],
    ),
    (
        "latin-1 (even length)",
        b"pbx_contact_id,vendor,vendor_id\n1,contactout,https://www.linkedin.com/in/j\xfcrgen-\n",
        2,
        ["not UTF-8", "byte"],
    ),
    ("missing column", b"pbx_contact_id,vendor\n1,insideview\n", 2, ["missing vendor_id"]),
    ("no header", (iv(1) + "\n" + iv(2) + "\n").encode(), 2, ["header must name the columns"]),
    ("empty", b"", 2, ["empty"]),
    ("header only", HEADER.encode(), 0, ["0 link(s) imported"]),
    ("binary", bytes(range(256)) * 4, 2, []),
    ("NUL bytes", (HEADER + "1,insideview,1600\x000001\n").encode(), 2, ["NUL"]),
    (
        "duplicates",
        (HEADER + iv(1) + "\n" + iv(1) + "\n" + iv(4) + "\n").encode(),
        1,
        [":3: rejected: duplicate of line 2", "2 link(s) imported"],
    ),
    ("unknown vendor", (HEADER + "1,hubspot,42\n").encode(), 1, [":2: rejected: unknown vendor 'hubspot'"]),
    (
        "malformed ids",
        (
            HEADER
            + "1,insideview,12ab\n2,leadfeeder,a b\n3,contactout,https://example.com/in/x\n"
            + "4,insideview,\n5,leadfeeder,"
            + "x" * 200
            + "\n"
        ).encode(),
        1,
        [":2: rejected: malformed insideview id", ":3:", ":4:", ":5:", ":6:", "0 link(s) imported"],
    ),
    (
        "bad contact ids",
        (
            HEADER
            + "0,insideview,1\n-4,insideview,1\nabc,insideview,1\n²,insideview,1\n"
            + "99999999999999999999999,insideview,1\n"
        ).encode(),
        1,
        ["not a positive integer", "out of range", ":6:", "0 link(s) imported"],
    ),
    ("contact not on the PBX", (HEADER + iv(5000) + "\n").encode(), 1, ["no PBX contact with id 5000"]),
    (
        "ragged rows",
        (HEADER + "1,insideview\n2,insideview,16000002,extra\n").encode(),
        1,
        ["expected 3 fields"],
    ),
    (
        "quoted fields",
        (HEADER + '"1","insideview","16000001"\n"2","insideview","1600,0002"\n').encode(),
        1,
        ["1 link(s) imported", ":3: rejected"],
    ),
    ("unterminated quote at the end", (HEADER + '1,insideview,"16000001\n').encode(), 0, ["1 link(s)"]),
]


@pytest.mark.parametrize(
    ("label", "content", "code", "messages"), LINKS_CASES, ids=[c[0] for c in LINKS_CASES]
)
def test_links_files_get_clear_answers(
    site: Site,
    tmp_path: Path,
    label: str,
    content: bytes,
    code: int,
    messages: list[str],
    figures: dict[str, int],
) -> None:
    path = tmp_path / "links.csv"
    path.write_bytes(content)
    figures["links"] += 1
    result = syncd("--config", str(site.config), "--log-format", "json", "links", "import", str(path))
    assert_clean_failure(result, code, *messages)


def test_a_huge_links_file_is_refused_before_it_is_read(
    site: Site, tmp_path: Path, figures: dict[str, int]
) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as handle:  # sparse: no disk is spent on it
        handle.write(HEADER.encode())
        handle.truncate(MAX_FILE_BYTES + 1)
    figures["links"] += 1
    result = syncd("--config", str(site.config), "links", "import", str(path))
    assert_clean_failure(result, 2, "bytes is more than the")


def test_a_large_links_file_reports_rejected_rows_up_to_a_cap_then_counts_by_reason(
    site: Site, tmp_path: Path, figures: dict[str, int]
) -> None:
    """Issue 13: every row by line made a 400,000-row file 99.6 MB of stderr, the summary on line 796,001."""
    rows = 20_000
    path = tmp_path / "large.csv"
    with path.open("w", encoding="utf-8") as handle:
        handle.write(HEADER)
        for cid in range(1, rows + 1):
            handle.write(iv(cid) + "\n")  # ids 31.. are not on the 30-contact PBX
    figures["links"] += 1
    result = syncd("--config", str(site.config), "links", "import", str(path))
    assert_clean_failure(result, 1, "30 link(s) imported", f"{rows - 30} row(s) rejected")
    lines = result.out.splitlines()
    rejected = [line for line in lines if ": rejected: no PBX contact with id" in line]
    assert [line.split(":")[1] for line in rejected] == [str(n) for n in range(32, 32 + LINKS_REJECTED_CAP)]
    assert (
        f"... and {rows - 30 - LINKS_REJECTED_CAP:,} more rejected row(s), counted by reason below" in lines
    )
    assert f"  {rows - 30:>9,}  no PBX contact with id …" in lines
    assert lines[-1] == f"30 link(s) imported, {rows - 30} row(s) rejected"
    assert ": rejected: " not in result.err  # each rejection once, on stdout


def test_links_file_paths_that_are_not_files(site: Site, tmp_path: Path, figures: dict[str, int]) -> None:
    for path, message in [(tmp_path / "absent.csv", "no such file"), (tmp_path, "is a directory")]:
        figures["links"] += 1
        assert_clean_failure(syncd("--config", str(site.config), "links", "import", str(path)), 2, message)


# --- the command line -------------------------------------------------------------------------------------

USAGE = 2
MISUSE: list[tuple[list[str], int, str]] = [
    (["--bogus"], USAGE, "unrecognized arguments"),
    (["--dry-run"], USAGE, "--dry-run needs --sync-now"),
    (["--sync-now", "--buy"], USAGE, "--buy needs --dry-run"),
    (["--sync-now", "status"], USAGE, "cannot be combined"),
    (["frobnicate"], USAGE, "invalid choice"),
    (["history", "--contact", "abc"], USAGE, "not an integer"),
    (["history", "--contact", "0"], USAGE, "--contact"),
    (["history", "--contact", "99999999999999999999999"], USAGE, "--contact"),
    (["history", "--limit", "-1"], USAGE, "--limit"),
    (["history", "--since", "yesterday"], USAGE, "--since"),
    (["history", "--since", "2026-13-45"], USAGE, "--since"),
    (["status", "--runs", "0"], USAGE, "--runs"),
    (["status", "--runs", "many"], USAGE, "--runs"),
    (["links"], USAGE, "required"),
    (["links", "import"], USAGE, "required"),
    (["links", "export", "x.csv"], USAGE, "invalid choice"),
    (["demo", "--contacts", "-5"], USAGE, "--contacts"),
    (["demo", "--contacts", "10000000"], USAGE, "--contacts"),
    (["demo", "--contacts", "lots"], USAGE, "--contacts"),
    (["--log-format", "xml", "status"], USAGE, "--log-format"),
    (["check-config", "extra"], USAGE, "unrecognized arguments"),
    (["-c"], USAGE, "expected one argument"),
]


@pytest.mark.parametrize(("argv", "code", "message"), MISUSE, ids=[" ".join(m[0]) for m in MISUSE])
def test_command_line_misuse_is_a_usage_error(
    site: Site, argv: list[str], code: int, message: str, figures: dict[str, int]
) -> None:
    figures["command_line"] += 1
    # with a valid config, so that nothing but the command line is wrong
    result = syncd("--config", str(site.config), *argv) if argv != ["-c"] else syncd(*argv)
    assert_clean_failure(result, code, message)


def test_no_config_anywhere_exits_78(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SYNCD_CONFIG", str(tmp_path / "missing.toml"))
    for argv in ([], ["--sync-now"], ["status"], ["check-config"]):
        assert_clean_failure(syncd(*argv), 78, "missing.toml", "not found")


def test_help_and_version_exit_0() -> None:
    assert syncd("--version").code == 0
    for argv in (["-h"], ["history", "-h"], ["links", "import", "-h"]):
        result = syncd(*argv)
        assert result.code == 0 and "usage:" in result.out


def test_a_subprocess_sees_the_same_statuses(site: Site, tmp_path: Path) -> None:
    """The statuses a shell sees, for one case of each kind."""
    from tests.reliability.site import run_syncd

    bad = tmp_path / "bad.toml"
    bad.write_text('[sync]\ninterval = "soon"\n', encoding="utf-8")
    assert run_syncd(["--config", str(bad), "check-config"]).code == 78
    assert run_syncd(["--config", str(site.config), "history", "--limit", "0"]).code == 2
    dup = tmp_path / "dup.csv"
    dup.write_text(HEADER + iv(1) + "\n" + iv(1) + "\n", encoding="utf-8")
    run = run_syncd(["--config", str(site.config), "links", "import", str(dup)])
    assert run.code == 1 and "duplicate of line 2" in run.out  # the report is on stdout (issue 13)
    for run_ in (run,):
        for marker in CRASH_MARKERS:
            assert marker not in run_.err
