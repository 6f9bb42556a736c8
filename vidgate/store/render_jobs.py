"""Local render jobs (the `local` provider): kept in the database, so any process or replica runs or resumes them.

A job is claimed under a lease, like a task's poll: the process that renders it renews the lease (and records
how far it got) while the render runs; a job whose lease lapsed (its process was killed) is claimed by the
next process that polls it, and rendered again from its spec (rendering is deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.store.tables import render_jobs

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
UNFINISHED = (QUEUED, RUNNING)


@dataclass(frozen=True)
class Job:
    task_id: str
    spec: dict[str, Any]
    state: str
    done_frames: int
    total_frames: int
    error: str | None
    lease_owner: str | None
    lease_until: float | None
    runs: int

    def free(self, now: float) -> bool:
        """Whether no process holds it now (never claimed, released, or its holder stopped renewing)."""
        return self.state in UNFINISHED and (self.lease_owner is None or (self.lease_until or 0.0) < now)


async def insert(engine: AsyncEngine, *, task_id: str, spec: Mapping[str, Any], now: float) -> None:
    """Record a job to render (once: a second insert of the same task is a no-op)."""
    statement_of = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = (
        statement_of(render_jobs)
        .values(task_id=task_id, spec=dict(spec), state=QUEUED, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[render_jobs.c.task_id])
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def get(engine: AsyncEngine, *, task_id: str) -> Job | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(render_jobs).where(render_jobs.c.task_id == task_id))).first()
    if row is None:
        return None
    values = {name: row._mapping[name] for name in Job.__dataclass_fields__}
    return Job(**values)


async def claim(engine: AsyncEngine, *, task_id: str, owner: str, now: float, lease_s: float) -> bool:
    """Take the job to render it here, if no live process holds it; a claimed job starts from frame 0."""
    statement = (
        render_jobs.update()
        .where(
            render_jobs.c.task_id == task_id,
            render_jobs.c.state.in_(UNFINISHED),
            sa.or_(render_jobs.c.lease_owner.is_(None), render_jobs.c.lease_until < now),
        )
        .values(
            state=RUNNING,
            lease_owner=owner,
            lease_until=now + lease_s,
            done_frames=0,
            runs=render_jobs.c.runs + 1,
            updated_at=now,
        )
    )
    async with engine.begin() as conn:
        return bool((await conn.execute(statement)).rowcount)


async def renew(
    engine: AsyncEngine, *, owner: str, progress: Mapping[str, tuple[int, int]], now: float, lease_s: float
) -> set[str]:
    """Extend the leases of the jobs `owner` renders, recording their progress; the ones it still holds."""
    held: set[str] = set()
    async with engine.begin() as conn:
        for task_id, (done, total) in progress.items():
            statement = (
                render_jobs.update()
                .where(
                    render_jobs.c.task_id == task_id, render_jobs.c.lease_owner == owner, render_jobs.c.state == RUNNING
                )
                .values(lease_until=now + lease_s, done_frames=done, total_frames=total, updated_at=now)
            )
            if (await conn.execute(statement)).rowcount:
                held.add(task_id)
    return held


async def settle(
    engine: AsyncEngine, *, task_id: str, owner: str, state: str, now: float, error: str | None = None
) -> bool:
    """End a render `owner` holds: DONE, FAILED (with `error`), or QUEUED again (its worker died)."""
    values: dict[str, Any] = {"state": state, "lease_owner": None, "lease_until": None, "updated_at": now}
    if error is not None:
        values["error"] = error[:2000]
    statement = (
        render_jobs.update()
        .where(render_jobs.c.task_id == task_id, render_jobs.c.lease_owner == owner, render_jobs.c.state == RUNNING)
        .values(**values)
    )
    async with engine.begin() as conn:
        return bool((await conn.execute(statement)).rowcount)


async def release_all(engine: AsyncEngine, *, owner: str, now: float) -> int:
    """Hand back every job `owner` renders (it is stopping): the next poll anywhere starts them again."""
    statement = (
        render_jobs.update()
        .where(render_jobs.c.lease_owner == owner, render_jobs.c.state == RUNNING)
        .values(state=QUEUED, lease_owner=None, lease_until=None, updated_at=now)
    )
    async with engine.begin() as conn:
        return int((await conn.execute(statement)).rowcount)


async def reopen(engine: AsyncEngine, *, task_id: str, now: float) -> bool:
    """Queue a done job again (its output is gone): the next poll anywhere renders it from its spec."""
    statement = (
        render_jobs.update()
        .where(render_jobs.c.task_id == task_id, render_jobs.c.state == DONE)
        .values(state=QUEUED, lease_owner=None, lease_until=None, updated_at=now)
    )
    async with engine.begin() as conn:
        return bool((await conn.execute(statement)).rowcount)


async def cancel(engine: AsyncEngine, *, task_id: str, now: float) -> None:
    """Stop the job wherever it runs (its renderer sees this when it next renews its lease)."""
    statement = (
        render_jobs.update()
        .where(render_jobs.c.task_id == task_id, render_jobs.c.state.in_(UNFINISHED))
        .values(state=CANCELLED, lease_owner=None, lease_until=None, updated_at=now)
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def delete(engine: AsyncEngine, *, task_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(render_jobs.delete().where(render_jobs.c.task_id == task_id))
