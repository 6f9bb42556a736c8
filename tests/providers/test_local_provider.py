"""The local provider's worker pool: stopped renders are not awaited and resume from their job file."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from tests.helpers import assert_mp4
from vidgate.providers.base import Credentials, Progress, VideoRequest
from vidgate.providers.local import LocalProvider

CREDS = Credentials(channel="local")
# Long enough that close() lands mid-render, short enough to render twice in a test.
REQUEST = VideoRequest(
    model="vidgate-local", prompt="a lighthouse at dusk", seconds=20, width=640, height=360, tier="480P", mode="t2v"
)


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


async def test_close_stops_running_renders_and_a_restart_resumes_them(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path, workers=1)
    await provider.start(lambda task_id: None)
    await provider.submit(REQUEST, CREDS, task_id="video_a")
    assert (await poll_until(provider, "video_a", started=True)).state == "in_progress"
    workers = list(provider._pool._processes) if provider._pool else []  # type: ignore[attr-defined]
    assert len(workers) == 1

    started = time.monotonic()
    await provider.close()
    # Not awaited: the render was cut off, its worker is gone, no video was written, the job is kept.
    assert time.monotonic() - started < 1.5
    assert not any(alive(pid) for pid in workers)
    assert not (tmp_path / "out" / "video_a.mp4").exists()
    assert (tmp_path / "jobs" / "video_a.json").exists()

    restarted = LocalProvider(tmp_path, workers=1)
    await restarted.start(lambda task_id: None)
    try:
        result = await poll_until(restarted, "video_a")
        assert result.state == "completed", result
        assert result.video_path is not None
        assert_mp4(result.video_path, width=640, height=360, seconds=20)
    finally:
        await restarted.close()


async def test_workers_start_on_first_use(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path, workers=2)
    await provider.start(lambda task_id: None)
    try:
        assert provider._pool is not None and not provider._pool._processes  # type: ignore[attr-defined]
        await provider.submit(
            VideoRequest(model="vidgate-local", prompt="x", seconds=1, width=64, height=64, tier="480P", mode="t2v"),
            CREDS,
            task_id="video_b",
        )
        assert (await poll_until(provider, "video_b")).state == "completed"
    finally:
        await provider.close()
