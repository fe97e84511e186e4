"""Alert lifecycle: the allowed moves, refused moves, outcomes and history rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.lifecycle import TransitionError, opening, transition
from rules.model import ALLOWED_TRANSITIONS, FINAL_STATES, Alert, AlertState, Priority

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def _alert(state: AlertState = AlertState.OPEN) -> Alert:
    return Alert(
        alert_id="a:1",
        org="hemtjanst",
        device_id="alarm-1",
        rule_id="alarm",
        title="Larm",
        priority=Priority.CRITICAL,
        state=state,
        occurred_at=T0,
        opened_at=T0,
        paged_at=T0,
        last_seen_at=T0,
        count=1,
        escalated=False,
        late=False,
        reason="alarm.button",
        kind="alarm.button",
    )


def test_every_state_has_a_row_and_only_resolved_and_cleared_are_final() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(AlertState)
    assert {AlertState.RESOLVED, AlertState.CLEARED} == FINAL_STATES


def test_the_full_path_records_who_when_from_and_to() -> None:
    alert = _alert()
    rows = [opening(alert, actor="rule:alarm", note="alarm.button")]
    steps = [
        (AlertState.ACKNOWLEDGED, None),
        (AlertState.EN_ROUTE, None),
        (AlertState.ON_SITE, None),
        (AlertState.RESOLVED, "help_given"),
    ]
    for minute, (to, outcome) in enumerate(steps, start=1):
        alert, row = transition(
            alert, to, actor="staff-7", at=T0 + timedelta(minutes=minute), outcome=outcome
        )
        rows.append(row)
    assert alert.state is AlertState.RESOLVED
    assert alert.outcome == "help_given"
    assert [(r.from_state, r.to_state) for r in rows] == [
        (None, AlertState.OPEN),
        (AlertState.OPEN, AlertState.ACKNOWLEDGED),
        (AlertState.ACKNOWLEDGED, AlertState.EN_ROUTE),
        (AlertState.EN_ROUTE, AlertState.ON_SITE),
        (AlertState.ON_SITE, AlertState.RESOLVED),
    ]
    assert rows[-1].actor == "staff-7"
    assert rows[-1].at == T0 + timedelta(minutes=4)


@pytest.mark.parametrize(
    ("state", "to"),
    [
        (AlertState.OPEN, AlertState.RESOLVED),  # nobody took responsibility
        (AlertState.OPEN, AlertState.ON_SITE),
        (AlertState.ACKNOWLEDGED, AlertState.OPEN),
        (AlertState.ON_SITE, AlertState.EN_ROUTE),
        (AlertState.RESOLVED, AlertState.ACKNOWLEDGED),
        (AlertState.CLEARED, AlertState.OPEN),
        (AlertState.CLEARED, AlertState.RESOLVED),
    ],
)
def test_illegal_moves_raise(state: AlertState, to: AlertState) -> None:
    with pytest.raises(TransitionError, match=f"cannot go from {state} to {to}"):
        transition(_alert(state), to, actor="staff-7", at=T0, outcome="help_given")


@pytest.mark.parametrize(
    "state", [AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.EN_ROUTE, AlertState.ON_SITE]
)
def test_the_device_can_clear_until_staff_resolve(state: AlertState) -> None:
    cleared, row = transition(_alert(state), AlertState.CLEARED, actor="device:alarm-1", at=T0)
    assert cleared.state is AlertState.CLEARED
    assert row.from_state is state


@pytest.mark.parametrize("outcome", [None, "", "  "])
def test_resolving_needs_an_outcome(outcome: str | None) -> None:
    with pytest.raises(TransitionError, match="needs an outcome"):
        transition(
            _alert(AlertState.ON_SITE), AlertState.RESOLVED, actor="s", at=T0, outcome=outcome
        )


def test_only_resolving_takes_an_outcome() -> None:
    with pytest.raises(TransitionError, match="only resolving"):
        transition(_alert(), AlertState.ACKNOWLEDGED, actor="s", at=T0, outcome="help_given")


def test_a_transition_needs_an_actor_and_an_aware_time() -> None:
    with pytest.raises(TransitionError, match="actor"):
        transition(_alert(), AlertState.ACKNOWLEDGED, actor=" ", at=T0)
    with pytest.raises(TransitionError, match="timezone-aware"):
        transition(_alert(), AlertState.ACKNOWLEDGED, actor="s", at=datetime(2026, 1, 1))


def test_the_original_alert_is_left_untouched() -> None:
    alert = _alert()
    transition(alert, AlertState.ACKNOWLEDGED, actor="s", at=T0)
    assert alert.state is AlertState.OPEN
