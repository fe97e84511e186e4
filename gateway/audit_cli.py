"""`wgw audit verify|query`: prove the access log intact, and answer who opened what, when."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TextIO

from core.errors import ConfigError
from gateway.cli_support import aware_time, migrated_dsn
from gateway.config import load_settings
from gateway.store.access import load_stored_directory
from gateway.store.auditlog import AccessQuery, query, verify
from rules.access import AccessDirectory, check_opening
from rules.auditlog import AccessEntry, Action

_OPENINGS = frozenset({Action.UNLOCK, Action.DOOR_OPENED, Action.CABINET_OPENED})
_FIELDS = ("at", "org", "seq", "actor", "action", "subject", "person", "detail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `audit` subcommands to a parser."""
    sub = parser.add_subparsers(dest="audit_command", required=True)
    ver = sub.add_parser("verify", help="walk the hash chains; name the first broken entry")
    ver.add_argument("--org", help="only this organisation")
    ver.set_defaults(func=cmd_verify)
    q = sub.add_parser("query", help="access-log entries by door, key/staff, person, time")
    q.add_argument("--org")
    q.add_argument("--door", help="door, cabinet or sensor device id")
    q.add_argument("--key", help="key or staff id")
    q.add_argument("--person", help="unit pseudonym (a per-person extract)")
    q.add_argument("--since", type=aware_time, help="ISO 8601 with offset, inclusive")
    q.add_argument("--until", type=aware_time, help="ISO 8601 with offset, exclusive")
    q.add_argument(
        "--outside-plan",
        action="store_true",
        help="only openings the access directory does not allow (with the reasons)",
    )
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.set_defaults(func=cmd_query)
    for p in (ver, q):
        p.add_argument("--config", type=Path, help="TOML settings file")


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify every chain; exit 1 and name the first broken entry if one is broken."""
    dsn = migrated_dsn(args)
    report = verify(dsn, org=args.org)
    if report.ok:
        print(
            f"access log intact: {report.result.checked} entries in {report.heads_checked} chains"
        )
        return 0
    for broken in report.result.broken:
        print(f"BROKEN: organisation {broken.org}, entry {broken.seq}: {broken.why}")
    print(f"checked {report.result.checked} entries; the log has been altered", file=sys.stderr)
    return 1


def cmd_query(args: argparse.Namespace) -> int:
    """Print matching access-log entries as a table, CSV or JSON."""
    dsn = load_settings(args.config).db.dsn
    if args.since and args.until and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    entries = query(
        dsn,
        AccessQuery(
            org=args.org,
            subject=args.door,
            actor=args.key,
            person=args.person,
            since=args.since,
            until=args.until,
        ),
    )
    verdicts: dict[tuple[str, int], str] | None = None
    if args.outside_plan:
        directory = load_stored_directory(dsn)
        if directory is None:
            raise ConfigError("no access directory imported yet: run `wgw access import FILE`")
        verdicts = refused_openings(directory, entries)
        entries = [e for e in entries if (e.org, e.seq) in verdicts]
    write_entries(entries, args.format, sys.stdout, verdicts)
    return 0


def refused_openings(
    directory: AccessDirectory, entries: list[AccessEntry]
) -> dict[tuple[str, int], str]:
    """The openings among ``entries`` that the directory does not allow, with their reasons."""
    refused: dict[tuple[str, int], str] = {}
    for e in entries:
        if e.action not in _OPENINGS:
            continue
        decision = check_opening(directory, org=e.org, device_id=e.subject, key_id=e.actor, at=e.at)
        if not decision.allowed:
            refused[(e.org, e.seq)] = "; ".join(r.value for r in decision.reasons)
    return refused


def _record(e: AccessEntry, verdicts: dict[tuple[str, int], str] | None) -> dict[str, object]:
    extra = {} if verdicts is None else {"refused": verdicts.get((e.org, e.seq), "")}
    return {
        **extra,
        "at": e.at.isoformat(),
        "org": e.org,
        "seq": e.seq,
        "actor": e.actor,
        "action": e.action.value,
        "subject": e.subject,
        "person": e.person or "",
        "detail": json.dumps(e.detail, sort_keys=True, ensure_ascii=False),
    }


def write_entries(
    entries: list[AccessEntry],
    fmt: str,
    out: TextIO,
    verdicts: dict[tuple[str, int], str] | None = None,
) -> None:
    """Render entries in one of the output formats (with refusal reasons when given)."""
    records = [_record(e, verdicts) for e in entries]
    fields = _FIELDS if verdicts is None else ("refused", *_FIELDS)
    if fmt == "json":
        for r, e in zip(records, entries, strict=True):
            r["detail"] = e.detail
        json.dump(records, out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    else:
        widths = {f: max([len(f)] + [len(str(r[f])) for r in records]) for f in fields}
        out.write("  ".join(f.ljust(widths[f]) for f in fields).rstrip() + "\n")
        for r in records:
            out.write("  ".join(str(r[f]).ljust(widths[f]) for f in fields).rstrip() + "\n")
        out.write(f"({len(records)} entries)\n")
