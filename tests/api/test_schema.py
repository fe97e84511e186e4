"""The OpenAPI description: documented, served at /docs, and no server error for any request."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import positive_data_acceptance, status_code_conformance

from gateway.api.deps import CSRF_HEADER, SESSION_COOKIE
from tests.api.conftest import (
    ADMIN_ALL,
    SENSOR_A1,
    SENSOR_A2,
    SENSOR_B1,
    RunningApi,
    Shared,
    db_rows,
    eventually,
)

pytestmark = pytest.mark.db


async def test_every_operation_is_described(shared: Shared) -> None:
    schema = (await shared.client().get("/openapi.json")).json()
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if not operation.get("summary") or not operation.get("description", "").strip()
    ]
    assert undocumented == []
    assert schema["info"]["description"].startswith("The welfare-gateway API")


class _Page(HTMLParser):
    """The scripts and style sheets a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.inline: list[str] = []
        self.styles: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.scripts.append(values["src"] or "")
            else:
                self._in_script = True
                self.inline.append("")
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.styles.append(values.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline[-1] += data


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {d[0]: d[1:] for d in directives}


def _loads(policy: dict[str, list[str]], directive: str, url: str, page: str) -> bool:
    sources = policy.get(directive, policy.get("default-src", []))
    absolute = urljoin(page, url)
    parts, own = urlsplit(absolute), urlsplit(page)
    if (parts.scheme, parts.netloc) == (own.scheme, own.netloc) and "'self'" in sources:
        return True
    return any(s.startswith("http") and absolute.startswith(s.rstrip("/")) for s in sources)


def _runs_inline(policy: dict[str, list[str]], script: str) -> bool:
    sources = policy.get("script-src", policy.get("default-src", []))
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return "'unsafe-inline'" in sources or f"'sha256-{digest}'" in sources


async def test_the_docs_page_may_load_what_it_needs(shared: Shared) -> None:
    client = shared.client()
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
    page = _Page()
    page.feed(response.text)
    assert page.scripts
    assert page.inline
    # A browser enforces the page's Content-Security-Policy: what it refuses never runs.
    policy = _policy(response.headers["content-security-policy"])
    url = str(response.url)
    assert [s for s in page.scripts if not _loads(policy, "script-src", s, url)] == []
    assert [s for s in page.styles if not _loads(policy, "style-src", s, url)] == []
    assert [s for s in page.inline if not _runs_inline(policy, s)] == []
    assert policy["frame-ancestors"] == ["'none'"]
    # Everything comes from this server (a closed network has no CDN), and is there.
    for asset in [*page.scripts, *page.styles]:
        assert asset.startswith("/"), asset
        assert (await client.get(asset)).status_code == 200, asset
    # The console's own pages keep the strict policy.
    console = _policy((await client.get("/")).headers["content-security-policy"])
    assert console["script-src"] == ["'self'"]


# --- Schemathesis ------------------------------------------------------------------------

# The live stream never ends, so a generated request would only time out; its
# answers are tested in test_stream. Logging out would end the session the
# other generated requests use; it is tested in test_auth.
_SKIPPED = {("GET", "/api/stream"), ("POST", "/api/auth/logout")}


def _run_schemathesis(
    base_url: str,
    *,
    cookies: dict[str, str],
    headers: dict[str, str],
    examples: int,
    modes: tuple[schemathesis.GenerationMode, ...],
) -> tuple[list[str], int]:
    """Send generated requests to every operation; the failures found and the requests sent."""
    schema = schemathesis.openapi.from_url(base_url + "openapi.json")
    failures: list[str] = []
    sent = 0
    session = requests.Session()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the schema does not load: {result.err()}")
            continue
        operation = result.ok()
        if (operation.method.upper(), operation.path) in _SKIPPED:
            continue
        for mode in modes:

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            def check(case: Any) -> None:
                nonlocal sent
                response = case.call(
                    base_url=base_url.rstrip("/"),
                    session=session,
                    cookies=cookies,
                    headers=headers,
                    timeout=10,
                )
                sent += 1
                # No 5xx, no status the description leaves out, and a request
                # that follows the schema is not refused as invalid (4xx other
                # than those of a session, a scope or a missing alert).
                # (positive_data_acceptance judges only the positive cases.)
                checks = [not_a_server_error, status_code_conformance]
                if cookies:
                    checks.append(positive_data_acceptance)
                case.validate_response(response, checks=checks)

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                # No parameters or body to get wrong: nothing negative to send.
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.path
            except Exception as exc:
                failures.append(
                    f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"
                )
    session.close()
    return failures, sent


@pytest.mark.slow
async def test_no_generated_request_causes_a_server_error_or_an_undocumented_status(
    api: RunningApi,
) -> None:
    # Alerts of both organisations, one of them handled, so the routes have data.
    first = await api.raise_alert(SENSOR_A1)
    await api.raise_alert(SENSOR_B1)
    admin = await api.login(ADMIN_ALL)
    assert (await admin.post(f"/api/alerts/{first}/acknowledge", json={})).is_success
    both = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    runs: list[dict[str, Any]] = [
        # Logged in with every organisation: valid and invalid requests reach the handlers.
        {
            "cookies": {SESSION_COOKIE: admin.cookies[SESSION_COOKIE]},
            "headers": {CSRF_HEADER: admin.headers[CSRF_HEADER]},
            "examples": 6,
            "modes": both,
        },
        # Not logged in: refused before any parameter is looked at; a few will do.
        {"cookies": {}, "headers": {}, "examples": 3, "modes": both[:1]},
    ]
    for run in runs:
        failures, sent = await asyncio.to_thread(_run_schemathesis, api.url, **run)
        assert failures == [], "\n\n".join(failures)
        assert sent > 40
    # No request broke the gateway behind the API: a new alert is still stored,
    # and the admin's session still works.
    alert_id = await api.raise_alert(SENSOR_A2)

    async def stored() -> bool:
        return await db_rows(api.dsn, "SELECT 1 FROM alerts WHERE alert_id = %s", alert_id) == [
            (1,)
        ]

    await eventually(stored, what="a new alert stored after the generated requests")
    assert (await admin.get("/api/auth/me")).status_code == 200
