"""State the replicas share through Redis when `redis_url` is set, and each process keeps alone otherwise.

- rpm limits: a sliding 60 s window per key (a sorted set, trimmed and counted in one Lua script on Redis's own
  clock), so 60 rpm on three replicas is 60, not 180.
- breakers: each change of a channel's breaker is kept in a hash (so a starting replica knows it) and published;
  every process applies what the others publish.
- revocations: a revoke is published and every process evicts that key at once (each process also watches the
  database, which stays the fallback: auth.KeyRing).

A Redis outage never takes the gateway down: the first failed call is logged once, everything then runs per
process (`Shared`'s own behaviour), and Redis is tried again every RETRY_S; its return is logged once too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson

log = logging.getLogger("vidgate.shared")

WINDOW_S = 60.0
# After a Redis failure, how long everything stays per process before Redis is tried again.
RETRY_S = 5.0
# A Redis call that takes longer than this counts as a failure (the request goes on per process).
CALL_TIMEOUT_S = 0.5
# Topics (Redis pub/sub channels, prefixed) and the hash that keeps the last message per field of a topic.
BREAKERS = "breakers"
REVOCATIONS = "revocations"
_PREFIX = "vidgate:"

Message = dict[str, Any]
Handler = Callable[[Message], None]

# KEYS[1] the key's window; ARGV[1] its limit, ARGV[2] the window in ms, ARGV[3] a unique member suffix.
# Returns {1, 0} when the request is counted, {0, ms until the oldest counted request leaves the window}.
_SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now_ms}
end
redis.call('ZADD', KEYS[1], now_ms, now_ms .. '-' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], window + 1000)
return {1, 0}
"""


class Shared:
    """Per-process state: the behaviour without Redis, and what RedisShared falls back to.

    Several objects of one process (or of one test, standing in for processes) that hold the same Shared see
    each other's messages; a handler never receives the messages its own `origin` published.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, deque[float]] = {}
        self._handlers: dict[str, list[tuple[str, Handler]]] = {}
        self._kept: dict[str, dict[str, Message]] = {}

    @property
    def shared_by_replicas(self) -> bool:
        return False

    async def start(self) -> None:
        """Connect (RedisShared); nothing to do per process."""

    async def close(self) -> None:
        """Disconnect (RedisShared); nothing to do per process."""

    async def hit(self, key_id: str, rpm: int) -> float | None:
        """Count one request of `key_id` against `rpm` a minute: None when allowed, else seconds to wait."""
        now = self._clock()
        window = self._windows.setdefault(key_id, deque())
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if len(window) >= rpm:
            return window[0] + WINDOW_S - now
        window.append(now)
        return None

    def subscribe(self, topic: str, origin: str, handler: Handler) -> None:
        """Call `handler` with every message published on `topic` by anyone but `origin`."""
        self._handlers.setdefault(topic, []).append((origin, handler))

    async def publish(self, topic: str, origin: str, message: Mapping[str, Any], *, keep: str | None = None) -> None:
        """Send `message` to the topic's other subscribers; with `keep`, it is also what `kept` returns for it."""
        body = {**message, "origin": origin}
        if keep is not None:
            self._kept.setdefault(topic, {})[keep] = body
        self._deliver(topic, body)

    async def kept(self, topic: str) -> dict[str, Message]:
        """The last message kept under each name of `topic`."""
        return dict(self._kept.get(topic, {}))

    def _deliver(self, topic: str, message: Message) -> None:
        for origin, handler in self._handlers.get(topic, ()):
            if origin == message.get("origin"):
                continue
            try:
                handler(message)
            except Exception:
                log.exception("handling a %s message failed", topic)


