"""Alerts, their transitions, outage incidents and the engine's state, written with their batch."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from gateway.store.auditlog import append_drafts
from rules.work import AlertWork

# An opening is inserted once (a replay after a crash finds it there); a
# second gateway raising the same (device, rule) meets the one-open-alert
# index and is dropped by the database, so the first alert stands.
_INSERT_ALERT = """
INSERT INTO alerts (alert_id, org, device_id, rule_id, kind, priority, state, occurred_at,
                    opened_at, paged_at, last_seen_at, count, escalated, late, reason, title,
                    event_id, match, outcome, closed_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
# Every later change is an update with absolute values from the engine, so
# writing the same change twice changes nothing.
_UPDATE_ALERT = """
UPDATE alerts SET state = %s, paged_at = %s, last_seen_at = %s, count = %s, escalated = %s,
                  escalation_tier = %s, escalated_to = %s, late = %s, outcome = %s,
                  handled_by = %s, closed_at = coalesce(closed_at, %s)
WHERE alert_id = %s
"""
_INSERT_TRANSITION = """
INSERT INTO alert_transitions (alert_id, at, actor, from_state, to_state, note, took_over_from)
SELECT %s, %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = %s)
ON CONFLICT DO NOTHING
"""
# Each tier once: whom it named and when (a replayed batch writes it again).
_INSERT_ESCALATION = """
INSERT INTO alert_escalations (alert_id, tier, at, recipients)
SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = %s)
ON CONFLICT DO NOTHING
"""
_UPSERT_INCIDENT = """
INSERT INTO incidents (incident_id, org, opened_at, cleared_at, device_ids, silent)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (incident_id) DO UPDATE SET
    cleared_at = EXCLUDED.cleared_at, device_ids = EXCLUDED.device_ids, silent = EXCLUDED.silent
"""
_SAVE_STATE = """
INSERT INTO rule_state (name, state, saved_at) VALUES (%s, %s, now())
ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, saved_at = now()
"""

_INSERT_SUPPRESSION = """
INSERT INTO suppressions (at, org, device_id, event_id, kind, actor, reason)
VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
# The first staff entry after an alert opened is its time of arrival.
_RECORD_ARRIVAL = """
UPDATE alerts SET arrived_at = %s
WHERE device_id = ANY(%s) AND arrived_at IS NULL AND opened_at <= %s
  AND state NOT IN ('resolved', 'cleared')
"""


async def store(cur: psycopg.AsyncCursor[Any], work: AlertWork) -> None:
    """Write alerts, transitions, incidents and state in the caller's transaction."""
    for alert_id in sorted(work.opened):
        a = work.alerts[alert_id]
        await cur.execute(
            _INSERT_ALERT,
            (
                a.alert_id, a.org, a.device_id, a.rule_id, a.kind, int(a.priority),
                a.state.value, a.occurred_at, a.opened_at, a.paged_at, a.last_seen_at,
                a.count, a.escalated, a.late, a.reason, a.title, a.event_id, a.match,
                a.outcome, work.closed_at.get(alert_id),
            ),
        )  # fmt: skip
    if work.alerts:
        await cur.executemany(
            _UPDATE_ALERT,
            [
                (a.state.value, a.paged_at, a.last_seen_at, a.count, a.escalated,
                 a.escalation.tier, list(a.escalation.to), a.late, a.outcome, a.handled_by,
                 work.closed_at.get(a.alert_id), a.alert_id)
                for a in work.alerts.values()
            ],
        )  # fmt: skip
    if work.transitions:
        await cur.executemany(
            _INSERT_TRANSITION,
            [
                (t.alert_id, t.at, t.actor, t.from_state.value if t.from_state else None,
                 t.to_state.value, t.note, t.took_over_from, t.alert_id)
                for t in work.transitions
            ],
        )  # fmt: skip
    if work.escalations:
        await cur.executemany(
            _INSERT_ESCALATION,
            [(alert_id, tier, at, list(to), alert_id)
             for alert_id, tier, at, to in work.escalations],
        )  # fmt: skip
    for incident in work.incidents.values():
        await cur.execute(
            _UPSERT_INCIDENT,
            (
                incident.incident_id, incident.org, incident.opened_at, incident.cleared_at,
                list(incident.device_ids), list(incident.silent),
            ),
        )  # fmt: skip
    for name, state in work.states.items():
        await cur.execute(_SAVE_STATE, (name, json.dumps(state)))
    if work.suppressions:
        await cur.executemany(_INSERT_SUPPRESSION, work.suppressions)
    if work.chattering:
        await cur.execute(
            "UPDATE alerts SET chattering = true WHERE alert_id = ANY(%s)",
            (sorted(work.chattering),),
        )
    for arrived_at, device_ids in work.arrivals:
        await cur.execute(_RECORD_ARRIVAL, (arrived_at, device_ids, arrived_at))
    if work.comments:
        await cur.executemany(
            "INSERT INTO alert_comments (alert_id, at, actor, note) VALUES (%s, %s, %s, %s)",
            work.comments,
        )
    if work.access:
        await append_drafts(cur, work.access)


async def load_states(conn: psycopg.AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    """Every engine's saved state by its rule_state name (empty on a first start)."""
    cur = await conn.execute("SELECT name, state FROM rule_state")
    return {str(name): dict(state) for name, state in await cur.fetchall()}
