"""Validate → route → write the row → submit, with failover across a model's channels.

One client request is at most one upstream task (SPEC §4), because upstreams bill per task:
  - The row is written leased to the submitting process before any upstream call, and the lease is renewed
    while the submit runs. A whole submit, failover and lookups included, ends within `submit_timeout_s`,
    half the lease. The poller claims only rows whose lease is free or lapsed, so it never resubmits a row
    whose submit is still in flight.
  - Before each upstream call the row records the channel and account being asked (an attempt "sending").
    A call whose outcome is unknown (a timeout after sending, a cut connection, a 5xx other than 503, an
    unreadable answer; or a process that died, which the poller sees as a lapsed lease on a row still
    "sending") is reconciled before anything is sent again: Provider.find looks for the upstream task on
    that account. Found: the row adopts it. Surely absent: failover goes on. The provider cannot look: the
    request may be sent again, and the attempt records a possible orphan. The lookup itself failed: nothing
    more is sent now; the row goes to the poller, which looks again later, and the client gets its task.
  - A submit that loses its race (the task was cancelled, deleted or failed first) cancels its upstream
    task where the provider can, and records it on the attempts either way.
  - A task whose client never got an answer (the process died or stopped mid-create) is a real task of that
    key: the poller carries it to the end and it is charged once, like any other; the key sees it in its
    list. Only a submit that ends in an error the client receives deletes its row and refunds it.
  - Client-facing errors name no channel, URL or upstream text: the attempts on the row keep those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.config import Settings
from vidgate.engine import billing
from vidgate.engine import inputs as input_files
from vidgate.engine.billing import effects
from vidgate.engine.health import CLOSED, ChannelHealth
from vidgate.engine.idempotency import TTL_S as IDEMPOTENCY_TTL_S
from vidgate.engine.idempotency import Idempotency
from vidgate.engine.normalize import RawCreate, build_request, parse_prompt
from vidgate.engine.pricing import price_for
from vidgate.engine.schedule import failure_delay
from vidgate.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermissionDenied,
    ProviderError,
    RateLimited,
    UpstreamRejected,
    UpstreamTaken,
    UpstreamTransient,
    UpstreamUnavailable,
    VidgateError,
)
from vidgate.metrics import Metrics
from vidgate.providers.base import Credentials, Provider, Submitted, VideoRequest
from vidgate.providers.registry import Channel, Registry
from vidgate.status import TaskStatus
from vidgate.store import idempotency as idempotency_store
from vidgate.store import tasks as task_store
from vidgate.store.keys import KeyRecord
from vidgate.store.tasks import TaskRow

log = logging.getLogger("vidgate.submit")

# The lease a submitting process holds is this many times the submit deadline.
LEASE_FACTOR = 2.0
# One upstream call may take at most this fraction of the submit deadline.
CALL_SHARE = 3
# The pause before a submit's second round over the channels; doubled for each further round.
ROUND_PAUSE_S = 0.5
# What a client is told when no channel took its request; the row's attempts say which and why.
NO_UPSTREAM = "No upstream accepted the request; retry later."
# Attempts kept on a row (a task the poller retries for hours must not grow without bound).
MAX_ATTEMPTS = 100
# Attempt states. An attempt is "sending" from just before its call until its outcome is known.
SENDING = "sending"
ACCEPTED = "accepted"
REFUSED = "refused"  # surely nothing was made upstream
UNKNOWN = "unknown"  # something may have been made: see its "lookup"
REJECTED = "rejected"
SKIPPED = "skipped"
LOST = "lost_race"

Attempt = dict[str, Any]


def new_task_id() -> str:
    return "video_" + secrets.token_hex(16)


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a create that failed this way may still have made an upstream task."""
    if isinstance(exc, UpstreamTransient):
        if exc.nothing_created:
            return False
        # An upstream's 4xx (429 included) and 503 are refusals: nothing was made.
        if exc.status is not None and (exc.status < 500 or exc.status == 503):
            return False
    return True


class Undecided(Exception):
    """An unknown outcome could not be looked up now; the row waits for the poller to look again."""


