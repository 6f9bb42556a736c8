"""One cap on request bodies for every route, counted as the bytes arrive (chunked bodies included).

A Content-Length above the cap is refused before the app runs. Otherwise the app's `receive` is metered: the
message that crosses the cap is never handed on, the app gets PayloadTooLarge instead, and whatever the app
answers is replaced by the 413 (so no route, however it reads its body, can store or answer past the cap).
A route may lower its own cap before reading (`lower_cap`), with its own error.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidgate.api.errors import client_error_response
from vidgate.errors import ClientError, InvalidRequest, PayloadTooLarge

log = logging.getLogger("vidgate.api")

# Room for multipart boundaries, part headers and the small text fields around a file of max_upload_bytes.
FORM_OVERHEAD = 64 * 1024
_SCOPE_KEY = "vidgate.body_cap"
_LENGTH = re.compile(r"[0-9]{1,19}")
# The field a too-large body is about, by route, so the 413 names it.
_FIELDS = (
    (re.compile(r"^/v1/videos$"), "input_reference"),
    (re.compile(r"^(/alibailian)?/api/v1/uploads/oss(/[^/]*)?$"), "file"),
)


@dataclass
class _Cap:
    limit: int
    error: ClientError
    received: int = 0
    tripped: bool = False


def too_large(path: str, limit: int) -> PayloadTooLarge:
    """The 413 for a body over `limit` bytes on `path`, naming the field when the route has one."""
    field = next((name for pattern, name in _FIELDS if pattern.match(path)), None)
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.", param=field)


def lower_cap(scope: Scope, limit: int, error: ClientError | None = None) -> None:
    """Cap this request's body at `limit` bytes (never above the app-wide cap); `error` is what crossing it says.

    Call it before reading the body: a declared Content-Length above `limit` raises `error` at once."""
    cap: _Cap | None = scope.get(_SCOPE_KEY)
    if cap is None or limit >= cap.limit:
        return
    cap.limit = limit
    cap.error = error or too_large(scope.get("path", ""), limit)
    declared = _content_length(scope)
    if isinstance(declared, int) and declared > limit:
        raise cap.error


class BodyLimit:
    """Refuse or cut off request bodies larger than `limit` bytes, with a 413 in the surface's own shape."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        declared = _content_length(scope)
        if isinstance(declared, ClientError):
            await client_error_response(path, declared)(scope, receive, send)
            return
        if declared is not None and declared > self.limit:
            # Refused at once: not one byte of the body is read.
            await client_error_response(path, too_large(path, self.limit))(scope, receive, send)
            return
        cap = scope[_SCOPE_KEY] = _Cap(self.limit, too_large(path, self.limit))

        async def metered() -> Message:
            if cap.tripped:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                cap.received += len(message.get("body", b""))
                if cap.received > cap.limit:
                    cap.tripped = True
                    raise cap.error
            return message

        started = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if cap.tripped:
                return  # the app's answer to a cut-off body is replaced by the refusal below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, metered, guarded)
        except Exception:
            if not cap.tripped:
                raise
            log.debug("%s %s: body cut off at %d bytes", scope.get("method"), path, cap.limit, exc_info=True)
        if cap.tripped and not started:
            await client_error_response(path, cap.error)(scope, receive, send)


def _content_length(scope: Scope) -> int | ClientError | None:
    values = [value for name, value in scope.get("headers", ()) if name == b"content-length"]
    if not values:
        return None
    text = values[0].decode("latin-1").strip()
    if not _LENGTH.fullmatch(text) or any(value != values[0] for value in values):
        return InvalidRequest("The Content-Length header is not a number.", param="Content-Length")
    return int(text)
