"""The engine with S3 storage, in-process: a finished video and its previews are stored in the bucket at once,
a storage that does not answer leaves the task to be retried (nothing charged, nothing lost), and retention
deletes the objects."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import SHARED_DB_SECRET, free_port, png_bytes
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3
from vidgate.auth import KeyRing
from vidgate.config import Settings
from vidgate.engine.health import ChannelHealth
from vidgate.engine.normalize import RawCreate
from vidgate.engine.poller import Poller
from vidgate.engine.submit import Submitter
from vidgate.providers.base import Credentials, ModelSpec, Progress, Provider, Submitted, VideoRequest
from vidgate.providers.registry import Channel, Registry
from vidgate.render import RenderSpec, render
from vidgate.status import TaskStatus
from vidgate.storage import Storage
from vidgate.storage.s3 import S3Location, S3Storage
from vidgate.store import tasks as task_store
from vidgate.store.db import create_engine, migrate
from vidgate.store.keys import KeyRecord
from vidgate.store.tables import ledger, tasks

MODEL = "stored-video"
LAST_FRAME = png_bytes(32, 32)
SPEC = ModelSpec(
    name=MODEL,
    provider="finished",
    modes=frozenset({"t2v"}),
    seconds=(1,),
    default_seconds=1,
    sizes=("96x64",),
    default_size="96x64",
    price=Decimal(0),
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 1 s MP4 the fake upstream hands out."""
    path = tmp_path_factory.mktemp("sample") / "sample.mp4"
    render(RenderSpec(width=96, height=64, seconds=1, prompt="stored", seed=1, mode="t2v"), str(path))
    return path


