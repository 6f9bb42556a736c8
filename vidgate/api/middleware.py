"""Pure-ASGI middleware: an x-request-id on every response, and a JSON 500 for anything unhandled."""

from __future__ import annotations

import logging
import random

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidgate.api.errors import unexpected_error
from vidgate.metrics import Metrics

log = logging.getLogger("vidgate.api")


class RequestId:
    """Adds `x-request-id` to every HTTP response and turns escaped exceptions into a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Identifies a request in logs; it needs to be unique, not secret (no syscall per request).
        request_id = f"req_{random.getrandbits(96):024x}"
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = unexpected_error(scope.get("path", ""))
            await response(scope, receive, send_with_id)


class Measure:
    """Counts every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("vidgate.route") or getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
