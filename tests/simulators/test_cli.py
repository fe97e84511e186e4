"""`wgw simulate`: options, the registry file, and the plan it publishes."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from gateway.registry import load_registry_file
from simulators import Plan, PublishReport, add_arguments, demo_registry, run
from simulators import cli as cli_module


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wgw simulate")
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Plan, dict[str, Any]]]:
    calls: list[tuple[Plan, dict[str, Any]]] = []

    def fake_publish(plan: Plan, url: str, **kwargs: Any) -> PublishReport:
        calls.append((plan, {"url": url, **kwargs}))
        return PublishReport(len(plan.messages), len(plan.messages), 0.5)

    monkeypatch.setattr(cli_module, "publish", fake_publish)
    return calls


def test_defaults() -> None:
    args = parse()
    assert (args.devices, args.scenario, args.seed, args.live, args.realtime) == (
        50, "mixed", 1, False, False,
    )  # fmt: skip
    assert args.broker == "mqtt://127.0.0.1:1883"
    assert args.rate is None and args.messages is None


@pytest.mark.parametrize("argv", [["--devices", "0"], ["--rate", "-1"], ["--scenario", "flood"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_run_writes_an_importable_registry_and_publishes_a_night_ending_now(
    tmp_path: Path,
    published: list[tuple[Plan, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "registry.yaml"
    args = parse("--devices", "12", "--seed", "5", "--scenario", "fall", "--registry-out", str(out))
    assert run(args) == 0
    assert load_registry_file(out) == demo_registry(12, seed=5)
    ((plan, options),) = published
    assert plan.scenario == "fall"
    assert abs(plan.end - datetime.now(UTC)) < timedelta(seconds=5)
    assert options == {
        "url": "mqtt://127.0.0.1:1883",
        "rate": None,
        "realtime": False,
        "protocol": 5,
        "scaip_sip": None,
    }
    line = capsys.readouterr().out
    assert line.startswith(f"fall: published {len(plan.messages)} messages")
    assert f"expect {plan.expected.total_events} events" in line


def test_realtime_starts_the_night_now_and_messages_pads_it(
    published: list[tuple[Plan, dict[str, Any]]],
) -> None:
    run(parse("--devices", "8", "--realtime", "--messages", "900", "--rate", "50"))
    ((plan, options),) = published
    assert abs(plan.start - datetime.now(UTC)) < timedelta(seconds=5)
    assert len(plan.messages) == 900
    assert options["realtime"] and options["rate"] == 50


def test_an_existing_registry_file_is_used_as_it_is(
    tmp_path: Path, published: list[tuple[Plan, dict[str, Any]]]
) -> None:
    source = tmp_path / "devices.yaml"
    run(parse("--devices", "9", "--seed", "2", "--registry-out", str(source)))
    run(parse("--registry", str(source), "--devices", "400", "--scenario", "fall"))
    plan = published[1][0]
    devices = {m.topic.split("/")[3] for m in plan.messages if m.topic.startswith("wgw/")}
    devices |= {
        m.payload.split(b"<cid>")[1][:11].decode() for m in plan.messages if b"<cid>" in m.payload
    }
    assert devices == {r.device_id for r in load_registry_file(source)}
    assert len(devices) == 9


def test_too_few_devices_is_a_config_error(published: list[tuple[Plan, dict[str, Any]]]) -> None:
    with pytest.raises(ConfigError, match="--devices 3"):
        run(parse("--devices", "3"))
