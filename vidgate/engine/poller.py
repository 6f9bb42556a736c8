"""The poller: claims due tasks in batches, reads their upstream state, and carries them to the end.

It survives its own failures, stops on an Event and drains in-flight reads with a grace period. Rows are
claimed with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so several replicas share the work, and every
terminal transition is a compare-and-set, so exactly one process finishes a task.

It is lean per poll: a claim reads only the columns a poll needs (store.tasks.PollRow: no request body),
the non-terminal readings of one tick are written together in one transaction (group commit), one lease
keeper renews every row in flight in one statement, and reads are scheduled from each model's learned
duration on its channel (engine/schedule.py): sparse until completion is near, dense after. An upstream
callback (engine/callbacks.py, api/callbacks.py) claims its task at once, whatever its schedule.
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
from vidgate.engine.callbacks import CallbackSigner
from vidgate.engine.idempotency import TTL_S as IDEMPOTENCY_TTL_S
from vidgate.engine.schedule import Durations, failure_delay, next_poll_in, poll_delay
from vidgate.engine.submit import Submitter, task_key
from vidgate.errors import Conflict, ProviderError, RateLimited, StorageUnavailable, UpstreamUnavailable, VidgateError
from vidgate.metrics import Metrics
from vidgate.providers.base import UPSTREAM_TASK_LOST, Credentials, Progress, Provider
from vidgate.providers.registry import Registry
from vidgate.status import TaskStatus
from vidgate.store import idempotency as idempotency_store
from vidgate.store import keys as key_store
from vidgate.store import tasks as task_store
from vidgate.store.tasks import PollRow, Reading, TaskRow

log = logging.getLogger("vidgate.poller")

BATCH = 200
# A claim lapses this long after its holder stops renewing it (a crashed replica's rows come back soon).
LEASE_S = 10.0
MAX_IDLE_SLEEP_S = 1.0
# Rows claimed and not yet finished with, in this process (a leased row waiting costs a few hundred bytes:
# completions being stored must not starve the reads); at most PER_CHANNEL_CONCURRENCY upstream calls run at
# once per channel (an upstream's rate limit is per account).
GLOBAL_CONCURRENCY = 512
PER_CHANNEL_CONCURRENCY = 32
# A task the upstream says it does not know is failed only after this many such reads in a row.
LOST_CONFIRMATIONS = 3
_LOST = "the upstream does not know the task"
# The loop wakes at most this often for scheduled reads, and each claim takes the rows due within this long
# too: reads due close together share one claim, each at most this much early or late.
CLAIM_AHEAD_S = 0.2
# Readings finishing within this long of each other are written in one transaction.
FLUSH_S = 0.02
# One task is woken by callbacks at most once in this long; a later call within it is deferred, not lost.
CALLBACK_GAP_S = 1.0
# A woken task that someone else holds (polling it, downloading it) is claimed as soon as they let go,
# for at most this long; after that its schedule (or the holder's reading) takes over.
WAKE_PATIENCE_S = 2 * LEASE_S
WOKEN_RETRY_S = 0.05
# An upstream that called back within this long is trusted to call back: its fallback polls are sparser.
CALLBACK_TRUST_S = 3600.0
# Learned durations are rebuilt from the finished rows (other replicas' included) this often.
RELEARN_S = 600.0

Row = PollRow | TaskRow


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.webhooks_due = webhooks_due
        self._db = db
        self._registry = registry
        self._submitter = submitter
        self._clock = clock
        self.owner = f"poller-{secrets.token_hex(6)}"
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        # Task id -> (the provider a callback named, or None; give up claiming it at this clock time).
        self._woken: dict[str, tuple[str | None, float]] = {}
        self._last_callback: dict[str, float] = {}
        self._deferred: set[str] = set()
        self._called_back: dict[str, float] = {}
        self._channel_slots: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(PER_CHANNEL_CONCURRENCY)
        )
        self._inflight: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()
        self._saturated = False
        self._backlog = False
        self._pending: list[tuple[Reading, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._signer: CallbackSigner | None = None
        self.durations = Durations()
        self.last_tick = 0.0
        self._next_sweep = 0.0
        self._next_learn = 0.0

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
        if task_id is not None and task_id not in self._woken:
            self._woken[task_id] = (None, self._clock() + WAKE_PATIENCE_S)
        self._wake.set()

    # -- upstream callbacks --------------------------------------------------------------------------------

    @property
    def signer(self) -> CallbackSigner:
        if self._signer is None:
            self._signer = CallbackSigner(self._settings.secret)
        return self._signer

    def called_back(self, provider: str, task_id: str) -> None:
        """A callback with a valid signature arrived for this task: read it from its upstream at once.

        Whatever the callback said is not looked at. Calls for one task are taken at most once per
        CALLBACK_GAP_S (a later one within the gap is deferred to its end, and merged with any other), so
        replays make no poll storm; a task that is unknown, finished or of another provider is not claimed.
        """
        now = time.monotonic()
        self._called_back[provider] = now
        if task_id in self._woken or task_id in self._deferred:
            return
        last = self._last_callback.get(task_id)
        if last is not None and now - last < CALLBACK_GAP_S:
            self._deferred.add(task_id)
            asyncio.get_running_loop().call_later(last + CALLBACK_GAP_S - now, self._deferred_wake, provider, task_id)
            return
        if len(self._last_callback) >= 4096:
            self._last_callback = {tid: at for tid, at in self._last_callback.items() if now - at < CALLBACK_GAP_S}
        self._last_callback[task_id] = now
        self._woken[task_id] = (provider, self._clock() + WAKE_PATIENCE_S)
        self._wake.set()

    def _deferred_wake(self, provider: str, task_id: str) -> None:
        self._deferred.discard(task_id)
        self._last_callback.pop(task_id, None)
        self.called_back(provider, task_id)

    def _trusts_callbacks(self, provider: str) -> bool:
        seen = self._called_back.get(provider)
        return seen is not None and time.monotonic() - seen < CALLBACK_TRUST_S

    # -- the loop ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        keeper = asyncio.create_task(self._keep_leases(), name="vidgate-poller-leases")
        try:
            while not self._stop.is_set():
                self.last_tick = time.time()
                try:
                    if self.last_tick >= self._next_learn:
                        self._next_learn = self.last_tick + RELEARN_S
                        await self.learn()
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
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def learn(self) -> None:
        """Rebuild the typical durations from the finished rows (every replica's)."""
        self.durations.replace(await task_store.recent_durations(self._db))

    async def _tick(self) -> None:
        now = self._clock()
        claimed: list[PollRow] = []
        if self._woken:
            claimed += await self._claim_woken(now)
        free = GLOBAL_CONCURRENCY - len(self._inflight) - len(claimed)
        self._backlog = False
        if free > 0:
            due = await task_store.claim_polls(
                self._db, owner=self.owner, now=now, limit=min(BATCH, free), lease_s=LEASE_S, ahead=CLAIM_AHEAD_S
            )
            self._backlog = len(due) == min(BATCH, free)
            claimed += due
        for row in claimed:
            self._held.add(row.id)
            job = asyncio.create_task(self._guarded(row), name=f"poll-{row.id}")
            self._inflight.add(job)
            job.add_done_callback(self._done)
        self._saturated = len(self._inflight) >= GLOBAL_CONCURRENCY

    def _done(self, job: asyncio.Task[None]) -> None:
        self._inflight.discard(job)
        if self._saturated:
            self._saturated = False
            self._wake.set()

    async def _claim_woken(self, now: float) -> list[PollRow]:
        """Claim the tasks callbacks (or a provider's notify) woke, due or not; keep those someone else
        holds for a later tick, drop the finished and unknown ones."""
        woken, self._woken = self._woken, {}
        by_provider: defaultdict[str | None, list[str]] = defaultdict(list)
        for task_id, (provider, _until) in woken.items():
            by_provider[provider].append(task_id)
        claimed: list[PollRow] = []
        for provider, ids in by_provider.items():
            got = await task_store.claim_ids(
                self._db, task_ids=ids, owner=self.owner, now=now, lease_s=LEASE_S, provider=provider
            )
            claimed += got
            taken = {row.id for row in got}
            waiting = [task_id for task_id in ids if task_id not in taken and woken[task_id][1] > now]
            for task_id in await task_store.still_active(self._db, task_ids=waiting, provider=provider):
                self._woken.setdefault(task_id, woken[task_id])
        return claimed

    async def _idle_delay(self) -> float:
        if self._woken:
            return WOKEN_RETRY_S
        if self._saturated:
            return MAX_IDLE_SLEEP_S
        if self._backlog:
            return 0.0  # more are due than one claim took
        due = await task_store.next_claimable(self._db)
        if due is None:
            return MAX_IDLE_SLEEP_S
        # At most one claim every CLAIM_AHEAD_S for scheduled reads (each claim takes those due a little later).
        return max(CLAIM_AHEAD_S, min(MAX_IDLE_SLEEP_S, due - self._clock()))

    async def _keep_leases(self) -> None:
        """Renew the lease of every row in flight here, in one statement, well before it lapses."""
        while True:
            await asyncio.sleep(LEASE_S / 3)
            if self._held:
                try:
                    await task_store.extend_leases(
                        self._db, task_ids=list(self._held), owner=self.owner, until=self._clock() + LEASE_S
                    )
                except Exception:
                    log.exception("renewing the poller's leases failed; retrying")

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

    async def _guarded(self, row: PollRow) -> None:
        try:
            await self.advance(row)
        except Exception as exc:
            log.exception("advancing %s failed", row.id)
            try:
                await self._retry_later(row, repr(exc), quiet=True)
            except Exception:
                log.exception("recording the failure of %s failed; its lease lapses instead", row.id)
        finally:
            self._held.discard(row.id)

    # -- one task ------------------------------------------------------------------------------------------

    async def advance(self, row: Row) -> None:
        """One step for one claimed task: deadline, (re)submit, read, and finish if it is done."""
        now = self._clock()
        if now > row.deadline_at:
            await self._fail(row, "deadline_exceeded", "The task did not finish before its deadline.")
            return
        if row.upstream_id is None:
            await self._resubmit(row)
            return
        provider = self._registry.provider(row.provider)
        creds = Credentials.from_json(row.credentials)
        try:
            # The channel's slots cover its upstream calls only (not previews or writes): a burst of
            # completions must not hold up the reads of the channel's other tasks.
            async with self._channel_slots[row.channel]:
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
            now = self._clock()
            await self._record(
                Reading(task_id=row.id, next_poll_at=now + self.next_read(row, now), status=status, progress=value)
            )

    def next_read(self, row: Row, now: float) -> float:
        """Seconds until the next read of a healthy in-flight task (engine/schedule.py)."""
        if self._settings.poll_interval_s:
            # A fixed interval set by the operator (or a test) is kept to, as it always was.
            return poll_delay(row.polls, self._settings.poll_interval_s)
        spec = self._registry.spec(row.model)
        provider = self._registry.providers.get(row.provider)
        return next_poll_in(
            age=now - row.created_at,
            polls=row.polls,
            base_s=spec.poll_hint_ms / 1000.0,
            window=self.durations.window(row.channel, row.model),
            called_back=provider is not None and provider.accepts_callback and self._trusts_callbacks(row.provider),
        )

    async def _record(self, reading: Reading) -> None:
        """Store a non-terminal reading; those arriving within FLUSH_S share one transaction."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((reading, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_readings(), name="vidgate-poller-writer")
        await done

    async def _write_readings(self) -> None:
        try:
            await asyncio.sleep(FLUSH_S)
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await task_store.record_readings(
                        self._db, owner=self.owner, readings=[reading for reading, _ in batch]
                    )
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None

    async def _resubmit(self, row: Row) -> None:
        # The process that wrote this row stopped before its submit ended (its lease lapsed), or handed the row
        # over: look for what its last call made, then submit (engine/submit.py).
        full = row if isinstance(row, TaskRow) else await task_store.get_task(self._db, task_id=row.id)
        if full is None:
            return  # deleted meanwhile
        try:
            await self._submitter.resume(full, owner=self.owner)
        except (UpstreamUnavailable, RateLimited) as exc:
            await self._retry_later(row, str(exc))
        except Conflict as exc:
            log.info("task %s: %s", row.id, exc)  # cancelled or deleted meanwhile: nothing left to do
        except VidgateError as exc:
            await self._fail(row, "submit_failed", exc.message)

    async def _complete(self, row: Row, progress: Progress, creds: Credentials) -> None:
        provider = self._registry.provider(row.provider)
        folder = self._submitter.media_dir(row.id)
        video = folder / "video.mp4"
        try:
            async with self._channel_slots[row.channel]:
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
        await asyncio.to_thread(_previews, video, thumbnail, sprites, facts)
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
                "extras": sorted(name for name in stored if media.extra_type(name)) or None,
                "duration": facts.duration,
                "width": facts.width,
                "height": facts.height,
                "has_audio": facts.has_audio,
                "completed_at": now,
                "expires_at": now + self._settings.retention_days * 86400,
            },
        )
        if won:
            self.durations.add(row.channel, row.model, now - row.created_at)
        else:
            # Cancelled or deleted while we downloaded: the files belong to nobody.
            shutil.rmtree(folder, ignore_errors=True)
            try:
                await storage.delete(list(stored.values()))
            except StorageUnavailable as exc:
                log.warning("task %s: stored files of a lost race not deleted (%s)", row.id, exc)
        if key is not None and key.webhook_url:
            self.webhooks_due()  # only when an event was written: a wake costs the deliverer a query
        await provider.release(row.upstream_id or "", creds)

    @staticmethod
    async def _extras(row: Row, provider: Provider, progress: Progress, creds: Credentials, folder: Path) -> None:
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

    async def _fail(self, row: Row, code: str, message: str, *, status: TaskStatus = TaskStatus.FAILED) -> None:
        key = await key_store.get_key(self._db, key_id=row.key_id)
        await task_store.finish(
            self._db,
            task_id=row.id,
            status=status,
            values={"error_code": code, "error_message": message[:2000]},
            effects=billing.effects(billing.refund(row), billing.webhook_event(row, key, status)),
        )
        if key is not None and key.webhook_url:
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

    def _failure_delay(self, row: Row) -> float:
        return failure_delay(row.poll_failures + 1, base_s=self._settings.poll_interval_s or 1.0)

    async def _retry_later(self, row: Row, error: str, *, quiet: bool = False) -> None:
        if not quiet:
            log.info("task %s: %s; retrying later", row.id, error)
        await self._record(Reading(task_id=row.id, next_poll_at=self._clock() + self._failure_delay(row), error=error))


def lost_reads(row: Row) -> int:
    """How many reads in a row, up to the last one, said the upstream does not know the task."""
    error = row.last_poll_error or ""
    if not row.poll_failures or not error.startswith(_LOST):
        return 0
    found = re.match(r" \((\d+) reads", error[len(_LOST) :])
    return int(found.group(1)) if found else 0


def _previews(video: Path, thumbnail: Path, sprites: Path, facts: media.Probe | None = None) -> None:
    # Previews are a convenience: a video that cannot give them is still a finished video.
    if not thumbnail.exists() and not sprites.exists():
        try:
            media.make_previews(str(video), str(thumbnail), str(sprites), facts)  # one pass for both
            return
        except (media.MediaError, OSError):
            log.warning("could not make previews for %s in one pass; trying each", video)
    for make, out in ((media.make_thumbnail, thumbnail), (media.make_spritesheet, sprites)):
        if out.exists():
            continue  # the upstream gave this one
        try:
            make(str(video), str(out))
        except (media.MediaError, OSError):
            log.warning("could not make %s for %s", out.name, video)
