"""Enforced alert transitions: every move is checked and returns its history row."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from core.errors import GatewayError
from rules.model import ALLOWED_TRANSITIONS, Alert, AlertState, Transition


class TransitionError(GatewayError):
    """An alert was asked to make a move its lifecycle does not allow."""


def opening(alert: Alert, *, actor: str, note: str = "") -> Transition:
    """The history row that records an alert being raised."""
    return Transition(
        alert_id=alert.alert_id,
        at=alert.opened_at,
        actor=actor,
        from_state=None,
        to_state=alert.state,
        note=note,
    )


def transition(
    alert: Alert,
    to: AlertState,
    *,
    actor: str,
    at: datetime,
    note: str = "",
    outcome: str | None = None,
) -> tuple[Alert, Transition]:
    """Move ``alert`` to ``to``; raise TransitionError if the move is not allowed."""
    allowed = ALLOWED_TRANSITIONS[alert.state]
    if to not in allowed:
        options = ", ".join(sorted(allowed)) or "none, it is final"
        raise TransitionError(
            f"alert {alert.alert_id} cannot go from {alert.state} to {to} (allowed: {options})"
        )
    if not actor.strip():
        raise TransitionError(f"alert {alert.alert_id}: a transition needs an actor")
    if at.tzinfo is None:
        raise TransitionError(f"alert {alert.alert_id}: transition time must be timezone-aware")
    if to is AlertState.RESOLVED:
        if outcome is None or not outcome.strip():
            raise TransitionError(f"alert {alert.alert_id}: resolving needs an outcome")
    elif outcome is not None:
        raise TransitionError(f"alert {alert.alert_id}: only resolving takes an outcome")
    # The device's own clearing does not change who is handling the alert.
    handler = alert.handled_by if to is AlertState.CLEARED else actor
    moved = replace(alert, state=to, outcome=outcome, handled_by=handler)
    row = Transition(
        alert_id=alert.alert_id,
        at=at,
        actor=actor,
        from_state=alert.state,
        to_state=to,
        note=note,
    )
    return moved, row