@dataclass
class Finished(Provider):
    """An upstream whose tasks are done at once; download copies `sample`."""

    sample: Path
    name = "finished"

    def models(self) -> list[ModelSpec]:
        return [SPEC]

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        return Submitted(upstream_id=f"up-{task_id}")

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        return Progress(
            state="completed",
            progress=100,
            video_url="http://upstream.invalid/v.mp4",
            extras={"last_frame": "http://upstream.invalid/last.png?sig=x"},
        )

    async def download_extra(self, name: str, url: str, creds: Credentials, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(LAST_FRAME)

    async def download(self, result: Progress, creds: Credentials, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, self.sample, dest)


@dataclass
class Rig:
    db: AsyncEngine
    submitter: Submitter
    poller: Poller
    key: KeyRecord
    media: Path

    async def run_one(self) -> str:
        """Create a task and advance it once; its id."""
        created = await self.submitter.create(self.key, RawCreate(prompt="a harbour", model=MODEL))
        claimed = await task_store.claim_due(
            self.db, owner=self.poller.owner, now=time.time() + 60, limit=100, lease_s=10
        )
        (row,) = [row for row in claimed if row.id == created.id]
        await self.poller.advance(row)
        return created.id

    async def ledger(self) -> list[str]:
        async with self.db.connect() as conn:
            found = await conn.execute(sa.select(ledger.c.kind).where(ledger.c.key_id == self.key.id))
            return list(found.scalars())


def bucket_storage(s3: MotoS3, bucket: str, prefix: str, *, endpoint: str | None = None) -> S3Storage:
    return S3Storage(
        S3Location(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint or s3.endpoint,
            region=REGION,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
        )
    )


async def build(tmp_path: Path, storage: Storage, sample: Path) -> Rig:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    await asyncio.to_thread(migrate, url, secret=SHARED_DB_SECRET)
    db = create_engine(url, secret=SHARED_DB_SECRET)
    settings = Settings(
        database_url=url, media_dir=tmp_path / "media", local_enabled=False, prices={MODEL: Decimal("0.1")}
    )
    registry = Registry(
        {"finished": Finished(sample)},
        [Channel(name="only", provider="finished", credentials=Credentials(channel="only"))],
    )
    health = ChannelHealth(db, threshold=100, cooldown_s=30)
    submitter = Submitter(
        settings=settings, db=db, registry=registry, http=httpx.AsyncClient(), health=health, storage=storage
    )
    poller = Poller(settings=settings, db=db, registry=registry, submitter=submitter)
    _, key = await KeyRing(db).create(name="tester")
    return Rig(db=db, submitter=submitter, poller=poller, key=key, media=tmp_path / "media")


@pytest.fixture
async def rig(tmp_path: Path, s3: MotoS3, bucket: str, sample: Path) -> AsyncIterator[tuple[Rig, str]]:
    prefix = f"engine-{tmp_path.name}"
    made = await build(tmp_path, bucket_storage(s3, bucket, prefix), sample)
    yield made, prefix
    await made.db.dispose()


async def test_a_finished_video_and_its_previews_go_to_the_bucket(
    rig: tuple[Rig, str], s3: MotoS3, bucket: str, sample: Path
) -> None:
    made, prefix = rig
    task_id = await made.run_one()
    row = await task_store.get_task(made.db, task_id=task_id)
    assert row is not None and row.status == TaskStatus.COMPLETED
    folder = f"tasks/{task_id}"
    assert (row.video_path, row.thumbnail_path, row.spritesheet_path) == (
        f"{folder}/video.mp4",
        f"{folder}/thumbnail.webp",
        f"{folder}/spritesheet.jpg",
    )
    assert row.duration == pytest.approx(1.0, abs=0.05) and (row.width, row.height) == (96, 64)
    names = ("extra-last_frame.png", "spritesheet.jpg", "thumbnail.webp", "video.mp4")
    assert s3.keys(bucket, f"{prefix}/{folder}/") == [f"{prefix}/{folder}/{name}" for name in names]
    assert s3.get(bucket, f"{prefix}/{folder}/video.mp4") == sample.read_bytes()
    # An extra output goes to the bucket too, and the row lists it (an s3:// storage has no folder to look in).
    assert s3.get(bucket, f"{prefix}/{folder}/extra-last_frame.png") == LAST_FRAME
    assert row.extras == ["extra-last_frame.png"]
    # Probing and previews worked on local copies, which are gone now.
    assert not (made.media / folder).exists()
    assert await made.ledger() == ["reserve", "settle"]


async def test_storage_that_does_not_answer_leaves_the_task_to_retry(
    tmp_path: Path, s3: MotoS3, bucket: str, sample: Path
) -> None:
    down = bucket_storage(s3, bucket, "down", endpoint=f"http://127.0.0.1:{free_port()}")
    made = await build(tmp_path, down, sample)
    try:
        task_id = await made.run_one()
        row = await task_store.get_task(made.db, task_id=task_id)
        assert row is not None and row.active and row.video_path is None
        assert (row.last_poll_error or "").startswith("store: S3 storage: could not store tasks/")
        assert SECRET_KEY not in (row.last_poll_error or "")
        assert await made.ledger() == ["reserve"]  # not settled, not refunded: it is retried
        assert row.next_poll_at > row.updated_at - 1
    finally:
        await made.db.dispose()


async def test_retention_and_delete_remove_objects(rig: tuple[Rig, str], s3: MotoS3, bucket: str) -> None:
    made, prefix = rig
    expired, deleted, kept = [await made.run_one() for _ in range(3)]
    async with made.db.begin() as conn:
        await conn.execute(tasks.update().where(tasks.c.id == expired).values(expires_at=1.0))
    assert await made.poller.sweep() == 1
    assert s3.keys(bucket, f"{prefix}/tasks/{expired}/") == []
    row = await task_store.get_task(made.db, task_id=expired)
    assert row is not None and row.video_path is None
    doomed = await task_store.get_task(made.db, task_id=deleted)
    assert doomed is not None
    await made.submitter.delete(doomed)
    assert s3.keys(bucket, f"{prefix}/tasks/{deleted}/") == []
    assert len(s3.keys(bucket, f"{prefix}/tasks/{kept}/")) == 4
