"""The `wgw` command line: migrate, serve, devices, access, rules, users, audit, demo, bench."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from core.errors import ConfigError, GatewayError
from gateway.cli_support import aware_time, migrated_dsn, stop_on_signals
from gateway.config import Settings, load_settings

log = logging.getLogger("gateway")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # gmqtt logs every reconnect attempt at INFO; ours say it once, plainly.
    logging.getLogger("gmqtt").setLevel(logging.WARNING)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply database migrations."""
    from gateway.store import migrate

    db = _settings(args).db
    report = migrate(db.dsn, timescaledb=db.timescaledb)
    applied = ", ".join(f"{v:03d}" for v in report.applied) or "none (up to date)"
    print(f"storage variant: {report.variant}; applied: {applied}")
    return 0


def cmd_devices_import(args: argparse.Namespace) -> int:
    """Import a device registry file (YAML or CSV) into PostgreSQL."""
    from gateway.registry import load_registry_file
    from gateway.store.devices import import_devices

    records = load_registry_file(args.file)
    dsn = migrated_dsn(args)
    changed = import_devices(dsn, records)
    print(f"{len(records)} devices read from {args.file}; {changed} added or changed")
    return 0


def cmd_devices_shelve(args: argparse.Namespace) -> int:
    """Take a device out of service for a while, with a reason (e.g. 'på sjukhus')."""
    from core.rows import Shelf
    from gateway.store.shelves import shelve

    if not args.reason.strip() or not args.by.strip():
        raise ConfigError("--reason and --by must say why and who (they are logged)")
    starts = args.starts or datetime.now(UTC)
    if args.until <= starts:
        raise ConfigError("--until must be after the start of the period")
    dsn = migrated_dsn(args)
    shelve(dsn, Shelf(args.device, args.reason, args.by, starts, args.until))
    print(f"{args.device} out of service until {args.until.isoformat()}: {args.reason}")
    return 0


def cmd_access_import(args: argparse.Namespace) -> int:
    """Import the access directory (staff, keys, shifts, grants, visit plans, consents)."""
    from gateway.store.access import import_directory
    from rules.access import load_directory

    directory = load_directory(args.file)
    dsn = migrated_dsn(args)
    import_directory(dsn, directory, source=str(args.file))
    checks = sum(len(c.checks) for c in directory.consents)
    print(
        f"access directory from {args.file}: {len(directory.organisations)} organisations, "
        f"{len(directory.keys)} keys, {len(directory.grants)} grants, "
        f"{len(directory.consents)} consents; remote checks planned a night: {checks}"
    )
    return 0


def cmd_access_remote_view(args: argparse.Namespace) -> int:
    """Ask for a remote-supervision view: allowed or refused, it is logged either way."""
    from gateway.store.access import load_stored_directory
    from gateway.store.auditlog import record_remote_view
    from rules.access import REASON_LABELS

    dsn = migrated_dsn(args)
    directory = load_stored_directory(dsn)
    if directory is None:
        raise ConfigError("no access directory imported yet: run `wgw access import FILE`")
    decision = asyncio.run(
        record_remote_view(
            dsn,
            directory,
            org=args.org,
            device_id=args.device,
            staff_id=args.staff,
            at=args.at or datetime.now(UTC),
        )
    )
    if decision.allowed:
        print(f"remote view of {args.device} by {args.staff}: allowed (logged)")
        return 0
    reasons = ", ".join(REASON_LABELS[r] for r in decision.reasons)
    print(f"remote view of {args.device} by {args.staff}: REFUSED ({reasons}); logged")
    return 1