class ChannelOrder:
    """Lower priority first; within one priority, smooth weighted round-robin (nginx's algorithm).

    Over any run of submits, each channel of a priority group leads in exact proportion to its weight
    (3:1 gives 3 of every 4), spread out rather than in bursts; the others follow by weight as fallbacks.
    """

    def __init__(self) -> None:
        self._current: dict[tuple[str, ...], dict[str, int]] = {}

    def order(self, channels: Sequence[Channel]) -> list[Channel]:
        ordered: list[Channel] = []
        for priority in sorted({ch.priority for ch in channels}):
            group = [ch for ch in channels if ch.priority == priority]
            ordered.extend(self._group(group))
        return ordered

    def _group(self, group: list[Channel]) -> list[Channel]:
        if len(group) == 1:
            return group
        current = self._current.setdefault(tuple(sorted(ch.name for ch in group)), {})
        for ch in group:
            current[ch.name] = current.get(ch.name, 0) + ch.weight
        lead = max(group, key=lambda ch: (current[ch.name], ch.weight, ch.name))
        current[lead.name] -= sum(ch.weight for ch in group)
        rest = sorted((ch for ch in group if ch is not lead), key=lambda ch: (-ch.weight, ch.name))
        return [lead, *rest]


class Submitter:
    """Creates tasks: everything between a parsed client request and an upstream task id."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: AsyncEngine,
        registry: Registry,
        http: httpx.AsyncClient,
        health: ChannelHealth,
        metrics: Metrics | None = None,
        on_created: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        callback_url: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self._settings = settings
        # (provider name, task id) -> the URL an upstream may call when the task changes (issue 11's route);
        # given only to providers that set accepts_callback. None: no callbacks, polling alone.
        self._callback_url = callback_url
        self._db = db
        self._registry = registry
        self._http = http
        self.health = health
        self._order = ChannelOrder()
        self.metrics = metrics
        self.on_created = on_created
        self._clock = clock
        # The lease owner of the rows this process is creating.
        self.owner = f"submit-{secrets.token_hex(6)}"
        self.round_pause_s = ROUND_PAUSE_S

    @property
    def deadline_s(self) -> float:
        """How long a whole submit may take, failover and lookups included."""
        return self._settings.submit_timeout_s

    @property
    def lease_s(self) -> float:
        """How long a submitting process holds a row without renewing it: well over the deadline."""
        return LEASE_FACTOR * self.deadline_s

    def media_dir(self, task_id: str) -> Path:
        return self._settings.media_dir / "tasks" / task_id

    async def create(self, key: KeyRecord, raw: RawCreate, *, idempotency: Idempotency | None = None) -> TaskRow:
        """Validate the request, write its row, submit it upstream; the stored row is returned.

        With an idempotency key this key used within 24 h for the same body, that request's task is returned.
        """
        if idempotency is not None:
            replayed = await self._replay(key, idempotency)
            if replayed is not None:
                return replayed
        model = raw.model if raw.model not in (None, "") else self._settings.default_model
        if not isinstance(model, str):
            raise InvalidRequest("model must be a string.", param="model", code="invalid_type")
        spec = self._registry.spec(model)
        if not key.may_use(model):
            raise PermissionDenied(f"This key may not use the model '{model}'.", param="model")
        req = build_request(raw, spec)
        return await self._create(key, req, remixed_from=None, idempotency=idempotency)

    async def create_request(self, key: KeyRecord, req: VideoRequest) -> TaskRow:
        """Create a task from a request another surface already validated (the DashScope surface)."""
        if not key.may_use(req.model):
            raise PermissionDenied(f"This key may not use the model '{req.model}'.", param="model")
        return await self._create(key, req, remixed_from=None)

    async def remix(self, key: KeyRecord, source_id: str, prompt: Any) -> TaskRow:
        """A new task from a completed one: same model, size, length, seed and inputs, a new prompt."""
        text = parse_prompt(prompt)
        source = await task_store.get_task(self._db, task_id=source_id, key_id=key.id)
        if source is None:
            raise NotFound(f"No video found with id '{source_id}'.", param="video_id", code="video_not_found")
        spec = self._registry.spec(source.model)
        if not spec.remix:
            raise InvalidRequest(
                f"{source.model} does not support remix.", param="video_id", code="remix_not_supported"
            )
        if not key.may_use(source.model):
            raise PermissionDenied(f"This key may not use the model '{source.model}'.", param="model")
        if source.status != TaskStatus.COMPLETED:
            raise Conflict(f"Video '{source_id}' is {source.status.value}; only completed videos can be remixed.")
        req = replace(VideoRequest.from_json(source.request), prompt=text)
        return await self._create(key, req, remixed_from=source)

    async def _create(
        self,
        key: KeyRecord,
        req: VideoRequest,
        *,
        remixed_from: TaskRow | None,
        idempotency: Idempotency | None = None,
    ) -> TaskRow:
        spec = self._registry.spec(req.model)
        # A model several providers serve must suit each of them: failover may reach any.
        serving = [self._registry.provider(each.provider) for each in self._registry.specs(req.model)]
        for provider in serving:
            provider.check(req)
        # A remix must run where its source lives (the upstream id only means something there).
        channels = await self.route(req.model, only=remixed_from.channel if remixed_from else None)
        price = price_for(req.model, req.tier, req.seconds, self._settings.prices, spec.price)
        task_id = new_task_id()
        task_dir = self.media_dir(task_id)
        now = self._clock()
        # The row names the first channel with a closed breaker as being asked: that saves a write before its
        # call (a half-open channel's trial is taken in submit_row).
        first = next((ch for ch in channels if self.health.breaker(ch.name).state == CLOSED), None)
        attempts: list[Attempt] = [{"channel": first.name, "at": now, "state": SENDING}] if first else []
        try:
            if remixed_from is None:
                req = await input_files.materialize(
                    req,
                    task_dir=task_dir / "inputs",
                    http=self._http,
                    needs_bytes=any(provider.needs_bytes for provider in serving),
                    fetch_private=self._settings.fetch_private_urls,
                    max_bytes=self._settings.max_upload_bytes,
                )
            values = {
                "id": task_id,
                "key_id": key.id,
                "model": req.model,
                "provider": spec.provider,
                "channel": (first or channels[0]).name,
                "upstream_id": None,
                "credentials": (first or channels[0]).credentials.to_json(),
                "status": TaskStatus.QUEUED.value,
                "progress": 0,
                "prompt": req.prompt,
                "seconds": req.seconds,
                "size": req.size,
                "request": req.to_json(),
                "remixed_from": remixed_from.id if remixed_from else None,
                "created_at": now,
                "updated_at": now,
                "deadline_at": now + spec.deadline_s,
                # This process holds the row while it submits. If it dies, the poller takes the row once the
                # lease lapses, and first looks upstream for whatever the lost call made.
                "lease_owner": self.owner,
                "lease_until": now + self.lease_s,
                "next_poll_at": now + self.lease_s,
                "attempts": attempts or None,
                "price_micros": price,
            }
            claim = (idempotency.key, idempotency.fingerprint) if idempotency else None
            for _ in range(3):
                if await task_store.insert_task(self._db, values, quota_micros=key.quota_micros, idempotency=claim):
                    break
                # A concurrent request with the same idempotency key wrote its task first: that one is ours.
                assert idempotency is not None
                replayed = await self._replay(key, idempotency)
                if replayed is not None:
                    shutil.rmtree(task_dir, ignore_errors=True)
                    return replayed
            else:
                raise Conflict(
                    "Another request with this Idempotency-Key is in progress; retry shortly.",
                    param="Idempotency-Key",
                    code="idempotency_key_in_use",
                )
        except BaseException:
            shutil.rmtree(task_dir, ignore_errors=True)
            raise
        try:
            await self.submit_row(
                task_id, req, channels, owner=self.owner, remix_source=remixed_from, attempts=attempts
            )
        except Conflict:
            # Cancelled or deleted meanwhile (the client gets the 409); or this process stalled past its lease
            # and a poller carried the task on, which is then the client's task like any other.
            alive = await task_store.get_task(self._db, task_id=task_id)
            if alive is None or not alive.active:
                raise
        except VidgateError as exc:
            # The client gets an error and no id: the row must not live on as a task of theirs, nor its charge.
            row = await task_store.get_task(self._db, task_id=task_id)
            await task_store.finish(
                self._db,
                task_id=task_id,
                status=TaskStatus.FAILED,
                values={"error_code": "submit_failed", "error_message": str(exc)[:2000], "deleted_at": time.time()},
                effects=effects(billing.refund(row)) if row else (),
            )
            shutil.rmtree(task_dir, ignore_errors=True)
            raise
        # Anything else (the process stopping, a bug) leaves the row to the poller: an upstream call may have
        # been made, and only a lookup can tell.
        self.on_created()
        created = await task_store.get_task(self._db, task_id=task_id)
        if created is None:
            raise NotFound(f"Video '{task_id}' was deleted while it was being created.", param="video_id")
        return created

    async def _replay(self, key: KeyRecord, idempotency: Idempotency) -> TaskRow | None:
        """The task an earlier request with this idempotency key made, once its submit is over; None when there
        is none, or when it failed (the key then no longer pins it)."""
        claim = await idempotency_store.find(
            self._db, key_id=key.id, idem_key=idempotency.key, since=self._clock() - IDEMPOTENCY_TTL_S
        )
        if claim is None:
            return None
        if claim.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request; use a new key for a new request.",
                param="Idempotency-Key",
            )
        row = await self._settled(claim.task_id, key_id=key.id)
        if row is None:
            await idempotency_store.release(self._db, key_id=key.id, idem_key=idempotency.key, task_id=claim.task_id)
        return row

    async def _settled(self, task_id: str, *, key_id: str) -> TaskRow | None:
        """The task once its submit is over (or in the poller's hands); None when it was deleted."""
        give_up = time.monotonic() + self.lease_s
        while True:
            row = await task_store.get_task(self._db, task_id=task_id, key_id=key_id)
            submitting = (
                row is not None
                and row.active
                and row.upstream_id is None
                and row.lease_owner is not None
                and (row.lease_until or 0.0) > self._clock()
            )
            if not submitting or time.monotonic() > give_up:
                return row
            await asyncio.sleep(0.05)

    async def route(self, model: str, *, only: str | None = None) -> list[Channel]:
        """The model's channels in the order to try them: priority, then weight; full ones left out."""
        channels = self._order.order(self._registry.channels_for(model))
        if only is not None:
            channels = [ch for ch in channels if ch.name == only]
            if not channels:
                log.warning("the channel %s that made a remix source is no longer configured", only)
                raise UpstreamUnavailable("The upstream that made the source video is no longer available.")
        if any(ch.max_in_flight for ch in channels):
            counts = await task_store.in_flight_by_channel(self._db)
            open_ = [ch for ch in channels if not ch.max_in_flight or counts.get(ch.name, 0) < ch.max_in_flight]
            if not open_:
                raise RateLimited(
                    f"Every channel serving {model} is at its limit of unfinished tasks; retry shortly.",
                    retry_after=5,
                    code="channels_busy",
                )
            channels = open_
        if all(self.health.is_open(ch.name) for ch in channels):
            names = [ch.name for ch in channels]
            raise UpstreamUnavailable(
                f"No healthy upstream for {model}: every channel is cooling down after repeated failures.",
                retry_after=self.health.retry_after(names),
            )
        return channels

    async def submit_row(
        self,
        task_id: str,
        req: VideoRequest,
        channels: Sequence[Channel],
        *,
        owner: str,
        remix_source: TaskRow | None = None,
        attempts: list[Attempt] | None = None,
        failures: int = 0,
    ) -> bool:
        """Submit to the first channel that accepts, holding the row's lease as `owner`, within the deadline.

        True when the row has its upstream task; False when an unknown outcome could not be looked up yet
        and the row was handed to the poller. Raises UpstreamUnavailable when no channel accepted,
        InvalidRequest when the upstream rejected the request, Conflict when the task was cancelled or taken
        over meanwhile. Every attempt (channel, outcome, lookup) is recorded on the task; a trailing
        "sending" attempt in `attempts` is already stored, and its call is made without writing it again.
        `failures` (the row's failed rounds so far) sets how long a handed-over row waits.
        """
        attempts = list(attempts or [])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        last_status: int | None = None
        try:
            async with self._holding(task_id, owner):
                async for round_, channel in self._rounds(channels, deadline):
                    if round_ and _maybe_made(attempts, channel):
                        continue  # a call there may have made a task no lookup can find: not one more
                    attempt = await self._begin(task_id, owner, attempts, channel, deadline)
                    if attempt is None:
                        continue
                    provider = self._registry.provider(channel.provider)
                    upstream_req = replace(req, model=channel.upstream_model(req.model))
                    started = time.perf_counter()
                    try:
                        # One hung upstream may not spend the whole submit: each call gets a share of it,
                        # leaving time to look up what it made and to ask the next channel.
                        call_ends = min(deadline, loop.time() + self.deadline_s / CALL_SHARE)
                        async with asyncio.timeout_at(call_ends):
                            submitted = await self._send(provider, upstream_req, channel, task_id, remix_source)
                    except UpstreamRejected as exc:
                        self._observe(channel, "rejected", started)
                        attempt.update(state=REJECTED, error=f"rejected: {exc}"[:500])
                        await task_store.set_attempts(self._db, task_id=task_id, attempts=_kept(attempts))
                        await self.health.success(channel.name)  # the channel works; the request did not
                        raise InvalidRequest(
                            f"The upstream rejected the request: {exc}",
                            param=exc.param,
                            code=exc.code or "upstream_rejected",
                        ) from exc
                    except NotSupported as exc:
                        attempt.update(state=REFUSED, error=str(exc)[:500])
                        await task_store.set_attempts(self._db, task_id=task_id, attempts=_kept(attempts))
                        raise InvalidRequest(str(exc), param="video_id") from exc
                    except (UpstreamTransient, TimeoutError) as exc:
                        self._observe(channel, "transient", started)
                        text = (
                            "no answer within the call's share of the submit deadline"
                            if isinstance(exc, TimeoutError)
                            else str(exc)
                        )
                        log.warning("submit %s via %s failed: %s", task_id, channel.name, text)
                        last_status = getattr(exc, "status", None) or last_status
                        if not round_:
                            # One client request counts once against a channel's breaker, however many rounds.
                            await self.health.failure(channel.name, text)
                        attempt.update(state=UNKNOWN if outcome_unknown(exc) else REFUSED, error=text[:500])
                        if attempt["state"] == UNKNOWN and await self._reconcile(
                            task_id, attempts, attempt, provider, upstream_req, channel, remix_source
                        ):
                            return True
                        continue
                    self._observe(channel, "accepted", started)
                    await self.health.success(channel.name)
                    attempt.update(state=ACCEPTED, upstream_id=submitted.upstream_id)
                    if await self._adopt(task_id, attempts, attempt, submitted.upstream_id, channel, provider):
                        return True
                    # Another task's lookup matched the upstream task this call made (identical requests). Its
                    # own may be out there: look before sending again.
                    attempt.update(state=UNKNOWN, error="its upstream task was matched to another task first")
                    if await self._reconcile(task_id, attempts, attempt, provider, upstream_req, channel, remix_source):
                        return True
        except Undecided as exc:
            await self._hand_over(task_id, owner, attempts, str(exc), failures=failures)
            return False
        await task_store.set_attempts(self._db, task_id=task_id, attempts=_kept(attempts))
        status = 502 if last_status is not None and last_status >= 500 and last_status != 503 else 503
        raise UpstreamUnavailable(NO_UPSTREAM, status=status)

    async def _rounds(self, channels: Sequence[Channel], deadline: float) -> AsyncIterator[tuple[int, Channel]]:
        """The channels in order, then again (up to `submit_rounds` times, after a growing pause) while the
        deadline allows: a refusal (429, 503, no connection) or a lookup that found nothing made leaves
        nothing upstream, so asking again cannot make a second task, and a brief fault need not be the
        client's 503."""
        loop = asyncio.get_running_loop()
        for round_ in range(self._settings.submit_rounds):
            if round_:
                pause = self.round_pause_s * 2 ** (round_ - 1)
                if loop.time() + pause >= deadline - self.round_pause_s:
                    return
                await asyncio.sleep(pause)
            for channel in channels:
                yield round_, channel

    async def _begin(
        self, task_id: str, owner: str, attempts: list[Attempt], channel: Channel, deadline: float
    ) -> Attempt | None:
        """The stored "sending" attempt for a call to `channel`, or None when the channel is to be skipped.

        `deadline` is on the event loop's clock (monotonic)."""
        stored = bool(attempts) and attempts[-1]["state"] == SENDING
        if stored and attempts[-1]["channel"] != channel.name:
            attempts.pop()  # written at insert for a channel that is no longer first in line
            stored = False
        skip = None
        if asyncio.get_running_loop().time() >= deadline:
            skip = "skipped: the submit deadline passed"
        elif not self.health.available(channel.name):
            skip = "skipped: circuit open"
        if skip is not None:
            if stored:
                attempts.pop()
            attempts.append({"channel": channel.name, "at": self._clock(), "state": SKIPPED, "error": skip})
            return None
        if stored:
            return attempts[-1]
        attempt: Attempt = {"channel": channel.name, "at": self._clock(), "state": SENDING}
        attempts.append(attempt)
        began = await task_store.begin_attempt(
            self._db,
            task_id=task_id,
            owner=owner,
            channel=channel.name,
            provider=channel.provider,
            credentials=channel.credentials.to_json(),
            attempts=_kept(attempts),
        )
        if not began:
            raise Conflict(f"Task '{task_id}' was cancelled or taken over before it was submitted.")
        return attempt

    async def resume(self, row: TaskRow, *, owner: str) -> bool:
        """Carry on with a row whose submit did not finish where it began (its process died and the lease
        lapsed, or it was handed over): an unknown outcome is reconciled first, then the request is sent.

        `owner` holds the row's lease. Returns and raises as submit_row does.
        """
        req = VideoRequest.from_json(row.request)
        remix_source = await task_store.get_task(self._db, task_id=row.remixed_from) if row.remixed_from else None
        attempts = list(row.attempts or [])
        last = attempts[-1] if attempts else None
        await task_store.extend_lease(self._db, task_id=row.id, owner=owner, until=self._clock() + self.lease_s)
        if last is not None and (last.get("state") == SENDING or last.get("lookup") == "failed"):
            if last["state"] == SENDING:
                last.update(state=UNKNOWN, error="no outcome recorded: the submitting process stopped")
            # The account the lost call went to is the one on the row (the configuration may have changed).
            configured = self._registry.channel(row.channel)
            channel = Channel(
                name=row.channel,
                provider=row.provider,
                credentials=Credentials.from_json(row.credentials),
                model_map=configured.model_map if configured else {},
            )
            provider = self._registry.providers.get(row.provider)
            try:
                async with self._holding(row.id, owner):
                    upstream_req = replace(req, model=channel.upstream_model(req.model))
                    if provider is None:
                        last.update(lookup="cannot_look", possible_orphan=True)
                    elif await self._reconcile(row.id, attempts, last, provider, upstream_req, channel, remix_source):
                        return True
            except Undecided as exc:
                await self._hand_over(row.id, owner, attempts, str(exc), failures=row.poll_failures)
                return False
        channels = await self.route(row.model, only=remix_source.channel if remix_source else None)
        return await self.submit_row(
            row.id,
            req,
            channels,
            owner=owner,
            remix_source=remix_source,
            attempts=attempts,
            failures=row.poll_failures,
        )

    async def _send(
        self, provider: Provider, req: VideoRequest, channel: Channel, task_id: str, remix_source: TaskRow | None
    ) -> Submitted:
        if remix_source is None:
            wants = provider.accepts_callback and self._callback_url is not None
            callback = self._callback_url(provider.name, task_id) if wants and self._callback_url else None
            return await provider.submit(req, channel.credentials, task_id=task_id, callback_url=callback)
        if remix_source.upstream_id is None:
            raise NotSupported("the source video has no upstream task")
        return await provider.remix(remix_source.upstream_id, req, channel.credentials, task_id=task_id)

    async def _reconcile(
        self,
        task_id: str,
        attempts: list[Attempt],
        attempt: Attempt,
        provider: Provider,
        req: VideoRequest,
        channel: Channel,
        remix_source: TaskRow | None,
    ) -> bool:
        """Look upstream for what an attempt with an unknown outcome made; True when the row adopted it.

        False when surely nothing was made, or when the provider cannot look (the attempt then records a
        possible orphan, and the caller may send again). Raises Undecided when the lookup failed.
        """
        remix_of = remix_source.upstream_id if remix_source else None
        try:
            async with asyncio.timeout(self.deadline_s / 2):
                candidates = await provider.find(
                    req, channel.credentials, task_id=task_id, since=float(attempt["at"]), remix_of=remix_of
                )
        except NotSupported:
            attempt.update(lookup="cannot_look", possible_orphan=True)
            log.warning(
                "task %s: the outcome of a submit via %s is unknown and cannot be looked up", task_id, channel.name
            )
            return False
        except (ProviderError, TimeoutError) as exc:
            attempt.update(lookup="failed", lookup_error=(str(exc) or "no answer in time")[:500])
            raise Undecided(f"looking up a submit whose outcome is unknown failed: {exc}") from exc
        holders = await task_store.upstream_holders(self._db, upstream_ids=candidates)
        for upstream_id in candidates:
            if holders.get(upstream_id) == task_id:
                # Adopted meanwhile, by a poller that took the row over while this process stalled.
                attempt.update(lookup="found", upstream_id=upstream_id)
                return True
            if upstream_id in holders:
                continue  # another task's
            attempt.update(lookup="found", upstream_id=upstream_id)
            if await self._adopt(task_id, attempts, attempt, upstream_id, channel, provider):
                await self.health.success(channel.name)
                return True
        attempt.pop("upstream_id", None)
        attempt.update(lookup="absent")
        return False

    async def _adopt(
        self,
        task_id: str,
        attempts: list[Attempt],
        attempt: Attempt,
        upstream_id: str,
        channel: Channel,
        provider: Provider,
    ) -> bool:
        """Make `upstream_id` the row's upstream task. False when another row holds it already; Conflict
        (after cancelling it upstream where possible) when the row was cancelled, deleted or failed meanwhile."""
        try:
            won = await task_store.mark_submitted(
                self._db,
                task_id=task_id,
                upstream_id=upstream_id,
                channel=channel.name,
                provider=channel.provider,
                credentials=channel.credentials.to_json(),
                next_poll_at=self._clock() + 0.2,
                attempts=_kept(attempts),
            )
        except UpstreamTaken:
            return False
        if won:
            return True
        row = await task_store.get_task(self._db, task_id=task_id)
        if row is not None and row.upstream_id == upstream_id:
            return True  # a lookup elsewhere adopted this very task already
        # Lost the race: nobody will ever poll this upstream task; stop it spending where the upstream can.
        attempt.update(state=LOST)
        try:
            await provider.cancel(upstream_id, channel.credentials)
            attempt["cancelled"] = True
        except NotSupported:
            attempt.update(cancelled=False, possible_orphan=True)
        except ProviderError as exc:
            attempt.update(cancelled=False, possible_orphan=True, error=f"cancel failed: {exc}"[:500])
        log.warning(
            "task %s ended before its upstream task %s was recorded (cancelled upstream: %s)",
            task_id,
            upstream_id,
            attempt["cancelled"],
        )
        await task_store.set_attempts(self._db, task_id=task_id, attempts=_kept(attempts))
        raise Conflict(f"Task '{task_id}' ended before its upstream accepted it.")

    async def _hand_over(
        self, task_id: str, owner: str, attempts: list[Attempt], error: str, *, failures: int = 0
    ) -> None:
        """Leave the row to the poller, which looks for the lost submit again later."""
        log.warning("task %s: %s; the poller will look again", task_id, error)
        await task_store.set_attempts(self._db, task_id=task_id, attempts=_kept(attempts))
        await task_store.record_poll_failure(
            self._db,
            task_id=task_id,
            owner=owner,
            error=error,
            next_poll_at=self._clock() + failure_delay(failures + 1),
        )

    @contextlib.asynccontextmanager
    async def _holding(self, task_id: str, owner: str) -> AsyncIterator[None]:
        """Renew the row's lease while the body runs (the row holds one for lease_s already)."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_s / 4)
                until = self._clock() + self.lease_s
                await task_store.extend_lease(self._db, task_id=task_id, owner=owner, until=until)

        heartbeat = asyncio.create_task(renew(), name=f"lease-{task_id}")
        try:
            yield
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    def _observe(self, channel: Channel, outcome: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.submit_seconds.labels(channel.provider, outcome).observe(time.perf_counter() - started)

    async def cancel(self, row: TaskRow, key: KeyRecord) -> None:
        """Cancel a task that has not started (DashScope's rule: PENDING only)."""
        if row.status != TaskStatus.QUEUED:
            raise Conflict(f"Task '{row.id}' is {row.status.value}; only a pending task can be cancelled.")
        if row.upstream_id is not None:
            provider = self._registry.provider(row.provider)
            try:
                await provider.cancel(row.upstream_id, Credentials.from_json(row.credentials))
            except (NotSupported, UpstreamRejected) as exc:
                raise Conflict(f"Task '{row.id}' could not be cancelled upstream: {exc}") from exc
            except UpstreamTransient as exc:
                log.warning("cancel of %s upstream failed: %s", row.id, exc)
                raise UpstreamUnavailable("The upstream did not answer the cancel; retry later.") from exc
        # A submit still in flight loses its race to this and cancels what it made (see _adopt).
        won = await task_store.finish(
            self._db,
            task_id=row.id,
            status=TaskStatus.CANCELLED,
            values={"error_code": "Canceled", "error_message": "Cancelled by the client."},
            effects=effects(billing.refund(row), billing.webhook_event(row, key, TaskStatus.CANCELLED)),
        )
        if not won:
            raise Conflict(f"Task '{row.id}' finished before it could be cancelled.")
        if row.upstream_id is not None:
            await self._registry.provider(row.provider).release(row.upstream_id, Credentials.from_json(row.credentials))

    async def delete(self, row: TaskRow) -> None:
        """Delete a task and its files; an unfinished one is cancelled (upstream too, where possible)."""
        if row.active:
            if row.upstream_id is not None:
                provider = self._registry.provider(row.provider)
                try:
                    await provider.cancel(row.upstream_id, Credentials.from_json(row.credentials))
                except (NotSupported, UpstreamTransient, UpstreamRejected) as exc:
                    log.info("cancel of %s upstream: %s", row.id, exc)
                await provider.release(row.upstream_id, Credentials.from_json(row.credentials))
            await task_store.finish(
                self._db,
                task_id=row.id,
                status=TaskStatus.CANCELLED,
                values={"error_code": "cancelled", "error_message": "Deleted before it finished."},
                effects=effects(billing.refund(row)),
            )
        await task_store.mark_deleted(self._db, task_id=row.id)
        shutil.rmtree(self.media_dir(row.id), ignore_errors=True)


def _maybe_made(attempts: list[Attempt], channel: Channel) -> bool:
    """Whether an earlier call of this submit to `channel` may have left an upstream task (a possible orphan)."""
    return any(a.get("channel") == channel.name and a.get("possible_orphan") for a in attempts)


def _kept(attempts: list[Attempt]) -> list[Attempt]:
    return attempts[-MAX_ATTEMPTS:]
