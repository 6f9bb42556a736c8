"""Channel slots: `max_in_flight` as a hard cap, reserved atomically across processes and replicas.

A channel with `max_in_flight = n` has slots 0..n-1; (channel, slot) is the primary key, so however many
submits race in however many processes, each slot goes to one task. A slot is taken just before the upstream
call and belongs to its task while the task is unfinished: a slot whose task has ended (completed, failed,
cancelled, deleted, or a submit that failed over elsewhere) is freed by the next reservation that finds the
channel full, so no process has to outlive its tasks for the slot to come back, and the table never holds
more than n rows per channel.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.status import ACTIVE
from vidgate.store.tables import channel_slots, tasks

_ACTIVE = [status.value for status in ACTIVE]


async def reserve(engine: AsyncEngine, *, channel: str, task_id: str, limit: int, now: float) -> bool:
    """Take a slot of `channel` for `task_id` (True), or find all `limit` of them held by unfinished tasks."""
    for sweep in (False, True):
        if sweep and not await _free_ended(engine, channel=channel):
            return False
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(channel_slots.c.slot, channel_slots.c.task_id).where(channel_slots.c.channel == channel)
                )
            ).all()
        if any(row.task_id == task_id for row in rows):
            return True  # a later round of the same submit, or a resumed one
        taken = {row.slot for row in rows}
        if len(taken) >= limit:
            continue
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        for slot in range(limit):
            if slot in taken:
                continue
            statement = (
                insert(channel_slots)
                .values(channel=channel, slot=slot, task_id=task_id, taken_at=now)
                .on_conflict_do_nothing(index_elements=[channel_slots.c.channel, channel_slots.c.slot])
            )
            async with engine.begin() as conn:
                if (await conn.execute(statement)).rowcount == 1:
                    return True
            # Another process took this one between the read and the insert: try the next.
    return False


async def release(engine: AsyncEngine, *, task_id: str, channel: str | None = None) -> None:
    """Give back the task's slot (of `channel`, or of any channel)."""
    statement = channel_slots.delete().where(channel_slots.c.task_id == task_id)
    if channel is not None:
        statement = statement.where(channel_slots.c.channel == channel)
    async with engine.begin() as conn:
        await conn.execute(statement)


async def held(engine: AsyncEngine) -> dict[str, int]:
    """Slots held per channel (for `vidgate channels` and tests)."""
    query = sa.select(channel_slots.c.channel, sa.func.count()).group_by(channel_slots.c.channel)
    async with engine.connect() as conn:
        return {channel: int(count) for channel, count in (await conn.execute(query)).all()}


async def _free_ended(engine: AsyncEngine, *, channel: str) -> bool:
    """Free the channel's slots whose task is no longer unfinished; whether any was freed."""
    unfinished = sa.select(tasks.c.id).where(
        tasks.c.id == channel_slots.c.task_id, tasks.c.status.in_(_ACTIVE), tasks.c.deleted_at.is_(None)
    )
    statement = channel_slots.delete().where(channel_slots.c.channel == channel, ~unfinished.exists())
    async with engine.begin() as conn:
        return bool((await conn.execute(statement)).rowcount)
