"""Channel slots on SQLite and PostgreSQL: max_in_flight as a hard cap under racing reservations."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.store.test_store import SECRET, task_values
from vidgate.status import TaskStatus
from vidgate.store import slots
from vidgate.store import tasks as task_store
from vidgate.store.db import create_engine, migrate


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate, database_url, secret=SECRET)
    engine = create_engine(database_url, secret=SECRET)
    yield engine
    await engine.dispose()


async def new_tasks(db: AsyncEngine, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        values = task_values("key_" + secrets.token_hex(4))
        assert await task_store.insert_task(db, values)
        ids.append(values["id"])
    return ids


async def test_racing_reservations_take_exactly_the_limit(db: AsyncEngine) -> None:
    channel = "capped-" + secrets.token_hex(4)
    ids = await new_tasks(db, 20)
    won = await asyncio.gather(
        *(slots.reserve(db, channel=channel, task_id=task_id, limit=2, now=time.time()) for task_id in ids)
    )
    assert sum(won) == 2
    assert (await slots.held(db))[channel] == 2
    # A holder asking again (a later round of its submit) keeps its slot and takes no second one.
    holder = ids[won.index(True)]
    assert await slots.reserve(db, channel=channel, task_id=holder, limit=2, now=time.time())
    assert (await slots.held(db))[channel] == 2


async def test_a_slot_comes_back_when_its_task_ends_or_fails_over(db: AsyncEngine) -> None:
    channel = "capped-" + secrets.token_hex(4)
    first, second, third, fourth = await new_tasks(db, 4)
    for task_id in (first, second):
        assert await slots.reserve(db, channel=channel, task_id=task_id, limit=2, now=time.time())
    assert not await slots.reserve(db, channel=channel, task_id=third, limit=2, now=time.time())
    # The first task completes: the next reservation that finds the channel full frees its slot.
    assert await task_store.finish(db, task_id=first, status=TaskStatus.COMPLETED, values={})
    assert await slots.reserve(db, channel=channel, task_id=third, limit=2, now=time.time())
    assert not await slots.reserve(db, channel=channel, task_id=fourth, limit=2, now=time.time())
    # The second fails over to another channel: its submit gives the slot back at once.
    await slots.release(db, task_id=second, channel=channel)
    assert await slots.reserve(db, channel=channel, task_id=fourth, limit=2, now=time.time())
    assert (await slots.held(db))[channel] == 2
