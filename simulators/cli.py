"""The `wgw simulate` command: build a seeded registry and scenario, publish it, or run live."""

from __future__ import annotations

import argparse
import threading
from datetime import UTC, datetime
from pathlib import Path

from core.errors import ConfigError
from gateway.registry import DeviceRecord, dump_registry_yaml, load_registry_file
from simulators.fleet import demo_registry, family_counts
from simulators.live import run_live
from simulators.plan import build_plan
from simulators.publisher import PublishReport, publish
from simulators.scenarios import SCENARIOS
from simulators.sip import parse_sip_target

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_LIVE_RATE = 10.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to a (sub)command parser."""
    parser.add_argument(
        "--devices", type=_positive_int, default=50, help="devices to invent (default 50, min 4)"
    )
    parser.add_argument(
        "--registry", type=Path, help="use the devices of this registry file instead of inventing"
    )
    parser.add_argument(
        "--registry-out", type=Path, help="write the registry as YAML for `wgw devices import`"
    )
    parser.add_argument(
        "--scenario", choices=sorted(SCENARIOS), default="mixed", help="default: mixed"
    )
    parser.add_argument("--seed", type=int, default=1, help="same seed, same bytes (default 1)")
    parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"default {DEFAULT_BROKER}")
    parser.add_argument(
        "--messages", type=_positive_int, help="pad the scenario with heartbeats to this total"
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        help=f"messages/s overall (default: as fast as possible; live: {DEFAULT_LIVE_RATE:g})",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="send each message when its device time comes (the night starts now)",
    )
    parser.add_argument(
        "--live", action="store_true", help="publish endless live traffic until Ctrl-C"
    )
    parser.add_argument(
        "--protocol", type=int, choices=(4, 5), default=5, help="MQTT 5 (default) or 3.1.1 (4)"
    )
    parser.add_argument(
        "--scaip-sip",
        metavar="URL",
        type=_sip_target,
        help="send the bridged social alarms as SIP MESSAGE to this SCAIP receiver "
        "(udp://host:port or tcp://host:port) instead of onto scaip/{org}/mrq",
    )


def _sip_target(text: str) -> str:
    try:
        parse_sip_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def run(args: argparse.Namespace) -> int:
    """Run `wgw simulate`: publish a plan (or live traffic) and print a one-line summary."""
    devices = _devices(args)
    if args.registry_out is not None:
        args.registry_out.write_text(dump_registry_yaml(devices), encoding="utf-8")
    if args.live:
        report = _run_live(devices, args)
        print(
            f"live: published {report.published} messages ({report.acked} acknowledged) "
            f"from {len(devices)} devices in {report.elapsed_s:.0f} s to {args.broker}"
            + _sip_summary(report, args.scaip_sip)
        )
        return 0
    now = datetime.now(UTC)
    # Published at full speed, a night must lie in the past or the gateway refuses its
    # future device times; in real time it starts now.
    anchor = {"start": now} if args.realtime else {"end": now}
    plan = build_plan(
        args.scenario, devices=devices, seed=args.seed, messages=args.messages, **anchor
    )
    report = publish(
        plan,
        args.broker,
        rate=args.rate,
        realtime=args.realtime,
        protocol=args.protocol,
        scaip_sip=args.scaip_sip,
    )
    expected = plan.expected
    families = ", ".join(f"{n} {family}" for family, n in expected.events.items())
    print(
        f"{plan.scenario}: published {report.published} messages ({report.acked} acknowledged, "
        f"{report.reconnects} reconnects) in {report.elapsed_s:.1f} s to {args.broker}; "
        f"expect {expected.total_events} events ({families}) "
        f"and {expected.total_dead_letters} dead letters" + _sip_summary(report, args.scaip_sip)
    )
    return 0


def _sip_summary(report: PublishReport, target: str | None) -> str:
    """The SIP half of the summary line: answers, <mrs> replies and reply latency."""
    return "" if report.sip is None else f"; SIP to {target}: {report.sip.summary()}"


def _devices(args: argparse.Namespace) -> list[DeviceRecord]:
    if args.registry is not None:
        return load_registry_file(args.registry)
    try:
        family_counts(args.devices)
    except ValueError as exc:
        raise ConfigError(f"--devices {args.devices}: {exc}") from exc
    return demo_registry(args.devices, seed=args.seed)


def _run_live(devices: list[DeviceRecord], args: argparse.Namespace) -> PublishReport:
    stop = threading.Event()
    done = threading.Event()
    outcome: list[PublishReport] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(
                run_live(
                    devices,
                    args.broker,
                    seed=args.seed,
                    rate=args.rate or DEFAULT_LIVE_RATE,
                    stop=stop,
                    protocol=args.protocol,
                    scaip_sip=args.scaip_sip,
                )
            )
        except BaseException as exc:  # handed to the main thread, which re-raises it
            failure.append(exc)
        finally:
            done.set()

    # The publisher runs in a thread so Ctrl-C reaches the main thread, which sets stop.
    # The main thread waits on an Event, not Thread.join: a join interrupted by Ctrl-C
    # can return early afterwards (CPython 3.11), before the publisher has finished.
    threading.Thread(target=work, name="wgw-simulate-live", daemon=True).start()
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        stop.set()
        done.wait()
    if failure:
        raise failure[0]
    return outcome[0]
