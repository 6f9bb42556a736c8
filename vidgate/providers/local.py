"""The built-in `local` provider: renders real H.264 MP4s on the CPU with vidgate.render.

Renders run in worker processes so the event loop never blocks. Each job is a JSON file under
`<media_dir>/local/jobs/`, so after a crash or a shutdown the next poll of an unfinished task starts it
again; rendering is deterministic, so a restarted job produces the same bytes.

Workers are spawned (a fresh interpreter, not a fork of this threaded process) in the background at
startup, and never outlive the server: on shutdown they are terminated, not awaited, and each one also
exits by itself when the server is gone, even after a kill -9 (a parent-death signal on Linux, and a
watchdog thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from vidgate.config import Settings
from vidgate.errors import UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    AUDIO,
    SEED,
    Credentials,
    ModelSpec,
    Notify,
    Progress,
    Provider,
    Submitted,
    VideoRequest,
)

MODEL = ModelSpec(
    name="vidgate-local",
    provider="local",
    modes=frozenset({"t2v", "i2v", "kf2v"}),
    seconds=tuple(range(1, 21)),
    default_seconds=4,
    tiers={"480P": "832x480", "720P": "1280x720", "1080P": "1920x1080"},
    default_size="1280x720",
    any_size=(64, 1920),
    audio=True,
    params={"audio": AUDIO, "seed": SEED},
    remix=True,
    deadline_s=900,
    poll_hint_ms=250,
    # Built in: rendering on your own CPU costs nothing.
    price=Decimal(0),
    description="Built-in CPU renderer: animated scenes (t2v), pan/zoom (i2v), keyframe morphs (kf2v).",
)
# How often an in-flight render is looked at (it also reports completion at once via notify).
_POLL_EVERY_FRAMES = 24
# How often a worker checks that the server that started it is still alive (the fallback to PDEATHSIG).
_PARENT_CHECK_S = 0.5
# How long stopped workers get to exit after SIGTERM before they are killed.
_STOP_GRACE_S = 2.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("vidgate.local")


def from_settings(settings: Settings, http: httpx.AsyncClient) -> LocalProvider:
    return LocalProvider(settings.media_dir / "local", workers=settings.local_workers or os.cpu_count() or 1, http=http)


class LocalProvider(Provider):
    """Renders with vidgate.render in a process pool; the task id is the job id."""

    name = "local"
    needs_bytes = True

    def __init__(self, work_dir: Path, *, workers: int, http: httpx.AsyncClient) -> None:
        super().__init__(http)
        self._jobs_dir = work_dir / "jobs"
        self._out_dir = work_dir / "out"
        self._workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[str, Future[None]] = {}
        self._notify: Notify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def models(self) -> Sequence[ModelSpec]:
        return [MODEL]

    async def start(self, notify: Notify) -> None:
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        self._out_dir.mkdir(parents=True, exist_ok=True)
        self._notify = notify
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._pool = _new_pool(self._workers)
        # Start the workers now without waiting for them: startup stays quick and the first render finds
        # them warm (each submit spawns one more worker while none is idle).
        for _ in range(self._workers):
            self._pool.submit(_ready)

    async def close(self) -> None:
        """Stop every render now: running ones are terminated, not awaited (their jobs resume after a restart)."""
        self._closing = True
        pool, self._pool = self._pool, None
        self._running.clear()
        if pool is not None:
            await asyncio.to_thread(_stop_pool, pool)

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        job = _job(req, out=self._out_path(task_id))
        tmp = self._job_path(task_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(job))
        os.replace(tmp, self._job_path(task_id))
        self._launch(task_id, job)
        return Submitted(upstream_id=task_id)

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        """The job is named by the task id: it exists once submit wrote its file."""
        paths = (self._job_path(task_id), self._out_path(task_id), self._error_path(task_id))
        return [task_id] if any(path.exists() for path in paths) else []

    async def remix(self, source_upstream_id: str, req: VideoRequest, creds: Credentials, *, task_id: str) -> Submitted:
        # The engine hands in the source's request with the new prompt: same size, length, seed, inputs.
        return await self.submit(req, creds, task_id=task_id)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        out = self._out_path(upstream_id)
        if out.exists():
            return Progress(state="completed", progress=100, video_path=out)
        error = self._error_path(upstream_id)
        if error.exists():
            return Progress(state="failed", error_code="render_failed", error_message=error.read_text())
        job_path = self._job_path(upstream_id)
        future = self._running.get(upstream_id)
        if future is None or future.done():
            if not job_path.exists():
                return Progress(state="failed", error_code="render_lost", error_message="The render job is gone.")
            # Not running in this process (a restart): start it again from its job file.
            self._launch(upstream_id, json.loads(job_path.read_text()))
            return Progress(state="in_progress", progress=0)
        done, total = _read_progress(self._progress_path(upstream_id))
        if not done:
            return Progress(state="queued" if not future.running() else "in_progress", progress=0)
        return Progress(state="in_progress", progress=min(99, done * 100 // max(total, 1)))

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        self._cancel_path(upstream_id).touch()
        future = self._running.pop(upstream_id, None)
        if future is not None:
            future.cancel()

    async def download(self, result: Progress, creds: Credentials, dest: Path) -> None:
        if result.video_path is None:
            raise UpstreamTransient("local render reported no file")
        # Link, not move: until the task row says completed, the render must still be findable here.
        await asyncio.to_thread(_link_or_copy, result.video_path, dest)

    async def release(self, upstream_id: str, creds: Credentials) -> None:
        paths = (
            self._job_path(upstream_id),
            self._progress_path(upstream_id),
            self._cancel_path(upstream_id),
            self._error_path(upstream_id),
            self._out_path(upstream_id),
            self._out_path(upstream_id).with_name(f"{upstream_id}.mp4.part"),
        )
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- internals -------------------------------------------------------------------------------

    def _launch(self, task_id: str, job: dict[str, Any]) -> None:
        if self._pool is None:
            raise UpstreamTransient("the local renderer is not running")
        if not job["spec"]["prompt"] and job["spec"]["mode"] == "t2v":
            raise UpstreamRejected("a prompt is required", param="prompt")
        # A render stopped half-way (shutdown, crash) left its progress: this run starts from frame 0.
        with contextlib.suppress(FileNotFoundError):
            self._progress_path(task_id).unlink()
        future = self._pool.submit(
            _render_job,
            job,
            str(self._progress_path(task_id)),
            str(self._cancel_path(task_id)),
            str(self._error_path(task_id)),
        )
        self._running[task_id] = future
        future.add_done_callback(partial(self._finished, task_id))

    def _finished(self, task_id: str, future: Future[None]) -> None:
        # Runs in the executor's thread: hop to the loop before touching anything.
        if self._closing or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
            self._loop.call_soon_threadsafe(self._done_on_loop, task_id, future)

    def _done_on_loop(self, task_id: str, future: Future[None]) -> None:
        if self._closing:
            return  # stopped by close(): the job resumes after a restart
        if self._running.get(task_id) is future:
            del self._running[task_id]
        error = None if future.cancelled() else future.exception()
        if isinstance(error, BrokenProcessPool):
            # A worker died (killed, out of memory): replace the pool; the next poll relaunches the job.
            self._restart_pool()
        elif error is not None:
            self._error_path(task_id).write_text(f"render failed: {error!r}")
        if self._notify is not None:
            self._notify(task_id)

    def _restart_pool(self) -> None:
        if self._pool is not None and not getattr(self._pool, "_broken", False):
            return  # another job's failure already replaced it
        old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self._pool = _new_pool(self._workers)

    def _job_path(self, task_id: str) -> Path:
        return self._jobs_dir / f"{task_id}.json"

    def _progress_path(self, task_id: str) -> Path:
        return self._jobs_dir / f"{task_id}.progress"

    def _cancel_path(self, task_id: str) -> Path:
        return self._jobs_dir / f"{task_id}.cancel"

    def _error_path(self, task_id: str) -> Path:
        return self._jobs_dir / f"{task_id}.error"

    def _out_path(self, task_id: str) -> Path:
        return self._out_dir / f"{task_id}.mp4"


def _job(req: VideoRequest, *, out: Path) -> dict[str, Any]:
    first, last, audio = req.input("first_frame"), req.input("last_frame"), req.input("audio")
    spec = {
        "width": req.width,
        "height": req.height,
        "seconds": req.seconds,
        "prompt": req.prompt,
        "seed": req.seed or 0,
        "mode": req.mode,
        "first_image": str(first.path) if first and first.path else None,
        "last_image": str(last.path) if last and last.path else None,
        "audio": req.audio,
        "audio_path": str(audio.path) if audio and audio.path else None,
    }
    return {"spec": spec, "out": str(out)}


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # spawn: a worker is a fresh interpreter whose parent is this process (so it can watch for its death),
    # not a fork of this threaded process. Workers are spawned by submit(), i.e. from the event loop's
    # thread, which lives as long as the server: PR_SET_PDEATHSIG fires when the spawning thread exits.
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers (mid-render or idle) and wait, briefly, until they are gone."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("render worker %s ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.join(1.0)
    # The pool's manager thread sees its workers gone, fails what was queued, and exits.
    pool.shutdown(wait=True, cancel_futures=True)


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, dest)


def _read_progress(path: Path) -> tuple[int, int]:
    try:
        done, total = path.read_text().split()
        return int(done), int(total)
    except (FileNotFoundError, ValueError):
        return 0, 0


# -- worker process side ---------------------------------------------------------------------------


class _Cancelled(Exception):
    pass


def _worker_init(server_pid: int) -> None:
    """Runs first in each worker: die with the server, leave Ctrl-C to it, and import the renderer once."""
    # A terminal's Ctrl-C reaches the whole process group; the server decides when renders stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(server_pid)
    import vidgate.render  # noqa: F401 - imports PyAV, numpy and Pillow once per worker


def _ready() -> None:
    """Nothing: _worker_init has done the work by the time this runs."""


def _die_with(server_pid: int) -> None:
    """Exit when the server process is gone, however it died (kill -9 included)."""
    if sys.platform == "linux":
        # The kernel sends SIGKILL to this process the moment its parent dies.
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server_pid:
        os._exit(0)  # the server died before the signal was armed
    # Portable fallback (and a second line on Linux): once the parent is gone, getppid() changes.
    threading.Thread(target=_watch_parent, args=(server_pid,), name="vidgate-parent-watch", daemon=True).start()


def _watch_parent(server_pid: int) -> None:
    while os.getppid() == server_pid:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)


def _render_job(job: dict[str, Any], progress_path: str, cancel_path: str, error_path: str) -> None:
    from vidgate.render import RenderError, RenderSpec, render

    def progress(done: int, total: int) -> None:
        if done % _POLL_EVERY_FRAMES == 0 or done == total:
            with open(progress_path, "w") as handle:
                handle.write(f"{done} {total}")
        if os.path.exists(cancel_path):
            raise _Cancelled

    try:
        render(RenderSpec(**job["spec"]), job["out"], progress)
    except _Cancelled:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(job["out"] + ".part")
    except RenderError as exc:
        with open(error_path, "w") as handle:
            handle.write(str(exc))
