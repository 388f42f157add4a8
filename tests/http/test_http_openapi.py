"""The OpenAPI description served at /api/v1/openapi.json names exactly the
app's routes: every path and method the app serves is described, and every
described one is served. The dashboard's page and files (`/`, `/static/...`,
midge/http/dashboard) are a web page, not API: they are left out."""

from __future__ import annotations

import json
from pathlib import Path

from http_support import running_api

from midge.http.apikeys import ApiKeys
from midge.http.app import build_app
from midge.http.common import HttpSettings
from midge.http.routes_system import openapi_text


def app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue  # aiohttp adds HEAD beside every GET
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if path == "/" or path.startswith("/static"):
            continue  # the dashboard's page and files
        # `{topic:.+}` in aiohttp is `{topic}` in OpenAPI.
        routes.add((path, route.method.lower()))
    return routes


def spec_routes(spec: dict) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }


async def test_openapi_describes_exactly_the_routes(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        app = build_app(api.broker, ApiKeys(), HttpSettings())
        spec = json.loads(openapi_text())
        assert app_routes(app) == spec_routes(spec)
        status, served = await api.get("/api/v1/openapi.json", key=api.reader)
        assert status == 200 and served == spec
        assert (await api.get("/api/v1/openapi.json", key=None))[0] == 401


def test_openapi_references_resolve() -> None:
    spec = json.loads(openapi_text())
    assert spec["openapi"].startswith("3.")

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for ref in refs(spec):
        target = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
