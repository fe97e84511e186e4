"""The rules engine (issue 3): stateful rules, timers, alert lifecycle and access checks."""

from rules.calendar import DailyWindow
from rules.engine import EngineStateError, RuleEngine
from rules.lifecycle import TransitionError, transition
from rules.model import (
    ALLOWED_TRANSITIONS,
    Alert,
    AlertCleared,
    AlertEscalated,
    AlertOpened,
    AlertRepeated,
    AlertState,
    AlertTransitioned,
    DeviceInfo,
    Effect,
    Incident,
    IncidentCleared,
    IncidentOpened,
    IncidentUpdated,
    Priority,
    Transition,
)
from rules.ruleset import (
    Presentation,
    RuleSet,
    RuleSetError,
    check_ruleset_file,
    default_rules_text,
    load_ruleset,
    parse_ruleset,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Alert",
    "AlertCleared",
    "AlertEscalated",
    "AlertOpened",
    "AlertRepeated",
    "AlertState",
    "AlertTransitioned",
    "DailyWindow",
    "DeviceInfo",
    "Effect",
    "EngineStateError",
    "Incident",
    "IncidentCleared",
    "IncidentOpened",
    "IncidentUpdated",
    "Presentation",
    "Priority",
    "RuleEngine",
    "RuleSet",
    "RuleSetError",
    "Transition",
    "TransitionError",
    "check_ruleset_file",
    "default_rules_text",
    "load_ruleset",
    "parse_ruleset",
    "transition",
]
