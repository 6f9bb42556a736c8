"""The only place errors become HTTP responses, in the shape of the surface that was called."""

from __future__ import annotations

import logging
import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from vidgate.errors import (
    ClientError,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceError,
    Unauthenticated,
    UpstreamRejected,
    UpstreamUnavailable,
    VidgateError,
)
from vidgate.redact import Redactor
from vidgate.store.db import protection

log = logging.getLogger("vidgate.api")

_HTTP_TYPES = {
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The OpenAI error envelope: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def dashscope_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> Response:
    """The DashScope error body: {"request_id", "code", "message"} (never a 200: SDKs raise on a top-level code)."""
    body = {"request_id": str(uuid.uuid4()), "code": code, "message": message}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


_DASHSCOPE_CODES: list[tuple[type[VidgateError], str, int]] = [
    (Unauthenticated, "InvalidApiKey", 401),
    (PermissionDenied, "AccessDenied", 403),
    (NotFound, "NotFound", 404),
    (Conflict, "UnsupportedOperation", 400),
    (PayloadTooLarge, "BadRequest.TooLarge", 413),
    (RateLimited, "Throttling.RateQuota", 429),
    (InvalidRequest, "InvalidParameter", 400),
    (UpstreamUnavailable, "ServiceUnavailable", 503),
    (ServiceError, "InternalError", 500),
]


_DASHSCOPE_PREFIXES = ("/api/", "/alibailian/")


def is_dashscope(request: Request) -> bool:
    return request.url.path.startswith(_DASHSCOPE_PREFIXES)


def _as_dashscope(exc: VidgateError) -> Response:
    code, status = "InternalError", 500
    for kind, kind_code, kind_status in _DASHSCOPE_CODES:
        if isinstance(exc, kind):
            code, status = kind_code, kind_status
            break
    own = getattr(exc, "code", None)
    if isinstance(own, str) and own[:1].isupper():
        code = own  # already a DashScope code (AccessDenied, InvalidURL, ...)
    if isinstance(exc, ServiceError):
        status = exc.status
    param = getattr(exc, "param", None)
    message = exc.message if not param or param in exc.message else f"{param}: {exc.message}"
    cause = exc.__cause__
    said = cause.upstream if isinstance(cause, UpstreamRejected) else None
    if said is not None and said.vendor == "DashScope" and said.code:
        # A DashScope upstream refused the request: its own code and message, as it gave them.
        code, message = said.code, said.message or ""
    return dashscope_error(status, code, message, headers=_headers(exc))


def _headers(exc: Exception) -> dict[str, str] | None:
    if isinstance(exc, RateLimited):
        return {"retry-after": str(exc.retry_after)}
    if isinstance(exc, ServiceError):
        # Clients retry 5xx; tell them not to hammer a gateway with no healthy upstream.
        return {"retry-after": str(getattr(exc, "retry_after", 5))}
    return None


def _redact(request: Request, exc: VidgateError) -> None:
    """Mask secrets in the message (an upstream may echo a credential in the text we pass on)."""
    services = getattr(request.app.state, "services", None)
    redactor = protection(services.db).redact if services is not None else Redactor()
    exc.message = redactor(exc.message)


async def client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    _redact(request, exc)
    return client_error_response(request.url.path, exc)


def client_error_response(path: str, exc: ClientError) -> Response:
    """A refusal in the shape of the surface that `path` belongs to (also for pure-ASGI middleware)."""
    if path.startswith(_DASHSCOPE_PREFIXES):
        return _as_dashscope(exc)
    return openai_error(exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code, headers=_headers(exc))


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    _redact(request, exc)
    if is_dashscope(request):
        return _as_dashscope(exc)
    return openai_error(exc.status, exc.message, type_=exc.type, code=exc.code, headers=_headers(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "Unknown route.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    if is_dashscope(request):
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "InvalidParameter")
        return dashscope_error(exc.status_code, code, f"{message} ({request.url.path})", headers=headers)
    return openai_error(
        exc.status_code, message, type_=_HTTP_TYPES.get(exc.status_code, "invalid_request_error"), headers=headers
    )


def _allowed_methods(request: Request) -> str:
    """Every method the path answers to. The router's own 405 names only the first route that matched the
    path, and GET and POST /v1/videos (for one) are two routes: ask every route about every method."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    error = InvalidRequest(f"Invalid value for '{'.'.join(loc)}': {first.get('msg')}", param=".".join(loc) or None)
    return await client_error(request, error)


def unexpected_error(path: str = "") -> Response:
    """What a client sees for a bug: a JSON 500, never a traceback (the log has the traceback)."""
    if path.startswith(_DASHSCOPE_PREFIXES):
        return dashscope_error(500, "InternalError", "The server had an error while processing your request.")
    return openai_error(
        500, "The server had an error while processing your request.", type_="server_error", code="internal_error"
    )


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""
    app.add_exception_handler(ClientError, client_error)
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, bug)


async def bug(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware sends this, then re-raises so the traceback is logged.
    return unexpected_error(request.url.path)
