"""The dashboard's routes: `/` (the page) and `/static/NAME` (its files).

The page is three files shipped in this package (`static/`), plain HTML,
CSS and JavaScript with no build step and nothing fetched from elsewhere, so
it works on a broker without internet access. They are read once, when the
routes are added, and served from memory.

No API key is needed for these files: they hold no data. The page asks for
the key and sends it with every API call it makes (`Authorization: Bearer`,
and `?key=` for the event stream, which EventSource cannot give a header).
So that the API's key check (app.py's middlewares) does not refuse them,
`add_dashboard_routes` also puts one middleware in front of the app's own:
a request routed to one of these two routes goes straight to its handler;
every other request passes on untouched.

Caching: the page links each file as `/static/NAME?v=HASH` (a hash of its
contents), and a file asked for with its current hash may be cached for a
year; the page itself and any other request are revalidated every time
(`no-cache` with an ETag), so an upgraded broker serves its new page at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

STATIC_PACKAGE = "midge.http.dashboard"
STATIC_FOLDER = "static"
ASSETS = ("app.js", "app.css", "favicon.svg")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
ROUTE_NAMES = frozenset({"dashboard", "dashboard-static"})
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"
# Everything the page loads comes from this listener; it may not be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str  # quoted, as the header carries it
    version: str  # what ?v= must be for the file to be cached for good


def _read(name: str) -> bytes:
    return (resources.files(STATIC_PACKAGE) / STATIC_FOLDER / name).read_bytes()


def _asset(name: str, body: bytes) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:16]
    suffix = name[name.rfind(".") :]
    return Asset(body, CONTENT_TYPES[suffix], f'"{digest}"', digest)


def load_assets() -> tuple[Asset, dict[str, Asset]]:
    """The page, with its links pointing at each file's current version, and
    the files by name."""
    files = {name: _asset(name, _read(name)) for name in ASSETS}
    page = _read("index.html").decode("utf-8")
    for name, asset in files.items():
        page = page.replace(f'"/static/{name}"', f'"/static/{name}?v={asset.version}"')
    return _asset("index.html", page.encode("utf-8")), files


def _respond(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {"Cache-Control": cache_control, "ETag": asset.etag, **SECURITY_HEADERS}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={"Content-Type": asset.content_type, **headers})


@web.middleware
async def open_dashboard_routes(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The dashboard's files need no API key: answer them before the key check."""
    if request.match_info.route.name in ROUTE_NAMES:
        return await request.match_info.handler(request)
    return await handler(request)


def add_dashboard_routes(app: web.Application) -> None:
    """Serve the dashboard on `app`: GET `/` and GET `/static/{name}` (HEAD too),
    without an API key. Call it before the app starts (while its middlewares
    can still change)."""
    page, files = load_assets()

    async def index(request: web.Request) -> web.Response:
        return _respond(request, page, REVALIDATE)

    async def static(request: web.Request) -> web.Response:
        asset = files.get(request.match_info["name"])
        if asset is None:  # the API's error shape, as its middleware would answer
            error = {"code": "not_found", "message": f"no such endpoint: {request.path}"}
            return web.json_response({"error": error}, status=404)
        current = request.query.get("v") == asset.version
        return _respond(request, asset, IMMUTABLE if current else REVALIDATE)

    app.router.add_get("/", index, name="dashboard")
    app.router.add_get("/static/{name}", static, name="dashboard-static")
    app.middlewares.insert(0, open_dashboard_routes)
