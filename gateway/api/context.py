"""What every route needs: settings, the database pool, the running gateway and its console."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from core.clock import Clock
from gateway.api.auth import LoginLimiter, PasswordHasher
from gateway.config import Settings
from gateway.console import Console
from gateway.push import Notifier
from gateway.service import Gateway
from gateway.store import Pool
from gateway.store.users import Session


@dataclass
class ApiContext:
    """Shared state of one API server, handed to routes through dependencies."""

    settings: Settings
    pool: Pool
    gateway: Gateway
    console: Console
    clock: Clock
    # Web Push to closed consoles; None when push.enabled is off.
    push: Notifier | None = None
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    limiter: LoginLimiter = field(init=False)
    # Device id → (unit, area), filled on demand (see gateway.api.places).
    places: dict[str, tuple[str, str]] = field(default_factory=dict)
    places_loads: int = 0  # the gateway's registry_loads the cache was filled under
    # After PostgreSQL failed to answer, lookups wait until this monotonic time
    # (and use what is cached), so each request does not wait out a timeout.
    db_retry_at: float = 0.0
    # Sessions PostgreSQL vouched for, by token digest: they hold while it is down.
    sessions: dict[bytes, Session] = field(default_factory=dict)
    metrics_registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Failed logins, lockouts and 403s by kind, as /metrics shows them.
    security_events: Counter = field(init=False)

    def __post_init__(self) -> None:
        api = self.settings.api
        self.limiter = LoginLimiter(
            attempts=api.login_attempts,
            address_attempts=api.login_attempts_per_address,
            window_s=api.login_window_s,
        )
        self.security_events = Counter(
            "wgw_security_events",
            "Failed logins, lockouts and refused (403) requests, by event.",
            ["event"],
            registry=self.metrics_registry,
        )
