"""One client request is at most one upstream task: the submit's lease, reconciliation of unknown outcomes,
lost races and Idempotency-Key, decided in-process with a scripted provider and an injected clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import SHARED_DB_SECRET
from vidgate.auth import KeyRing
from vidgate.config import Settings
from vidgate.engine.health import ChannelHealth
from vidgate.engine.idempotency import Idempotency
from vidgate.engine.normalize import RawCreate
from vidgate.engine.poller import Poller
from vidgate.engine.submit import NO_UPSTREAM, Submitter
from vidgate.errors import (
    Conflict,
    IdempotencyKeyReused,
    NotSupported,
    UpstreamFailure,
    UpstreamTransient,
    UpstreamUnavailable,
)
from vidgate.providers.base import (
    UPSTREAM_TASK_LOST,
    Credentials,
    ModelSpec,
    Progress,
    Provider,
    Submitted,
    VideoRequest,
)
from vidgate.providers.registry import Channel, Registry
from vidgate.status import TaskStatus
from vidgate.store import tasks as task_store
from vidgate.store.db import create_engine, migrate
from vidgate.store.keys import KeyRecord
from vidgate.store.tables import idempotency_keys, ledger, tasks
from vidgate.store.tasks import TaskRow

MODEL = "fake-video"
SPEC = ModelSpec(
    name=MODEL,
    provider="scripted",
    modes=frozenset({"t2v"}),
    seconds=(4,),
    default_seconds=4,
    sizes=("1280x720",),
    default_size="1280x720",
    price=Decimal(0),
)


class Clock:
    """Wall time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Scripted(Provider):
    """An upstream whose every answer the test decides, per channel.

    Submit outcomes, taken in order per channel: "ok" (a task is made and its id answered), "lost" (a task
    is made, then the answer is lost: a timeout), "timeout" (nothing is made, and no answer), "429" (refused),
    "hang" (a task is made, then the call waits for `gate`, then answers), "hang_lost" (the same, but the
    answer is lost), "hang_before" (waits for `gate`, then makes a task and answers). `find` lists what was
    made on the channel, or does what `find_mode` says.
    """

    name = "scripted"
    script: dict[str, list[str]] = field(default_factory=dict)
    find_mode: list[str] = field(default_factory=list)  # per call: "list", "unsupported", "fail"
    calls: list[tuple[str, str]] = field(default_factory=list)
    made: dict[str, list[str]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    can_cancel: bool = True
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    def models(self) -> list[ModelSpec]:
        return [SPEC]

    def _make(self, channel: str) -> str:
        upstream_id = f"{channel}-up-{sum(len(ids) for ids in self.made.values()) + 1}"
        self.made.setdefault(channel, []).append(upstream_id)
        return upstream_id

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        self.calls.append(("submit", creds.channel))
        outcome = self.script[creds.channel].pop(0)
        if outcome == "429":
            raise UpstreamTransient("429 too many", status=429)
        if outcome == "timeout":
            raise UpstreamTransient("POST http://upstream.invalid/v1/videos: timed out")
        if outcome == "hang_before":
            self.entered.set()
            await self.gate.wait()
        upstream_id = self._make(creds.channel)
        if outcome in ("hang", "hang_lost"):
            self.entered.set()
            await self.gate.wait()
        if outcome in ("lost", "hang_lost"):
            raise UpstreamTransient("POST http://upstream.invalid/v1/videos: timed out")
        return Submitted(upstream_id=upstream_id)

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        self.calls.append(("find", creds.channel))
        mode = self.find_mode.pop(0) if self.find_mode else "list"
        if mode == "unsupported":
            raise NotSupported("scripted cannot look")
        if mode == "fail":
            raise UpstreamTransient("list: 500")
        return list(self.made.get(creds.channel, []))

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        self.calls.append(("cancel", creds.channel))
        if not self.can_cancel:
            raise NotSupported("scripted cannot cancel")
        self.cancelled.append(upstream_id)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        return Progress(state="queued")

    def count(self, what: str) -> int:
        return sum(1 for kind, _ in self.calls if kind == what)


@dataclass
class Rig:
    db: AsyncEngine
    clock: Clock
    provider: Scripted
    submitter: Submitter
    poller: Poller
    key: KeyRecord

    async def rows(self) -> list[TaskRow]:
        """Every task that was not deleted."""
        async with self.db.connect() as conn:
            query = sa.select(tasks.c.id).where(tasks.c.key_id == self.key.id).order_by(tasks.c.seq)
            ids = (await conn.execute(query)).scalars().all()
        found = [await task_store.get_task(self.db, task_id=task_id) for task_id in ids]
        return [row for row in found if row is not None]

    async def claim(self, after: float) -> list[TaskRow]:
        """What a poller claims `after` seconds from now (by the injected clock)."""
        return await task_store.claim_due(
            self.db, owner=self.poller.owner, now=self.clock() + after, limit=100, lease_s=10
        )

    async def ledger(self) -> list[tuple[str, str]]:
        async with self.db.connect() as conn:
            found = await conn.execute(sa.select(ledger).where(ledger.c.key_id == self.key.id).order_by(ledger.c.id))
            return [(row.task_id, row.kind) for row in found.all()]


def raw(prompt: str = "a harbour at dawn") -> RawCreate:
    return RawCreate(prompt=prompt, model=MODEL)


async def build(
    database_url: str,
    tmp_path: Path,
    *,
    channels: tuple[str, ...] = ("a", "b"),
    timeout: float = 60.0,
    rounds: int = 1,
) -> Rig:
    await asyncio.to_thread(migrate, database_url, secret=SHARED_DB_SECRET)
    db = create_engine(database_url, secret=SHARED_DB_SECRET)
    clock = Clock()
    settings = Settings(
        database_url=database_url,
        media_dir=tmp_path / "media",
        local_enabled=False,
        submit_timeout_s=timeout,
        submit_rounds=rounds,
        prices={MODEL: Decimal("0.1")},
    )
    provider = Scripted()
    registry = Registry(
        {"scripted": provider},
        [
            Channel(name=name, provider="scripted", credentials=Credentials(channel=name), priority=rank)
            for rank, name in enumerate(channels)
        ],
    )
    health = ChannelHealth(db, threshold=100, cooldown_s=30)
    submitter = Submitter(
        settings=settings, db=db, registry=registry, http=httpx.AsyncClient(), health=health, clock=clock
    )
    poller = Poller(settings=settings, db=db, registry=registry, submitter=submitter)
    _, key = await KeyRing(db).create(name="tester")
    return Rig(db=db, clock=clock, provider=provider, submitter=submitter, poller=poller, key=key)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    yield made
    await made.db.dispose()


async def test_a_submit_in_flight_holds_the_lease_and_the_poller_does_not_claim_it(rig: Rig) -> None:
    rig.provider.script = {"a": ["hang"]}
    creating = asyncio.create_task(rig.submitter.create(rig.key, raw()))
    await rig.provider.entered.wait()
    (row,) = await rig.rows()
    assert row.upstream_id is None and row.lease_owner == rig.submitter.owner
    assert row.attempts == [{"channel": "a", "at": rig.clock(), "state": "sending"}]
    # 45 s on (past the old 30 s "submit grace"), and at the very end of the lease: nothing to claim.
    assert await rig.claim(after=45) == []
    assert await rig.claim(after=rig.submitter.lease_s - 0.01) == []
    # The poller's sleep waits for the lease, instead of spinning on a due row it may not take.
    assert await task_store.next_due(rig.db) == pytest.approx(rig.clock() + rig.submitter.lease_s)
    rig.provider.gate.set()
    created = await creating
    assert created.upstream_id == "a-up-1" and created.lease_owner is None
    assert rig.provider.calls == [("submit", "a")]
    # Now it is polled (not resubmitted): the poller reads it and the upstream is asked nothing new.
    (claimed,) = await rig.claim(after=1)
    await rig.poller.advance(claimed)
    assert rig.provider.calls == [("submit", "a")]


async def test_the_lease_is_renewed_while_the_submit_runs(tmp_path: Path) -> None:
    rig = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, timeout=0.4)  # lease 0.8 s, renewed each 0.2 s
    try:
        rig.provider.script = {"a": ["hang"]}
        creating = asyncio.create_task(rig.submitter.create(rig.key, raw()))
        await rig.provider.entered.wait()
        rig.clock.advance(60)  # long past the lease the row was written with
        await asyncio.sleep(0.3)  # one heartbeat (the lease's own period; no lease is waited out)
        assert await rig.claim(after=0) == []
        rig.provider.gate.set()
        await creating
    finally:
        await rig.db.dispose()


