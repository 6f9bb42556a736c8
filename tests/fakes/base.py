"""What every upstream emulator shares: a real HTTP server on 127.0.0.1, a history of what it received,
fault injection, and a real (tiny) MP4 to serve.

An emulator subclasses FakeUpstream, builds its routes in `routes()`, and calls `self.record(request)` at
the top of each handler, then `self.fault(kind_of_call)` to apply whatever failure the test queued.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import av
import httpx
import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

Fault = Literal[
    "429",
    "500",
    "502",
    "503",
    "timeout",
    "garbage",
    "empty",
    "unknown_status",
    "not_found",
    "drop_reply",
    "slow_reply",
    "cut",
]


@dataclass
class Recorded:
    """One request as the emulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


class CutConnection(Response):
    """Starts an answer it never finishes: the server closes the connection, so the client gets no reply
    (the upstream did the work, and the caller cannot know)."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"id"', "more_body": True})
        # Returning with the body unfinished makes the server drop the connection.


class InjectedFault(Exception):
    """Raised inside a handler to answer with a fault; `response` is what to send (None = hang)."""

    def __init__(self, kind: Fault, response: Response | None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.response = response


@dataclass
class Faults:
    """Failures to inject: a queue per call kind ("submit", "poll", "download", ...), or a random ratio."""

    queued: dict[str, deque[Fault]] = field(default_factory=dict)
    ratio: dict[str, tuple[float, tuple[Fault, ...]]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    # How long a "timeout" fault sleeps before answering (longer than the client's timeout).
    hang_s: float = 40.0
    # How long a "slow_reply" fault holds the answer after the work is done (the task exists meanwhile).
    slow_s: float = 45.0

    def queue(self, call: str, *faults: Fault) -> None:
        self.queued.setdefault(call, deque()).extend(faults)

    def random(self, call: str, ratio: float, *faults: Fault) -> None:
        """Fail `ratio` of `call`s, each time with a fault drawn from `faults`."""
        self.ratio[call] = (ratio, faults)

    def clear(self) -> None:
        self.queued.clear()
        self.ratio.clear()

    def draw(self, call: str) -> Fault | None:
        pending = self.queued.get(call)
        if pending:
            return pending.popleft()
        if call in self.ratio:
            ratio, faults = self.ratio[call]
            if self.rng.random() < ratio:
                return self.rng.choice(faults)
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_mp4(width: int = 160, height: int = 96, seconds: float = 1.0, fps: int = 24, seed: int = 0) -> bytes:
    """A small, real H.264 MP4 (moving colour bars), as an upstream would produce."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast"}
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 255, size=(1, width, 3), dtype=np.uint8)
        for index in range(int(seconds * fps)):
            frame = np.repeat(np.roll(base, index * 4, axis=1), height, axis=0)
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video.pts = index
            for packet in stream.encode(video):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


_JSON = {"content-type": "application/json"}
_TLS = ssl.create_default_context()


