"""The dashboard's static routes, without a browser: what is served, with
which content type and cache headers, and that the page loads nothing from
outside the broker (it must work offline)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from midge.http.dashboard import add_dashboard_routes
from midge.http.dashboard.dashboard import ASSETS, IMMUTABLE, REVALIDATE, load_assets

STATIC = resources.files("midge.http.dashboard") / "static"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_dashboard_routes(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_the_page_is_served_at_the_root_and_revalidated(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == REVALIDATE
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = await response.text()
    assert 'id="login-form"' in page
    again = await client.get("/", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_each_file_has_its_content_type(
    client: TestClient, name: str, content_type: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert await response.read() == (STATIC / name).read_bytes()


async def test_a_file_linked_with_its_version_is_cached_for_good(client: TestClient) -> None:
    page = await (await client.get("/")).text()
    links = re.findall(r'"(/static/[^"?]+)\?v=([0-9a-f]{16})"', page)
    assert {path for path, _ in links} == {f"/static/{name}" for name in ASSETS}
    for path, version in links:
        current = await client.get(f"{path}?v={version}")
        assert current.headers["Cache-Control"] == IMMUTABLE
        stale = await client.get(f"{path}?v=0000000000000000")
        assert stale.headers["Cache-Control"] == REVALIDATE
        plain = await client.get(path)
        assert plain.headers["Cache-Control"] == REVALIDATE
        assert (
            await client.get(path, headers={"If-None-Match": plain.headers["ETag"]})
        ).status == 304


@pytest.mark.parametrize(
    "path", ["/static/nothing.js", "/static/index.html", "/static/..%2Fdashboard.py", "/static/"]
)
async def test_only_the_dashboard_files_are_served(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404


async def test_head_is_answered(client: TestClient) -> None:
    response = await client.head("/static/app.js")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No CDN, no web font, no remote script: every URL the files name is local."""
    page, files = load_assets()
    for name, body in [("index.html", page.body), *((n, a.body) for n, a in files.items())]:
        text = body.decode("utf-8")
        remote = re.findall(r"""(?:src|href|url\()\s*=?\s*["']?\s*(?:https?:)?//""", text)
        assert not remote, f"{name} loads from another host: {remote}"
        assert "@import" not in text, name
    script = files["app.js"].body.decode("utf-8")
    assert "innerHTML" not in script  # broker data goes into the page as text only
    assert "eval(" not in script


def test_every_shipped_file_is_served() -> None:
    shipped = {entry.name for entry in STATIC.iterdir() if entry.is_file()}
    assert shipped == {"index.html", *ASSETS}


async def test_the_files_need_no_key_where_everything_else_does() -> None:
    """The API's key check is a middleware of the same app: the dashboard's
    routes are answered before it, every other route still goes through it."""

    @web.middleware
    async def refuse_all(request: web.Request, handler: Any) -> web.StreamResponse:
        return web.json_response({"error": {"code": "unauthorized"}}, status=401)

    async def secret(request: web.Request) -> web.Response:
        return web.json_response({"secret": True})

    app = web.Application(middlewares=[refuse_all])
    app.router.add_get("/api/v1/secret", secret)
    add_dashboard_routes(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        assert (await test_client.get("/")).status == 200
        assert (await test_client.get("/static/app.js")).status == 200
        assert (await test_client.head("/static/app.css")).status == 200
        assert (await test_client.get("/api/v1/secret")).status == 401
        assert (await test_client.get("/no/such/path")).status == 401
