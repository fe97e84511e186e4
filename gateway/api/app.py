"""The FastAPI application: routers under /api, the console pages, /healthz and /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.context import ApiContext
from gateway.api.deps import client_address, log_security
from gateway.api.guards import UnstorableTextGuard
from gateway.api.routes import (
    alerts,
    audit,
    auth,
    devices,
    ops,
    push,
    remote,
    reports,
    rules,
    stream,
)

STATIC_DIR = Path(str(files("dashboards") / "static"))

_DESCRIPTION = (
    "The welfare-gateway API: live alerts and the staff actions on them, device health, "
    "the rule set in force, the access log and the alarm-handling report. Log in with "
    "POST /api/auth/login; send the returned csrf_token as X-CSRF-Token with every change."
)

# The pages load only their own scripts and styles; nothing may frame them.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

# The API reference pages serve Swagger UI and ReDoc from this server (no CDN:
# a municipality's network may have no internet), but start them with inline
# scripts and styles; they show no personal data, only the API's description.
_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; frame-ancestors 'none'"
)

# Answers under /api carry personal data (alerts, homes, the access log): no
# browser or proxy may keep a copy.
_NO_STORE = "no-store"
_HSTS = "max-age=31536000"


class View(BaseModel):
    """One page of the site, as dashboards/static/views.json lists it."""

    model_config = ConfigDict(extra="forbid")

    name: str  # the nav link's id is link-<name>
    path: str  # the route it is served at
    file: str  # its HTML file under dashboards/static
    label: str  # the i18n key of its nav link
    roles: list[str]  # the roles whose nav shows it (the page checks its own access)


def load_views() -> list[View]:
    """The pages: one list that the routes here and every page's nav are made from."""
    text = (STATIC_DIR / "views.json").read_text(encoding="utf-8")
    return TypeAdapter(list[View]).validate_json(text)


# Served from the root, not /static: a service worker controls only pages under
# its own path, and the console is at /. The manifest names its start URL and scope.
_APP_FILES = {
    "/sw.js": ("sw.js", "text/javascript"),
    "/manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json"),
}
_DOC_PAGES = frozenset({"/docs", "/redoc"})


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the application around a running gateway's context."""
    app = FastAPIOffline(title="welfare-gateway", version="0.1.0", description=_DESCRIPTION)
    app.state.ctx = ctx
    ctx.metrics_registry.register(ops.GatewayCollector(ctx))
    for module in (auth, alerts, stream, devices, rules, audit, reports, ops, remote, push):
        app.include_router(module.router)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path in _DOC_PAGES:
            response.headers.setdefault("Content-Security-Policy", _DOCS_CSP)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = _NO_STORE
        if request.app.state.ctx.settings.api.secure_cookies:
            response.headers.setdefault("Strict-Transport-Security", _HSTS)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def refusals(request: Request, exc: StarletteHTTPException) -> Response:
        # Every 403 is a security event: who was refused what, from where.
        if exc.status_code == 403:
            user = getattr(request.state, "user", None)
            log_security(
                request.app.state.ctx,
                "forbidden",
                account=user.username if user is not None else "",
                address=client_address(request),
                user=user,
                detail={"method": request.method, "path": request.url.path[:200],
                        "reason": str(exc.detail)[:200]},
            )  # fmt: skip
        return await http_exception_handler(request, exc)

    app.add_middleware(UnstorableTextGuard)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    for view in load_views():
        app.add_api_route(view.path, _page(view.file), include_in_schema=False, methods=["GET"])
    for route, (name, media_type) in _APP_FILES.items():
        app.add_api_route(route, _page(name, media_type), include_in_schema=False, methods=["GET"])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


# What operations may answer besides their own codes, and why.
_COMMON = {"422": "a parameter, header or body is invalid (NUL and lone surrogates included)"}
_SESSION = {
    "401": "not logged in, or the session has ended",
    "403": "the account's role or scope does not allow this, or the CSRF token is wrong",
    "503": "the database is unreachable (the session or the data cannot be read)",
}
_BODY = {"400": "there was an error parsing the body"}
_DESCRIBED = {**_COMMON, **_SESSION, **_BODY, "404": "not found", "409": "a conflict",
              "429": "too many failed logins: wait for Retry-After seconds"}  # fmt: skip


def _error_content(code: str) -> dict[str, Any]:
    name = "HTTPValidationError" if code == "422" else "HTTPError"
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI description, with every status each operation can answer."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["HTTPError"] = {
        "title": "HTTPError",
        "type": "object",
        "properties": {"detail": {"title": "Detail"}},
        "required": ["detail"],
    }
    schemas.setdefault("HTTPValidationError", schemas["HTTPError"])
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            codes = set(_COMMON)
            if path.startswith("/api/") and path != "/api/auth/login":
                codes |= set(_SESSION)
            if "requestBody" in operation:
                codes |= set(_BODY)
            responses: dict[str, dict[str, Any]] = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {})
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    response.setdefault("content", _error_content(code))
                    if not response.get("description") or response["description"] == (
                        "Additional Response"
                    ):
                        response["description"] = _DESCRIBED.get(code, "refused")
    app.openapi_schema = schema
    return schema


def _page(name: str, media_type: str | None = None) -> Callable[[], Awaitable[FileResponse]]:
    async def serve() -> FileResponse:
        return FileResponse(
            STATIC_DIR / name, media_type=media_type, headers={"Cache-Control": "no-cache"}
        )

    return serve
