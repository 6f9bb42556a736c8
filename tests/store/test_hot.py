"""The hot store (store/hot.py) on SQLite and PostgreSQL: what the create path and status reads rely on."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.store.test_store import SECRET
from tests.store.test_store import task_values as due_task_values
from vidgate.errors import UpstreamTaken
from vidgate.status import TaskStatus
from vidgate.store import hot, usage
from vidgate.store import tasks as task_store
from vidgate.store.db import create_engine, migrate
from vidgate.store.tables import api_keys, ledger
from vidgate.store.usage import InsufficientQuota


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate, database_url, secret=SECRET)
    engine = create_engine(database_url, secret=SECRET)
    assert await hot.start(engine) is not None
    yield engine
    await hot.stop(engine)
    await engine.dispose()


def task_values(key_id: str, **overrides: Any) -> dict[str, Any]:
    """A task row not due for a poll: the database is shared by the run's tests, and other tests claim due rows."""
    return due_task_values(key_id, **{"next_poll_at": time.time() + 86_400, **overrides})


async def a_key(db: AsyncEngine) -> str:
    key_id = "key_" + secrets.token_hex(4)
    async with db.begin() as conn:
        await conn.execute(
            api_keys.insert().values(
                id=key_id, name="k", key_hash=secrets.token_hex(32), key_prefix="sk-vg-x…", created_at=0.0
            )
        )
    return key_id


async def test_concurrent_writes_each_stand_or_fall_alone(db: AsyncEngine) -> None:
    """Writes that reach the store together (on SQLite: one transaction, a savepoint each) succeed or fail one
    by one: a duplicate among them fails alone, with parameters hidden, and the others are all written."""
    key_id = "key_" + secrets.token_hex(4)
    rows = [task_values(key_id, prompt=f"prompt-{n}") for n in range(40)]
    duplicate = dict(rows[7], prompt="secret-prompt-marker")
    sent = [*rows[:20], duplicate, *rows[20:]]
    outcomes = await asyncio.gather(
        *(task_store.insert_task(db, values) for values in sent),
        return_exceptions=True,
    )
    failed = [(values, outcome) for values, outcome in zip(sent, outcomes, strict=True) if outcome is not True]
    # One of the two writes of that id fails (on PostgreSQL either may come first), and only that one.
    ((loser, error),) = failed
    assert loser["id"] == duplicate["id"] and isinstance(error, IntegrityError)
    assert loser["prompt"] not in str(error) + repr(error) and "parameters hidden" in str(error)
    for values in sent:
        if values is loser:
            continue
        row = await task_store.get_task(db, task_id=values["id"])
        assert row is not None and row.prompt == values["prompt"] and row.request == values["request"]


async def test_status_reads_read_together_get_their_own_rows(db: AsyncEngine) -> None:
    """Concurrent reads (one query on PostgreSQL) each get the row they asked for, and only their key's."""
    alice, bob = "key_" + secrets.token_hex(4), "key_" + secrets.token_hex(4)
    mine = [task_values(alice, prompt=f"a-{n}") for n in range(10)]
    theirs = [task_values(bob, prompt=f"b-{n}") for n in range(10)]
    for values in mine + theirs:
        assert await task_store.insert_task(db, values)
    await task_store.mark_deleted(db, task_id=mine[0]["id"])
    asks = [(values["id"], alice) for values in mine + theirs] + [("video_" + "0" * 32, alice)]
    views = await asyncio.gather(*(task_store.get_view(db, task_id=task, key_id=key) for task, key in asks))
    assert views[0] is None  # deleted
    for values, view in zip(mine[1:], views[1:10], strict=True):
        assert view is not None and view.id == values["id"] and view.prompt == values["prompt"]
        assert view.status == TaskStatus.QUEUED
    assert views[10:] == [None] * 11  # another key's tasks, and one that does not exist


async def test_a_quota_is_reserved_exactly_under_concurrent_creates(db: AsyncEngine) -> None:
    """Three 0.4 USD videos fit 1.2 USD; of six racing for it, exactly three are written and reserved."""
    key_id = await a_key(db)
    racing = [task_values(key_id, price_micros=400_000) for _ in range(6)]
    outcomes = await asyncio.gather(
        *(task_store.insert_task(db, values, quota_micros=1_200_000) for values in racing), return_exceptions=True
    )
    assert sum(outcome is True for outcome in outcomes) == 3
    assert all(isinstance(outcome, InsufficientQuota) for outcome in outcomes if outcome is not True)
    assert await usage.spent(db, key_id=key_id) == 1_200_000
    async with db.connect() as conn:
        reserved = (await conn.execute(sa.select(ledger.c.task_id).where(ledger.c.key_id == key_id))).scalars()
        reserved_ids = set(reserved)
    written = {values["id"] for values, ok in zip(racing, outcomes, strict=True) if ok is True}
    assert reserved_ids == written
    for values, ok in zip(racing, outcomes, strict=True):
        assert (await task_store.get_task(db, task_id=values["id"]) is not None) == (ok is True)


async def test_a_refused_reservation_leaves_no_idempotency_claim(db: AsyncEngine) -> None:
    key_id = await a_key(db)
    values = task_values(key_id, price_micros=2_000_000)
    with pytest.raises(InsufficientQuota):
        await task_store.insert_task(db, values, quota_micros=1_000_000, idempotency=("k-1", "f" * 64))
    # Nothing was held: the same Idempotency-Key makes a task once the price fits.
    cheaper = task_values(key_id, price_micros=500_000)
    assert await task_store.insert_task(db, cheaper, quota_micros=1_000_000, idempotency=("k-1", "f" * 64))
    assert await usage.spent(db, key_id=key_id) == 500_000


async def test_mark_submitted_is_compare_and_set(db: AsyncEngine) -> None:
    values = task_values("key_" + secrets.token_hex(4))
    other = task_values(values["key_id"])
    for each in (values, other):
        assert await task_store.insert_task(db, each)
    args = {"channel": "local", "provider": "local", "credentials": {"channel": "local"}, "next_poll_at": 1.0}
    won = await asyncio.gather(
        *(task_store.mark_submitted(db, task_id=values["id"], upstream_id=f"up-{n}", **args) for n in range(5))
    )
    assert sorted(won) == [False] * 4 + [True]
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.upstream_id is not None and row.lease_owner is None
    assert row.credentials == {"channel": "local"}
    with pytest.raises(UpstreamTaken):
        await task_store.mark_submitted(db, task_id=other["id"], upstream_id=row.upstream_id, **args)
    assert await task_store.finish(db, task_id=other["id"], status=TaskStatus.CANCELLED)
    assert not await task_store.mark_submitted(db, task_id=other["id"], upstream_id="up-late", **args)