def cmd_rules_check(args: argparse.Namespace) -> int:
    """Validate an organisation's rule-set file without starting anything."""
    from rules import check_ruleset_file

    problems = check_ruleset_file(args.file)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: rule set is valid")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway, its API and console until SIGINT or SIGTERM."""
    from gateway.api.server import ApiServer, run_gateway
    from gateway.service import Gateway

    settings = _settings(args)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        gateway = Gateway(settings)
        await run_gateway(gateway, stop, ApiServer(gateway) if settings.api.enabled else None)

    asyncio.run(main())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish simulated device traffic."""
    from simulators import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run everything on this machine with embedded defaults."""
    from gateway.demo import run_demo

    if not args.verbose:
        # The demo prints its own status lines; routine INFO logs would bury them.
        logging.getLogger().setLevel(logging.WARNING)
    return run_demo(
        devices=args.devices,
        rate=args.rate,
        seed=args.seed,
        duration=args.duration,
        broker=args.broker,
        port=args.port,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure ingest throughput and latency."""
    from gateway.bench import run_bench

    return run_bench(args)


def cmd_broker_config(args: argparse.Namespace) -> int:
    """Write Mosquitto's password and ACL files from the device registry."""
    from gateway.brokerconfig import build_accounts, write_broker_files
    from gateway.store.devices import list_device_topics

    settings = _settings(args)
    if not settings.mqtt.username or not settings.mqtt.password:
        raise ConfigError(
            "broker-config needs mqtt.username and mqtt.password: the gateway's login"
        )
    accounts, skipped = build_accounts(
        list_device_topics(migrated_dsn(args)),
        gateway_username=settings.mqtt.username,
        subscriber_orgs=args.subscriber,
        scaip_bridge_orgs=args.scaip_bridge,
    )
    files = write_broker_files(
        args.out, accounts, gateway_password=settings.mqtt.password, skipped=skipped
    )
    for device_id in skipped:
        log.error("device %r gets no broker account: its id is taken or contains ':'", device_id)
    print(
        f"{files.written} broker accounts ({files.new_passwords} new passwords) in {files.passwd}"
        f" and {files.acl}; passwords for provisioning in {files.accounts} (mode 600)"
    )
    return 1 if skipped else 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="wgw", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, help="TOML settings file (WGW_* env overrides it)")
        return p

    with_config(sub.add_parser("migrate", help=cmd_migrate.__doc__)).set_defaults(func=cmd_migrate)
    with_config(sub.add_parser("serve", help=cmd_serve.__doc__)).set_defaults(func=cmd_serve)

    broker = with_config(sub.add_parser("broker-config", help=cmd_broker_config.__doc__))
    broker.add_argument(
        "--out", type=Path, required=True, help="directory for passwd, acl, accounts.csv"
    )
    broker.add_argument(
        "--subscriber",
        action="append",
        default=[],
        metavar="ORG",
        help="add account alerts-ORG that may read only ORG's alerts (repeatable)",
    )
    broker.add_argument(
        "--scaip-bridge",
        action="append",
        default=[],
        metavar="ORG",
        help="add account scaip-ORG that may publish only scaip/ORG/mrq (repeatable)",
    )
    broker.set_defaults(func=cmd_broker_config)

    devices = sub.add_parser("devices", help="device registry").add_subparsers(
        dest="devices_command", required=True
    )
    imp = with_config(devices.add_parser("import", help=cmd_devices_import.__doc__))
    imp.add_argument("file", type=Path, help="registry file (.yaml, .yml or .csv)")
    imp.set_defaults(func=cmd_devices_import)
    shelf = with_config(devices.add_parser("shelve", help=cmd_devices_shelve.__doc__))
    shelf.add_argument("device", help="device id")
    shelf.add_argument("--reason", required=True, help="why, e.g. 'på sjukhus', 'bortrest'")
    shelf.add_argument("--by", required=True, help="the coordinator deciding it")
    shelf.add_argument("--until", required=True, type=aware_time, help="ISO 8601 with offset")
    shelf.add_argument("--from", dest="starts", type=aware_time, help="default: now")
    shelf.set_defaults(func=cmd_devices_shelve)

    access = sub.add_parser("access", help="access directory").add_subparsers(
        dest="access_command", required=True
    )
    acc = with_config(access.add_parser("import", help=cmd_access_import.__doc__))
    acc.add_argument("file", type=Path, help="access directory YAML")
    acc.set_defaults(func=cmd_access_import)
    view = with_config(access.add_parser("remote-view", help=cmd_access_remote_view.__doc__))
    view.add_argument("device", help="the supervision sensor")
    view.add_argument("--staff", required=True, help="staff id asking to look")
    view.add_argument("--org", required=True, help="the staff member's organisation")
    view.add_argument("--at", type=aware_time, help="default: now")
    view.set_defaults(func=cmd_access_remote_view)

    rules_parser = sub.add_parser("rules", help="rule sets").add_subparsers(
        dest="rules_command", required=True
    )
    check = rules_parser.add_parser("check", help=cmd_rules_check.__doc__)
    check.add_argument("file", type=Path, help="an organisation's rule-set YAML")
    check.set_defaults(func=cmd_rules_check)

    from simulators import add_arguments

    sim = sub.add_parser("simulate", help=cmd_simulate.__doc__)
    add_arguments(sim)
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help=cmd_demo.__doc__)
    demo.add_argument("--devices", type=int, default=200, help="simulated devices (default 200)")
    demo.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    demo.add_argument("--seed", type=int, default=1, help="simulation seed")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "builtin"),
        default="auto",
        help="Mosquitto if installed (auto), or the in-process amqtt broker (builtin)",
    )
    demo.add_argument(
        "--port", type=int, default=None, help="console port (default 8080, or any free one)"
    )
    demo.set_defaults(func=cmd_demo)

    from gateway.audit_cli import add_arguments as add_audit_arguments

    add_audit_arguments(sub.add_parser("audit", help="the tamper-evident access log"))

    from gateway.users_cli import add_arguments as add_users_arguments

    add_users_arguments(sub.add_parser("users", help="staff accounts for the console and API"))

    bench = sub.add_parser("bench", help=cmd_bench.__doc__)
    from gateway.bench import add_arguments as add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wgw` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        result: int = args.func(args)
    except GatewayError as exc:
        print(f"wgw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
