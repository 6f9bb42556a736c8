"""The store on SQLite and PostgreSQL: migrations, keys, task rows, claims and compare-and-set."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import SHARED_DB_SECRET
from vidgate.auth import KeyRing, hash_key
from vidgate.errors import Unauthenticated, UpstreamTaken
from vidgate.status import TaskStatus
from vidgate.store import hot
from vidgate.store import idempotency as idempotency_store
from vidgate.store import keys as key_store
from vidgate.store import tasks as task_store
from vidgate.store.db import create_engine, migrate

# The secret every vidgate on the run's shared PostgreSQL database uses.
SECRET = SHARED_DB_SECRET


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate, database_url, secret=SECRET)
    await asyncio.to_thread(migrate, database_url, secret=SECRET)  # idempotent
    engine = create_engine(database_url, secret=SECRET)
    # As the app does: the hot paths' own store (on PostgreSQL an asyncpg pool) beside the engine.
    await hot.start(engine)
    yield engine
    await hot.stop(engine)
    await engine.dispose()


def task_values(key_id: str, **overrides: Any) -> dict[str, Any]:
    now = time.time()
    values: dict[str, Any] = {
        "id": "video_" + secrets.token_hex(16),
        "key_id": key_id,
        "model": "vidgate-local",
        "provider": "local",
        "channel": "local",
        "upstream_id": None,
        "credentials": {"channel": "local"},
        "status": "queued",
        "progress": 0,
        "prompt": "a fox",
        "seconds": 4,
        "size": "1280x720",
        "request": {"model": "vidgate-local"},
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + 600,
        "next_poll_at": now - 1,
    }
    values.update(overrides)
    return values


async def test_keys_roundtrip_and_revoke(db: AsyncEngine) -> None:
    ring = KeyRing(db)
    key, record = await ring.create(name="alice", models=["vidgate-local"], rpm=5)
    assert key.startswith("sk-vg-") and len(key) > 40
    found = await key_store.find_by_hash(db, key_hash=hash_key(key))
    assert found is not None and found.id == record.id and found.models == ("vidgate-local",) and found.rpm == 5
    assert (await ring.authenticate(f"Bearer {key}")).id == record.id
    with pytest.raises(Unauthenticated):
        await ring.authenticate(f"Bearer {key}x")
    assert await key_store.revoke_key(db, key_id=record.id)
    assert not await key_store.revoke_key(db, key_id=record.id)
    ring.forget()
    with pytest.raises(Unauthenticated):
        await ring.authenticate(f"Bearer {key}")
    # Only the hash is stored.
    listed = {rec.id: rec for rec in await key_store.list_keys(db)}
    assert record.id in listed and key not in repr(listed[record.id])


async def test_insert_get_list_pages_by_owner(db: AsyncEngine) -> None:
    owner, other = "key_" + secrets.token_hex(4), "key_" + secrets.token_hex(4)
    ids = []
    for _ in range(5):
        values = task_values(owner)
        await task_store.insert_task(db, values)
        ids.append(values["id"])
    await task_store.insert_task(db, task_values(other))
    assert (await task_store.get_task(db, task_id=ids[0], key_id=owner)) is not None
    assert (await task_store.get_task(db, task_id=ids[0], key_id=other)) is None
    desc = await task_store.list_tasks(db, key_id=owner, limit=3, order="desc")
    assert [row.id for row in desc] == ids[::-1][:3]
    seq = await task_store.seq_of(db, task_id=ids[2], key_id=owner)
    asc = await task_store.list_tasks(db, key_id=owner, limit=10, order="asc", after_seq=seq)
    assert [row.id for row in asc] == ids[3:]
    assert await task_store.mark_deleted(db, task_id=ids[0])
    assert await task_store.get_task(db, task_id=ids[0]) is None


async def test_claims_never_overlap_between_pollers(db: AsyncEngine) -> None:
    owner = "key_" + secrets.token_hex(4)
    mine = set()
    for _ in range(30):
        values = task_values(owner)
        await task_store.insert_task(db, values)
        mine.add(values["id"])
    now = time.time()
    first, second = await asyncio.gather(
        task_store.claim_due(db, owner="a", now=now, limit=1000, lease_s=60),
        task_store.claim_due(db, owner="b", now=now, limit=1000, lease_s=60),
    )
    a_ids = {row.id for row in first} & mine
    b_ids = {row.id for row in second} & mine
    assert not a_ids & b_ids
    assert a_ids | b_ids == mine
    # Leased rows are not claimed again until the lease runs out.
    again = await task_store.claim_due(db, owner="c", now=now, limit=1000, lease_s=60)
    assert not {row.id for row in again} & mine
    later = await task_store.claim_due(db, owner="c", now=now + 61, limit=1000, lease_s=60)
    assert mine <= {row.id for row in later}


async def test_record_poll_needs_the_lease(db: AsyncEngine) -> None:
    values = task_values("key_" + secrets.token_hex(4))
    await task_store.insert_task(db, values)
    claimed = await task_store.claim_due(db, owner="me", now=time.time(), limit=1000, lease_s=60)
    assert values["id"] in {row.id for row in claimed}
    assert not await task_store.record_poll(
        db,
        task_id=values["id"],
        owner="someone-else",
        status=TaskStatus.IN_PROGRESS,
        progress=10,
        next_poll_at=time.time(),
    )
    assert await task_store.record_poll(
        db, task_id=values["id"], owner="me", status=TaskStatus.IN_PROGRESS, progress=10, next_poll_at=time.time() + 5
    )
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.status == TaskStatus.IN_PROGRESS and row.progress == 10 and row.lease_owner is None


async def test_terminal_transition_happens_once(db: AsyncEngine) -> None:
    values = task_values("key_" + secrets.token_hex(4))
    await task_store.insert_task(db, values)
    outcomes = await asyncio.gather(
        *(
            task_store.finish(db, task_id=values["id"], status=status, values={"error_code": status.value})
            for status in [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED] * 4
        )
    )
    assert sum(outcomes) == 1
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.status.value == row.error_code and row.next_poll_at is None


async def test_mark_submitted_only_once(db: AsyncEngine) -> None:
    values = task_values("key_" + secrets.token_hex(4))
    await task_store.insert_task(db, values)
    args = {"channel": "local", "provider": "local", "credentials": {"channel": "local"}, "next_poll_at": time.time()}
    assert await task_store.mark_submitted(db, task_id=values["id"], upstream_id="u1", **args)
    assert not await task_store.mark_submitted(db, task_id=values["id"], upstream_id="u2", **args)
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.upstream_id == "u1"


async def test_one_upstream_task_belongs_to_one_row(db: AsyncEngine) -> None:
    first, second = task_values("key_" + secrets.token_hex(4)), task_values("key_" + secrets.token_hex(4))
    for values in (first, second):
        await task_store.insert_task(db, values)
    upstream = "up_" + secrets.token_hex(6)
    args = {"channel": "local", "provider": "local", "credentials": {"channel": "local"}, "next_poll_at": time.time()}
    assert await task_store.mark_submitted(db, task_id=first["id"], upstream_id=upstream, **args)
    with pytest.raises(UpstreamTaken):
        await task_store.mark_submitted(db, task_id=second["id"], upstream_id=upstream, **args)
    row = await task_store.get_task(db, task_id=second["id"])
    assert row is not None and row.upstream_id is None
    assert await task_store.upstream_holders(db, upstream_ids=[upstream, "up_nobody"]) == {upstream: first["id"]}


async def test_a_submit_lease_guards_the_attempts_and_is_never_shortened(db: AsyncEngine) -> None:
    now = time.time()
    values = task_values("key_" + secrets.token_hex(4), lease_owner="submitter", lease_until=now + 120)
    values["next_poll_at"] = now + 120
    await task_store.insert_task(db, values)
    attempt = {"channel": "local", "at": now, "state": "sending"}
    args = {"channel": "local", "provider": "local", "credentials": {"channel": "local"}, "attempts": [attempt]}
    assert not await task_store.begin_attempt(db, task_id=values["id"], owner="someone-else", **args)
    assert await task_store.begin_attempt(db, task_id=values["id"], owner="submitter", **args)
    # A poller's short renewal does not cut a submitter's longer lease.
    assert await task_store.extend_lease(db, task_id=values["id"], owner="submitter", until=now + 10)
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.lease_until == now + 120 and row.attempts == [attempt]
    assert await task_store.extend_lease(db, task_id=values["id"], owner="submitter", until=now + 200)
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.lease_until == now + 200
    # Due, but leased: nobody claims it before the lease ends.
    claimed = await task_store.claim_due(db, owner="poller", now=now + 150, limit=1000, lease_s=10)
    assert values["id"] not in {row.id for row in claimed}
    cancelled = await task_store.finish(db, task_id=values["id"], status=TaskStatus.CANCELLED)
    assert cancelled and not await task_store.begin_attempt(db, task_id=values["id"], owner="submitter", **args)


async def test_an_idempotency_key_is_claimed_with_its_task_once(db: AsyncEngine) -> None:
    key_id = "key_" + secrets.token_hex(4)
    attempts = [task_values(key_id) for _ in range(4)]
    written = await asyncio.gather(
        *(task_store.insert_task(db, values, idempotency=("retry-1", "f" * 64)) for values in attempts)
    )
    assert sorted(written) == [False, False, False, True]
    (winner,) = [values for values, ok in zip(attempts, written, strict=True) if ok]
    claim = await idempotency_store.find(db, key_id=key_id, idem_key="retry-1", since=0)
    assert claim is not None and claim.task_id == winner["id"] and claim.fingerprint == "f" * 64
    for values, ok in zip(attempts, written, strict=True):
        assert (await task_store.get_task(db, task_id=values["id"]) is not None) == ok
    # Too old: ignored (and dropped), so the key can be claimed again.
    assert await idempotency_store.find(db, key_id=key_id, idem_key="retry-1", since=time.time() + 1) is None
    assert await task_store.insert_task(db, task_values(key_id), idempotency=("retry-1", "e" * 64))
