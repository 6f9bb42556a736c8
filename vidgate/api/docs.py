"""`/docs`: Swagger UI served by vidgate itself, so the API reference works on a machine with no internet.

Swagger UI's files (Apache-2.0) come from the `fastapi-offline` package (MIT), which ships Swagger UI 5: the 4.x
in `swagger-ui-bundle` cannot read the OpenAPI 3.1 document FastAPI writes. Only the files are used, under a path
that names the package's version, so browsers may keep them. The page has no inline script (its start-up lives in
/docs-assets/init.js), so it runs under a CSP that lets it talk to this origin only, like the playground.
"""

from __future__ import annotations

import html
from importlib import metadata, resources
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, PlainTextResponse, Response

router = APIRouter(include_in_schema=False)

_FOLDER = Path(str(resources.files("fastapi_offline") / "static"))
# Part of every asset URL: a new version of the package is a new URL, so an old copy is never used for it.
VENDOR = f"fastapi-offline-{metadata.version('fastapi-offline')}"
ASSETS = f"/docs-assets/{VENDOR}"
_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
# Swagger UI's options as FastAPI sets them, and no online validator (its badge would call validator.swagger.io).
INIT_JS = """const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""
# Inline styles are allowed because Swagger UI's components set `style` attributes; scripts only from here.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{assets}/favicon.png">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="/docs-assets/init.js"></script>
</body>
</html>
"""


@router.api_route("/docs", methods=["GET", "HEAD"])
async def docs(request: Request) -> Response:
    """The interactive API reference (Swagger UI) for /openapi.json."""
    app = request.app
    page = _PAGE.format(
        title=html.escape(f"{app.title} API reference"),
        assets=ASSETS,
        openapi_url=html.escape(app.openapi_url or "/openapi.json"),
    )
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.api_route("/docs-assets/init.js", methods=["GET", "HEAD"])
async def init_js() -> Response:
    """Starts Swagger UI on the page (kept out of the HTML so the page needs no inline script)."""
    return Response(INIT_JS, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "no-cache"})


@router.api_route("/docs-assets/{vendor}/{name}", methods=["GET", "HEAD"])
async def asset(vendor: str, name: str) -> Response:
    """Swagger UI's script, stylesheet or icon; anything else is a 404 (the folder is never listed or walked)."""
    if vendor != VENDOR or name not in _TYPES:
        return PlainTextResponse("Not Found", status_code=404)
    # The URL names the version, so the file behind it never changes.
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    return FileResponse(_FOLDER / name, media_type=_TYPES[name], headers=headers)
