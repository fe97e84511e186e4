"""The shared vocabulary of welfare-gateway: events, ids, rows, errors and the clock (no I/O)."""
