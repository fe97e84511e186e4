"""Web Push subscriptions per staff account, and who of the staff a recipient list names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from rules.ruleset import Lang


@dataclass(frozen=True, slots=True)
class Subscription:
    """Where one browser of one account is reached: the push service's URL and its keys."""

    username: str
    endpoint: str
    p256dh: str
    auth: str
    lang: Lang  # the console's language when it subscribed: the notifications' language


_SAVE = """
INSERT INTO push_subscriptions (endpoint, username, p256dh, auth, lang, user_agent)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (endpoint) DO UPDATE SET
    username = EXCLUDED.username, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,
    lang = EXCLUDED.lang, user_agent = EXCLUDED.user_agent, created_at = now()
"""


async def save_subscription(
    conn: psycopg.AsyncConnection[Any], subscription: Subscription, *, user_agent: str
) -> None:
    """Keep a subscription; the same endpoint again (new keys, login, language) replaces it."""
    s = subscription
    await conn.execute(_SAVE, (s.endpoint, s.username, s.p256dh, s.auth, s.lang, user_agent[:300]))


async def delete_subscription(
    conn: psycopg.AsyncConnection[Any], *, endpoint: str, username: str | None = None
) -> bool:
    """Forget a subscription (of that account only, when given); whether one was there."""
    cur = await conn.execute(
        "DELETE FROM push_subscriptions WHERE endpoint = %s"
        " AND (%s::text IS NULL OR username = %s)",
        (endpoint, username, username),
    )
    return cur.rowcount > 0


async def subscriptions_of(
    conn: psycopg.AsyncConnection[Any], usernames: Sequence[str]
) -> list[Subscription]:
    """Every subscription of these accounts (disabled accounts are reached by none)."""
    cur = await conn.execute(
        "SELECT s.username, s.endpoint, s.p256dh, s.auth, s.lang FROM push_subscriptions s"
        " JOIN users u USING (username) WHERE s.username = ANY(%s) AND NOT u.disabled"
        " ORDER BY s.username, s.created_at",
        (list(usernames),),
    )
    return [Subscription(*row) for row in await cur.fetchall()]
