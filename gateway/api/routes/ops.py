"""Operations: /healthz and /metrics for Prometheus (no login; no personal data in either)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel

from gateway.api.context import ApiContext
from gateway.api.deps import Context
from gateway.store import probe

router = APIRouter(tags=["operations"])

# Ingest lag beyond this (seconds an event has waited for its commit) is unhealthy.
LAG_LIMIT_S = 30.0


class Health(BaseModel):
    """Whether the gateway can do its job now, part by part."""

    ok: bool
    broker: bool
    database: bool
    ingest_lag_s: float
    open_alerts: int


@router.get("/healthz", responses={503: {"model": Health}})
async def healthz(ctx: Context) -> JSONResponse:
    """Broker connection, database reachability and ingest lag; 503 when any is wrong."""
    gateway = ctx.gateway
    broker = gateway.source is not None and gateway.source.connected
    database = await probe(ctx.pool)
    lag = gateway.ingest_lag_s()
    health = Health(
        ok=broker and database and lag < LAG_LIMIT_S,
        broker=broker,
        database=database,
        ingest_lag_s=round(lag, 3),
        open_alerts=len(ctx.console.alerting.open_alerts()),
    )
    return JSONResponse(health.model_dump(), status_code=200 if health.ok else 503)


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
            "wgw_dead_letters", "Messages that could not become events, per reason.",
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
            "How long the oldest received but uncommitted event has waited.",
            value=self._ctx.gateway.ingest_lag_s(),
        )
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
        yield from m.batch_sizes.collect()
        yield from m.alert_latency.collect()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(ctx: Context) -> Response:
    """Counters and histograms in the Prometheus text format."""
    body = generate_latest(ctx.metrics_registry)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
