"""The built-in `local` provider: renders real H.264 MP4s on the CPU with vidgate.render.

Each job is a row in the database (store/render_jobs.py), so any process or replica renders or resumes it: the
process that claims a job holds it under a lease, renews the lease while the render runs (recording its
progress on the row), and marks the row done or failed. A job whose process stopped or was killed is claimed
by whichever process polls it next and rendered again from its spec; rendering is deterministic, so a
restarted job produces the same bytes.

The output goes into the app's storage (`use_storage`) as `local/out/<task id>.mp4` before the job is marked
done, so any replica's poll and download find it, on any machine: with the default `file:` storage at
media_dir that key is the very file the worker wrote (nothing is moved); with `s3://` it is uploaded. Inputs
(images, audio) go into an object storage too (`local/in/<task id>/`), so a replica on another machine
renders an i2v or kf2v job as well; with a folder storage they are read where the submitting process put them.
Without `use_storage` (unit tests) the storage is the work dir itself.

Renders run in worker processes so the event loop never blocks. Workers start on the first render (spawned:
a fresh interpreter, not a fork of this threaded process) and exit after `idle_s` with nothing to render, so
an idle server holds none. They never outlive the server: on shutdown they are terminated, not awaited, and
each one also exits by itself when the server is gone, even after a kill -9 (a parent-death signal on Linux,
and a watchdog thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.config import Settings
from vidgate.errors import StorageUnavailable, UpstreamRejected, UpstreamTransient
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
from vidgate.storage import FileStorage, Storage
from vidgate.store import render_jobs
from vidgate.store.render_jobs import CANCELLED, DONE, FAILED, QUEUED

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
# A rendering process holds its jobs this long without renewing (it renews four times as often): a killed
# process's renders are taken up by another within this.
LEASE_S = 10.0
# How long render workers stay with nothing to render before they exit.
IDLE_S = 60.0
# The job spec's key for the storage keys of its inputs, by spec field (object storage only).
INPUTS = "inputs"
# The spec fields that name input files.
_INPUT_FIELDS = ("first_image", "last_image", "audio_path")

log = logging.getLogger("vidgate.local")


@dataclass(frozen=True)
class Rendered(Progress):
    """A finished render kept in object storage under `key` (download fetches it from there)."""

    key: str = ""


def from_settings(settings: Settings, http: httpx.AsyncClient) -> LocalProvider:
    return LocalProvider(
        settings.media_dir / "local",
        workers=settings.local_workers or os.cpu_count() or 1,
        idle_s=settings.local_idle_s,
        http=http,
    )


class LocalProvider(Provider):
    """Renders with vidgate.render in a process pool; the task id is the job id."""

    name = "local"
    needs_bytes = True

    def __init__(
        self,
        work_dir: Path,
        *,
        workers: int,
        http: httpx.AsyncClient,
        idle_s: float = IDLE_S,
        lease_s: float = LEASE_S,
    ) -> None:
        super().__init__(http)
        # Progress and cancel marks of the renders running in this process (its workers write them).
        self._jobs_dir = work_dir / "jobs"
        self._out_dir = work_dir / "out"
        self._workers = max(1, workers)
        self._idle_s = idle_s
        self._lease_s = lease_s
        self._db: AsyncEngine | None = None
        # Where finished renders (and, for object storage, inputs) go; `use_storage` puts them in the app's.
        self._storage: Storage = FileStorage(work_dir)
        self._prefix = ""
        self._owner = f"render-{os.getpid()}-{secrets.token_hex(4)}"
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[str, Future[tuple[str, str]]] = {}
        self._notify: Notify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._idle: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def models(self) -> Sequence[ModelSpec]:
        return [MODEL]

    def use_database(self, db: AsyncEngine) -> None:
        self._db = db

    def use_storage(self, storage: Storage) -> None:
        """Keep render outputs (and inputs) in the app's storage, under `local/`, where every replica reads them."""
        self._storage = storage
        self._prefix = "local/"

    @property
    def workers_running(self) -> bool:
        """Whether render worker processes exist right now (they start on demand and exit when idle)."""
        return self._pool is not None

    async def start(self, notify: Notify) -> None:
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        self._out_dir.mkdir(parents=True, exist_ok=True)
        self._notify = notify
        self._loop = asyncio.get_running_loop()
        self._closing = False

    async def close(self) -> None:
        """Stop every render now: running ones are terminated, not awaited, and handed back (they resume on
        the next poll, here after a restart or on another replica at once)."""
        self._closing = True
        if self._idle is not None:
            self._idle.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        pool, self._pool = self._pool, None
        self._running.clear()
        if pool is not None:
            await asyncio.to_thread(_stop_pool, pool)
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task
        if self._db is not None:
            with contextlib.suppress(Exception):
                await render_jobs.release_all(self._store(), owner=self._owner, now=time.time())

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        if not req.prompt and req.mode == "t2v":
            raise UpstreamRejected("a prompt is required", param="prompt")
        spec = _spec(req)
        inputs = await self._store_inputs(task_id, spec)
        if inputs:
            spec[INPUTS] = inputs
        await render_jobs.insert(self._store(), task_id=task_id, spec=spec, now=time.time())
        await self._take(task_id)
        return Submitted(upstream_id=task_id)

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        """The job is named by the task id: it exists once submit recorded it."""
        return [task_id] if await render_jobs.get(self._store(), task_id=task_id) is not None else []

    async def remix(self, source_upstream_id: str, req: VideoRequest, creds: Credentials, *, task_id: str) -> Submitted:
        # The engine hands in the source's request with the new prompt: same size, length, seed, inputs.
        return await self.submit(req, creds, task_id=task_id)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        job = await render_jobs.get(self._store(), task_id=upstream_id)
        if job is None:
            return Progress(state="failed", error_code="render_lost", error_message="The render job is gone.")
        if job.state == DONE:
            key = self._out_key(upstream_id)
            local = self._storage.local_path(key)
            if local is not None and await asyncio.to_thread(local.exists):
                return Progress(state="completed", progress=100, video_path=local)
            if local is None and await self._storage.exists(key):
                return Rendered(state="completed", progress=100, key=key)
            # Marked done but its output is gone (deleted by hand, or storage was lost): render it again.
            log.warning("render %s is done but %s is missing: rendering it again", upstream_id, key)
            await render_jobs.reopen(self._store(), task_id=upstream_id, now=time.time())
            return Progress(state="queued", progress=0)
        if job.state == FAILED:
            return Progress(state="failed", error_code="render_failed", error_message=job.error or "render failed")
        if job.state == CANCELLED:
            return Progress(state="failed", error_code="render_cancelled", error_message="The render was cancelled.")
        future = self._running.get(upstream_id)
        if future is not None and not future.done():
            done, total = _read_progress(self._progress_path(upstream_id))
            if not done:
                return Progress(state="in_progress" if future.running() else "queued", progress=0)
            return Progress(state="in_progress", progress=min(99, done * 100 // max(total, 1)))
        if job.free(time.time()):
            # Nobody renders it (never started, handed back, or its process died): render it here.
            await self._take(upstream_id)
            return Progress(state="in_progress", progress=0)
        progress = job.done_frames * 100 // job.total_frames if job.total_frames else 0
        return Progress(state="in_progress" if progress else "queued", progress=min(99, progress))

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        await render_jobs.cancel(self._store(), task_id=upstream_id, now=time.time())
        self._cancel_path(upstream_id).touch()
        future = self._running.pop(upstream_id, None)
        if future is not None:
            future.cancel()

    async def download(self, result: Progress, creds: Credentials, dest: Path) -> None:
        if isinstance(result, Rendered):
            # In object storage (rendered here or on any replica): fetch a copy; release deletes the object.
            try:
                found = await self._storage.fetch(result.key, dest)
            except StorageUnavailable as exc:
                raise UpstreamTransient(f"local render output unavailable: {exc}") from exc
            if not found:
                raise UpstreamTransient(f"local render output {result.key} is missing")
            return
        if result.video_path is None:
            raise UpstreamTransient("local render reported no file")
        # Link, not move: until the task row says completed, the render must still be findable here.
        await asyncio.to_thread(_link_or_copy, result.video_path, dest)

    async def release(self, upstream_id: str, creds: Credentials) -> None:
        job = await render_jobs.get(self._store(), task_id=upstream_id)
        await render_jobs.delete(self._store(), task_id=upstream_id)
        out = self._out_path(upstream_id)
        paths = [
            self._progress_path(upstream_id),
            self._cancel_path(upstream_id),
            out,
            out.with_name(f"{upstream_id}.mp4.part"),
            *self._fetched_inputs(upstream_id, job.spec if job else {}).values(),
        ]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        try:
            await self._storage.delete([self._out_key(upstream_id)])
            if job is not None and job.spec.get(INPUTS):
                await self._storage.delete_tree(f"{self._prefix}in/{upstream_id}")
        except StorageUnavailable as exc:
            log.warning("render %s: its stored files were not deleted (%s)", upstream_id, exc)

    # -- internals -------------------------------------------------------------------------------

    def _store(self) -> AsyncEngine:
        if self._db is None:
            raise UpstreamTransient("the local renderer has no database")
        return self._db

    async def _take(self, task_id: str) -> None:
        """Claim the job and start rendering it here (a no-op when a live process holds it already)."""
        if self._closing:
            raise UpstreamTransient("the local renderer is stopping")
        if not await render_jobs.claim(
            self._store(), task_id=task_id, owner=self._owner, now=time.time(), lease_s=self._lease_s
        ):
            return
        job = await render_jobs.get(self._store(), task_id=task_id)
        if job is None:
            return
        try:
            spec = await self._local_inputs(task_id, job.spec)
        except (StorageUnavailable, OSError) as exc:
            # Hand the job back: the next poll (here or anywhere) tries again.
            log.warning("render %s: its inputs cannot be fetched (%s)", task_id, exc)
            await render_jobs.settle(self._store(), task_id=task_id, owner=self._owner, state=QUEUED, now=time.time())
            return
        # A render stopped half-way (shutdown, crash) left its marks: this run starts from frame 0.
        for path in (self._progress_path(task_id), self._cancel_path(task_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._pool is None:
            self._pool = _new_pool(self._workers)
        future = self._pool.submit(
            _render_job,
            spec,
            str(self._out_path(task_id)),
            str(self._progress_path(task_id)),
            str(self._cancel_path(task_id)),
        )
        self._running[task_id] = future
        future.add_done_callback(partial(self._finished, task_id))
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew(), name="vidgate-render-leases")

    async def _renew(self) -> None:
        """While renders run here: renew their leases and record their progress; stop the ones lost."""
        while self._running and not self._closing:
            await asyncio.sleep(self._lease_s / 4)
            progress = {task_id: _read_progress(self._progress_path(task_id)) for task_id in self._running}
            if not progress:
                break
            try:
                held = await render_jobs.renew(
                    self._store(), owner=self._owner, progress=progress, now=time.time(), lease_s=self._lease_s
                )
            except Exception:
                log.warning("could not renew the leases of %d renders", len(progress), exc_info=True)
                continue
            for task_id in set(progress) - held:
                # Cancelled, or taken over after this process stalled past its lease: stop rendering it.
                self._cancel_path(task_id).touch()
                future = self._running.pop(task_id, None)
                if future is not None:
                    future.cancel()
        self._arm_idle()

    def _finished(self, task_id: str, future: Future[tuple[str, str]]) -> None:
        # Runs in the executor's thread: hop to the loop before touching anything.
        if self._closing or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
            self._loop.call_soon_threadsafe(self._done_on_loop, task_id, future)

    def _done_on_loop(self, task_id: str, future: Future[tuple[str, str]]) -> None:
        if self._closing:
            return  # stopped by close(): the job resumes after a restart
        if self._running.get(task_id) is future:
            del self._running[task_id]
        task = asyncio.create_task(self._settle(task_id, future))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._arm_idle()

    async def _settle(self, task_id: str, future: Future[tuple[str, str]]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        now = time.time()
        try:
            if isinstance(error, BrokenProcessPool):
                # A worker died (killed, out of memory): replace the pool; the next poll renders the job again.
                self._restart_pool()
                await render_jobs.settle(self._store(), task_id=task_id, owner=self._owner, state=QUEUED, now=now)
            elif error is not None:
                await render_jobs.settle(
                    self._store(),
                    task_id=task_id,
                    owner=self._owner,
                    state=FAILED,
                    now=now,
                    error=f"render failed: {error!r}",
                )
            else:
                outcome, text = future.result()
                if outcome == DONE:
                    # Stored first, then marked done: a job marked done always has its output in storage.
                    try:
                        await self._storage.put_file(
                            self._out_key(task_id), self._out_path(task_id), content_type="video/mp4"
                        )
                    except (StorageUnavailable, OSError) as exc:
                        log.warning("render %s: its output could not be stored (%s); rendering it again", task_id, exc)
                        await render_jobs.settle(
                            self._store(), task_id=task_id, owner=self._owner, state=QUEUED, now=time.time()
                        )
                    else:
                        await render_jobs.settle(
                            self._store(), task_id=task_id, owner=self._owner, state=DONE, now=time.time()
                        )
                elif outcome == FAILED:
                    await render_jobs.settle(
                        self._store(), task_id=task_id, owner=self._owner, state=FAILED, now=now, error=text
                    )
        except Exception:
            # The lease lapses and another poll renders it again: a lost write costs time, not the task.
            log.warning("could not record the end of render %s", task_id, exc_info=True)
        if self._notify is not None:
            self._notify(task_id)

    def _arm_idle(self) -> None:
        """With nothing left to render, stop the workers after idle_s (the next render starts them again)."""
        if self._closing or self._running or self._pool is None or self._loop is None:
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self._loop.call_later(self._idle_s, self._stop_when_idle)

    def _stop_when_idle(self) -> None:
        self._idle = None
        if self._closing or self._running or self._pool is None:
            return
        pool, self._pool = self._pool, None
        log.info("render workers idle for %.0f s: stopping them", self._idle_s)
        task = asyncio.create_task(asyncio.to_thread(_stop_pool, pool))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _restart_pool(self) -> None:
        if self._pool is not None and not getattr(self._pool, "_broken", False):
            return  # another job's failure already replaced it
        old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self._pool = _new_pool(self._workers)

    def _progress_path(self, task_id: str) -> Path:
        return self._jobs_dir / f"{task_id}.progress"

    def _cancel_path(self, task_id: str) -> Path:
        return self._jobs_dir / f"{task_id}.cancel"

    def _out_path(self, task_id: str) -> Path:
        """Where this process's worker writes the render (the storage object itself for a folder at media_dir)."""
        return self._out_dir / f"{task_id}.mp4"

    def _out_key(self, task_id: str) -> str:
        return f"{self._prefix}out/{task_id}.mp4"

    async def _store_inputs(self, task_id: str, spec: dict[str, Any]) -> dict[str, str]:
        """Copy the job's input files into an object storage (a replica elsewhere fetches them to render): their
        keys by spec field. Nothing for a folder storage: the files are read where they are."""
        keys: dict[str, str] = {}
        for field in _INPUT_FIELDS:
            path = spec.get(field)
            if not path:
                continue
            key = f"{self._prefix}in/{task_id}/{field}{Path(path).suffix}"
            if self._storage.local_path(key) is not None:
                continue
            staged = self._jobs_dir / f"{task_id}.{field}.upload"
            try:
                await asyncio.to_thread(shutil.copyfile, path, staged)
                await self._storage.put_file(key, staged)  # moves the staged copy (the input stays)
            except (StorageUnavailable, OSError) as exc:
                with contextlib.suppress(FileNotFoundError):
                    staged.unlink()
                raise UpstreamTransient(f"the render's {field} could not be stored: {exc}") from exc
            keys[field] = key
        return keys

    def _fetched_inputs(self, task_id: str, spec: dict[str, Any]) -> dict[str, Path]:
        """Where this process puts the job's stored inputs it has no file for, by spec field."""
        stored = spec.get(INPUTS)
        if not isinstance(stored, dict):
            return {}
        return {
            field: self._jobs_dir / f"{task_id}.{field}{Path(str(key)).suffix}"
            for field, key in stored.items()
            if field in _INPUT_FIELDS
        }

    async def _local_inputs(self, task_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The render spec with every input as a file here: the submitter's own file when this machine has it,
        else a copy fetched from storage."""
        stored = spec.get(INPUTS)
        local = {name: value for name, value in spec.items() if name != INPUTS}
        if not isinstance(stored, dict):
            return local
        for field, dest in self._fetched_inputs(task_id, spec).items():
            path = local.get(field)
            if path and await asyncio.to_thread(Path(path).exists):
                continue
            if not await self._storage.fetch(str(stored[field]), dest):
                raise FileNotFoundError(f"{stored[field]} is not in storage")
            local[field] = str(dest)
        return local


def _spec(req: VideoRequest) -> dict[str, Any]:
    """What the renderer needs, as stored on the job row."""
    first, last, audio = req.input("first_frame"), req.input("last_frame"), req.input("audio")
    return {
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


def _render_job(spec: dict[str, Any], out: str, progress_path: str, cancel_path: str) -> tuple[str, str]:
    """Render one job; (DONE, ""), (FAILED, why) or (CANCELLED, "")."""
    from vidgate.render import RenderError, RenderSpec, render

    def progress(done: int, total: int) -> None:
        if done % _POLL_EVERY_FRAMES == 0 or done == total:
            with open(progress_path, "w") as handle:
                handle.write(f"{done} {total}")
        if os.path.exists(cancel_path):
            raise _Cancelled

    try:
        render(RenderSpec(**spec), out, progress)
    except _Cancelled:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out + ".part")
        return CANCELLED, ""
    except RenderError as exc:
        return FAILED, str(exc)
    return DONE, ""
