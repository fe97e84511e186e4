"""Web Push to staff with the console closed: the VAPID key, who is paged, and the sending.

Pages are taken from the console's live feed (the changes the stream sends)
and sent as Web Push messages (RFC 8030), encrypted for each browser
(RFC 8291, aes128gcm) and signed with the gateway's VAPID key (RFC 8292) by
pywebpush. Sending never holds the alarm path: the feed hands changes over
without waiting, pushes wait in a bounded queue (full: dropped and logged),
and each POST runs in a thread of its own with a timeout.

The URL a notification opens is ``/?alert=<alert id>`` (see ``alert_url``):
the console then shows that alert.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException
from pywebpush import WebPushException, webpush

from core.errors import ConfigError, StorageUnavailable
from gateway.config import PushSettings, Settings, StaffRole
from gateway.console import FeedItem, LiveFeed
from gateway.store import Connection, Pool, connection
from gateway.store.push import Subscription, delete_subscription, subscriptions_of
from gateway.store.users import User, users_for_recipients
from rules.ruleset import Lang, Titles

log = logging.getLogger(__name__)

VAPID_FILE_NAME = "vapid_private_key.pem"
# What the push service answers for a subscription that no longer exists (RFC 8030 §7.3).
GONE = frozenset({404, 410})
# What _post says of a subscription whose keys nothing can be encrypted for: it is
# forgotten like a gone one (a browser's keys always work; these came from elsewhere).
_UNUSABLE = -1
# What became of a push: taken by the push service, gone (the subscription is
# removed), failed (refused or unanswered), dropped (the queue was full).
PUSH_OUTCOMES = {"sent": 0, "gone": 0, "failed": 0, "dropped": 0}

# Accounts of an organisation that recipient strings ("role:<r>", "group:<g>") name.
Resolver = Callable[[Connection, Sequence[str], str], Awaitable[list[User]]]
# Unit and area of a device, for the notification's text.
PlaceLookup = Callable[[str], Awaitable[tuple[str, str]]]
# Called for each push a push service took: the alert reached that account (a read).
Recorder = Callable[[User, Mapping[str, Any]], None]
# The titles of an organisation's rule (org, rule id), None for a rule not in its set.
TitleLookup = Callable[[str, str], Titles | None]


async def resolve_recipients(conn: Connection, recipients: Sequence[str], org: str) -> list[User]:
    """The accounts that recipient strings name in an organisation (the one place to resolve)."""
    return await users_for_recipients(conn, org=org, recipients=recipients)


@dataclass(frozen=True, slots=True)
class VapidKeys:
    """The gateway's VAPID key pair; ``public_key`` is what browsers subscribe with."""

    vapid: Vapid
    public_key: str  # the uncompressed P-256 point, base64url without padding
    path: Path


def vapid_key_path(settings: Settings) -> Path:
    """Where the VAPID private key is read from (configured, or in the state directory)."""
    return settings.push.vapid_private_key_file or settings.spool.dir.parent / VAPID_FILE_NAME


def load_vapid_keys(settings: Settings) -> VapidKeys:
    """Read the VAPID key, making it on first start when none is configured.

    A configured ``push.vapid_private_key_file`` must exist and hold an EC
    P-256 private key in PEM; the error names the file and the setting.
    """
    path = vapid_key_path(settings)
    if settings.push.vapid_private_key_file is None and not path.exists():
        _make_key(path)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"push.vapid_private_key_file: cannot read {path} ({exc.strerror}); set it to a "
            "readable PEM file, or leave it unset to have one made in the state directory"
        ) from exc
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(_bad_key(path, "is not an unencrypted PEM private key")) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(_bad_key(path, "is not an EC P-256 (prime256v1) key"))
    vapid = Vapid(key)
    try:
        # Signing once here finds a contact push services would refuse before a page needs it.
        vapid.sign({"sub": settings.push.contact, "aud": "https://push.invalid",
                    "exp": int(time.time()) + 3600})  # fmt: skip
    except VapidException as exc:
        raise ConfigError(
            f"push.contact: {settings.push.contact!r} is refused by VAPID ({exc}); "
            "give a mailto: address with a domain, or an https: URL"
        ) from exc
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return VapidKeys(vapid, base64.urlsafe_b64encode(point).rstrip(b"=").decode(), path)


def _bad_key(path: Path, what: str) -> str:
    return (
        f"push.vapid_private_key_file: {path} {what}; make one with `openssl ecparam "
        "-name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out FILE`"
    )


