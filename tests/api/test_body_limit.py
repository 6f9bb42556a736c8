"""The body cap middleware in-process: counted as chunks arrive, whatever the route does with the error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from vidgate.api import errors, limits
from vidgate.errors import RateLimited

CAP = 1000
seen: list[int] = []


async def swallowing(request: Request) -> Response:
    # A route that catches everything while reading: the cap must hold anyway.
    try:
        body = await request.body()
    except Exception:
        return PlainTextResponse("swallowed")
    seen.append(len(body))
    return PlainTextResponse(f"read {len(body)}")


async def lowered(request: Request) -> Response:
    limits.lower_cap(request.scope, 100, RateLimited("allowance used up", code="Throttling.AllocationQuota"))
    body = await request.body()
    return PlainTextResponse(f"read {len(body)}")


async def unread(request: Request) -> Response:
    return PlainTextResponse("did not read")


inner = FastAPI()
errors.install(inner)
inner.add_route("/v1/swallow", swallowing, methods=["POST"])
inner.add_route("/api/v1/swallow", swallowing, methods=["POST"])
inner.add_route("/api/v1/lowered", lowered, methods=["POST"])
inner.add_route("/v1/unread", unread, methods=["POST"])
app = limits.BodyLimit(inner, limit=CAP)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chunks(count: int, size: int = 300) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_chunked_body_past_the_cap_is_413_even_when_the_route_swallows_it() -> None:
    seen.clear()
    async with client() as http:
        openai = await http.post("/v1/swallow", content=chunks(10))
        dashscope = await http.post("/api/v1/swallow", content=chunks(10))
        fits = await http.post("/v1/swallow", content=chunks(3))
    assert openai.status_code == 413 and openai.json()["error"]["code"] == "payload_too_large"
    assert dashscope.status_code == 413 and dashscope.json()["code"] == "BadRequest.TooLarge"
    assert set(dashscope.json()) == {"request_id", "code", "message"}
    assert fits.text == "read 900" and seen == [900]


async def test_declared_length_past_the_cap_is_refused_unread() -> None:
    async with client() as http:
        answer = await http.post("/v1/unread", content=b"x" * (CAP + 1))
        bad = await http.post("/v1/unread", content=b"x", headers={"content-length": "12x"})
        ignored = await http.post("/v1/unread", content=chunks(10))
    assert answer.status_code == 413
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "Content-Length"
    # A route that never reads its body is not cut off (nothing of it is kept).
    assert ignored.text == "did not read"


async def test_a_route_may_lower_its_cap_with_its_own_error() -> None:
    async with client() as http:
        declared = await http.post("/api/v1/lowered", content=b"x" * 101)
        streamed = await http.post("/api/v1/lowered", content=chunks(2, 60))
        fits = await http.post("/api/v1/lowered", content=chunks(1, 100))
    for answer in (declared, streamed):
        assert answer.status_code == 429 and answer.json()["code"] == "Throttling.AllocationQuota", answer.text
    assert fits.text == "read 100"
