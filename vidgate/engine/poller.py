"""The poller: claims due tasks in batches, reads their upstream state, and carries them to the end.

It survives its own failures, stops on an Event and drains in-flight reads with a grace period. Rows are
claimed with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so several replicas share the work, and every
terminal transition is a compare-and-set, so exactly one process finishes a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate import media
from vidgate.config import Settings
from vidgate.engine import billing, uploads
from vidgate.engine.idempotency import TTL_S as IDEMPOTENCY_TTL_S
from vidgate.engine.schedule import failure_delay, poll_delay
from vidgate.engine.submit import Submitter, task_key
from vidgate.errors import Conflict, ProviderError, RateLimited, StorageUnavailable, UpstreamUnavailable, VidgateError
from vidgate.metrics import Metrics
from vidgate.providers.base import UPSTREAM_TASK_LOST, Credentials, Progress, Provider
from vidgate.providers.registry import Registry
from vidgate.status import TaskStatus
from vidgate.store import idempotency as idempotency_store
from vidgate.store import keys as key_store
from vidgate.store import tasks as task_store
from vidgate.store.tasks import TaskRow

log = logging.getLogger("vidgate.poller")

BATCH = 100
# A claim lapses this long after its holder stops renewing it (a crashed replica's rows come back soon).
LEASE_S = 10.0
MAX_IDLE_SLEEP_S = 1.0
GLOBAL_CONCURRENCY = 64
# A task the upstream says it does not know is failed only after this many such reads in a row.
LOST_CONFIRMATIONS = 3
_LOST = "the upstream does not know the task"
PER_CHANNEL_CONCURRENCY = 16


class Poller:
    """Background loop over due tasks."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: AsyncEngine,
        registry: Registry,
        submitter: Submitter,
        metrics: Metrics | None = None,
        webhooks_due: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.webhooks_due = webhooks_due
        self._db = db
        self._registry = registry
        self._submitter = submitter
        self.owner = f"poller-{secrets.token_hex(6)}"
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._woken: set[str] = set()
        self._slots = asyncio.Semaphore(GLOBAL_CONCURRENCY)
        self._channel_slots: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(PER_CHANNEL_CONCURRENCY)
        )
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.last_tick = 0.0
        self._next_sweep = 0.0

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="vidgate-poller")

    async def stop(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def wake(self, task_id: str | None = None) -> None:
        """Look now: a task changed (task_id), or new work was created (None)."""
        if task_id is not None:
            self._woken.add(task_id)
        self._wake.set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            self.last_tick = time.time()
            try:
                await self._tick()
                if self.last_tick >= self._next_sweep:
                    self._next_sweep = self.last_tick + self._settings.sweep_interval_s
                    await self.sweep()
                delay = await self._idle_delay()
            except Exception:
                log.exception("poller tick failed; retrying")
                delay = MAX_IDLE_SLEEP_S
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def _tick(self) -> None:
        now = time.time()
        if self._woken:
            woken, self._woken = list(self._woken), set()
            await task_store.wake(self._db, task_ids=woken, now=now)
        free = GLOBAL_CONCURRENCY - len(self._inflight)
        if free <= 0:
            return
        claimed = await task_store.claim_due(
            self._db, owner=self.owner, now=now, limit=min(BATCH, free), lease_s=LEASE_S
        )
        for row in claimed:
            job = asyncio.create_task(self._guarded(row), name=f"poll-{row.id}")
            self._inflight.add(job)
            job.add_done_callback(self._inflight.discard)

    async def _idle_delay(self) -> float:
        if self._woken or len(self._inflight) >= GLOBAL_CONCURRENCY:
            return 0.05 if self._woken else MAX_IDLE_SLEEP_S
        due = await task_store.next_due(self._db)
        if due is None:
            return MAX_IDLE_SLEEP_S
        return max(0.0, min(MAX_IDLE_SLEEP_S, due - time.time()))

    async def sweep(self) -> int:
        """Delete the stored files of videos past their retention (`expires_at`; the task rows stay), uploads
        past their useful life and stray temp files (engine/uploads.py), and idempotency keys older than 24 h."""
        now = time.time()
        expired = await task_store.expired_media(self._db, now=now, limit=200)
        for task_id in expired:
            shutil.rmtree(self._submitter.media_dir(task_id), ignore_errors=True)
            await self._submitter.storage.delete_tree(task_key(task_id))
        await task_store.forget_media(self._db, task_ids=expired)
        if expired:
            log.info("retention: deleted the files of %d expired videos", len(expired))
        await uploads.sweep(self._db, self._settings.media_dir, now=now, storage=self._submitter.storage)
        await idempotency_store.sweep(self._db, before=now - IDEMPOTENCY_TTL_S)
        return len(expired)

    async def _guarded(self, row: TaskRow) -> None:
        # Renew the claim from the start: waiting for a channel slot must not let it lapse.
        heartbeat = asyncio.create_task(self._hold(row.id))
        try:
            async with self._slots, self._channel_slots[row.channel]:
                await self.advance(row)
        except Exception as exc:
            log.exception("advancing %s failed", row.id)
            await task_store.record_poll_failure(
                self._db,
                task_id=row.id,
                owner=self.owner,
                error=repr(exc),
                next_poll_at=time.time() + self._failure_delay(row),
            )
        finally:
            heartbeat.cancel()
        # A finished read may have made others due sooner than the loop's sleep.
        self._wake.set()

    async def _hold(self, task_id: str) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            await task_store.extend_lease(self._db, task_id=task_id, owner=self.owner, until=time.time() + LEASE_S)

    async def advance(self, row: TaskRow) -> None:
        """One step for one claimed task: deadline, (re)submit, read, and finish if it is done."""
        now = time.time()
        if now > row.deadline_at:
            await self._fail(row, "deadline_exceeded", "The task did not finish before its deadline.")
            return
        if row.upstream_id is None:
            await self._resubmit(row)
            return
        provider = self._registry.provider(row.provider)
        creds = Credentials.from_json(row.credentials)
        try:
            progress = await provider.poll(row.upstream_id, creds)
        except ProviderError as exc:
            self._count(row.provider, "error")
            await self._retry_later(row, f"poll: {exc}")
            return
        self._count(row.provider, progress.state)
        if progress.state == "completed":
            await self._complete(row, progress, creds)
        elif progress.error_code == UPSTREAM_TASK_LOST and (seen := lost_reads(row) + 1) < LOST_CONFIRMATIONS:
            # One answer that the task is unknown may be the upstream's hiccup: believe it when it repeats.
            await self._retry_later(row, f"{_LOST} ({seen} reads in a row): {progress.error_message}")
        elif progress.state in ("failed", "cancelled"):
            await self._fail(
                row,
                progress.error_code or "generation_failed",
                progress.error_message or "The upstream reported the task as failed.",
                status=TaskStatus.CANCELLED if progress.state == "cancelled" else TaskStatus.FAILED,
            )
        else:
            status = TaskStatus.IN_PROGRESS if progress.state == "in_progress" else TaskStatus.QUEUED
            value = row.progress if progress.progress is None else max(row.progress, min(99, progress.progress))
            spec = self._registry.spec(row.model)
            await task_store.record_poll(
                self._db,
                task_id=row.id,
                owner=self.owner,
                status=status,
                progress=value,
                next_poll_at=time.time()
                + poll_delay(row.polls, self._settings.poll_interval_s or spec.poll_hint_ms / 1000.0),
            )

    async def _resubmit(self, row: TaskRow) -> None:
        # The process that wrote this row stopped before its submit ended (its lease lapsed), or handed the row
        # over: look for what its last call made, then submit (engine/submit.py).
        try:
            await self._submitter.resume(row, owner=self.owner)
        except (UpstreamUnavailable, RateLimited) as exc:
            await self._retry_later(row, str(exc))
        except Conflict as exc:
            log.info("task %s: %s", row.id, exc)  # cancelled or deleted meanwhile: nothing left to do
        except VidgateError as exc:
            await self._fail(row, "submit_failed", exc.message)

    async def _complete(self, row: TaskRow, progress: Progress, creds: Credentials) -> None:
        provider = self._registry.provider(row.provider)
        folder = self._submitter.media_dir(row.id)
        video = folder / "video.mp4"
        try:
            await provider.download(progress, creds, video)
            facts = await asyncio.to_thread(media.probe, str(video))
        except (ProviderError, media.MediaError, OSError) as exc:
            await self._retry_later(row, f"download: {exc}")
            return
        await self._extras(row, provider, progress, creds, folder)
        thumbnail, sprites = folder / "thumbnail.webp", folder / "spritesheet.jpg"
        try:
            await provider.download_previews(progress, row.upstream_id or "", creds, folder)
        except ProviderError as exc:
            log.info("task %s: upstream previews unavailable (%s); making our own", row.id, exc)
        await asyncio.to_thread(_previews, video, thumbnail, sprites)
        # Into storage at once (for s3://, the local copies go: they were only for probing and previews).
        storage, prefix = self._submitter.storage, task_key(row.id)
        stored: dict[str, str] = {}
        try:
            extras = [(path, media.extra_type(path.name)) for path in media.extra_files(folder).values()]
            for path, content_type in (
                (video, "video/mp4"),
                (thumbnail, "image/webp"),
                (sprites, "image/jpeg"),
                *extras,
            ):
                if path.exists():
                    await storage.put_file(f"{prefix}/{path.name}", path, content_type=content_type)
                    stored[path.name] = f"{prefix}/{path.name}"
        except StorageUnavailable as exc:
            await self._retry_later(row, f"store: {exc}")
            return
        with contextlib.suppress(OSError):
            folder.rmdir()  # emptied by storing elsewhere (kept when it holds the stored files or inputs)
        now = time.time()
        key = await key_store.get_key(self._db, key_id=row.key_id)
        won = await task_store.finish(
            self._db,
            task_id=row.id,
            status=TaskStatus.COMPLETED,
            effects=billing.effects(
                billing.settlement(row, real_duration=facts.duration),
                billing.webhook_event(row, key, TaskStatus.COMPLETED),
            ),
            values={
                "progress": 100,
                "video_path": stored[video.name],
                "thumbnail_path": stored.get(thumbnail.name),
                "spritesheet_path": stored.get(sprites.name),
                "duration": facts.duration,
                "width": facts.width,
                "height": facts.height,
                "has_audio": facts.has_audio,
                "completed_at": now,
                "expires_at": now + self._settings.retention_days * 86400,
            },
        )
        if not won:
            # Cancelled or deleted while we downloaded: the files belong to nobody.
            shutil.rmtree(folder, ignore_errors=True)
            try:
                await storage.delete(list(stored.values()))
            except StorageUnavailable as exc:
                log.warning("task %s: stored files of a lost race not deleted (%s)", row.id, exc)
        self.webhooks_due()
        await provider.release(row.upstream_id or "", creds)

    @staticmethod
    async def _extras(row: TaskRow, provider: Provider, progress: Progress, creds: Credentials, folder: Path) -> None:
        """Store the extra outputs beside the video; one that cannot be had is left out, never failing the task."""
        for name, url in progress.extras.items():
            file_name = media.extra_file_name(name, url)
            if file_name is None:
                log.warning("task %s: extra output %r has a name vidgate does not store", row.id, name)
                continue
            try:
                await provider.download_extra(name, url, creds, folder / file_name)
            except ProviderError as exc:
                log.info("task %s: extra output %s unavailable (%s)", row.id, name, exc)

    async def _fail(self, row: TaskRow, code: str, message: str, *, status: TaskStatus = TaskStatus.FAILED) -> None:
        key = await key_store.get_key(self._db, key_id=row.key_id)
        await task_store.finish(
            self._db,
            task_id=row.id,
            status=status,
            values={"error_code": code, "error_message": message[:2000]},
            effects=billing.effects(billing.refund(row), billing.webhook_event(row, key, status)),
        )
        self.webhooks_due()
        if not row.upstream_id:
            return
        provider, creds = self._registry.provider(row.provider), Credentials.from_json(row.credentials)
        if code == "deadline_exceeded":
            # Stop the upstream spending on a video nobody will take.
            with contextlib.suppress(ProviderError):
                await provider.cancel(row.upstream_id, creds)
        await provider.release(row.upstream_id, creds)

    def _count(self, provider: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.polls.labels(provider, outcome).inc()

    def _failure_delay(self, row: TaskRow) -> float:
        return failure_delay(row.poll_failures + 1, base_s=self._settings.poll_interval_s or 1.0)

    async def _retry_later(self, row: TaskRow, error: str) -> None:
        log.info("task %s: %s; retrying later", row.id, error)
        await task_store.record_poll_failure(
            self._db,
            task_id=row.id,
            owner=self.owner,
            error=error,
            next_poll_at=time.time() + self._failure_delay(row),
        )


def lost_reads(row: TaskRow) -> int:
    """How many reads in a row, up to the last one, said the upstream does not know the task."""
    error = row.last_poll_error or ""
    if not row.poll_failures or not error.startswith(_LOST):
        return 0
    found = re.match(r" \((\d+) reads", error[len(_LOST) :])
    return int(found.group(1)) if found else 0


def _previews(video: Path, thumbnail: Path, sprites: Path) -> None:
    # Previews are a convenience: a video that cannot give them is still a finished video.
    for make, out in ((media.make_thumbnail, thumbnail), (media.make_spritesheet, sprites)):
        if out.exists():
            continue  # the upstream gave this one
        try:
            make(str(video), str(out))
        except (media.MediaError, OSError):
            log.warning("could not make %s for %s", out.name, video)