async def test_an_unknown_outcome_is_looked_up_and_adopted_before_any_resubmit(rig: Rig) -> None:
    rig.provider.script = {"a": ["lost"], "b": ["ok"]}
    created = await rig.submitter.create(rig.key, raw())
    assert rig.provider.calls == [("submit", "a"), ("find", "a")]
    assert created.upstream_id == "a-up-1" and created.channel == "a"
    (attempt,) = created.attempts or []
    assert attempt["state"] == "unknown" and attempt["lookup"] == "found" and attempt["upstream_id"] == "a-up-1"
    assert await rig.ledger() == [(created.id, "reserve")]


async def test_an_unknown_outcome_found_absent_fails_over(rig: Rig) -> None:
    rig.provider.script = {"a": ["timeout"], "b": ["ok"]}
    created = await rig.submitter.create(rig.key, raw())
    assert rig.provider.calls == [("submit", "a"), ("find", "a"), ("submit", "b")]
    assert created.upstream_id == "b-up-1" and created.channel == "b"
    assert [a.get("lookup") for a in created.attempts or []] == ["absent", None]


async def test_a_refusal_is_not_looked_up(rig: Rig) -> None:
    rig.provider.script = {"a": ["429"], "b": ["ok"]}
    created = await rig.submitter.create(rig.key, raw())
    assert rig.provider.calls == [("submit", "a"), ("submit", "b")]
    assert [a["state"] for a in created.attempts or []] == ["refused", "accepted"]