class RedisShared(Shared):
    """Shared through one Redis by every process and replica that names it; per process while it is down."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic, retry_s: float = RETRY_S) -> None:
        super().__init__(clock=clock)
        import redis.asyncio as aioredis

        self._url = url
        self._retry_s = retry_s
        common: dict[str, Any] = {"socket_connect_timeout": CALL_TIMEOUT_S, "socket_keepalive": True}
        self._redis = aioredis.from_url(url, socket_timeout=CALL_TIMEOUT_S, **common)
        # Subscriptions wait for messages indefinitely: a client of their own, without a read timeout.
        self._listener_client = aioredis.from_url(url, **common)
        self._window_script = self._redis.register_script(_SLIDING_WINDOW)
        self._down_until = 0.0
        self._down = False
        self._stop = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def shared_by_replicas(self) -> bool:
        return not self._down

    async def start(self) -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S * 2):
                await self._redis.ping()
        except Exception as exc:
            self._failed(exc)
        self._stop.clear()
        self._listener = asyncio.create_task(self._listen(), name="vidgate-shared-listener")
        # Messages published from now on reach this process (a bounded wait: Redis may be down).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CALL_TIMEOUT_S * 2):
                await self._subscribed.wait()

    async def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        for client in (self._redis, self._listener_client):
            with contextlib.suppress(Exception):
                await client.aclose()

    async def hit(self, key_id: str, rpm: int) -> float | None:
        if self._resting():
            return await super().hit(key_id, rpm)
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                counted, wait_ms = await self._window_script(
                    keys=[f"{_PREFIX}rpm:{key_id}"], args=[rpm, int(WINDOW_S * 1000), secrets.token_hex(4)]
                )
        except Exception as exc:
            self._failed(exc)
            return await super().hit(key_id, rpm)
        self._up()
        return None if int(counted) else max(0.0, int(wait_ms) / 1000)

    async def publish(self, topic: str, origin: str, message: Mapping[str, Any], *, keep: str | None = None) -> None:
        # This process's own subscribers hear it at once, whatever Redis does.
        await super().publish(topic, origin, message, keep=keep)
        if self._resting():
            return
        body = orjson.dumps({**message, "origin": origin})
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                async with self._redis.pipeline(transaction=True) as pipe:
                    if keep is not None:
                        pipe.hset(f"{_PREFIX}{topic}", keep, body)
                    pipe.publish(f"{_PREFIX}{topic}", body)
                    await pipe.execute()
        except Exception as exc:
            self._failed(exc)
            return
        self._up()

    async def kept(self, topic: str) -> dict[str, Message]:
        if self._resting():
            return await super().kept(topic)
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                stored = await self._redis.hgetall(f"{_PREFIX}{topic}")
        except Exception as exc:
            self._failed(exc)
            return await super().kept(topic)
        self._up()
        found: dict[str, Message] = {}
        for name, body in stored.items():
            with contextlib.suppress(orjson.JSONDecodeError, UnicodeDecodeError):
                value = orjson.loads(body)
                if isinstance(value, dict):
                    found[name.decode() if isinstance(name, bytes) else str(name)] = value
        return found

    async def _listen(self) -> None:
        """Hand each message from Redis to this process's subscribers; resubscribe after any failure."""
        while not self._stop.is_set():
            try:
                async with self._listener_client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(*(f"{_PREFIX}{topic}" for topic in (BREAKERS, REVOCATIONS)))
                    self._subscribed.set()
                    while not self._stop.is_set():
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._received(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.set()  # start() does not wait for a Redis that is down
                self._failed(exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._retry_s):
                        await self._stop.wait()

    def _received(self, message: Mapping[str, Any]) -> None:
        channel = message.get("channel")
        topic = (channel.decode() if isinstance(channel, bytes) else str(channel)).removeprefix(_PREFIX)
        data = message.get("data")
        if not isinstance(data, (bytes, str)) or len(data) > 64 * 1024:
            return
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(body, dict):
            self._deliver(topic, body)

    def _resting(self) -> bool:
        return self._down and self._clock() < self._down_until

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            # Once per outage: until Redis answers again, limits and breakers are per process.
            log.warning(
                "Redis is unreachable (%s); rpm limits and breakers are per process until it is back", _kind(exc)
            )
        self._down = True
        self._down_until = self._clock() + self._retry_s

    def _up(self) -> None:
        if self._down:
            log.warning("Redis is reachable again; rpm limits and breakers are shared by the replicas again")
        self._down = False
        self._down_until = 0.0


def _kind(exc: BaseException) -> str:
    # The exception's class only: its text could carry the URL (and a password in it).
    return type(exc).__name__


def shared_for(redis_url: str, *, clock: Callable[[], float] = time.monotonic) -> Shared:
    """Redis-backed state when `redis_url` is set, per-process state otherwise."""
    return RedisShared(redis_url, clock=clock) if redis_url else Shared(clock=clock)