def _make_key(path: Path) -> None:
    """Write a new P-256 key readable by this user only; never over an existing file."""
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another gateway process made it first: use that one
    except OSError as exc:
        raise ConfigError(
            f"push.vapid_private_key_file: cannot make {path} ({exc.strerror}); make the "
            "state directory writable, or set push.vapid_private_key_file"
        ) from exc
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    log.info("made a new VAPID key for Web Push in %s", path)


def alert_url(alert_id: str) -> str:
    """The console URL that opens one alert (the contract with the console and the worker)."""
    return f"/?alert={quote(alert_id, safe='')}"


def endpoint_problem(endpoint: str, hosts: Sequence[str]) -> str | None:
    """Why a subscription's endpoint is not acceptable, or None.

    Only the known push services are called (an account must not make the
    gateway POST elsewhere); plain HTTP only to this machine (a local relay, tests).
    """
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        host = ""
    if not host or parts.scheme not in {"https", "http"}:
        return "the endpoint must be an https URL of a push service"
    if parts.scheme == "http" and host not in {"127.0.0.1", "localhost", "::1"}:
        return "the endpoint must use https"
    if not any(host == h or host.endswith(f".{h}") for h in hosts):
        return (
            f"{host} is not a push service this gateway sends to; an administrator can add "
            "it under push.service_hosts"
        )
    return None


def page_recipients(data: Mapping[str, Any], paged: Mapping[StaffRole, Sequence[int]]) -> list[str]:
    """Who a live-feed change pages on the phone: recipient strings, none if it pages nobody.

    A new alert pages the roles paged for its priority; an escalation pages
    whom the escalation names (``escalation.to``), or those roles again.
    """
    if data.get("type") != "alert" or not data.get("pages"):
        return []
    alert = data["alert"]
    roles = [f"role:{role}" for role, wanted in paged.items() if alert["priority"] in wanted]
    if data["effect"] == "AlertEscalated":
        return list((alert.get("escalation") or {}).get("to") or roles)
    return roles if data["effect"] in {"AlertOpened", "AlertRepeated"} else []


# The words of a notification, in the console's languages.
_WORDS: dict[Lang, dict[str, str]] = {
    "sv": {"priority": "Prio {n}", "escalated": "Eskalerat: {head}"},
    "en": {"priority": "Priority {n}", "escalated": "Escalated: {head}"},
}


def push_payload(
    alert: Mapping[str, Any], *, escalated: bool, lang: Lang, titles: Titles | None = None
) -> dict[str, Any]:
    """What a notification carries, written in ``lang``: its title and body, and what a tap opens.

    ``titles`` are the rule's (its presentation in the rule set); without them,
    for a rule no longer in the set, the title the alert was raised with.
    """
    words = _WORDS[lang]
    rule = alert["title"] if titles is None else getattr(titles, lang)
    head = f"{words['priority'].format(n=alert['priority'])} · {rule}"
    return {
        "alert_id": alert["alert_id"],
        "lang": lang,
        "title": words["escalated"].format(head=head) if escalated else head,
        "body": ", ".join(p for p in (alert.get("unit"), alert.get("area")) if p),
        "priority": alert["priority"],
        "escalated": escalated,
        "tier": (alert.get("escalation") or {}).get("tier"),
        "url": alert_url(alert["alert_id"]),
    }


@dataclass(frozen=True, slots=True)
class _Push:
    user: User
    subscription: Subscription
    body: bytes
    urgent: bool
    alert: Mapping[str, Any]