async def test_a_provider_that_cannot_look_resubmits_and_records_the_possible_orphan(rig: Rig) -> None:
    rig.provider.script = {"a": ["lost"], "b": ["ok"]}
    rig.provider.find_mode = ["unsupported"]
    created = await rig.submitter.create(rig.key, raw())
    assert rig.provider.calls == [("submit", "a"), ("find", "a"), ("submit", "b")]
    first, second = created.attempts or []
    assert first["possible_orphan"] is True and first["lookup"] == "cannot_look"
    assert second["upstream_id"] == created.upstream_id == "b-up-2"


async def test_a_failed_lookup_hands_the_row_to_the_poller_which_looks_again(rig: Rig) -> None:
    rig.provider.script = {"a": ["lost"], "b": ["ok"]}
    rig.provider.find_mode = ["fail", "list"]
    created = await rig.submitter.create(rig.key, raw())
    # The client gets its task (queued); nothing more was sent anywhere.
    assert created.status == TaskStatus.QUEUED and created.upstream_id is None and created.lease_owner is None
    assert rig.provider.calls == [("submit", "a"), ("find", "a")]
    assert await rig.claim(after=0) == []  # not at once: it backs off
    (claimed,) = await rig.claim(after=5)
    await rig.poller.advance(claimed)
    assert rig.provider.calls == [("submit", "a"), ("find", "a"), ("find", "a")]
    (row,) = await rig.rows()
    assert row.upstream_id == "a-up-1" and sum(len(ids) for ids in rig.provider.made.values()) == 1


async def test_a_crashed_submit_is_reconciled_by_the_poller_once_its_lease_lapses(rig: Rig) -> None:
    rig.provider.script = {"a": ["hang"], "b": ["ok"]}
    # The submitting process stalls for good after its call went out (as if killed).
    creating = asyncio.create_task(rig.submitter.create(rig.key, raw()))
    await rig.provider.entered.wait()
    assert await rig.claim(after=rig.submitter.lease_s - 1) == []
    (claimed,) = await rig.claim(after=rig.submitter.lease_s + 1)
    await rig.poller.advance(claimed)
    assert rig.provider.calls == [("submit", "a"), ("find", "a")]
    (row,) = await rig.rows()
    assert row.upstream_id == "a-up-1" and row.attempts is not None
    assert row.attempts[-1]["lookup"] == "found"
    # The stalled call answers at last, with the task the poller adopted: nothing is cancelled.
    rig.provider.gate.set()
    assert (await creating).upstream_id == "a-up-1"
    assert rig.provider.cancelled == [] and rig.provider.count("submit") == 1


async def test_a_stalled_submit_finds_its_task_adopted_by_the_poller(rig: Rig) -> None:
    rig.provider.script = {"a": ["hang_lost"], "b": ["ok"]}
    creating = asyncio.create_task(rig.submitter.create(rig.key, raw()))
    await rig.provider.entered.wait()
    (claimed,) = await rig.claim(after=rig.submitter.lease_s + 1)
    await rig.poller.advance(claimed)
    # The stalled call times out at last; its own lookup sees the task already on this row: no failover.
    rig.provider.gate.set()
    created = await creating
    assert created.upstream_id == "a-up-1" and created.status == TaskStatus.QUEUED
    assert rig.provider.calls == [("submit", "a"), ("find", "a"), ("find", "a")]


