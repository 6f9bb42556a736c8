"""What a task's terminal transition writes besides itself: the ledger entry and the webhook event."""

from __future__ import annotations

import secrets
import time
from decimal import Decimal
from typing import Any, Protocol

import orjson

from vidgate.engine.pricing import settle_amount
from vidgate.status import TaskStatus
from vidgate.store import usage
from vidgate.store.keys import KeyRecord
from vidgate.store.tables import webhook_deliveries
from vidgate.store.tasks import Effect


class Billable(Protocol):
    """What billing reads of a task (a TaskRow, or the poller's lean PollRow)."""

    @property
    def id(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def seconds(self) -> int: ...
    @property
    def price_micros(self) -> int: ...


EVENT_TYPES = {
    TaskStatus.COMPLETED: "video.completed",
    TaskStatus.FAILED: "video.failed",
    TaskStatus.CANCELLED: "video.failed",
}


def settlement(row: Billable, *, real_duration: float | None) -> Effect | None:
    """Settle a completed task on its real length: the difference to the reservation (≤ 0)."""
    if not row.price_micros:
        return None
    per_second = Decimal(row.price_micros) / Decimal(row.seconds)
    final = settle_amount(
        row.price_micros, per_second_micros=per_second, requested=row.seconds, real_duration=real_duration
    )
    return usage.entry(
        key_id=row.key_id, task_id=row.id, model=row.model, kind="settle", amount=final - row.price_micros
    )


def refund(row: Billable) -> Effect | None:
    """Give back a failed, expired or cancelled task's reservation."""
    if not row.price_micros:
        return None
    return usage.entry(key_id=row.key_id, task_id=row.id, model=row.model, kind="refund", amount=-row.price_micros)


def webhook_event(row: Billable, key: KeyRecord | None, status: TaskStatus) -> Effect | None:
    """The event to deliver for this transition, in the shape OpenAI's video webhooks use."""
    if key is None or not key.webhook_url or status not in EVENT_TYPES:
        return None
    event_id = "evt_" + secrets.token_hex(16)
    now = int(time.time())
    payload: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "created_at": now,
        "type": EVENT_TYPES[status],
        "data": {"id": row.id},
    }
    return webhook_deliveries, {
        "id": event_id,
        "key_id": key.id,
        "task_id": row.id,
        "event_type": EVENT_TYPES[status],
        "url": key.webhook_url,
        "payload": orjson.dumps(payload).decode(),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": time.time(),
        "created_at": time.time(),
    }


def effects(*items: Effect | None) -> list[Effect]:
    return [item for item in items if item is not None]