class Notifier:
    """Follows the live feed and sends each page to the subscribed phones of its recipients."""

    def __init__(
        self,
        settings: PushSettings,
        keys: VapidKeys,
        *,
        feed: LiveFeed,
        pool: Pool,
        place: PlaceLookup,
        record: Recorder,
        titles: TitleLookup,
        resolve: Resolver = resolve_recipients,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self._feed = feed
        self._pool = pool
        self._place = place
        self._record = record
        self._titles = titles
        self._resolve = resolve
        self._queue: asyncio.Queue[_Push] = asyncio.Queue(maxsize=settings.queue_max)
        self._threads = ThreadPoolExecutor(settings.senders, thread_name_prefix="wgw-push")
        # Pushes by outcome, as /metrics shows them (wgw_push_total).
        self.outcomes: Counter[str] = Counter(PUSH_OUTCOMES)

    async def run(self, stop: asyncio.Event) -> None:
        """Send pages until ``stop`` is set."""
        senders = [asyncio.create_task(self._sender()) for _ in range(self.settings.senders)]
        follow = asyncio.create_task(self._follow())
        try:
            await stop.wait()
        finally:
            for task in (follow, *senders):
                task.cancel()
            await asyncio.gather(follow, *senders, return_exceptions=True)
            # A POST under way ends by its own timeout; nothing waits for it.
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def _follow(self) -> None:
        while True:
            with self._feed.subscribe() as changes:
                while (item := await changes.get()) is not None:
                    try:
                        await self._dispatch(item)
                    except Exception:
                        # One change that cannot be paged must not end paging for the night.
                        log.exception("push for change %s failed", item.event_id)
            # Cut off for falling behind (the database was slow): what was missed is not paged.
            log.warning("push fell behind the live feed; some pages were not sent to phones")

    async def _dispatch(self, item: FeedItem) -> None:
        """Queue one change's pushes, if it pages anybody who has a subscription."""
        recipients = page_recipients(item.data, self.settings.paged_priorities)
        if not recipients:
            return
        alert = dict(item.data["alert"])
        try:
            async with connection(self._pool, wait_s=2.0) as conn:
                users = {u.username: u for u in await self._resolve(conn, recipients, item.org)}
                subscriptions = await subscriptions_of(conn, sorted(users))
        except StorageUnavailable as exc:
            log.warning("push for alert %s not sent: %s", alert["alert_id"], exc)
            return
        if not subscriptions:
            return
        alert["unit"], alert["area"] = await self._place(str(alert["device_id"]))
        titles = self._titles(item.org, str(alert["rule_id"]))
        escalated = item.data["effect"] == "AlertEscalated"
        # Written on the server in each subscription's language: the worker cannot
        # know the console's language, and the rule set's titles are here.
        bodies = {
            lang: json.dumps(
                push_payload(alert, escalated=escalated, lang=lang, titles=titles),
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            for lang in {s.lang for s in subscriptions}
        }
        for subscription in subscriptions:
            push = _Push(users[subscription.username], subscription, bodies[subscription.lang],
                         alert["priority"] == 1, alert)  # fmt: skip
            try:
                self._queue.put_nowait(push)
            except asyncio.QueueFull:
                self.outcomes["dropped"] += 1
                log.warning("push queue full: alert %s not pushed to %s",
                            alert["alert_id"], subscription.username)  # fmt: skip

    async def _sender(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            push = await self._queue.get()
            try:
                status = await loop.run_in_executor(self._threads, self._post, push)
            except Exception:
                # A sender outlives any one push that breaks in an unforeseen way.
                log.exception("push to %s failed", push.subscription.username)
                status = 0
            if status in GONE or status == _UNUSABLE:
                self.outcomes["gone"] += 1
                await self._forget(push.subscription)
            elif 200 <= status < 300:
                self.outcomes["sent"] += 1
                self._record(push.user, push.alert)
            else:
                self.outcomes["failed"] += 1

    def _post(self, push: _Push) -> int:
        """POST one push (in a thread); the push service's status, 0 if it did not answer."""
        s = push.subscription
        info = {"endpoint": s.endpoint, "keys": {"p256dh": s.p256dh, "auth": s.auth}}
        try:
            response = webpush(
                info,
                push.body,
                vapid_private_key=self.keys.vapid,
                vapid_claims={"sub": self.settings.contact},
                ttl=self.settings.ttl_s,
                timeout=self.settings.timeout_s,
                # RFC 8030 §5.3: a priority 1 wakes a sleeping phone at once.
                headers={"Urgency": "high" if push.urgent else "normal"},
            )
        except WebPushException as exc:
            status = int(exc.status_code or 0)
            log.warning("push to %s refused (%s): %s", s.username, status, exc.message)
            return status
        except OSError as exc:  # requests' errors are OSErrors: no answer
            log.warning("push to %s failed: %s", s.username, exc)
            return 0
        except ValueError as exc:  # the keys are no P-256 point (cryptography says so)
            log.warning("push subscription of %s has unusable keys: %s", s.username, exc)
            return _UNUSABLE
        return int(response.status_code)

    async def _forget(self, subscription: Subscription) -> None:
        """Remove a subscription the push service says is gone (404 or 410), or that is unusable."""
        with contextlib.suppress(StorageUnavailable):
            async with connection(self._pool, wait_s=2.0) as conn:
                await delete_subscription(conn, endpoint=subscription.endpoint)
            log.info("push subscription of %s is gone; removed", subscription.username)
