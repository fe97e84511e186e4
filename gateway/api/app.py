"""The FastAPI application: routers under /api, the console pages, /healthz and /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from gateway.api.context import ApiContext
from gateway.api.routes import alerts, audit, auth, devices, ops, reports, rules, stream

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

_PAGES = {"/": "index.html", "/audit": "audit.html", "/report": "report.html"}
_DOC_PAGES = frozenset({"/docs", "/redoc"})


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the application around a running gateway's context."""
    app = FastAPIOffline(title="welfare-gateway", version="0.1.0", description=_DESCRIPTION)
    app.state.ctx = ctx
    ctx.metrics_registry.register(ops.GatewayCollector(ctx))
    for module in (auth, alerts, stream, devices, rules, audit, reports, ops):
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
        return response

    for route, page in _PAGES.items():
        app.add_api_route(route, _page(page), include_in_schema=False, methods=["GET"])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _page(name: str) -> Callable[[], Awaitable[FileResponse]]:
    async def serve() -> FileResponse:
        return FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})

    return serve
