"""Shared state: rpm windows, breakers and revocations, per process (injected clock) and through a real Redis
(several clients standing in for replicas); a Redis outage falls back to per-process state and logs once."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.auth import KeyRing
from vidgate.engine.health import CLOSED, OPEN, ChannelHealth
from vidgate.errors import RateLimited, Unauthenticated
from vidgate.shared_state import RedisShared, Shared
from vidgate.store import keys as key_store
from vidgate.store.db import create_engine, migrate

REDIS_URL = "redis://127.0.0.1:6379/0"
SECRET = "shared-state-test-secret"


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not redis_reachable(), reason="Redis is not reachable at 127.0.0.1:6379")


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    await asyncio.to_thread(migrate, url, secret=SECRET)
    engine = create_engine(url, secret=SECRET)
    yield engine
    await engine.dispose()


async def eventually(check: object, timeout: float = 1.0) -> float:
    """Seconds until `check()` holds (fails past `timeout`)."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, "not within the time allowed"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


# -- per process, injected clock ---------------------------------------------------------------------------


async def test_sliding_window_per_process() -> None:
    clock = Clock()
    shared = Shared(clock=clock)
    for at in (0.0, 10.0, 20.0):
        clock.now = 1_000.0 + at
        assert await shared.hit("key_a", 3) is None
    clock.now = 1_030.0
    assert await shared.hit("key_a", 3) == pytest.approx(30.0)
    assert await shared.hit("key_b", 3) is None  # each key has its own window
    clock.now = 1_060.5  # the first request left the window
    assert await shared.hit("key_a", 3) is None
    assert await shared.hit("key_a", 3) is not None


async def test_a_breaker_opened_in_one_process_is_open_in_the_other(db: AsyncEngine) -> None:
    clock = Clock(time.time())
    shared = Shared(clock=clock)  # one bus for two ChannelHealth objects, as Redis is for two processes
    here = ChannelHealth(db, threshold=3, cooldown_s=30, shared=shared, clock=clock)
    there = ChannelHealth(db, threshold=3, cooldown_s=30, shared=shared, clock=clock)
    await here.start()
    await there.start()
    await here.failure("wan", "500")
    await there.failure("wan", "500")  # failures count together: 2 so far
    assert here.breaker("wan").failures == 2 and not there.is_open("wan")
    await here.failure("wan", "500")
    assert there.is_open("wan") and there.breaker("wan").state == OPEN
    assert not there.available("wan")
    clock.now += 31
    assert there.available("wan")  # the cool-down is over: one trial
    await there.success("wan")
    assert here.breaker("wan").state == CLOSED and here.available("wan")
    # A process that starts later takes up what the others keep.
    await here.failure("kling", "timeout")
    await here.failure("kling", "timeout")
    await here.failure("kling", "timeout")
    late = ChannelHealth(db, threshold=3, cooldown_s=30, shared=shared, clock=clock)
    await late.start()
    assert late.is_open("kling")


async def test_a_malformed_breaker_message_changes_nothing(db: AsyncEngine) -> None:
    shared = Shared()
    health = ChannelHealth(db, threshold=3, cooldown_s=30, shared=shared)
    await health.start()
    for message in ({"channel": "wan", "state": "exploded"}, {"channel": 3}, {"state": OPEN, "failures": "x"}):
        await shared.publish("breakers", "elsewhere", message)
    assert health.breaker("wan").state == CLOSED


async def test_rpm_is_enforced_through_the_key_ring(db: AsyncEngine) -> None:
    clock = Clock()
    ring = KeyRing(db, shared=Shared(clock=clock))
    key, _ = await ring.create(name="limited", rpm=2)
    found = await ring.authenticate(f"Bearer {key}")
    await ring.check_rate(found)
    await ring.check_rate(found)
    with pytest.raises(RateLimited) as refused:
        await ring.check_rate(found)
    assert refused.value.retry_after == 61


# -- through Redis ------------------------------------------------------------------------------------------


@needs_redis
async def test_rpm_holds_across_three_replicas() -> None:
    replicas = [RedisShared(REDIS_URL) for _ in range(3)]
    for replica in replicas:
        await replica.start()
    try:
        key_id = "key_" + secrets.token_hex(6)
        answers = [await replicas[i % 3].hit(key_id, 60) for i in range(90)]
        assert sum(answer is None for answer in answers) == 60
        assert all(0 < answer <= 60 for answer in answers[60:] if answer is not None)
        assert all(replica.shared_by_replicas for replica in replicas)
    finally:
        for replica in replicas:
            await replica.close()


@needs_redis
async def test_breakers_reach_another_replica_through_redis(db: AsyncEngine) -> None:
    first, second = RedisShared(REDIS_URL), RedisShared(REDIS_URL)
    await first.start()
    await second.start()
    channel = "wan-" + secrets.token_hex(4)
    try:
        here = ChannelHealth(db, threshold=2, cooldown_s=30, shared=first)
        there = ChannelHealth(db, threshold=2, cooldown_s=30, shared=second)
        await here.start()
        await there.start()
        await here.failure(channel, "500")
        await here.failure(channel, "500")
        took = await eventually(lambda: there.is_open(channel))
        print(f"breaker seen open by the other replica after {took * 1000:.1f} ms")
        late = ChannelHealth(db, threshold=2, cooldown_s=30, shared=second)
        await late.start()
        assert late.is_open(channel)
        await here.success(channel)
        await eventually(lambda: there.breaker(channel).state == CLOSED)
    finally:
        await first.close()
        await second.close()


@needs_redis
async def test_a_revoked_key_is_refused_by_another_replica_within_one_second(db: AsyncEngine) -> None:
    first, second = RedisShared(REDIS_URL), RedisShared(REDIS_URL)
    await first.start()
    await second.start()
    # The database watch is slowed right down: only the Redis message can make this refusal fast.
    here = KeyRing(db, shared=first, revocation_check_s=600)
    there = KeyRing(db, shared=second, revocation_check_s=600)
    await here.start()
    await there.start()
    try:
        key, record = await here.create(name="soon revoked")
        assert (await there.authenticate(f"Bearer {key}")).id == record.id  # cached there
        assert await key_store.revoke_key(db, key_id=record.id)
        await here.announce_revocation(record.id)
        started = time.monotonic()
        while True:
            try:
                await there.authenticate(f"Bearer {key}")
            except Unauthenticated:
                break
            assert time.monotonic() - started < 1.0, "still accepted 1 s after the revoke"
            await asyncio.sleep(0.01)
    finally:
        await here.stop()
        await there.stop()
        await first.close()
        await second.close()


async def test_a_redis_outage_falls_back_to_per_process_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vidgate.shared")
    clock = Clock()
    shared = RedisShared("redis://127.0.0.1:1/0", clock=clock)  # nothing listens there
    await shared.start()
    try:
        answers = [await shared.hit("key_x", 2) for _ in range(3)]
        assert answers[:2] == [None, None] and answers[2] is not None  # counted per process meanwhile
        await shared.publish("breakers", "here", {"channel": "c", "state": OPEN, "failures": 3, "open_until": 1.0})
        clock.now += 10  # past the retry pause: Redis is tried again, fails again, and says nothing new
        await shared.hit("key_x", 2)
        assert not shared.shared_by_replicas
        warnings = [r for r in caplog.records if r.name == "vidgate.shared"]
        assert len(warnings) == 1 and "per process" in warnings[0].getMessage()
        assert "127.0.0.1:1" not in warnings[0].getMessage()
    finally:
        await shared.close()
