"""Enforced alert transitions: every move is checked and returns its history row."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from core.errors import GatewayError
from rules.model import ALLOWED_TRANSITIONS, Alert, AlertState, Transition


class TransitionError(GatewayError):
    """An alert was asked to make a move its lifecycle does not allow."""


class HandoverRequired(TransitionError):
    """A step on an alert someone else is handling, without saying it is a takeover."""

    def __init__(self, alert: Alert) -> None:
        self.handled_by = alert.handled_by or ""
        self.handled_by_name = alert.handled_by_name or self.handled_by
        super().__init__(
            f"alert {alert.alert_id} is being handled by {self.handled_by_name} "
            f"({self.handled_by}); to take it over, send the step again with takeover: true"
        )


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
    actor_name: str | None = None,
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
    if to is AlertState.CLEARED:
        handler, handler_name = alert.handled_by, alert.handled_by_name
    else:
        # The same handler's next step keeps the name it was given, if none comes now.
        known = alert.handled_by_name if actor == alert.handled_by else None
        handler, handler_name = actor, actor_name or known or actor
    moved = replace(
        alert, state=to, outcome=outcome, handled_by=handler, handled_by_name=handler_name
    )
    row = Transition(
        alert_id=alert.alert_id,
        at=at,
        actor=actor,
        from_state=alert.state,
        to_state=to,
        note=note,
    )
    return moved, row


def needs_takeover(alert: Alert, actor: str) -> bool:
    """Whether a step by ``actor`` would take the alert from another staff member."""
    return alert.handled_by is not None and alert.handled_by != actor


def takeover(
    alert: Alert, *, actor: str, at: datetime, actor_name: str | None = None
) -> tuple[Alert, Transition]:
    """Hand an alert openly to ``actor``: a row of its own naming who had it before."""
    if not needs_takeover(alert, actor):
        raise TransitionError(f"alert {alert.alert_id} is not handled by someone else")
    moved = replace(alert, handled_by=actor, handled_by_name=actor_name or actor)
    row = Transition(
        alert_id=alert.alert_id,
        at=at,
        actor=actor,
        from_state=alert.state,
        to_state=alert.state,
        took_over_from=alert.handled_by,
    )
    return moved, row
