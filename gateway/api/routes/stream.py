"""The live stream of alert changes (server-sent events) that resumes after a reconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from gateway.alerting import alert_json, incident_json
from gateway.api.deps import AlertReader, Context, log_access, log_queue_read
from gateway.api.places import places_of
from gateway.console import FeedItem
from gateway.store.users import User
from rules.auditlog import Action, DetailValue

router = APIRouter(prefix="/api", tags=["stream"])

# A comment line this often keeps proxies from closing an idle stream.
_KEEPALIVE_S = 15.0
# How long a browser waits before reconnecting after the stream drops (ms).
_RETRY_MS = 2000


def _frame(event: str, data: dict[str, Any], event_id: str) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event}\ndata: {body}\n\n".encode()


async def _place(ctx: Context, alerts: list[dict[str, Any]]) -> None:
    """Add unit and area to alert bodies (copies: feed items are shared by every client)."""
    places = await places_of(ctx, [a["device_id"] for a in alerts])
    for alert in alerts:
        alert["unit"], alert["area"] = places.get(alert["device_id"], ("", ""))


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 401: {}, 403: {}},
)
async def stream(
    request: Request,
    user: AlertReader,
    ctx: Context,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Alert changes as server-sent events; with Last-Event-ID, first everything missed since."""
    feed = ctx.console.feed

    async def events() -> AsyncIterator[bytes]:
        with feed.subscribe() as queue:
            yield f"retry: {_RETRY_MS}\n\n".encode()
            missed = feed.since(last_event_id) if last_event_id else None
            if missed is None:
                # New, or too far behind (or from before a restart): the whole state.
                # The position is taken before the state, with no await between
                # (the snapshot reads the engines first): nothing falls in a gap.
                position = feed.last_id
                snapshot = await _snapshot(ctx, user)
                yield _frame("snapshot", snapshot, position)
                sent = int(position.rsplit("-", 1)[1])
            else:
                sent = int(last_event_id.rsplit("-", 1)[1]) if last_event_id else 0
                for item in missed:
                    if user.sees(item.org):
                        yield await _change(ctx, user, item, replay=True)
                    sent = item.seq
            while not await request.is_disconnected():
                try:
                    change = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if change is None:
                    return  # too slow: the client reconnects with its last id
                if change.seq <= sent:
                    continue  # already sent from the ring
                sent = change.seq
                if user.sees(change.org):
                    yield await _change(ctx, user, change, replay=False)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _change(ctx: Context, user: User, item: FeedItem, *, replay: bool) -> bytes:
    """One change as a frame; pushing it to this account is a read, and is logged."""
    data = dict(item.data)
    detail: dict[str, DetailValue] = {
        "via": "stream", "event_id": item.event_id, "replay": replay,
        "type": str(data.get("type", "")),
    }  # fmt: skip
    subject, person = "incident", None
    if "alert" in data:
        data["alert"] = alert = dict(data["alert"])
        await _place(ctx, [alert])
        subject, person = str(alert["device_id"]), str(alert["unit"]) or None
        detail["alert_id"] = str(alert["alert_id"])
    log_access(ctx, user, org=item.org, action=Action.READ, subject=subject, person=person,
               detail=detail)  # fmt: skip
    return _frame(data["type"], data, item.event_id)


async def _snapshot(ctx: Context, user: User) -> dict[str, Any]:
    alerting = ctx.console.alerting
    alerts = [
        alert_json(a, alerting.rules_of(a.org)) for a in alerting.open_alerts() if user.sees(a.org)
    ]
    await _place(ctx, alerts)
    incidents = [incident_json(i) for i in alerting.incidents() if user.sees(i.org)]
    log_queue_read(ctx, user, [(a["org"], a["alert_id"]) for a in alerts])
    return {"alerts": alerts, "incidents": incidents}
