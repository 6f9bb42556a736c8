"""The only place errors become HTTP responses, in the shape of the surface that was called."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from vidgate.errors import ClientError, InvalidRequest, RateLimited, ServiceError

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


def _headers(exc: Exception) -> dict[str, str] | None:
    if isinstance(exc, RateLimited):
        return {"retry-after": str(exc.retry_after)}
    if isinstance(exc, ServiceError):
        # Clients retry 5xx; tell them not to hammer a gateway with no healthy upstream.
        return {"retry-after": "5"}
    return None


async def client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return openai_error(exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code, headers=_headers(exc))


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return openai_error(exc.status, exc.message, type_=exc.type, code=exc.code, headers=_headers(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "Unknown route.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
    return openai_error(exc.status_code, message, type_=_HTTP_TYPES.get(exc.status_code, "invalid_request_error"))


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    error = InvalidRequest(f"Invalid value for '{'.'.join(loc)}': {first.get('msg')}", param=".".join(loc) or None)
    return await client_error(request, error)


def unexpected_error() -> Response:
    """What a client sees for a bug: a JSON 500, never a traceback (the log has the traceback)."""
    return openai_error(
        500, "The server had an error while processing your request.", type_="server_error", code="internal_error"
    )


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""
    app.add_exception_handler(ClientError, client_error)
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
