"""What the rules engine changed while a batch was decoded, kept until it is committed with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.auditlog import EntryDraft
from rules.model import FINAL_STATES, Alert, Incident, Transition


def state_name(org: str | None) -> str:
    """The rule_state row of the engine for an organisation (None: the shared engine)."""
    return "engine" if org is None else f"engine:{org}"


@dataclass
class AlertWork:
    """What the rules engine changed while a batch was decoded, to commit with that batch."""

    alerts: dict[str, Alert] = field(default_factory=dict)  # latest version of each
    opened: set[str] = field(default_factory=set)
    closed_at: dict[str, datetime] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    incidents: dict[str, Incident] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (at, org, device_id, event_id, kind, actor, reason) of events held back.
    suppressions: list[tuple[datetime, str, str, str, str, str, str]] = field(default_factory=list)
    # (arrived_at, device ids of the home): staff entered while alerts were open.
    arrivals: list[tuple[datetime, list[str]]] = field(default_factory=list)
    chattering: set[str] = field(default_factory=set)  # alerts whose device chatters
    # Staff actions and comments from the console, logged with the change they made.
    access: list[EntryDraft] = field(default_factory=list)
    # (alert id, at, who, note)
    comments: list[tuple[str, datetime, str, str]] = field(default_factory=list)
    # (alert id, tier, at, recipients): each escalation tier as it was reached.
    escalations: list[tuple[str, int, datetime, tuple[str, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.alerts
            or self.incidents
            or self.states
            or self.suppressions
            or self.arrivals
            or self.chattering
            or self.access
            or self.comments
            or self.escalations
        )

    def absorb(self, later: AlertWork) -> None:
        """Take in the changes of work that happened after this one's."""
        self.alerts.update(later.alerts)
        self.opened |= later.opened
        for alert_id, at in later.closed_at.items():
            self.closed_at.setdefault(alert_id, at)
        self.transitions.extend(later.transitions)
        self.incidents.update(later.incidents)
        self.states.update(later.states)
        self.suppressions.extend(later.suppressions)
        self.arrivals.extend(later.arrivals)
        self.chattering |= later.chattering
        self.access.extend(later.access)
        self.comments.extend(later.comments)
        self.escalations.extend(later.escalations)

    def add_transition(self, transition: Transition) -> None:
        """Record a transition (and when a final one closed its alert)."""
        self.transitions.append(transition)
        if transition.to_state in FINAL_STATES:
            self.closed_at.setdefault(transition.alert_id, transition.at)