class FakeUpstream:
    """Base of every emulator: server lifecycle, history, faults, and a signed-URL file store."""

    name = "fake"

    def __init__(self) -> None:
        self.history: list[Recorded] = []
        self.faults = Faults()
        self.files: dict[str, bytes] = {}
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[*self.routes(), Route("/_files/{name}", self._serve_file)])
        self.file_ttl_s = 3600.0
        self._file_secret = secrets.token_hex(8)
        # Every callback POST made (url, the receiver's HTTP status or None when unreachable, when it was sent).
        self.callbacks_sent: list[tuple[str, int | None, float]] = []

    # -- to be provided by each emulator ---------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def fault_response(self, kind: Fault) -> Response:
        """The vendor's own shape for an injected 429/5xx (emulators override for exact bodies)."""
        status = int(kind) if kind.isdigit() else 500
        return JSONResponse({"error": f"injected {kind}"}, status_code=status)

    # -- helpers for handlers -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def record(self, request: Request) -> Recorded:
        body = await request.body()
        entry = Recorded(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        content_type = entry.headers.get("content-type", "")
        if "json" in content_type and body:
            try:
                entry.json = orjson.loads(body)
            except orjson.JSONDecodeError:
                entry.json = None
        elif content_type.startswith("multipart/form-data"):
            async with request.form() as form:
                for key, value in form.multi_items():
                    entry.form[key] = (
                        value
                        if isinstance(value, str)
                        else {
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "data": await value.read(),
                        }
                    )
        self.history.append(entry)
        return entry

    async def fault(self, call: str) -> None:
        """Apply the next queued/random fault for this kind of call, if any."""
        kind = self.faults.draw(call)
        if kind is None:
            return
        if kind == "timeout":
            await asyncio.sleep(self.faults.hang_s)
        if kind == "garbage":
            raise InjectedFault(kind, PlainTextResponse("<html>502 Bad Gateway</html>", status_code=200))
        if kind == "empty":
            raise InjectedFault(kind, Response(b"", status_code=200, media_type="application/json"))
        if kind in ("unknown_status", "not_found", "drop_reply", "slow_reply", "cut"):
            raise InjectedFault(kind, None)  # the emulator's handler interprets these itself
        raise InjectedFault(kind, self.fault_response(kind))

    async def inject(self, call: str) -> tuple[Response | None, Fault | None]:
        """fault() for a handler: (an answer to give instead of working, None) or (None, a kind the handler
        interprets itself, e.g. "cut" after the work), or (None, None) when no fault is due."""
        try:
            await self.fault(call)
        except InjectedFault as exc:
            return (exc.response, None) if exc.response is not None else (None, exc.kind)
        return None, None

    async def after_work(self, kind: Fault | None) -> Response | None:
        """For faults that strike once the work is done: "slow_reply" waits `faults.slow_s` before the normal
        answer (None is returned), "cut" gives the response that drops the connection instead of answering."""
        if kind == "slow_reply":
            await asyncio.sleep(self.faults.slow_s)
        if kind == "cut":
            return CutConnection()
        return None

    async def call_back(self, url: str, payload: Any) -> None:
        """POST `payload` to a task's callback URL, as the vendor does on a status change (no retry)."""
        at = time.time()
        try:
            # The TLS context is made once (making one per client costs milliseconds).
            async with httpx.AsyncClient(trust_env=False, timeout=5.0, verify=_TLS) as http:
                status: int | None = (await http.post(url, content=orjson.dumps(payload), headers=_JSON)).status_code
        except httpx.HTTPError:
            status = None
        self.callbacks_sent.append((url, status, at))

    def calls(self, path_contains: str = "", method: str | None = None) -> list[Recorded]:
        return [r for r in self.history if path_contains in r.path and (method is None or r.method == method)]

    def publish(self, data: bytes, suffix: str = "mp4") -> str:
        """Store bytes and return an expiring URL for them, like the vendors' result URLs."""
        name = f"{secrets.token_hex(8)}.{suffix}"
        self.files[name] = data
        expires = int(time.time() + self.file_ttl_s)
        return f"{self.base_url}/_files/{name}?Expires={expires}&Signature={self._sign(name, expires)}"

    def publish_shared(self, data: bytes, suffix: str = "mp4") -> str:
        """publish() for bytes many tasks share: stored once, each task still gets its own signed URL."""
        name = f"shared-{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
        self.files.setdefault(name, data)
        expires = int(time.time() + self.file_ttl_s)
        return f"{self.base_url}/_files/{name}?Expires={expires}&Signature={self._sign(name, expires)}"

    def _sign(self, name: str, expires: int) -> str:
        return hashlib.sha256(f"{self._file_secret}:{name}:{expires}".encode()).hexdigest()[:24]

    async def _serve_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self.record(request)
        try:
            expires = int(request.query_params.get("Expires", "0"))
        except ValueError:
            expires = 0
        if name not in self.files or request.query_params.get("Signature") != self._sign(name, expires):
            return PlainTextResponse("AccessDenied", status_code=403)
        if expires < time.time():
            return PlainTextResponse("Request has expired", status_code=403)
        try:
            await self.fault("download")
        except InjectedFault as exc:
            return exc.response or PlainTextResponse("", status_code=500)
        media = "video/mp4" if name.endswith(".mp4") else "image/jpeg" if name.endswith(".jpg") else "image/webp"
        return Response(self.files[name], media_type=media)

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> str:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake {self.name} did not start")
            time.sleep(0.02)
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    @contextmanager
    def running(self) -> Iterator[str]:
        url = self.start()
        try:
            yield url
        finally:
            self.stop()
