"""The local provider: jobs in the database that any process renders or resumes, under a lease; workers that
start on the first render and exit when idle; stopped renders are not awaited and resume."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import assert_mp4
from vidgate.providers.base import Credentials, MediaInput, Progress, VideoRequest
from vidgate.providers.local import LocalProvider, Rendered
from vidgate.storage import FileStorage, Storage
from vidgate.store import render_jobs
from vidgate.store.db import create_engine, migrate

CREDS = Credentials(channel="local")
# Long enough that close() lands mid-render, short enough to render twice in a test.
REQUEST = VideoRequest(
    model="vidgate-local", prompt="a lighthouse at dusk", seconds=20, width=640, height=360, tier="480P", mode="t2v"
)
SHORT = VideoRequest(model="vidgate-local", prompt="a dot", seconds=1, width=64, height=64, tier="480P", mode="t2v")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    await asyncio.to_thread(migrate, url, secret="local-provider-test")
    engine = create_engine(url, secret="local-provider-test")
    yield engine
    await engine.dispose()


async def started(work_dir: Path, db: AsyncEngine, storage: Storage | None = None, **options: float) -> LocalProvider:
    provider = LocalProvider(work_dir, workers=1, http=httpx.AsyncClient(), **options)  # type: ignore[arg-type]
    provider.use_database(db)
    if storage is not None:
        provider.use_storage(storage)
    await provider.start(lambda task_id: None)
    return provider


async def poll_until(provider: LocalProvider, task_id: str, *, started: bool = False, timeout: float = 60) -> Progress:
    """Poll like the engine does until the render has drawn frames (started) or has finished."""
    deadline = time.monotonic() + timeout
    while True:
        progress = await provider.poll(task_id, CREDS)
        if progress.state in ("completed", "failed") or (started and progress.progress > 0):
            return progress
        assert time.monotonic() < deadline, progress
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_close_stops_running_renders_and_a_restart_resumes_them(tmp_path: Path, db: AsyncEngine) -> None:
    provider = await started(tmp_path, db)
    await provider.submit(REQUEST, CREDS, task_id="video_a")
    assert (await poll_until(provider, "video_a", started=True)).state == "in_progress"
    workers = list(provider._pool._processes) if provider._pool else []  # type: ignore[attr-defined]
    assert len(workers) == 1

    began = time.monotonic()
    await provider.close()
    # Not awaited: the render was cut off, its worker is gone, no video was written, the job is handed back.
    assert time.monotonic() - began < 1.5
    assert not any(alive(pid) for pid in workers)
    assert not (tmp_path / "out" / "video_a.mp4").exists()
    job = await render_jobs.get(db, task_id="video_a")
    assert job is not None and job.state == "queued" and job.lease_owner is None

    restarted = await started(tmp_path, db)
    try:
        result = await poll_until(restarted, "video_a")
        assert result.state == "completed", result
        assert result.video_path is not None
        assert_mp4(result.video_path, width=640, height=360, seconds=20)
    finally:
        await restarted.close()


async def test_workers_start_on_the_first_render_and_exit_when_idle(tmp_path: Path, db: AsyncEngine) -> None:
    provider = await started(tmp_path, db, idle_s=0.5)
    try:
        assert not provider.workers_running  # nothing rendered yet: no worker process
        await provider.submit(SHORT, CREDS, task_id="video_idle")
        assert provider.workers_running
        workers = list(provider._pool._processes) if provider._pool else []  # type: ignore[attr-defined]
        assert (await poll_until(provider, "video_idle")).state == "completed"
        deadline = time.monotonic() + 10
        while provider.workers_running or any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "the idle workers did not exit"
            await asyncio.sleep(0.05)
        # The next render starts them again.
        await provider.submit(SHORT, CREDS, task_id="video_again")
        assert (await poll_until(provider, "video_again")).state == "completed"
    finally:
        await provider.close()


async def test_one_process_renders_a_job_and_another_takes_over_a_lapsed_lease(tmp_path: Path, db: AsyncEngine) -> None:
    shared = FileStorage(tmp_path / "shared")
    here = await started(tmp_path / "here", db, lease_s=1.0, storage=shared)
    there = await started(tmp_path / "there", db, lease_s=1.0, storage=shared)
    try:
        await here.submit(SHORT, CREDS, task_id="video_shared")
        # Polled by the other process meanwhile: it reports the job, it does not render it a second time.
        await there.poll("video_shared", CREDS)
        assert "video_shared" not in there._running
        assert (await poll_until(here, "video_shared")).state == "completed"
        # Any process sees the finished video where the job stored it (a folder shared by both here).
        seen = await there.poll("video_shared", CREDS)
        assert seen.state == "completed" and seen.video_path == (tmp_path / "shared" / "local/out/video_shared.mp4")

        # A process that claimed a job and died: its lease lapses and the next poll renders the job here.
        await render_jobs.insert(db, task_id="video_orphan", spec=_spec_of(SHORT), now=time.time())
        assert await render_jobs.claim(db, task_id="video_orphan", owner="render-dead", now=time.time(), lease_s=1.0)
        assert (await there.poll("video_orphan", CREDS)).state == "queued"
        assert "video_orphan" not in there._running
        await asyncio.sleep(1.1)
        result = await poll_until(there, "video_orphan")
        assert result.state == "completed" and result.video_path is not None
        job = await render_jobs.get(db, task_id="video_orphan")
        assert job is not None and job.runs == 2 and job.state == "done"
    finally:
        await here.close()
        await there.close()


async def test_replicas_on_two_machines_share_renders_through_object_storage(tmp_path: Path, db: AsyncEngine) -> None:
    """Two processes with their own work dirs (two machines) and one database and S3 bucket: what one renders
    the other serves; a job handed back by one is rendered by the other from inputs it fetches from storage."""
    from tests.s3 import moto_s3
    from vidgate.storage.s3 import S3Location, S3Storage

    with moto_s3() as s3:
        bucket = s3.create_bucket()

        def storage() -> S3Storage:
            return S3Storage(
                S3Location(
                    bucket=bucket,
                    prefix="media",
                    endpoint_url=s3.endpoint,
                    region="us-east-1",
                    access_key="test",
                    secret_key="test",
                )
            )

        here = await started(tmp_path / "here", db, storage=storage())
        there = await started(tmp_path / "there", db, storage=storage())
        try:
            await here.submit(SHORT, CREDS, task_id="video_here")
            assert (await poll_until(here, "video_here")).state == "completed"
            assert s3.keys(bucket, "media/local/") == ["media/local/out/video_here.mp4"]
            assert not list((tmp_path / "here" / "out").iterdir())  # uploaded, not kept on the rendering machine
            # The other machine has no file: its poll finds the render in storage and its download fetches it.
            seen = await there.poll("video_here", CREDS)
            assert isinstance(seen, Rendered) and seen.state == "completed" and seen.video_path is None
            assert "video_here" not in there._running
            await there.download(seen, CREDS, tmp_path / "served" / "video.mp4")
            assert_mp4(tmp_path / "served" / "video.mp4", width=64, height=64, seconds=1)
            await there.release("video_here", CREDS)
            assert s3.keys(bucket, "media/local/") == []
            assert await render_jobs.get(db, task_id="video_here") is None

            # An i2v job submitted here whose process stops at once: its input went to storage with the job, so
            # the other machine renders it, though the submitter's files are gone with its machine.
            image = tmp_path / "upload" / "first.png"
            image.parent.mkdir()
            Image.new("RGB", (96, 64), (200, 40, 40)).save(image)
            i2v = replace(
                SHORT, mode="i2v", inputs=(MediaInput(role="first_frame", field="input_reference", path=image),)
            )
            await here.submit(i2v, CREDS, task_id="video_moved")
            await here.close()
            shutil.rmtree(tmp_path / "here")
            shutil.rmtree(image.parent)
            assert s3.keys(bucket, "media/local/in/") == ["media/local/in/video_moved/first_image.png"]
            result = await poll_until(there, "video_moved")
            assert isinstance(result, Rendered), result
            await there.download(result, CREDS, tmp_path / "served" / "moved.mp4")
            assert_mp4(tmp_path / "served" / "moved.mp4", width=64, height=64, seconds=1)
            job = await render_jobs.get(db, task_id="video_moved")
            assert job is not None and job.runs == 2  # claimed here first, then rendered there
            await there.release("video_moved", CREDS)
            assert s3.keys(bucket, "media/local/") == []
        finally:
            await here.close()
            await there.close()


async def test_a_done_render_whose_output_is_gone_is_rendered_again(tmp_path: Path, db: AsyncEngine) -> None:
    provider = await started(tmp_path, db, storage=FileStorage(tmp_path / "media"))
    try:
        await provider.submit(SHORT, CREDS, task_id="video_lost")
        done = await poll_until(provider, "video_lost")
        assert done.state == "completed" and done.video_path == tmp_path / "media/local/out/video_lost.mp4"
        done.video_path.unlink()
        assert (await provider.poll("video_lost", CREDS)).state == "queued"
        again = await poll_until(provider, "video_lost")
        assert again.state == "completed" and again.video_path is not None and again.video_path.exists()
        job = await render_jobs.get(db, task_id="video_lost")
        assert job is not None and job.runs == 2
    finally:
        await provider.close()


def _spec_of(req: VideoRequest) -> dict[str, object]:
    from vidgate.providers.local import _spec

    return _spec(req)


def _how_this_worker_dies() -> tuple[int, int, bool]:
    """Run inside a render worker: its parent-death signal, its parent, and whether the watchdog runs."""
    import ctypes
    import threading

    signal_number = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(signal_number), 0, 0, 0)  # PR_GET_PDEATHSIG
    watching = any(thread.name == "vidgate-parent-watch" for thread in threading.enumerate())
    return signal_number.value, os.getppid(), watching


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
async def test_a_worker_is_armed_to_die_with_the_server(tmp_path: Path, db: AsyncEngine) -> None:
    provider = await started(tmp_path, db)
    try:
        await provider.submit(SHORT, CREDS, task_id="video_armed")  # workers start on the first render
        assert provider._pool is not None
        signal_number, parent, watching = await asyncio.wrap_future(provider._pool.submit(_how_this_worker_dies))
    finally:
        await provider.close()
    # The kernel kills it when this process dies; the watchdog is the fallback where there is no prctl.
    assert (signal_number, parent, watching) == (signal.SIGKILL, os.getpid(), True)
