"""Operations: /healthz and /metrics for Prometheus (no login; no personal data in either)."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel

from gateway.api.context import ApiContext
from gateway.api.deps import Context
from gateway.store import probe
from gateway.store.timescale import JobState, timescaledb_jobs

router = APIRouter(tags=["operations"])

# Ingest lag beyond this (seconds an event has waited for its commit) is unhealthy.
LAG_LIMIT_S = 30.0


class SpoolHealth(BaseModel):
    """The local spool between the broker and PostgreSQL."""

    bytes: int
    limit_bytes: int
    full: bool  # acknowledgements have stopped: the broker keeps the rest
    waiting_rules: int  # messages received, not yet judged by the rules
    waiting_storage: int  # journal entries not yet in PostgreSQL
    storage_lag_s: float  # age of the oldest of those


class ProblemCode(StrEnum):
    """What stands in the gateway's way; stable, so the console can word it in its language."""

    BROKER_DOWN = "broker_down"  # no MQTT connection: nothing arrives (503)
    # The broker refuses our login, or another client took our session lately (503).
    BROKER_REFUSED = "broker_refused"
    SPOOL_WRITE_FAILED = "spool_write_failed"  # the spool's disk refuses writes (503)
    SPOOL_FULL = "spool_full"  # at its limit: acknowledgements have stopped (503)
    DATABASE_DOWN = "database_down"  # PostgreSQL away: alerts go on, events wait (200)
    RULES_BEHIND = "rules_behind"  # the rules lag what arrived by LAG_LIMIT_S or more (503)
    # TimescaleDB's compression or retention job failed its last run (200): disk grows.
    TIMESCALEDB_JOBS_FAILING = "timescaledb_jobs_failing"


class Problem(BaseModel):
    """One thing wrong now: a stable code and an operator's sentence with the figures."""

    code: ProblemCode
    detail: str


class Health(BaseModel):
    """Whether the gateway can do its job now, part by part, and what is wrong if not."""

    ok: bool
    broker: bool
    database: bool
    ingest_lag_s: float
    open_alerts: int
    spool: SpoolHealth
    problems: list[Problem]


def health_problems(ctx: ApiContext, *, broker: bool, database: bool) -> list[Problem]:
    """What stands in the gateway's way now, most serious first (empty when nothing does)."""
    status = ctx.gateway.spool_status()
    lag = ctx.gateway.ingest_lag_s()
    source = ctx.gateway.source
    refused = source.refused if source is not None else None
    found = [
        (refused is not None, ProblemCode.BROKER_REFUSED, f"{refused}: see the gateway's log"),
        (not broker, ProblemCode.BROKER_DOWN, "the MQTT broker is not connected"),
        (
            status.write_error is not None,
            ProblemCode.SPOOL_WRITE_FAILED,
            f"the spool cannot be written ({status.write_error}): nothing is acknowledged",
        ),
        (
            status.full,
            ProblemCode.SPOOL_FULL,
            f"the spool is full ({status.bytes} of {status.limit_bytes} bytes): "
            "acknowledgements have stopped until PostgreSQL catches up",
        ),
        (
            not database,
            ProblemCode.DATABASE_DOWN,
            "PostgreSQL is unreachable: alerts go on, events wait in the spool "
            f"({status.waiting_storage} entries, oldest {status.oldest_unstored_s:.0f} s)",
        ),
        (
            lag >= LAG_LIMIT_S,
            ProblemCode.RULES_BEHIND,
            f"the rules are {lag:.0f} s behind what arrived",
        ),
    ]
    return [Problem(code=code, detail=detail) for wrong, code, detail in found if wrong]


def jobs_problems(jobs: list[JobState] | None) -> list[Problem]:
    """TimescaleDB jobs whose last run failed (none on the native variant: jobs is None)."""
    failing = [job for job in jobs or () if job.failing]
    if not failing:
        return []
    named = "; ".join(
        f"{job.name} on {job.hypertable or '?'} ({job.total_failures} failures"
        + (f", last: {job.last_error}" if job.last_error else "")
        + ")"
        for job in failing
    )
    return [
        Problem(
            code=ProblemCode.TIMESCALEDB_JOBS_FAILING,
            detail=f"TimescaleDB jobs failing: {named}; see "
            "timescaledb_information.job_errors and the PostgreSQL log",
        )
    ]


def timescaledb_metrics(jobs: list[JobState] | None) -> bytes:
    """TimescaleDB job metrics in the text format (nothing on the native variant)."""
    if jobs is None:
        return b""
    registry = CollectorRegistry()
    registry.register(_JobsCollector(jobs))
    return generate_latest(registry)


class _JobsCollector(Collector):
    def __init__(self, jobs: list[JobState]) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "wgw_timescaledb_job_failures", "Failed runs of a TimescaleDB job (job_stats).",
            labels=["job", "hypertable"],
        )  # fmt: skip
        failing = GaugeMetricFamily(
            "wgw_timescaledb_job_failing", "1 while a TimescaleDB job's last run failed.",
            labels=["job", "hypertable"],
        )  # fmt: skip
        for job in self._jobs:
            labels = [job.name, job.hypertable or ""]
            failures.add_metric(labels, job.total_failures)
            failing.add_metric(labels, int(job.failing))
        yield failures
        yield failing
        yield GaugeMetricFamily(
            "wgw_timescaledb_jobs_failing", "TimescaleDB jobs whose last run failed.",
            value=sum(job.failing for job in self._jobs),
        )  # fmt: skip


