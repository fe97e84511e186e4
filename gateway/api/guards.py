"""Refuse text PostgreSQL cannot store (NUL, lone surrogates) anywhere in a request, with 422."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bodies are read whole before the check (the API takes small JSON bodies only).
_JSON_TYPES = ("application/json", "+json")
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


def storable(text: str) -> bool:
    """Whether PostgreSQL can store this text: no NUL, valid UTF-8 (no lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string (keys too) in a decoded JSON value, with its location; iterative."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [(loc, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, inner in item.items():
                yield (*where, key), key
                stack.append(((*where, key), inner))
        elif isinstance(item, list):
            stack.extend(((*where, i), inner) for i, inner in enumerate(item))


def _refusal(loc: tuple[str | int, ...]) -> JSONResponse:
    # The shape of FastAPI's own validation errors (HTTPValidationError).
    return JSONResponse(
        {
            "detail": [
                {
                    "type": "string_unstorable",
                    # The offending text is never echoed: a key may be the bad part.
                    "loc": [p if isinstance(p, int) or storable(p) else "?" for p in loc],
                    "msg": "text may not contain NUL (U+0000) or lone surrogates",
                    "input": None,
                }
            ]
        },
        status_code=422,
    )


class UnstorableTextGuard:
    """ASGI middleware: 422 for NUL or surrogates in path, query, headers, cookies, JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request head, then (for JSON) the whole body, before the app sees it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bad = _head_problem(scope)
        if bad is not None:
            await _refusal(bad)(scope, receive, send)
            return
        content_type = ""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1").split(";", 1)[0].strip().lower()
        # FastAPI reads a body without a Content-Type as JSON too; no route reads
        # the body of a GET (the live stream's receive is left alone).
        if scope["method"] in _NO_BODY or (content_type and not content_type.endswith(_JSON_TYPES)):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            decoded = json.loads(bytes(body))
        except (ValueError, RecursionError):
            decoded = None  # not JSON: FastAPI answers that itself
        for where, text in _strings(decoded, ("body",)):
            if not storable(text):
                await _refusal(where)(scope, receive, send)
                return
        replay = iter(messages)

        async def replayed() -> Message:
            message = next(replay, None)
            return message if message is not None else await receive()

        await self.app(scope, replayed, send)


def _head_problem(scope: Scope) -> tuple[str | int, ...] | None:
    """Where the path, query, headers or cookies hold unstorable text, if they do."""
    if not storable(scope["path"]):
        return ("path",)
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if not storable(name) or not storable(value):
            return ("query", name if storable(name) else "?")
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if b"\x00" in raw_value:
            return ("header", name)
        if raw_name == b"cookie":
            for key, value in cookie_parser(raw_value.decode("latin-1")).items():
                if not storable(key) or not storable(value):
                    return ("cookie", key if storable(key) else "?")
    return None
