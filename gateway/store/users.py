"""Staff accounts and their sessions in PostgreSQL; only hashes of tokens are kept."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg


class Role(StrEnum):
    """What an account may do; the organisations it may see are set apart."""

    OPERATOR = "operator"  # night patrol: sees and handles its organisations' alerts
    COORDINATOR = "coordinator"  # as the patrol, and reads the alarm-handling report
    AUDITOR = "auditor"  # reads the access log and the report; handles no alerts
    ADMIN = "admin"  # everything, including accounts


ALL_ORGS = "*"


@dataclass(frozen=True, slots=True)
class User:
    """A staff account as the API sees it (never its password hash)."""

    username: str
    display_name: str
    role: Role
    orgs: tuple[str, ...]  # ("*",) for every organisation

    def sees(self, org: str) -> bool:
        """Whether this account's scope covers an organisation."""
        return ALL_ORGS in self.orgs or org in self.orgs

    def scope(self) -> list[str] | None:
        """The organisations to filter queries on; None for every one."""
        return None if ALL_ORGS in self.orgs else list(self.orgs)


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in session: its account and the token forms must echo."""

    user: User
    csrf_token: str
    expires_at: datetime


def token_digest(token: str) -> bytes:
    """What is stored for a session token (a leaked table logs nobody in)."""
    return hashlib.sha256(token.encode()).digest()


_UPSERT_USER = """
INSERT INTO users (username, display_name, role, orgs, password_hash)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (username) DO UPDATE SET
    display_name = EXCLUDED.display_name, role = EXCLUDED.role, orgs = EXCLUDED.orgs,
    password_hash = EXCLUDED.password_hash, disabled = false, updated_at = now()
"""


def save_user(dsn: str, *, user: User, password_hash: str) -> None:
    """Create an account, or replace its role, scope and password (sessions end)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            _UPSERT_USER,
            (user.username, user.display_name, user.role.value, list(user.orgs), password_hash),
        )
        conn.execute("DELETE FROM sessions WHERE username = %s", (user.username,))


def list_users(dsn: str) -> list[tuple[User, bool]]:
    """Every account with whether it is disabled, by name."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT username, display_name, role, orgs, disabled FROM users ORDER BY username"
        ).fetchall()
    return [(User(u, d, Role(r), tuple(o)), bool(off)) for u, d, r, o, off in rows]


async def find_login(
    conn: psycopg.AsyncConnection[Any], *, username: str
) -> tuple[User, str] | None:
    """An enabled account and its password hash, for checking a login."""
    cur = await conn.execute(
        "SELECT username, display_name, role, orgs, password_hash FROM users"
        " WHERE username = %s AND NOT disabled",
        (username,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    name, display, role, orgs, password_hash = row
    return User(name, display, Role(role), tuple(orgs)), str(password_hash)


async def update_password_hash(
    conn: psycopg.AsyncConnection[Any], *, username: str, password_hash: str
) -> None:
    """Store a re-hashed password (argon2 parameters were raised since it was set)."""
    await conn.execute(
        "UPDATE users SET password_hash = %s, updated_at = now() WHERE username = %s",
        (password_hash, username),
    )


async def create_session(
    conn: psycopg.AsyncConnection[Any],
    *,
    username: str,
    token: str,
    csrf_token: str,
    now: datetime,
    lifetime: timedelta,
) -> None:
    """Record a new session (and forget expired ones while at it)."""
    await conn.execute("DELETE FROM sessions WHERE expires_at < %s", (now,))
    await conn.execute(
        "INSERT INTO sessions (token_sha256, username, csrf_token, created_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (token_digest(token), username, csrf_token, now, now + lifetime),
    )


async def find_session(
    conn: psycopg.AsyncConnection[Any], *, token: str, now: datetime
) -> Session | None:
    """The live session of a token, or None if unknown, expired or its account disabled."""
    cur = await conn.execute(
        "SELECT u.username, u.display_name, u.role, u.orgs, s.csrf_token, s.expires_at"
        " FROM sessions s JOIN users u USING (username)"
        " WHERE s.token_sha256 = %s AND s.expires_at > %s AND NOT u.disabled",
        (token_digest(token), now),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    name, display, role, orgs, csrf, expires = row
    return Session(User(name, display, Role(role), tuple(orgs)), csrf, expires)


async def end_session(conn: psycopg.AsyncConnection[Any], *, token: str) -> None:
    """Forget a session (log out)."""
    await conn.execute("DELETE FROM sessions WHERE token_sha256 = %s", (token_digest(token),))
