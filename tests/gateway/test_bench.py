"""`wgw bench`: a --quick run writes complete results, stores every message once, loses no alert."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.bench import (
    ACKED_METRIC,
    ALARM_TARGET_RATIO,
    DRAIN_TODAY_RATIO,
    QUICK_BACKLOG_ALERTS,
    QUICK_BACKLOG_MESSAGES,
    QUICK_CONSOLE_ALERTS,
    QUICK_CONSOLE_LOAD,
    QUICK_MESSAGES,
    QUICK_OUTAGE_LOAD,
    QUICK_OUTAGE_S,
    QUICK_RATES,
    QUICK_SIP_DURATION_S,
    QUICK_SIP_RATE,
    SIP_TARGET_P99_MS,
    LatencyHistogram,
    StreamWatch,
    counter_rate,
    first_sample,
    parse_metrics,
    sipp_rtts,
    sipp_stats,
    step_verdict,
    transfer_rates,
)
from gateway.cli import main


@pytest.mark.broker
@pytest.mark.db
@pytest.mark.slow
def test_quick_bench_stores_every_message_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"

    code = main(["bench", "--quick", "--memory-devices", "500", "--json", str(out)])

    assert code == 0
    printed = capsys.readouterr().out
    for heading in (
        "(0) baseline",
        "(a) backlog drain",
        "(b) sustained",
        "(c) memory",
        "(d) console latency",
        "(e) backlog alarm",
        "(f) outage",
        "(g) SCAIP over SIP",
        "the alarm path and the spool, against the targets",
    ):
        assert heading in printed
    results = json.loads(out.read_text())
    assert results["options"]["messages"] == QUICK_MESSAGES

    for library in ("gmqtt", "paho"):
        runs = results["baseline"][library]["runs"]
        assert [r["received"] for r in runs] == [QUICK_MESSAGES]
        assert results["baseline"][library]["median"]["rate"] > 0

    # `stored` is the events table's count of the run's messages: all of them, no duplicate.
    drain = results["drain"]
    assert [(r["messages"], r["stored"]) for r in drain["runs"]] == [
        (QUICK_MESSAGES, QUICK_MESSAGES)
    ]
    assert drain["median"]["rate_wall"] > 0

    steps = results["sustained"]["steps"]
    assert [s["target_rate"] for s in steps] == list(QUICK_RATES)
    (run,) = steps[0]["runs"]
    assert run["published"] > 0
    assert run["stored"] == run["published"]
    assert run["latency_p50_ms"] is not None
    assert run["latency_p99_ms"] >= run["latency_p50_ms"]

    memory = results["memory"]
    assert (memory["devices"], memory["stored"]) == (500, 500)
    assert memory["peak_rss_mb"] >= memory["rss_registry_loaded_mb"] > 0

    # Every alarm opened an alert that reached the live stream, with and without load.
    console = results["console"]
    assert (console["lost"], console["stream_errors"]) == (0, [])
    for key, load in (("unloaded", 0), ("loaded", QUICK_CONSOLE_LOAD)):
        (run,) = console[key]["runs"]
        assert run["load_target_rate"] == load
        assert run["alarms"] == run["received"] == QUICK_CONSOLE_ALERTS
        assert run["lost"] == 0
        assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"] <= run["latency_max_ms"]
        assert run["gateway_alerts"] == QUICK_CONSOLE_ALERTS
        assert run["load_stored"] == run["load_published"]
    assert console["loaded"]["runs"][0]["load_published"] > 0

    # Alarms sent while a backlog drained all reached the stream; the backlog was stored once.
    backlog = results["backlog_alarm"]
    assert backlog["target_ratio_p99_to_noload"] == ALARM_TARGET_RATIO
    (run,) = backlog["runs"]
    assert (run["messages"], run["stored"]) == (QUICK_BACKLOG_MESSAGES, QUICK_BACKLOG_MESSAGES)
    assert run["alarms"] == QUICK_BACKLOG_ALERTS
    assert run["lost"] == 0
    assert run["received_during"] == run["alarms_during"]
    assert 0 < run["noload_p50_ms"] <= run["noload_p99_ms"]
    assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"]
    assert run["ratio_p99_to_noload"] == pytest.approx(run["latency_p99_ms"] / run["noload_p99_ms"])
    assert run["acked_s"] is not None and run["judged_s"] is not None

    # Alarms sent while PostgreSQL was down reached the stream; afterwards every heartbeat
    # of the load was stored, and storage caught up.
    outage = results["outage"]
    assert (outage["outage_s"], outage["load_rate"]) == (QUICK_OUTAGE_S, QUICK_OUTAGE_LOAD)
    assert (outage["lost"], outage["load_lost"]) == (0, 0)
    (run,) = outage["runs"]
    assert run["outage_s"] >= QUICK_OUTAGE_S
    assert run["received_during"] == run["alarms_during"] > 0
    assert run["load_stored"] == run["load_published"] > 0
    assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"]
    assert run["noload_p99_ms"] > 0
    assert run["peak_waiting_storage"] > 0
    assert run["storage_resumed_s"] is not None
    assert run["storage_caught_up_s"] >= run["storage_resumed_s"]

    rates = results["rates"]
    assert rates["source"] == "drain"
    assert rates["drain_today_ratio"] == DRAIN_TODAY_RATIO
    assert rates["storage_ratio_to_gmqtt_baseline"] > 0
    assert "ack_ratio_to_gmqtt_baseline" in rates


@pytest.mark.broker
@pytest.mark.db
@pytest.mark.slow
def test_the_sip_phase_answers_and_stores_every_message_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"

    assert main(["bench", "--quick", "--only", "sip", "--json", str(out)]) == 0

    assert "(g) SCAIP over SIP" in capsys.readouterr().out
    sip = json.loads(out.read_text())["sip"]
    calls = int(QUICK_SIP_RATE * QUICK_SIP_DURATION_S)
    (run,) = sip["runs"]
    # SIPp counted every call answered 200 and none failed; PostgreSQL has each ref once.
    assert (run["calls"], run["answered"], run["failed"], run["stored"]) == (calls, calls, 0, calls)
    assert run["duplicates"] == 0
    assert run["sipp_exit"] == 0
    assert sip["all_answered"] is True
    assert sip["exactly_once"] is True
    assert 0 <= run["latency_p50_ms"] <= run["latency_p99_ms"] <= run["latency_max_ms"]
    assert sip["target_p99_ms"] == SIP_TARGET_P99_MS
    # The no-load baseline ran first on the same gateway, and the ratios are against it.
    assert sip["baseline"]["answered"] == sip["baseline"]["calls"] > 0
    assert sip["baseline"]["stored"] == sip["baseline"]["calls"]
    assert sip["p99_ratio_to_baseline"] == pytest.approx(
        run["latency_p99_ms"] / max(sip["baseline"]["latency_p99_ms"], 1.0)
    )
    assert sip["sipp_command"].startswith(shutil.which("sipp") or "sipp")


def test_sipp_statistics_and_response_times_are_read_by_column(tmp_path: Path) -> None:
    stat = tmp_path / "stat.csv"
    stat.write_text(
        "StartTime;SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n"
        "2026-12-02\t03:10:45.595241\t1.5;10;1;3;\n"
        "2026-12-02\t03:10:46.595241\t2.5;598;2;14;\n"
    )
    stats = sipp_stats(stat)
    assert (stats["SuccessfulCall(C)"], stats["FailedCall(C)"]) == ("598", "2")
    assert stats["Retransmissions(C)"] == "14"
    rtt = tmp_path / "scaip_load_1_rtt.csv"
    rtt.write_text("Date_ms;response_time_ms;rtd_no\n16.001;4;reply\n28.001;12.5;reply\nbad\n")
    assert sipp_rtts([rtt]) == [4.0, 12.5]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert sipp_stats(empty) == {}


def _step(**overrides: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "target_rate": 10_000,
        "published": 100_000,
        "stored": 100_000,
        "achieved_rate": 10_000.0,
        "committed_rate": 9_900.0,
        "backlog_at_end": 300,
        "latency_first_quarter_p50_ms": 30.0,
        "latency_last_quarter_p50_ms": 40.0,
    }
    step.update(overrides)
    return step


def test_a_step_the_gateway_keeps_up_with_lets_the_sweep_go_on() -> None:
    assert step_verdict(_step()) == (None, False)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"stored": 90_000}, "only 90,000 of 100,000 stored in time"),
        ({"committed_rate": 8_000.0}, "committed 8,000/s of 10,000/s published"),
        ({"backlog_at_end": 15_000}, "15,000 messages queued when publishing stopped"),
        ({"latency_last_quarter_p50_ms": 900.0}, "backlog growing"),
    ],
)
def test_the_sweep_stops_where_the_gateway_falls_behind(
    overrides: dict[str, Any], reason: str
) -> None:
    behind, publisher_limited = step_verdict(_step(**overrides))

    assert behind is not None
    assert reason in behind
    assert not publisher_limited


def test_a_slow_publisher_is_named_as_the_limit() -> None:
    behind, publisher_limited = step_verdict(_step(achieved_rate=7_000.0, committed_rate=6_950.0))

    assert behind is None
    assert publisher_limited


def test_the_gateway_histogram_is_read_as_prometheus_estimates_quantiles() -> None:
    before = LatencyHistogram(((0.01, 1.0), (0.05, 1.0), (float("inf"), 1.0)), 0.005, 1.0)
    after = LatencyHistogram(((0.01, 51.0), (0.05, 101.0), (float("inf"), 101.0)), 2.0, 101.0)

    seen = after.minus(before)

    assert seen.count == 100
    assert seen.quantile(0.5) == pytest.approx(0.01)
    assert seen.quantile(0.75) == pytest.approx(0.03)
    assert LatencyHistogram(((0.01, 0.0), (float("inf"), 0.0)), 0.0, 0.0).quantile(0.5) is None


def test_the_stream_watch_keeps_the_first_opening_of_each_wanted_device() -> None:
    watch = StreamWatch(["alarm-c000001"])
    opened = b'event: alert\ndata: {"effect":"AlertOpened","alert":{"device_id":"alarm-c000001"}}'
    other = b'event: alert\ndata: {"effect":"AlertOpened","alert":{"device_id":"alarm-000001"}}'
    cleared = b'event: alert\ndata: {"effect":"AlertCleared","alert":{"device_id":"alarm-c000001"}}'

    watch.on_frame(b"id: x-0\nevent: snapshot\ndata: {}", 1.0)
    watch.on_frame(opened, 2.0)
    watch.on_frame(other, 2.5)
    watch.on_frame(opened, 3.0)
    watch.on_frame(cleared, 4.0)

    assert watch.snapshot
    assert watch.opened == {"alarm-c000001": 2.0}
    assert watch.cleared == {"alarm-c000001"}


def test_metrics_are_read_by_name_without_the_labelled_ones() -> None:
    text = (
        "# HELP wgw_messages_total MQTT messages received.\n"
        "# TYPE wgw_messages_total counter\n"
        "wgw_messages_total 1234.0\n"
        'wgw_events_in_total{family="alarm"} 7.0\n'
        "wgw_storage_up 0.0\n"
        "wgw_batch_size_messages_sum 1200.0\n"
    )

    assert parse_metrics(text) == {
        "wgw_messages_total": 1234.0,
        "wgw_storage_up": 0.0,
        ACKED_METRIC: 1200.0,
    }


def test_the_ack_rate_counts_from_the_first_scrape_to_the_one_at_the_target() -> None:
    samples = [
        (10.0, {ACKED_METRIC: 0.0}),
        (11.0, {ACKED_METRIC: 1_000.0}),
        (12.0, {ACKED_METRIC: 3_000.0}),
        (13.0, {ACKED_METRIC: 5_000.0}),
        (14.0, {ACKED_METRIC: 5_000.0}),
    ]

    assert counter_rate(samples, ACKED_METRIC, 5_000, since=10.5) == (2_000.0, 13.0)
    # Never reached; or reached by the first scrape: when, but no rate to speak of.
    assert counter_rate(samples, ACKED_METRIC, 6_000) == (None, None)
    assert counter_rate(samples, ACKED_METRIC, 5_000, since=13.5) == (None, 14.0)
    assert first_sample(samples, 11.5, lambda v: v[ACKED_METRIC] >= 3_000) == 12.0


def test_the_transfer_rates_are_shares_of_the_gmqtt_baseline() -> None:
    results = {
        "baseline": {"gmqtt": {"median": {"rate": 50_000.0}}},
        "drain": {"median": {"rate_acked": 25_000.0, "rate_stored": 5_000.0}},
        "backlog_alarm": {"median": {"rate_acked": 1.0, "rate_stored": 1.0}},
    }

    rates = transfer_rates(results)

    assert rates is not None
    assert rates["source"] == "drain"
    assert rates["ack_ratio_to_gmqtt_baseline"] == pytest.approx(0.5)
    assert rates["storage_ratio_to_gmqtt_baseline"] == pytest.approx(0.1)
    assert rates["storage_ratio_to_gmqtt_baseline"] < rates["drain_today_ratio"]
    assert transfer_rates({"baseline": None, "drain": None}) is None
