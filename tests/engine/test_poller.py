"""The lean poller's decisions, in-process with a fake provider and an injected clock: what a claim reads,
how a tick's readings are written, when a task is read next (learned durations), and callback wake-ups."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.base import make_mp4
from tests.helpers import PG_ADMIN_URL, SHARED_DB_SECRET, pg_reachable
from vidgate import media
from vidgate.auth import KeyRing
from vidgate.config import Settings
from vidgate.engine import poller as poller_module
from vidgate.engine import schedule
from vidgate.engine.callbacks import CallbackSigner
from vidgate.engine.health import ChannelHealth
from vidgate.engine.poller import Poller
from vidgate.engine.schedule import DENSE_S, Durations, next_poll_in, poll_delay
from vidgate.engine.submit import Submitter
from vidgate.providers.base import Credentials, ModelSpec, Progress, Provider, Submitted, VideoRequest
from vidgate.providers.registry import Channel, Registry
from vidgate.status import TaskStatus
from vidgate.store import tasks as task_store
from vidgate.store.db import create_engine, migrate
from vidgate.store.keys import KeyRecord
from vidgate.store.tables import ledger, tasks

MODEL = "timed-video"
SPEC = ModelSpec(
    name=MODEL,
    provider="timed",
    modes=frozenset({"t2v"}),
    seconds=(4,),
    default_seconds=4,
    sizes=("1280x720",),
    default_size="1280x720",
    poll_hint_ms=5000,
    price=Decimal("0.1"),
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Timed(Provider):
    """An upstream whose tasks are "in_progress" until the test says otherwise; it counts its reads."""

    name = "timed"
    accepts_callback = True
    reads: list[str] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)

    def models(self) -> list[ModelSpec]:
        return [SPEC]

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        raise AssertionError("these tests insert submitted rows")

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        self.cancelled.append(upstream_id)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        self.reads.append(upstream_id)
        state = self.states.get(upstream_id, "in_progress")
        if state == "failed":
            return Progress(state="failed", error_code="generation_failed", error_message="no")
        return Progress(state="in_progress", progress=40)


@dataclass
class Rig:
    db: AsyncEngine
    clock: Clock
    provider: Timed
    poller: Poller
    key: KeyRecord
    statements: list[str]
    commits: list[float]

    async def add(self, task_id: str, *, age: float = 0.0, due_in: float = 0.0, provider: str = "timed") -> None:
        now = self.clock()
        values: dict[str, Any] = {
            "id": task_id,
            "key_id": self.key.id,
            "model": MODEL,
            "provider": provider,
            "channel": "main",
            "upstream_id": f"up-{task_id}",
            "credentials": Credentials(channel="main").to_json(),
            "status": TaskStatus.QUEUED.value,
            "progress": 0,
            "prompt": "a harbour",
            "seconds": 4,
            "size": "1280x720",
            "request": {"big": "x" * 1000},
            "created_at": now - age,
            "updated_at": now,
            "deadline_at": now + 3600,
            "next_poll_at": now + due_in,
            "price_micros": 100_000,
        }
        assert await task_store.insert_task(self.db, values)

    async def row(self, task_id: str) -> task_store.TaskRow:
        found = await task_store.get_task(self.db, task_id=task_id)
        assert found is not None
        return found

    async def settle(self) -> None:
        """Wait for every poll this tick started, and their writes."""
        while self.poller._inflight:
            await asyncio.gather(*list(self.poller._inflight))


@pytest.fixture(params=["sqlite", "postgres"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    """A poller on its own database: SQLite, or a fresh PostgreSQL database (its claims see every row)."""
    if request.param == "postgres":
        if not await asyncio.to_thread(pg_reachable):
            pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        name = f"vidgate_poller_{secrets.token_hex(4)}"
        await _pg_admin(f'CREATE DATABASE "{name}"')
        try:
            async for made in _rig(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", tmp_path):
                yield made
        finally:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        async for made in _rig(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path):
            yield made


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _rig(url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    await asyncio.to_thread(migrate, url, secret=SHARED_DB_SECRET)
    db = create_engine(url, secret=SHARED_DB_SECRET)
    clock = Clock()
    settings = Settings(
        database_url=url,
        media_dir=tmp_path / "media",
        local_enabled=False,
        prices={MODEL: Decimal("0.1")},
        secret=SHARED_DB_SECRET,
    )
    provider = Timed()
    registry = Registry({"timed": provider}, [Channel(name="main", provider="timed", credentials=Credentials("main"))])
    health = ChannelHealth(db, threshold=100, cooldown_s=30)
    submitter = Submitter(settings=settings, db=db, registry=registry, http=httpx.AsyncClient(), health=health)
    poller = Poller(settings=settings, db=db, registry=registry, submitter=submitter, clock=clock)
    _, key = await KeyRing(db).create(name="tester")
    statements: list[str] = []
    commits: list[float] = []
    sa.event.listen(db.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    sa.event.listen(db.sync_engine, "commit", lambda conn: commits.append(time.monotonic()))
    yield Rig(db, clock, provider, poller, key, statements, commits)
    await db.dispose()


# -- the schedule (pure) ----------------------------------------------------------------------------------------


def test_without_learned_durations_reads_thin_out_as_before() -> None:
    for polls in (0, 3, 12):
        assert next_poll_in(age=10, polls=polls, base_s=5, window=None) == poll_delay(polls, 5)


def test_reads_are_sparse_until_the_earliest_completion_nears_then_dense_then_thin_out() -> None:
    window = (57.0, 63.0)  # p2, p90 of the model's durations on this channel
    opens = 57.0 * schedule.EARLY_MARGIN
    # Far from it: the next read is at most MAX_POLL_INTERVAL_S away, and never past the window's opening.
    assert next_poll_in(age=0.2, polls=0, base_s=5, window=window) == schedule.MAX_POLL_INTERVAL_S
    assert next_poll_in(age=40, polls=2, base_s=5, window=window) == pytest.approx(opens - 40)
    # Inside the window: every DENSE_S (or the model's hint, when that is shorter).
    assert next_poll_in(age=opens, polls=3, base_s=5, window=window) == DENSE_S
    assert next_poll_in(age=62, polls=6, base_s=5, window=window) == DENSE_S
    assert next_poll_in(age=62, polls=6, base_s=0.5, window=window) == 0.5
    # Late (past 1.5 x p90): reads thin out with how late it is, up to the cap.
    late = 63.0 * schedule.OVERDUE_FACTOR
    assert DENSE_S < next_poll_in(age=late + 20, polls=9, base_s=5, window=window) < 5
    assert next_poll_in(age=late + 10_000, polls=99, base_s=5, window=window) == schedule.MAX_POLL_INTERVAL_S
    # An upstream that calls back: the dense reads are only a fallback.
    called = next_poll_in(age=62, polls=6, base_s=5, window=window, called_back=True)
    assert called == DENSE_S * schedule.CALLBACK_SPARSE_FACTOR


def test_a_sixty_second_task_costs_a_handful_of_reads() -> None:
    window = (57.0, 63.0)
    age, polls = 0.2, 0
    while age < 60.0:
        age += next_poll_in(age=age, polls=polls, base_s=5, window=window)
        polls += 1
    assert polls <= 6  # 0.2 s, 30.2 s, the window's opening, then every 2 s up to 60 s
    assert age - 60.0 <= DENSE_S


def test_durations_need_a_few_samples_and_keep_the_recent_ones() -> None:
    durations = Durations(kept=20)
    for seconds in (50.0, 60.0, 70.0, 55.0):
        durations.add("main", MODEL, seconds)
    assert durations.window("main", MODEL) is None
    durations.add("main", MODEL, 65.0)
    assert durations.window("main", MODEL) == (50.0, 70.0)
    assert durations.window("other", MODEL) is None
    for _ in range(20):
        durations.add("main", MODEL, 30.0)  # the model got faster: the old samples age out
    assert durations.window("main", MODEL) == (30.0, 30.0)
    durations.replace([("main", MODEL, 10.0)] * 5)
    assert durations.window("main", MODEL) == (10.0, 10.0)


# -- claims and writes ------------------------------------------------------------------------------------------


async def test_a_tick_claims_lean_rows_and_writes_its_readings_in_one_transaction(rig: Rig) -> None:
    for number in range(20):
        await rig.add(f"video_{number}")
    rig.statements.clear()
    rig.commits.clear()
    await rig.poller._tick()
    await rig.settle()
    assert len(rig.provider.reads) == 20
    (claim,) = [sql for sql in rig.statements if "RETURNING" in sql]
    assert "request" not in claim and "attempts" not in claim
    # The claim is one transaction and the 20 readings another.
    assert len(rig.commits) == 2
    for number in range(20):
        row = await rig.row(f"video_{number}")
        assert (row.status, row.progress, row.polls, row.lease_owner) == (TaskStatus.IN_PROGRESS, 40, 1, None)


async def test_a_failed_read_is_stored_with_the_others_and_keeps_its_lease_rules(rig: Rig) -> None:
    await rig.add("video_ok")
    await rig.add("video_taken")
    (first, second) = await task_store.claim_polls(rig.db, owner=rig.poller.owner, now=rig.clock(), limit=9, lease_s=10)
    # Another poller took one of the rows over (our lease lapsed): our reading of it must not land.
    async with rig.db.begin() as conn:
        await conn.execute(tasks.update().where(tasks.c.id == "video_taken").values(lease_owner="someone-else"))
    await asyncio.gather(rig.poller.advance(first), rig.poller._retry_later(second, "poll: 500"))
    ok, taken = await rig.row("video_ok"), await rig.row("video_taken")
    assert ok.polls == 1 and ok.lease_owner is None
    assert taken.polls == 0 and taken.lease_owner == "someone-else" and taken.last_poll_error is None


async def test_reads_follow_the_learned_duration_of_the_model_on_its_channel(rig: Rig) -> None:
    for seconds in (58.0, 59.0, 60.0, 61.0, 62.0):
        rig.poller.durations.add("main", MODEL, seconds)
    await rig.add("video_young", age=5)
    await rig.add("video_near", age=57)
    for row in await task_store.claim_polls(rig.db, owner=rig.poller.owner, now=rig.clock(), limit=9, lease_s=10):
        await rig.poller.advance(row)
    young, near = await rig.row("video_young"), await rig.row("video_near")
    assert young.next_poll_at == pytest.approx(rig.clock() + schedule.MAX_POLL_INTERVAL_S)
    assert near.next_poll_at == pytest.approx(rig.clock() + DENSE_S)


async def test_learning_rebuilds_durations_from_finished_rows(rig: Rig) -> None:
    for number, seconds in enumerate((40.0, 41.0, 42.0, 43.0, 44.0)):
        await rig.add(f"video_{number}", age=seconds)
        async with rig.db.begin() as conn:
            await conn.execute(
                tasks.update()
                .where(tasks.c.id == f"video_{number}")
                .values(status="completed", completed_at=rig.clock(), next_poll_at=None)
            )
    await rig.add("video_failed", age=500)  # unfinished and failed rows teach nothing
    await task_store.finish(rig.db, task_id="video_failed", status=TaskStatus.FAILED)
    await rig.poller.learn()
    window = rig.poller.durations.window("main", MODEL)
    assert window is not None and window[0] == pytest.approx(40.0) and window[1] == pytest.approx(44.0)


async def test_an_upstream_failure_is_a_compare_and_set_with_a_refund(rig: Rig) -> None:
    await rig.add("video_bad")
    rig.provider.states["up-video_bad"] = "failed"
    (row,) = await task_store.claim_polls(rig.db, owner=rig.poller.owner, now=rig.clock(), limit=9, lease_s=10)
    await asyncio.gather(rig.poller.advance(row), rig.poller.advance(row))
    assert (await rig.row("video_bad")).status == TaskStatus.FAILED
    async with rig.db.connect() as conn:
        kinds = (await conn.execute(sa.select(ledger.c.kind).where(ledger.c.task_id == "video_bad"))).scalars()
        assert sorted(kinds) == ["refund", "reserve"]


async def test_a_task_past_its_deadline_is_failed_refunded_and_cancelled_upstream(rig: Rig) -> None:
    await rig.add("video_late")
    (row,) = await task_store.claim_polls(rig.db, owner=rig.poller.owner, now=rig.clock(), limit=9, lease_s=10)
    rig.clock.now = row.deadline_at + 1
    await rig.poller.advance(row)
    late = await rig.row("video_late")
    assert (late.status, late.error_code) == (TaskStatus.FAILED, "deadline_exceeded")
    assert rig.provider.reads == [] and rig.provider.cancelled == ["up-video_late"]
    async with rig.db.connect() as conn:
        kinds = (await conn.execute(sa.select(ledger.c.kind).where(ledger.c.task_id == "video_late"))).scalars()
        assert sorted(kinds) == ["refund", "reserve"]


# -- callbacks --------------------------------------------------------------------------------------------------


def test_callback_signatures() -> None:
    signer = CallbackSigner("a-secret")
    sig = signer.sign("kling", "video_1")
    assert signer.verify("kling", "video_1", sig)
    assert not signer.verify("kling", "video_2", sig)  # another task's signature
    assert not signer.verify("vidu", "video_1", sig)  # another provider's
    assert not signer.verify("kling", "video_1", sig.upper())
    assert not signer.verify("kling", "video_1", "")
    assert not signer.verify("kling", "video_1", "²" * 64)
    assert not CallbackSigner("another-secret").verify("kling", "video_1", sig)
    url = signer.url("https://gw.example.com/", "kling", "video_1")
    assert url == f"https://gw.example.com/callbacks/kling/video_1?sig={sig}"


async def test_a_callback_claims_its_task_at_once_whatever_its_schedule(rig: Rig) -> None:
    await rig.add("video_cb", due_in=3600)
    await rig.add("video_other", due_in=3600)
    rig.poller.called_back("timed", "video_cb")
    await rig.poller._tick()
    await rig.settle()
    assert rig.provider.reads == ["up-video_cb"]
    assert not rig.poller._woken


async def test_callbacks_for_unknown_finished_or_foreign_tasks_change_nothing(rig: Rig) -> None:
    await rig.add("video_done", due_in=3600)
    await task_store.finish(rig.db, task_id="video_done", status=TaskStatus.COMPLETED)
    await rig.add("video_foreign", due_in=3600, provider="elsewhere")
    for task_id in ("video_done", "video_foreign", "video_nobody"):
        rig.poller.called_back("timed", task_id)
    before = {name: await task_store.get_task(rig.db, task_id=name) for name in ("video_done", "video_foreign")}
    await rig.poller._tick()
    await rig.settle()
    assert rig.provider.reads == [] and not rig.poller._woken
    for task_id, row in before.items():
        assert await task_store.get_task(rig.db, task_id=task_id) == row


async def test_replayed_callbacks_make_at_most_one_read_per_gap(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_module, "CALLBACK_GAP_S", 0.3)
    await rig.add("video_cb", due_in=3600)
    for _ in range(50):
        rig.poller.called_back("timed", "video_cb")
    await rig.poller._tick()
    await rig.settle()
    for _ in range(50):
        rig.poller.called_back("timed", "video_cb")
    await rig.poller._tick()
    await rig.settle()
    assert rig.provider.reads == ["up-video_cb"]
    # The calls within the gap were merged into one, taken when the gap ends: none is lost.
    await asyncio.sleep(0.35)
    await rig.poller._tick()
    await rig.settle()
    assert rig.provider.reads == ["up-video_cb"] * 2


async def test_a_callback_for_a_task_held_elsewhere_waits_for_the_lease(rig: Rig) -> None:
    await rig.add("video_busy", due_in=3600)
    async with rig.db.begin() as conn:
        await conn.execute(
            tasks.update()
            .where(tasks.c.id == "video_busy")
            .values(lease_owner="other-replica", lease_until=rig.clock() + 10)
        )
    rig.poller.called_back("timed", "video_busy")
    await rig.poller._tick()
    assert rig.provider.reads == [] and "video_busy" in rig.poller._woken
    # The other replica lets go (its reading may predate the upstream's change): this one reads it then.
    async with rig.db.begin() as conn:
        await conn.execute(tasks.update().where(tasks.c.id == "video_busy").values(lease_owner=None, lease_until=None))
    await rig.poller._tick()
    await rig.settle()
    assert rig.provider.reads == ["up-video_busy"]


def test_previews_in_one_pass_are_the_same_images(tmp_path: Path) -> None:
    video = tmp_path / "video.mp4"
    video.write_bytes(make_mp4(160, 90, seconds=2.0))
    media.make_thumbnail(str(video), str(tmp_path / "t1.webp"))
    media.make_spritesheet(str(video), str(tmp_path / "s1.jpg"))
    media.make_previews(str(video), str(tmp_path / "t2.webp"), str(tmp_path / "s2.jpg"))
    for one, two in (("t1.webp", "t2.webp"), ("s1.jpg", "s2.jpg")):
        with Image.open(tmp_path / one) as first, Image.open(tmp_path / two) as second:
            assert first.size == second.size and first.tobytes() == second.tobytes()
