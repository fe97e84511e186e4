"""In-process counters for ingest and alerting, read by the demo's status line and /metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, Metric


def _batch_sizes() -> Histogram:
    return Histogram(
        "wgw_batch_size_messages",
        "Messages per batch spooled and acknowledged.",
        buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
        registry=None,
    )


# Fine low buckets: the design's target is p99 under 50 ms from message to console,
# issue 11's p99 under 100 ms for a SIP reply (a unit retransmits at 500 ms).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _latency(name: str, documentation: str) -> Histogram:
    return Histogram(name, documentation, buckets=_LATENCY_BUCKETS, registry=None)


def _alert_latency() -> Histogram:
    return _latency(
        "wgw_alert_latency_seconds",
        "Time from the gateway receiving the message that raised an alert to the alert "
        "reaching the console's live feed.",
    )


def _sip_reply_latency() -> Histogram:
    return _latency(
        "wgw_sip_reply_latency_seconds",
        "Time from the SCAIP receiver taking a SIP request to sending its final answer "
        "(a 200 OK only after the spool's fsync); first answers, not retransmissions.",
    )


@dataclass
class IngestMetrics:
    """Running totals since start; cheap enough to bump per message."""

    messages: int = 0
    events_in: Counter[str] = field(default_factory=Counter)  # decoded, per family
    events_stored: int = 0  # new rows committed (WriteResult.inserted)
    duplicates: int = 0  # redeliveries the idempotency key absorbed
    # Dead letters committed, per reason (WriteResult.dead_letter_reasons): what
    # `SELECT reason, count(*) FROM dead_letters` says, re-deliveries not counted again.
    dead_letters: Counter[str] = field(default_factory=Counter)
    # Dead letters the pipeline decided on, per reason, before storage (a replayed
    # message counts again here, not in dead_letters).
    dead_letters_decoded: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    batch_rows_max: int = 0
    write_failures: int = 0
    # Messages that are neither events nor dead letters: our own alerts, an empty
    # retained status (clearing it), a lock batch with no entries.
    ignored: int = 0
    batch_sizes: Histogram = field(default_factory=_batch_sizes)
    alert_latency: Histogram = field(default_factory=_alert_latency)
    # SIP requests the SCAIP receiver took, per (transport, outcome): the status code of
    # its answer ("200", "403", ...), "unanswered" (refused with nothing to answer to),
    # "retransmission" (answered again from the transaction cache) or "absorbed" (came
    # while the first was still being made durable; its answer follows).
    sip_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    sip_reply_latency: Histogram = field(default_factory=_sip_reply_latency)

    def sip_families(self) -> Iterator[Metric]:
        """The SCAIP receiver's metric families, for /metrics."""
        requests = CounterMetricFamily(
            "wgw_sip_requests",
            "SIP requests the SCAIP receiver took, per transport and outcome (the answer's "
            "status code, unanswered, retransmission answered from the cache, or absorbed).",
            labels=["transport", "outcome"],
        )
        for (transport, outcome), n in sorted(self.sip_requests.items()):
            requests.add_metric([transport, outcome], n)
        yield requests
        yield from self.sip_reply_latency.collect()

    def snapshot(self) -> dict[str, object]:
        """A plain copy for printing or JSON."""
        return {
            "messages": self.messages,
            "events_in": dict(self.events_in),
            "events_stored": self.events_stored,
            "duplicates": self.duplicates,
            "dead_letters": dict(self.dead_letters),
            "dead_letters_decoded": dict(self.dead_letters_decoded),
            "batches": self.batches,
            "batch_rows_max": self.batch_rows_max,
            "write_failures": self.write_failures,
            "ignored": self.ignored,
        }
