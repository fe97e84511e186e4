"""Staff accounts and their sessions in PostgreSQL; only hashes of tokens are kept."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg

from rules.model import parse_recipient


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
    # Named groups an escalation tier may name as "group:<name>" ("nattledning").
    groups: tuple[str, ...] = ()

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
INSERT INTO users (username, display_name, role, orgs, groups, password_hash)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (username) DO UPDATE SET
    display_name = EXCLUDED.display_name, role = EXCLUDED.role, orgs = EXCLUDED.orgs,
    groups = EXCLUDED.groups, password_hash = EXCLUDED.password_hash, disabled = false,
    updated_at = now()
"""
# The columns every User is read from, in _user's order.
_USER_COLUMNS = "u.username, u.display_name, u.role, u.orgs, u.groups"


def _user(row: Sequence[Any]) -> User:
    name, display, role, orgs, groups = row[:5]
    return User(name, display, Role(role), tuple(orgs), tuple(groups))


def save_user(dsn: str, *, user: User, password_hash: str) -> None:
    """Create an account, or replace its role, scope, groups and password (sessions end)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            _UPSERT_USER,
            (user.username, user.display_name, user.role.value, list(user.orgs),
             list(user.groups), password_hash),
        )  # fmt: skip
        conn.execute("DELETE FROM sessions WHERE username = %s", (user.username,))


def set_groups(dsn: str, *, username: str, groups: Sequence[str]) -> bool:
    """Replace an account's groups (its sessions go on); False if there is no such account."""
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            "UPDATE users SET groups = %s, updated_at = now() WHERE username = %s",
            (list(groups), username),
        )
        return cur.rowcount == 1


def list_users(dsn: str) -> list[tuple[User, bool]]:
    """Every account with whether it is disabled, by name."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT {_USER_COLUMNS}, u.disabled FROM users u ORDER BY u.username"
        ).fetchall()
    return [(_user(row), bool(row[5])) for row in rows]


async def users_for_recipients(
    conn: psycopg.AsyncConnection[Any], *, org: str, recipients: Sequence[str]
) -> list[User]:
    """The enabled accounts an escalation tier's recipients name for an alert of ``org``, by name.

    ``recipients`` are as in the alert JSON's ``escalation.to``: ``"role:<role>"``
    names every account of that role whose organisations include ``org`` (or
    are all, ``*``), ``"group:<name>"`` every such account in that group. An
    account named twice is listed once. ValueError for a text that is neither.
    """
    roles: list[str] = []
    groups: list[str] = []
    for recipient in recipients:
        kind, name = parse_recipient(recipient)
        (roles if kind == "role" else groups).append(name)
    cur = await conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users u"
        " WHERE NOT u.disabled AND (%(org)s = ANY(u.orgs) OR %(all)s = ANY(u.orgs))"
        " AND (u.role = ANY(%(roles)s::text[]) OR u.groups && %(groups)s::text[])"
        " ORDER BY u.username",
        {"org": org, "all": ALL_ORGS, "roles": roles, "groups": groups},
    )
    return [_user(row) for row in await cur.fetchall()]


async def find_login(
    conn: psycopg.AsyncConnection[Any], *, username: str
) -> tuple[User, str] | None:
    """An enabled account and its password hash, for checking a login."""
    cur = await conn.execute(
        f"SELECT {_USER_COLUMNS}, u.password_hash FROM users u"
        " WHERE u.username = %s AND NOT u.disabled",
        (username,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return _user(row), str(row[5])


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
        f"SELECT {_USER_COLUMNS}, s.csrf_token, s.expires_at"
        " FROM sessions s JOIN users u USING (username)"
        " WHERE s.token_sha256 = %s AND s.expires_at > %s AND NOT u.disabled",
        (token_digest(token), now),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Session(_user(row), row[5], row[6])


async def end_session(conn: psycopg.AsyncConnection[Any], *, token: str) -> None:
    """Forget a session (log out)."""
    await conn.execute("DELETE FROM sessions WHERE token_sha256 = %s", (token_digest(token),))
