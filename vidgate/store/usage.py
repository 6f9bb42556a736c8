"""The ledger: every reservation, settlement and refund, and what a key has spent."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vidgate.errors import RateLimited
from vidgate.store.tables import api_keys, ledger

Kind = Literal["reserve", "settle", "refund"]


class InsufficientQuota(RateLimited):
    """The key's remaining quota does not cover the price of this request."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=3600, code="insufficient_quota")


def entry(*, key_id: str, task_id: str, model: str, kind: Kind, amount: int) -> tuple[sa.Table, dict[str, Any]]:
    """A ledger row to write with a task's terminal transition."""
    return ledger, {
        "key_id": key_id,
        "task_id": task_id,
        "model": model,
        "kind": kind,
        "amount_micros": amount,
        "created_at": time.time(),
    }


async def record(conn: AsyncConnection, *, key_id: str, task_id: str, model: str, kind: Kind, amount: int) -> None:
    table, row = entry(key_id=key_id, task_id=task_id, model=model, kind=kind, amount=amount)
    await conn.execute(table.insert().values(**row))


async def check_quota(conn: AsyncConnection, *, key_id: str, amount: int, quota_micros: int) -> None:
    """Raise InsufficientQuota unless spent + held + amount fits the quota (run inside the insert's transaction)."""
    # Lock the key row (PostgreSQL) so two submits of one key are checked one after the other.
    await conn.execute(sa.select(api_keys.c.id).where(api_keys.c.id == key_id).with_for_update())
    used = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_micros), 0)).where(ledger.c.key_id == key_id)
        )
    ).scalar()
    if int(used or 0) + amount > quota_micros:
        raise over_quota(amount=amount, used=int(used or 0), quota_micros=quota_micros)


def over_quota(*, amount: int, used: int, quota_micros: int) -> InsufficientQuota:
    """The error for a request of `amount` that does not fit what remains of the quota."""
    remaining = max(0, quota_micros - used)
    return InsufficientQuota(
        f"You exceeded your current quota: this request costs {amount / 1e6:.6f} USD and "
        f"{remaining / 1e6:.6f} USD remain on this key."
    )


async def spent(engine: AsyncEngine, *, key_id: str) -> int:
    """Micro-dollars spent or held by the key (reservations of unfinished tasks included)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_micros), 0)).where(ledger.c.key_id == key_id)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar() or 0)


async def spent_by_key(engine: AsyncEngine) -> dict[str, int]:
    query = sa.select(ledger.c.key_id, sa.func.sum(ledger.c.amount_micros)).group_by(ledger.c.key_id)
    async with engine.connect() as conn:
        return {key_id: int(total or 0) for key_id, total in (await conn.execute(query)).all()}


async def spent_by_model(engine: AsyncEngine) -> dict[str, int]:
    query = sa.select(ledger.c.model, sa.func.sum(ledger.c.amount_micros)).group_by(ledger.c.model)
    async with engine.connect() as conn:
        return {model: int(total or 0) for model, total in (await conn.execute(query)).all()}


@dataclass(frozen=True)
class DayUsage:
    day: str
    model: str
    amount_micros: int
    videos: int


async def by_model_and_day(engine: AsyncEngine, *, key_id: str) -> list[DayUsage]:
    """The key's spend grouped by UTC day and model, newest day first."""
    query = sa.select(
        ledger.c.model, ledger.c.kind, ledger.c.task_id, ledger.c.amount_micros, ledger.c.created_at
    ).where(ledger.c.key_id == key_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    amounts: defaultdict[tuple[str, str], int] = defaultdict(int)
    videos: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for model, kind, task_id, amount, created in rows:
        day = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d")
        amounts[(day, model)] += int(amount)
        if kind == "settle":
            videos[(day, model)].add(task_id)
    keys = sorted(amounts, key=lambda item: (item[0], item[1]), reverse=True)
    return [DayUsage(day, model, amounts[(day, model)], len(videos[(day, model)])) for day, model in keys]


async def entries_for(engine: AsyncEngine, *, task_id: str) -> list[tuple[str, int]]:
    query = sa.select(ledger.c.kind, ledger.c.amount_micros).where(ledger.c.task_id == task_id).order_by(ledger.c.id)
    async with engine.connect() as conn:
        return [(kind, int(amount)) for kind, amount in (await conn.execute(query)).all()]