async def test_a_crash_before_the_call_went_out_is_resubmitted_once(rig: Rig) -> None:
    rig.provider.script = {"a": ["hang_before", "ok"], "b": ["ok"]}
    creating = asyncio.create_task(rig.submitter.create(rig.key, raw()))
    await rig.provider.entered.wait()
    (claimed,) = await rig.claim(after=rig.submitter.lease_s + 1)
    await rig.poller.advance(claimed)
    # Looked first (nothing there), then sent again.
    assert rig.provider.calls == [("submit", "a"), ("find", "a"), ("submit", "a")]
    (row,) = await rig.rows()
    assert row.upstream_id == "a-up-1"
    # The stalled call goes through after all: the row is taken, so that upstream task is cancelled; the
    # client gets the task the poller carried on.
    rig.provider.gate.set()
    assert (await creating).upstream_id == "a-up-1"
    assert rig.provider.cancelled == ["a-up-2"]
    (row,) = await rig.rows()
    assert row.upstream_id == "a-up-1" and row.attempts is not None
    assert row.attempts[0]["state"] == "lost_race" and row.attempts[0]["cancelled"] is True


async def test_a_submit_that_loses_to_a_cancel_cancels_its_upstream_task(rig: Rig) -> None:
    rig.provider.script = {"a": ["hang"]}
    creating = asyncio.create_task(rig.submitter.create(rig.key, raw()))
    await rig.provider.entered.wait()
    (row,) = await rig.rows()
    await rig.submitter.cancel(row, rig.key)
    rig.provider.gate.set()
    with pytest.raises(Conflict):
        await creating
    assert rig.provider.cancelled == ["a-up-1"]
    (row,) = await rig.rows()
    assert row.status == TaskStatus.CANCELLED and row.upstream_id is None
    assert row.attempts is not None and row.attempts[-1]["state"] == "lost_race"
    assert sorted(kind for _, kind in await rig.ledger()) == ["refund", "reserve"]


async def test_a_lost_race_is_recorded_where_the_upstream_cannot_cancel(rig: Rig) -> None:
    rig.provider.script = {"a": ["hang"]}
    rig.provider.can_cancel = False
    creating = asyncio.create_task(rig.submitter.create(rig.key, raw()))
    await rig.provider.entered.wait()
    (row,) = await rig.rows()
    await rig.submitter.delete(row)
    rig.provider.gate.set()
    with pytest.raises(Conflict):
        await creating
    assert ("cancel", "a") in rig.provider.calls and rig.provider.cancelled == []
    async with rig.db.connect() as conn:
        (attempts,) = (await conn.execute(sa.select(tasks.c.attempts))).one()
    assert attempts[-1] | {"at": 0} == {
        "channel": "a",
        "at": 0,
        "state": "lost_race",
        "upstream_id": "a-up-1",
        "cancelled": False,
        "possible_orphan": True,
    }


async def test_the_whole_submit_has_a_deadline_and_the_503_names_no_channel(tmp_path: Path) -> None:
    rig = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, timeout=0.2)
    try:
        rig.provider.script = {"a": ["hang_before"], "b": ["hang_before"]}
        with pytest.raises(UpstreamUnavailable) as info:
            await rig.submitter.create(rig.key, raw())
        # Neither answered: each call was cut at its share of the deadline and looked up (nothing made), so b
        # was still asked after a hung a; then no time was left for another round.
        assert rig.provider.calls == [("submit", "a"), ("find", "a"), ("submit", "b"), ("find", "b")]
        assert info.value.message == NO_UPSTREAM and "http" not in NO_UPSTREAM
        async with rig.db.connect() as conn:
            (attempts,) = (await conn.execute(sa.select(tasks.c.attempts))).one()
        assert [a["state"] for a in attempts] == ["unknown", "unknown"]
        assert all("deadline" in a["error"] and a["lookup"] == "absent" for a in attempts)
    finally:
        await rig.db.dispose()


async def test_unavailable_message_keeps_upstream_texts_on_the_row_only(rig: Rig) -> None:
    rig.provider.script = {"a": ["429"], "b": ["timeout"]}
    with pytest.raises(UpstreamUnavailable) as info:
        await rig.submitter.create(rig.key, raw())
    assert info.value.message == NO_UPSTREAM and info.value.status == 503
    async with rig.db.connect() as conn:
        (attempts, deleted) = (await conn.execute(sa.select(tasks.c.attempts, tasks.c.deleted_at))).one()
    assert deleted is not None
    assert "upstream.invalid" in attempts[1]["error"] and attempts[1]["lookup"] == "absent"


