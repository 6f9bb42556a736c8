"""Idempotency keys of POST /v1/videos: which task a (key, Idempotency-Key) made, and with which body.

The row is written by tasks.insert_task in the task's own transaction; here it is read, released when its
task died before the client had it, and swept when old.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.store.tables import idempotency_keys


@dataclass(frozen=True)
class Claim:
    """The task an Idempotency-Key made, and the fingerprint of the body that made it."""

    fingerprint: str
    task_id: str
    created_at: float


async def find(engine: AsyncEngine, *, key_id: str, idem_key: str, since: float) -> Claim | None:
    """The key's claim made at or after `since`; an older one is deleted (it no longer counts)."""
    where = (idempotency_keys.c.key_id == key_id, idempotency_keys.c.idem_key == idem_key)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(idempotency_keys).where(*where))).first()
    if row is None:
        return None
    if row.created_at < since:
        async with engine.begin() as conn:
            await conn.execute(idempotency_keys.delete().where(*where, idempotency_keys.c.created_at < since))
        return None
    return Claim(fingerprint=row.fingerprint, task_id=row.task_id, created_at=row.created_at)


async def release(engine: AsyncEngine, *, key_id: str, idem_key: str, task_id: str) -> None:
    """Forget the key's claim on `task_id` (a task whose submit failed), so a retry may create anew."""
    async with engine.begin() as conn:
        await conn.execute(
            idempotency_keys.delete().where(
                idempotency_keys.c.key_id == key_id,
                idempotency_keys.c.idem_key == idem_key,
                idempotency_keys.c.task_id == task_id,
            )
        )


async def sweep(engine: AsyncEngine, *, before: float) -> int:
    """Delete claims made before `before`."""
    async with engine.begin() as conn:
        result = await conn.execute(idempotency_keys.delete().where(idempotency_keys.c.created_at < before))
    return int(result.rowcount or 0)
