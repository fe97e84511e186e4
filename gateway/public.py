"""The public alert: one model for the MQTT alert topic, the live stream and the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from rules import Alert, Escalation, RuleSet
from rules.model import AlertState
from rules.ruleset import Category, Icon


class EscalationPublic(BaseModel):
    """How far an unacknowledged alert has escalated, and the next tier if one is due.

    A recipient is "role:<role>" (that role's accounts in the alert's
    organisation) or "group:<name>" (the accounts in that named group).
    """

    tier: int = Field(ge=0, description="tiers reached; 0: not escalated")
    to: list[str] = Field(description="the recipients of the tier reached")
    next_at: datetime | None = Field(description="when the next tier is due, if one is")
    next_to: list[str] | None = Field(description="the next tier's recipients, if one is due")


class PositionPublic(BaseModel):
    """Where the alarm unit was (WGS84 decimal degrees) and when it fixed that position."""

    lat: float
    lon: float
    at: datetime | None


NO_ESCALATION = EscalationPublic(tier=0, to=[], next_at=None, next_to=None)


class AlertPublic(BaseModel):
    """An alert as every client sees it: MQTT subscribers, the console's stream, the API.

    Each sender fills what it knows; a field it cannot know keeps its default,
    as said at the field. New fields go at the end, each with its default, so
    the three senders stay one shape.
    """

    alert_id: str
    org: str
    device_id: str
    rule_id: str
    title: str  # the rule's Swedish title when the alert was raised (titles.sv)
    kind: str
    priority: int
    state: AlertState
    occurred_at: datetime
    opened_at: datetime
    last_seen_at: datetime
    count: int
    escalated: bool
    late: bool
    reason: str
    outcome: str | None
    handled_by: str | None
    # From the rule's presentation in the rule set in force now; null for a
    # stored alert whose rule is no longer in the set.
    category: Category | None = None
    icon: Icon | None = None
    # The device's home and area from the registry: filled by the API and the
    # live stream; empty on MQTT, whose topics name no homes.
    unit: str = ""
    area: str = ""
    # From the stored trail: filled where the API reads the database, else null.
    arrived_at: datetime | None = None
    closed_at: datetime | None = None
    chattering: bool = False
    # The display name of handled_by: the engine keeps it from the step; stored
    # rows take it from the users table.
    handled_by_name: str | None = None
    escalation: EscalationPublic = NO_ESCALATION
    # From the opening event's SCAIP <lge>; null when the alarm carried none.
    position: PositionPublic | None = None


# The fields an engine's Alert has in common with the public model.
_FROM_ALERT = tuple(f.name for f in dataclasses.fields(Alert) if f.name in AlertPublic.model_fields)


def public_alert(alert: Alert | Mapping[str, Any], rules: RuleSet, **known: Any) -> AlertPublic:
    """An engine's alert or a stored alert row as the public model, with its rule's look.

    ``known`` adds what the caller knows besides (the unit and area of the device).
    """
    if isinstance(alert, Alert):
        fields = {name: getattr(alert, name) for name in _FROM_ALERT}
        fields["escalation"] = _escalation(alert.escalation)
    else:
        fields = dict(alert)
    rule = rules.rules.get(str(fields["rule_id"]))
    if rule is not None:
        fields |= {"category": rule.category, "icon": rule.icon}
    return AlertPublic.model_validate(fields | known)


def _escalation(escalation: Escalation) -> EscalationPublic:
    return EscalationPublic(
        tier=escalation.tier,
        to=list(escalation.to),
        next_at=escalation.next_at,
        next_to=None if escalation.next_to is None else list(escalation.next_to),
    )
