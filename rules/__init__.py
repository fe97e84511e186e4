"""The rules engine (issue 3): stateful rules, timers, alert lifecycle and access checks."""
