"""The web playground: `/` (index.html) and `/playground/{file}` (its script and stylesheet), no build step."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import PlainTextResponse, Response

router = APIRouter(include_in_schema=False)

_FOLDER = resources.files("vidgate") / "playground"
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page talks to its own origin only: the API key it holds must never reach another host.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    # Revalidate every time, so an upgraded vidgate never runs against a cached older script.
    "Cache-Control": "no-cache",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _file(name: str) -> Response:
    return Response((_FOLDER / name).read_bytes(), media_type=_TYPES[name], headers=_HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> Response:
    """The playground page."""
    return _file("index.html")


@router.api_route("/playground/{name}", methods=["GET", "HEAD"])
async def asset(name: str) -> Response:
    """app.js or style.css; any other name is a 404 (the folder is never listed or walked)."""
    if name not in _TYPES or name == "index.html":
        return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-cache"})
    return _file(name)