@router.get("/healthz", responses={503: {"model": Health}})
async def healthz(ctx: Context) -> JSONResponse:
    """Broker, spool, database and lag; 503 when the gateway cannot take or judge messages.

    PostgreSQL being away alone is reported but is not a 503: alarms still
    reach the console and everything waits in the spool.
    """
    gateway = ctx.gateway
    broker = gateway.source is not None and gateway.source.connected
    database = gateway.storage_up and await probe(ctx.pool)
    status = gateway.spool_status()
    problems = health_problems(ctx, broker=broker, database=database)
    problems += jobs_problems(await timescaledb_jobs(ctx.pool) if database else None)
    health = Health(
        ok=broker
        and gateway.source is not None
        and gateway.source.refused is None
        and status.write_error is None
        and not status.full
        and gateway.ingest_lag_s() < LAG_LIMIT_S,
        broker=broker,
        database=database,
        ingest_lag_s=round(gateway.ingest_lag_s(), 3),
        open_alerts=len(ctx.console.alerting.open_alerts()),
        spool=SpoolHealth(
            bytes=status.bytes,
            limit_bytes=status.limit_bytes,
            full=status.full,
            waiting_rules=status.waiting_rules,
            waiting_storage=status.waiting_storage,
            storage_lag_s=round(status.oldest_unstored_s, 3),
        ),
        problems=problems,
    )
    return JSONResponse(health.model_dump(mode="json"), status_code=200 if health.ok else 503)


class GatewayCollector(Collector):
    """Reads the gateway's counters at scrape time."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family as it stands now."""
        m = self._ctx.gateway.metrics
        events = CounterMetricFamily(
            "wgw_events_in", "Events decoded, per device family.", labels=["family"]
        )
        for family, n in sorted(m.events_in.items()):
            events.add_metric([family], n)
        yield events
        dead = CounterMetricFamily(
            "wgw_dead_letters", "Messages that could not become events, stored, per reason.",
            labels=["reason"],
        )  # fmt: skip
        for reason, n in sorted(m.dead_letters.items()):
            dead.add_metric([reason], n)
        yield dead
        yield CounterMetricFamily("wgw_messages", "MQTT messages received.", value=m.messages)
        yield CounterMetricFamily(
            "wgw_events_stored", "New event rows committed.", value=m.events_stored
        )
        yield CounterMetricFamily(
            "wgw_duplicates", "Redelivered events absorbed by the idempotency key.",
            value=m.duplicates,
        )  # fmt: skip
        yield CounterMetricFamily(
            "wgw_write_failures", "Batch writes that failed and were retried.",
            value=m.write_failures,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "wgw_ingest_lag_seconds",
            "How long the oldest received message has waited for the rules.",
            value=self._ctx.gateway.ingest_lag_s(),
        )
        spool = self._ctx.gateway.spool_status()
        for name, text, value in (
            ("wgw_spool_bytes", "Bytes in the local spool.", spool.bytes),
            ("wgw_spool_limit_bytes", "The spool's size limit.", spool.limit_bytes),
            ("wgw_spool_full", "1 while acknowledgements are held because the spool is full.",
             int(spool.full)),
            ("wgw_spool_waiting_rules", "Messages spooled, not yet judged by the rules.",
             spool.waiting_rules),
            ("wgw_spool_waiting_storage", "Journal entries in the spool not yet in PostgreSQL.",
             spool.waiting_storage),
            ("wgw_storage_lag_seconds", "Age of the oldest journal entry not yet in PostgreSQL.",
             spool.oldest_unstored_s),
            ("wgw_storage_up", "1 while PostgreSQL takes the spool's writes.",
             int(spool.storage_up)),
        ):  # fmt: skip
            yield GaugeMetricFamily(name, text, value=value)
        open_alerts = GaugeMetricFamily(
            "wgw_open_alerts", "Open alerts, per organisation and priority.",
            labels=["org", "priority"],
        )  # fmt: skip
        counts: dict[tuple[str, str], int] = {}
        for alert in self._ctx.console.alerting.open_alerts():
            key = (alert.org, str(int(alert.priority)))
            counts[key] = counts.get(key, 0) + 1
        for (org, priority), n in sorted(counts.items()):
            open_alerts.add_metric([org, priority], n)
        yield open_alerts
        if self._ctx.push is not None:
            pushes = CounterMetricFamily(
                "wgw_push", "Web Push messages to staff phones, by outcome.", labels=["outcome"]
            )
            for outcome, n in sorted(self._ctx.push.outcomes.items()):
                pushes.add_metric([outcome], n)
            yield pushes
        yield from m.batch_sizes.collect()
        yield from m.alert_latency.collect()
        yield from m.sip_families()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(ctx: Context) -> Response:
    """Counters and histograms in the Prometheus text format."""
    body = generate_latest(ctx.metrics_registry)
    if ctx.gateway.storage_up:
        body += timescaledb_metrics(await timescaledb_jobs(ctx.pool))
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
