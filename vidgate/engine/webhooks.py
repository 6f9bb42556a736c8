"""Webhook delivery: events written with a task's terminal transition (an outbox) are POSTed to the key's
URL, signed per the Standard Webhooks spec, and retried with backoff for a day — at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from vidgate import netguard
from vidgate.config import Settings
from vidgate.errors import AddressRefused
from vidgate.metrics import Metrics
from vidgate.store import keys as key_store
from vidgate.store.db import protection
from vidgate.store.tables import webhook_deliveries

log = logging.getLogger("vidgate.webhooks")

BATCH = 50
LEASE_S = 30.0
TIMEOUT_S = 10.0


def next_delay(attempts: int, *, delays: tuple[float, ...], every_s: float) -> float:
    """Seconds before retry number `attempts` (1-based): the listed delays first, then every `every_s`."""
    if attempts <= len(delays):
        return delays[attempts - 1]
    return every_s


def sign(secret: str, message_id: str, payload: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one delivery."""
    signature = Webhook(secret).sign(message_id, now, payload)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "vidgate-webhooks",
    }


class Deliverer:
    """Background loop over due deliveries; survives its own failures, stops on an Event."""

    def __init__(
        self, *, settings: Settings, db: AsyncEngine, http: httpx.AsyncClient, metrics: Metrics | None = None
    ) -> None:
        self._settings = settings
        self._db = db
        self._http = http
        self._metrics = metrics
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vidgate-webhooks")

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.deliver_due()
                delay = await self._idle_delay()
            except Exception:
                log.exception("webhook loop failed; retrying")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def _idle_delay(self) -> float:
        query = sa.select(sa.func.min(webhook_deliveries.c.next_attempt_at)).where(
            webhook_deliveries.c.status == "pending"
        )
        async with self._db.connect() as conn:
            due = (await conn.execute(query)).scalar()
        return 5.0 if due is None else max(0.05, min(5.0, float(due) - time.time()))

    async def deliver_due(self) -> None:
        now = time.time()
        due = (
            sa.select(webhook_deliveries.c.id)
            .where(
                webhook_deliveries.c.status == "pending",
                webhook_deliveries.c.next_attempt_at <= now,
                sa.or_(webhook_deliveries.c.lease_until.is_(None), webhook_deliveries.c.lease_until < now),
            )
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        claim = (
            webhook_deliveries.update()
            .where(webhook_deliveries.c.id.in_(due))
            .values(lease_until=now + LEASE_S)
            .returning(*webhook_deliveries.c)
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(claim)).all()
        await asyncio.gather(*(self._deliver(row._mapping) for row in rows))

    async def _deliver(self, row: sa.RowMapping) -> None:
        key = await key_store.get_key(self._db, key_id=row["key_id"])
        status: int | None = None
        error: str | None = None
        refused = False
        if key is None or not key.webhook_secret:
            error = "the key has no webhook secret any more"
        else:
            headers = sign(key.webhook_secret, row["id"], row["payload"], datetime.now(UTC))
            # The URL guard applies (the receiver must be public) unless fetch_private_urls lifts it; redirects
            # are not followed.
            policy = netguard.Policy(private=self._settings.fetch_private_urls)
            try:
                netguard.parse_url(row["url"])
                response = await self._http.post(
                    row["url"],
                    content=row["payload"].encode(),
                    headers=headers,
                    timeout=TIMEOUT_S,
                    extensions=policy.extensions(),
                )
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except ValueError as exc:
                error, refused = f"refused: the webhook URL is not valid ({exc})", True
            except AddressRefused as exc:
                error, refused = f"refused: {exc}", True
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"
        await self._record(row, status=status, error=error, refused=refused)

    async def _record(
        self, row: sa.RowMapping, *, status: int | None, error: str | None, refused: bool = False
    ) -> None:
        attempts = int(row["attempts"]) + 1
        now = time.time()
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status": status,
            "last_error": protection(self._db).redact(error) if error else None,
            "lease_until": None,
        }
        if error is None:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
            outcome = "delivered"
        elif refused:
            # Nothing was sent; retrying the same URL under the same settings would be refused again.
            values.update(status="failed", next_attempt_at=None)
            outcome = "refused"
        else:
            delay = next_delay(
                attempts, delays=self._settings.webhook_retry_delays, every_s=self._settings.webhook_retry_every_s
            )
            if now + delay - float(row["created_at"]) > self._settings.webhook_give_up_after_s:
                values.update(status="failed", next_attempt_at=None)
                outcome = "gave_up"
            else:
                values.update(next_attempt_at=now + delay)
                outcome = "retry"
        if self._metrics is not None:
            self._metrics.webhooks.labels(outcome).inc()
        async with self._db.begin() as conn:
            await conn.execute(webhook_deliveries.update().where(webhook_deliveries.c.id == row["id"]).values(**values))


async def recent(db: AsyncEngine, *, limit: int = 50) -> list[sa.RowMapping]:
    """The newest deliveries and their outcome (for `vidgate webhooks list`)."""
    query = sa.select(webhook_deliveries).order_by(webhook_deliveries.c.created_at.desc()).limit(limit)
    async with db.connect() as conn:
        return [row._mapping for row in (await conn.execute(query)).all()]
