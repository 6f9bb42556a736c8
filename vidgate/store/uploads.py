"""Uploaded input files (the DashScope SDK's upload flow): who sent which object key, under which policy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vidgate.store.tables import api_keys, uploads

Stored = Literal["stored", "taken", "over_allowance"]


@dataclass(frozen=True)
class UploadRecord:
    key: str
    key_id: str
    path: str  # the storage key (relative to media_dir for file: storage)
    size: int
    content_type: str | None


async def insert_upload(
    engine: AsyncEngine,
    *,
    key: str,
    key_id: str,
    path: str,
    size: int,
    content_type: str | None,
    policy_id: str | None = None,
    allowance: int | None = None,
    since: float = 0.0,
    now: float | None = None,
) -> Stored:
    """Record an upload. "taken" when its object key or its policy already has one (uploads never overwrite,
    one object per policy); "over_allowance" when the key's uploads since `since` plus this one exceed
    `allowance` bytes (checked under a lock on the key row, so concurrent uploads of one key cannot all pass)."""
    try:
        async with engine.begin() as conn:
            if allowance is not None:
                await conn.execute(sa.select(api_keys.c.id).where(api_keys.c.id == key_id).with_for_update())
                if await _used(conn, key_id=key_id, since=since) + size > allowance:
                    return "over_allowance"
            await conn.execute(
                uploads.insert().values(
                    key=key,
                    key_id=key_id,
                    path=path,
                    size=size,
                    content_type=content_type,
                    policy_id=policy_id,
                    created_at=time.time() if now is None else now,
                )
            )
    except IntegrityError:
        return "taken"
    return "stored"


async def used_since(engine: AsyncEngine, *, key_id: str, since: float) -> int:
    """Bytes the key has uploaded since `since` (UNIX seconds)."""
    async with engine.connect() as conn:
        return await _used(conn, key_id=key_id, since=since)


async def _used(conn: AsyncConnection, *, key_id: str, since: float) -> int:
    query = sa.select(sa.func.coalesce(sa.func.sum(uploads.c.size), 0)).where(
        uploads.c.key_id == key_id, uploads.c.created_at >= since
    )
    return int((await conn.execute(query)).scalar() or 0)


async def policy_used(engine: AsyncEngine, *, policy_id: str) -> bool:
    """True when an object was already stored under this upload policy."""
    async with engine.connect() as conn:
        found = await conn.execute(sa.select(uploads.c.key).where(uploads.c.policy_id == policy_id).limit(1))
        return found.first() is not None


async def find_upload(engine: AsyncEngine, *, key: str, key_id: str) -> UploadRecord | None:
    query = sa.select(uploads).where(uploads.c.key == key, uploads.c.key_id == key_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else _record(row._mapping)


def _record(data: sa.RowMapping) -> UploadRecord:
    return UploadRecord(data["key"], data["key_id"], data["path"], data["size"], data["content_type"])


async def uploads_before(engine: AsyncEngine, *, before: float, limit: int) -> list[UploadRecord]:
    """The oldest uploads stored before `before`, at most `limit` of them."""
    query = sa.select(uploads).where(uploads.c.created_at < before).order_by(uploads.c.created_at).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_record(row._mapping) for row in rows]


async def forget_uploads(engine: AsyncEngine, *, keys: list[str]) -> None:
    """Delete the rows of these uploads (their files are gone)."""
    if not keys:
        return
    async with engine.begin() as conn:
        await conn.execute(uploads.delete().where(uploads.c.key.in_(keys)))
