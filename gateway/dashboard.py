"""The dashboard's static files, served by the gateway at ``/``.

The files are built from ``gateway/client/`` (TypeScript, uPlot, socket.io-client,
bundled by esbuild) into ``gateway/static/`` by ``make`` (the install step) and
shipped as package data; nothing is fetched at run time. A gateway installed
without them still runs and answers ``/`` with 503 and how to build them.

The page holds a user's token, so it is served with a strict Content Security
Policy: scripts, styles and connections to this origin only, no framing.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["STATIC_DIR", "dashboard_routes"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

_HEADERS = {
    # 'self' covers ws:// and wss:// to this origin (CSP level 3) for Socket.IO.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_NOT_BUILT = (
    "The dashboard is not built. Build it with `make dashboard` "
    "(npm ci && npm run build in gateway/client), then restart the gateway.\n"
)


def dashboard_routes(static_dir: Path = STATIC_DIR) -> list[web.RouteDef]:
    """``GET /`` (the page) and ``GET /assets/{name}`` (its scripts and styles)."""

    async def index(request: web.Request) -> web.StreamResponse:
        page = static_dir / "index.html"
        if not page.is_file():
            return web.Response(status=503, text=_NOT_BUILT)
        return web.FileResponse(page, headers=_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = static_dir / name
        # Only plain file names of the build, never a path out of the folder.
        if "/" in name or name.startswith(".") or path.suffix not in _ASSET_TYPES:
            raise web.HTTPNotFound()
        if not path.is_file():
            raise web.HTTPNotFound()
        headers = {**_HEADERS, "Content-Type": _ASSET_TYPES[path.suffix]}
        return web.FileResponse(path, headers=headers)

    return [web.get("/", index), web.get("/assets/{name}", asset)]
