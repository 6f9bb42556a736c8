"""The local provider's worker pool: stopped renders are not awaited and resume from their job file."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

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
    provider = LocalProvider(tmp_path, workers=1, http=httpx.AsyncClient())
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

    restarted = LocalProvider(tmp_path, workers=1, http=httpx.AsyncClient())
    await restarted.start(lambda task_id: None)
    try:
        result = await poll_until(restarted, "video_a")
        assert result.state == "completed", result
        assert result.video_path is not None
        assert_mp4(result.video_path, width=640, height=360, seconds=20)
    finally:
        await restarted.close()


def _how_this_worker_dies() -> tuple[int, int, bool]:
    """Run inside a render worker: its parent-death signal, its parent, and whether the watchdog runs."""
    import ctypes
    import threading

    signal_number = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(signal_number), 0, 0, 0)  # PR_GET_PDEATHSIG
    watching = any(thread.name == "vidgate-parent-watch" for thread in threading.enumerate())
    return signal_number.value, os.getppid(), watching


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
async def test_a_worker_is_armed_to_die_with_the_server(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path, workers=1, http=httpx.AsyncClient())
    await provider.start(lambda task_id: None)
    try:
        assert provider._pool is not None
        signal_number, parent, watching = await asyncio.wrap_future(provider._pool.submit(_how_this_worker_dies))
    finally:
        await provider.close()
    # The kernel kills it when this process dies; the watchdog is the fallback where there is no prctl.
    assert (signal_number, parent, watching) == (signal.SIGKILL, os.getpid(), True)