# -- Idempotency-Key ------------------------------------------------------------------------------------------


def idem(key: str, body: str) -> Idempotency:
    return Idempotency(key=key, fingerprint=body.ljust(64, "0"))


@pytest.fixture
async def rig_any_db(database_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    made = await build(database_url, tmp_path)
    yield made
    await made.db.dispose()


async def test_concurrent_duplicates_make_one_task(rig_any_db: Rig) -> None:
    rig = rig_any_db
    rig.provider.script = {"a": ["ok"] * 5}
    made = await asyncio.gather(*(rig.submitter.create(rig.key, raw(), idempotency=idem("k1", "x")) for _ in range(5)))
    assert len({row.id for row in made}) == 1 and made[0].upstream_id == "a-up-1"
    assert rig.provider.count("submit") == 1
    assert [kind for _, kind in await rig.ledger()] == ["reserve"]
    assert len(await rig.rows()) == 1


async def test_same_key_other_body_is_refused_and_nothing_is_sent(rig: Rig) -> None:
    rig.provider.script = {"a": ["ok", "ok"]}
    first = await rig.submitter.create(rig.key, raw(), idempotency=idem("k1", "x"))
    again = await rig.submitter.create(rig.key, raw(), idempotency=idem("k1", "x"))
    assert again.id == first.id
    with pytest.raises(IdempotencyKeyReused) as info:
        await rig.submitter.create(rig.key, raw("another"), idempotency=idem("k1", "y"))
    assert info.value.status == 409 and info.value.code == "idempotency_key_reused"
    assert rig.provider.count("submit") == 1
    # Another API key has its own namespace.
    _, other = await KeyRing(rig.db).create(name="other")
    assert (await rig.submitter.create(other, raw(), idempotency=idem("k1", "x"))).id != first.id


async def test_a_failed_first_request_does_not_pin_the_key(rig: Rig) -> None:
    rig.provider.script = {"a": ["429", "ok"], "b": ["429"]}
    with pytest.raises(UpstreamUnavailable):
        await rig.submitter.create(rig.key, raw(), idempotency=idem("k1", "x"))
    created = await rig.submitter.create(rig.key, raw(), idempotency=idem("k1", "x"))
    assert created.upstream_id == "a-up-1"
    assert (await rig.submitter.create(rig.key, raw(), idempotency=idem("k1", "x"))).id == created.id


async def test_keys_older_than_a_day_are_ignored_and_swept(rig: Rig) -> None:
    rig.provider.script = {"a": ["ok", "ok"]}
    first = await rig.submitter.create(rig.key, raw(), idempotency=idem("k1", "x"))
    rig.clock.advance(24 * 3600 + 1)
    second = await rig.submitter.create(rig.key, raw("new body"), idempotency=idem("k1", "y"))
    assert second.id != first.id
    async with rig.db.begin() as conn:
        await conn.execute(idempotency_keys.update().values(created_at=time.time() - 25 * 3600))
    await rig.poller.sweep()
    async with rig.db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(idempotency_keys))).scalar() == 0


async def test_refusals_are_asked_again_in_later_rounds_within_the_deadline(tmp_path: Path) -> None:
    rig = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, rounds=3)
    rig.submitter.round_pause_s = 0.01
    try:
        # Round 1: a refuses, b's call times out and its lookup finds nothing made; round 2: a takes it.
        rig.provider.script = {"a": ["429", "ok"], "b": ["timeout"]}
        created = await rig.submitter.create(rig.key, raw())
        assert created.upstream_id == "a-up-1"
        assert rig.provider.calls == [("submit", "a"), ("submit", "b"), ("find", "b"), ("submit", "a")]
        assert [a["state"] for a in created.attempts or []] == ["refused", "unknown", "accepted"]
        # Every round refused: the client's 503 comes after the last one, and nothing was made anywhere.
        rig.provider.calls.clear()
        rig.provider.script = {"a": ["429"] * 3, "b": ["429"] * 3}
        with pytest.raises(UpstreamUnavailable):
            await rig.submitter.create(rig.key, raw("another"))
        assert rig.provider.count("submit") == 6 and sum(len(ids) for ids in rig.provider.made.values()) == 1
    finally:
        await rig.db.dispose()


