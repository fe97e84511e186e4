"""Web Push subscriptions: the gateway's VAPID public key, subscribe and unsubscribe."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from pydantic import BaseModel, Field

from gateway.api.deps import STORABLE, STRICT_BODY, Connection, Context, CurrentSession
from gateway.push import Notifier, endpoint_problem
from gateway.store.push import Subscription, delete_subscription, save_subscription
from rules.ruleset import Lang

router = APIRouter(prefix="/api/push", tags=["push"])

_OFF = "Web Push is turned off on this gateway (push.enabled = false); ask an administrator"
# The keys as browsers write them (base64url, padding tolerated): an uncompressed
# P-256 point (65 bytes, the first 0x04) and a 16-byte secret.
_P256DH = r"^B[A-Za-z0-9_-]{86}=?$"
_AUTH = r"^[A-Za-z0-9_-]{21}[AQgw](==)?$"
# An http(s) URL with a host, in printable ASCII (as push services write them);
# which hosts are push services is the gateway's to judge.
_ENDPOINT = r"^https?://[A-Za-z0-9.:\[\]_-]+(/[!-~]*)?$"


class PushKey(BaseModel):
    """What a browser subscribes with, and what this account's role is paged for."""

    public_key: str  # applicationServerKey: the VAPID public key, base64url
    paged_priorities: list[int]  # the priorities this account's role gets on the phone


class SubscriptionKeys(BaseModel):
    """The browser's keys for RFC 8291 encryption, as PushSubscription.toJSON() gives them."""

    model_config = STRICT_BODY

    p256dh: str = Field(pattern=_P256DH)
    auth: str = Field(pattern=_AUTH)


class SubscribeRequest(BaseModel):
    """A PushSubscription as the browser's toJSON() writes it."""

    model_config = STRICT_BODY

    endpoint: str = Field(max_length=2048, pattern=_ENDPOINT)
    keys: SubscriptionKeys
    expirationTime: float | None = None  # the browser's own name for it
    # Not the browser's: the console's language, which the notifications are written in.
    lang: Lang = "sv"


class UnsubscribeRequest(BaseModel):
    """The endpoint of the subscription to forget."""

    model_config = STRICT_BODY

    endpoint: str = Field(min_length=1, max_length=2048, pattern=STORABLE)


def _notifier(ctx: Context) -> Notifier:
    if ctx.push is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _OFF)
    return ctx.push


@router.get("/key", responses={404: {}})
async def push_key(session: CurrentSession, ctx: Context) -> PushKey:
    """The VAPID public key to subscribe with (404 when push is turned off)."""
    push = _notifier(ctx)
    role = session.user.role.value
    paged = next((p for r, p in push.settings.paged_priorities.items() if r == role), ())
    return PushKey(public_key=push.keys.public_key, paged_priorities=sorted(paged))


@router.post("/subscribe", status_code=201, responses={403: {}, 404: {}})
async def subscribe(
    body: SubscribeRequest,
    session: CurrentSession,
    ctx: Context,
    conn: Connection,
    user_agent: Annotated[str, Header(max_length=1000, pattern=STORABLE)] = "",
) -> Response:
    """Reach this browser with pages from now on, written in ``lang``.

    The same endpoint again replaces its keys and language (the console sends it
    again when its language is switched).
    """
    push = _notifier(ctx)
    problem = endpoint_problem(body.endpoint, push.settings.service_hosts)
    if problem is not None:
        # A host outside push.service_hosts: the gateway will not call it (logged as a 403).
        raise HTTPException(status.HTTP_403_FORBIDDEN, problem)
    subscription = Subscription(
        session.user.username, body.endpoint, body.keys.p256dh, body.keys.auth, body.lang
    )
    await save_subscription(conn, subscription, user_agent=user_agent)
    return Response(status_code=201)


@router.post("/unsubscribe", status_code=204, responses={404: {}})
async def unsubscribe(
    body: UnsubscribeRequest, session: CurrentSession, conn: Connection
) -> Response:
    """Stop pages to this browser; 404 if this account has no such subscription."""
    if not await delete_subscription(conn, endpoint=body.endpoint, username=session.user.username):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "this account has no push subscription with that endpoint (already turned off?)",
        )
    return Response(status_code=204)
