"""Uploaded input files (the DashScope SDK's upload flow): who sent which object key."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.store.tables import uploads


@dataclass(frozen=True)
class UploadRecord:
    key: str
    key_id: str
    path: str  # relative to media_dir
    size: int
    content_type: str | None


async def insert_upload(
    engine: AsyncEngine, *, key: str, key_id: str, path: str, size: int, content_type: str | None
) -> bool:
    """Record an upload; False when the object key is taken (uploads never overwrite)."""
    try:
        async with engine.begin() as conn:
            await conn.execute(
                uploads.insert().values(
                    key=key, key_id=key_id, path=path, size=size, content_type=content_type, created_at=time.time()
                )
            )
    except IntegrityError:
        return False
    return True


async def find_upload(engine: AsyncEngine, *, key: str, key_id: str) -> UploadRecord | None:
    query = sa.select(uploads).where(uploads.c.key == key, uploads.c.key_id == key_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    data = row._mapping
    return UploadRecord(data["key"], data["key_id"], data["path"], data["size"], data["content_type"])
