"""Password hashing (argon2id) and the failed-login limiter."""

from __future__ import annotations

import time
from collections import deque

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

# Verified against when the user name is unknown, so a wrong name costs the
# same time as a wrong password and names cannot be probed by timing.
_DUMMY_PASSWORD = "not-a-password"  # hashed once at start; matches nothing users send


class PasswordHasher:
    """argon2id with the library's defaults (RFC 9106's second recommended option)."""

    def __init__(self) -> None:
        self._hasher = argon2.PasswordHasher()
        self._dummy = self._hasher.hash(_DUMMY_PASSWORD)

    def hash(self, password: str) -> str:
        """Hash a new password."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password; an unknown account (None) is checked against a dummy hash."""
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and (
                password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash was made with weaker parameters than today's."""
        return self._hasher.check_needs_rehash(password_hash)


class LoginLimiter:
    """Failed logins per window: at most ``attempts`` per account, ``address_attempts`` per address.

    An account is locked on its own failures, so one person (or one attacker)
    locks out only that account; an address is locked at a higher threshold,
    so a patrol sharing one address is not locked out by one wrong password.
    Attempts refused because of a lockout are not counted: a flood against one
    account does not run up its address's count.
    """

    def __init__(self, *, attempts: int, address_attempts: int, window_s: float) -> None:
        self._limits = {"user": attempts, "addr": address_attempts}
        self._window = window_s
        self._failures: dict[str, deque[float]] = {}
        # Key → the oldest failure of the lockout already logged (see first_refusal).
        self._noted: dict[str, float] = {}

    @staticmethod
    def keys(account: str, address: str) -> tuple[str, str]:
        """The counters of one login attempt: its account's and its address's."""
        return f"user:{account}", f"addr:{address}"

    def retry_after(self, *keys: str) -> float:
        """Seconds until any of these keys may try again (0 if they may now)."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            failures = self._failures.get(key)
            if failures is None:
                continue
            while failures and failures[0] <= now - self._window:
                failures.popleft()
            if len(failures) >= self._limits[key.split(":", 1)[0]]:
                wait = max(wait, failures[0] + self._window - now)
            elif not failures:
                del self._failures[key]
                self._noted.pop(key, None)
        return wait

    def first_refusal(self, *keys: str) -> bool:
        """Whether a refusal (after ``retry_after``) is the first of a lockout of these keys.

        The security log holds one entry per lockout, not one per refused try:
        a flood at a locked account costs no argon2 and writes no log entry.
        """
        new = False
        for key in keys:
            failures = self._failures.get(key) or deque()
            locked = len(failures) >= self._limits[key.split(":", 1)[0]]
            if locked and self._noted.get(key) != failures[0]:
                self._noted[key] = failures[0]
                new = True
        return new

    def failed(self, *keys: str) -> float:
        """Count a failed attempt against each key; return its time, to take it back."""
        now = time.monotonic()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        return now

    def succeeded(self, at: float, *, forgive: str, keep: str) -> None:
        """Take back the attempt made at ``at``; forget all of ``forgive``'s failures.

        Attempts are counted before the password is checked, so that many sent
        at once cannot all slip in before the first failure is counted.
        """
        self._failures.pop(forgive, None)
        failures = self._failures.get(keep)
        if failures is not None and at in failures:
            failures.remove(at)
