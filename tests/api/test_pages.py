"""The pages: every view of views.json is served at its route with the shared shell."""

from __future__ import annotations

import re

import pytest

from gateway.api.app import STATIC_DIR, load_views
from tests.api.conftest import Shared

pytestmark = pytest.mark.db

# What the page shell (pages.js) fills in on every view.
SHELL_IDS = ("nav", "user-name", "lang-switch")


def test_every_view_has_its_page_and_its_script() -> None:
    views = load_views()
    assert [v.path for v in views] == ["/", "/audit", "/report"]
    assert len({v.name for v in views}) == len(views)
    for view in views:
        html = (STATIC_DIR / view.file).read_text(encoding="utf-8")
        scripts = re.findall(r'<script type="module" src="/static/([\w-]+\.js)"></script>', html)
        assert len(scripts) == 1, view.file
        assert (STATIC_DIR / scripts[0]).is_file(), scripts[0]
        # The shell draws the topbar into an empty header with the page's title
        # key; a page with its own topbar (the console) gives the shell's ids.
        drawn = re.search(r'<header class="topbar" data-title="[\w.]+"></header>', html)
        for element_id in SHELL_IDS if drawn is None else ():
            assert f'id="{element_id}"' in html, f"{view.file} lacks #{element_id}"


async def test_each_view_is_served_at_its_route(shared: Shared) -> None:
    client = shared.client()
    for view in load_views():
        page = await client.get(view.path)
        assert page.status_code == 200, view.path
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.text == (STATIC_DIR / view.file).read_text(encoding="utf-8")
    listed = await client.get("/static/views.json")
    assert [v["path"] for v in listed.json()] == [v.path for v in load_views()]