async def test_a_channel_that_may_hold_an_orphan_is_not_asked_again_in_later_rounds(tmp_path: Path) -> None:
    rig = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, channels=("a",), rounds=3)
    rig.submitter.round_pause_s = 0.01
    try:
        # The call's outcome is unknown and the upstream cannot be asked: one possible orphan, never three.
        rig.provider.script = {"a": ["lost", "ok", "ok"]}
        rig.provider.find_mode = ["unsupported"]
        with pytest.raises(UpstreamUnavailable):
            await rig.submitter.create(rig.key, raw())
        assert rig.provider.calls == [("submit", "a"), ("find", "a")]
        assert sum(len(ids) for ids in rig.provider.made.values()) == 1
    finally:
        await rig.db.dispose()


async def test_no_further_round_when_the_deadline_would_pass(tmp_path: Path) -> None:
    rig = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, rounds=3, timeout=0.5)
    rig.submitter.round_pause_s = 0.4  # a second round would start past the deadline
    try:
        rig.provider.script = {"a": ["429"], "b": ["429"]}
        with pytest.raises(UpstreamUnavailable):
            await rig.submitter.create(rig.key, raw())
        assert rig.provider.count("submit") == 2
    finally:
        await rig.db.dispose()


@dataclass
class Forgetful(Scripted):
    """Accepts every task, then answers each read with the next of `reads` ("unknown" or "running")."""

    reads: list[str] = field(default_factory=list)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        if self.reads.pop(0) == "unknown":
            lost = UpstreamFailure("Scripted", note="no such task")
            return Progress.failed(UPSTREAM_TASK_LOST, lost)
        return Progress(state="in_progress", progress=10)


async def test_a_task_the_upstream_forgets_is_failed_only_when_that_repeats(tmp_path: Path) -> None:
    rig = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    forgetful = Forgetful(script={"a": ["ok"]})
    rig.submitter._registry.providers["scripted"] = forgetful
    rig.poller._registry.providers["scripted"] = forgetful
    try:
        created = await rig.submitter.create(rig.key, raw())
        # unknown, unknown, a good read (the count starts over), then three unknowns in a row.
        forgetful.reads = ["unknown", "unknown", "running", "unknown", "unknown", "unknown"]
        states = []
        for _ in range(6):
            (claimed,) = await rig.claim(after=3600)
            await rig.poller.advance(claimed)
            row = await task_store.get_task(rig.db, task_id=created.id)
            assert row is not None
            states.append(row.status)
        assert (
            states[:5] == [TaskStatus.QUEUED, TaskStatus.QUEUED, TaskStatus.IN_PROGRESS] + [TaskStatus.IN_PROGRESS] * 2
        )
        assert states[5] == TaskStatus.FAILED and row.error_code == UPSTREAM_TASK_LOST
        assert await rig.ledger() == [(created.id, "reserve"), (created.id, "refund")]
    finally:
        await rig.db.dispose()


@dataclass
class ScriptedElsewhere(Scripted):
    """The same public model from another provider (as gemini and vertex both serve veo)."""

    name = "scripted_elsewhere"
    checked: list[str] = field(default_factory=list)

    def models(self) -> list[ModelSpec]:
        return [replace(SPEC, provider=self.name)]

    def check(self, req: VideoRequest) -> None:
        self.checked.append(req.model)


async def test_a_model_of_two_providers_fails_over_from_one_to_the_other(tmp_path: Path) -> None:
    rig = await build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    try:
        other = ScriptedElsewhere()
        registry = Registry(
            {"scripted": rig.provider, "scripted_elsewhere": other},
            [
                Channel(name="a", provider="scripted", credentials=Credentials(channel="a"), priority=0),
                Channel(name="b", provider="scripted_elsewhere", credentials=Credentials(channel="b"), priority=1),
            ],
        )
        submitter = Submitter(
            settings=rig.submitter._settings,
            db=rig.db,
            registry=registry,
            http=httpx.AsyncClient(),
            health=rig.submitter.health,
            clock=rig.clock,
        )
        rig.provider.script = {"a": ["429"]}
        other.script = {"b": ["ok"]}
        row = await submitter.create(rig.key, raw())
        assert (row.channel, row.provider, row.upstream_id) == ("b", "scripted_elsewhere", "b-up-1")
        assert rig.provider.calls == [("submit", "a")] and other.calls == [("submit", "b")]
        assert other.checked == [MODEL]  # validated for every provider that may serve it
    finally:
        await rig.db.dispose()
