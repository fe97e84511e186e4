"""Small pieces shared by the long-running commands (serve, demo)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM, so the gateway finishes its batch and closes cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def aware_time(text: str) -> datetime:
    """Parse an ISO 8601 time with a UTC offset, for command-line options."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add e.g. +01:00)")
    return value


def migrated_dsn(args: argparse.Namespace) -> str:
    """The configured database (``--config``), with the schema brought up to date first."""
    from gateway.config import load_settings
    from gateway.store import migrate

    db = load_settings(args.config).db
    migrate(db.dsn, timescaledb=db.timescaledb)
    return db.dsn
