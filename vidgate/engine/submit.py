"""Validate → route → write the row → submit, with failover across a model's channels."""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.config import Settings
from vidgate.engine import billing
from vidgate.engine import inputs as input_files
from vidgate.engine.billing import effects
from vidgate.engine.health import ChannelHealth
from vidgate.engine.normalize import RawCreate, build_request, parse_prompt
from vidgate.engine.pricing import price_for
from vidgate.engine.schedule import submit_grace_s
from vidgate.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermissionDenied,
    RateLimited,
    UpstreamRejected,
    UpstreamTransient,
    UpstreamUnavailable,
)
from vidgate.metrics import Metrics
from vidgate.providers.base import Credentials, Submitted, VideoRequest
from vidgate.providers.registry import Channel, Registry
from vidgate.status import TaskStatus
from vidgate.store import tasks as task_store
from vidgate.store.keys import KeyRecord
from vidgate.store.tasks import TaskRow

log = logging.getLogger("vidgate.submit")


def new_task_id() -> str:
    return "video_" + secrets.token_hex(16)


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
    ) -> None:
        self._settings = settings
        self._db = db
        self._registry = registry
        self._http = http
        self.health = health
        self._order = ChannelOrder()
        self.metrics = metrics
        self.on_created = on_created

    def media_dir(self, task_id: str) -> Path:
        return self._settings.media_dir / "tasks" / task_id

    async def create(self, key: KeyRecord, raw: RawCreate) -> TaskRow:
        """Validate the request, write its row, submit it upstream; the stored row is returned."""
        model = raw.model if raw.model not in (None, "") else self._settings.default_model
        if not isinstance(model, str):
            raise InvalidRequest("model must be a string.", param="model", code="invalid_type")
        spec = self._registry.spec(model)
        if not key.may_use(model):
            raise PermissionDenied(f"This key may not use the model '{model}'.", param="model")
        req = build_request(raw, spec)
        return await self._create(key, req, remixed_from=None)

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

    async def _create(self, key: KeyRecord, req: VideoRequest, *, remixed_from: TaskRow | None) -> TaskRow:
        spec = self._registry.spec(req.model)
        provider = self._registry.provider(spec.provider)
        provider.check(req)
        # A remix must run where its source lives (the upstream id only means something there).
        channels = await self.route(req.model, only=remixed_from.channel if remixed_from else None)
        price = price_for(req.model, req.tier, req.seconds, self._settings.prices, spec.price)
        task_id = new_task_id()
        task_dir = self.media_dir(task_id)
        now = time.time()
        try:
            if remixed_from is None:
                req = await input_files.materialize(
                    req,
                    task_dir=task_dir / "inputs",
                    http=self._http,
                    needs_bytes=provider.needs_bytes,
                    fetch_private=self._settings.fetch_private_urls,
                    max_bytes=self._settings.max_upload_bytes,
                )
            await task_store.insert_task(
                self._db,
                {
                    "id": task_id,
                    "key_id": key.id,
                    "model": req.model,
                    "provider": spec.provider,
                    "channel": channels[0].name,
                    "upstream_id": None,
                    "credentials": channels[0].credentials.to_json(),
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
                    # If this process dies before the upstream answers, the poller submits it after this.
                    "next_poll_at": now + submit_grace_s(),
                    "price_micros": price,
                },
                quota_micros=key.quota_micros,
            )
        except BaseException:
            shutil.rmtree(task_dir, ignore_errors=True)
            raise
        try:
            await self.submit_row(task_id, req, channels, remix_source=remixed_from)
        except BaseException as exc:
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
        self.on_created()
        created = await task_store.get_task(self._db, task_id=task_id)
        assert created is not None  # just written by us; only a DELETE by its owner could race here
        return created

    async def route(self, model: str, *, only: str | None = None) -> list[Channel]:
        """The model's channels in the order to try them: priority, then weight; full ones left out."""
        channels = self._order.order(self._registry.channels_for(model))
        if only is not None:
            channels = [ch for ch in channels if ch.name == only]
            if not channels:
                raise UpstreamUnavailable(f"The channel '{only}' that made the source video is no longer configured.")
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
        self, task_id: str, req: VideoRequest, channels: Sequence[Channel], *, remix_source: TaskRow | None = None
    ) -> None:
        """Submit to the first channel that accepts; UpstreamTransient moves on to the next one.

        Every attempt (channel, outcome) is recorded on the task.
        """
        attempts: list[dict[str, Any]] = []
        last_status: int | None = None
        for channel in channels:
            if not self.health.available(channel.name):
                attempts.append({"channel": channel.name, "at": time.time(), "error": "skipped: circuit open"})
                continue
            provider = self._registry.provider(channel.provider)
            upstream_req = replace(req, model=channel.upstream_model(req.model))
            started = time.perf_counter()
            try:
                if remix_source is not None:
                    if remix_source.upstream_id is None:
                        raise NotSupported("the source video has no upstream task")
                    submitted: Submitted = await provider.remix(
                        remix_source.upstream_id, upstream_req, channel.credentials, task_id=task_id
                    )
                else:
                    submitted = await provider.submit(upstream_req, channel.credentials, task_id=task_id)
            except UpstreamTransient as exc:
                self._observe(channel, "transient", started)
                log.warning("submit %s via %s failed: %s", task_id, channel.name, exc)
                attempts.append({"channel": channel.name, "at": time.time(), "error": str(exc)[:500]})
                last_status = exc.status
                await self.health.failure(channel.name, str(exc))
                continue
            except UpstreamRejected as exc:
                self._observe(channel, "rejected", started)
                attempts.append({"channel": channel.name, "at": time.time(), "error": f"rejected: {exc}"[:500]})
                await task_store.set_attempts(self._db, task_id=task_id, attempts=attempts)
                await self.health.success(channel.name)  # the channel works; the request did not
                raise InvalidRequest(
                    f"The upstream rejected the request: {exc}", param=exc.param, code=exc.code or "upstream_rejected"
                ) from exc
            except NotSupported as exc:
                raise InvalidRequest(str(exc), param="video_id") from exc
            self._observe(channel, "accepted", started)
            await self.health.success(channel.name)
            attempts.append({"channel": channel.name, "at": time.time(), "upstream_id": submitted.upstream_id})
            await task_store.mark_submitted(
                self._db,
                task_id=task_id,
                upstream_id=submitted.upstream_id,
                channel=channel.name,
                provider=channel.provider,
                credentials=channel.credentials.to_json(),
                next_poll_at=time.time() + 0.2,
                attempts=attempts,
            )
            return
        await task_store.set_attempts(self._db, task_id=task_id, attempts=attempts)
        status = 502 if last_status is not None and last_status >= 500 and last_status != 503 else 503
        raise UpstreamUnavailable(
            "No upstream channel accepted the request: " + "; ".join(f"{a['channel']}: {a['error']}" for a in attempts),
            status=status,
        )

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
                raise UpstreamUnavailable(f"The upstream did not answer the cancel: {exc}") from exc
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
