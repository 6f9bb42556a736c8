"""API keys: create, list, revoke, find by hash."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.store.tables import api_keys


@dataclass(frozen=True)
class KeyRecord:
    """A stored key, without its secret (only the hash is kept)."""

    id: str
    name: str
    key_prefix: str
    models: tuple[str, ...] | None
    rpm: int | None
    created_at: float
    revoked_at: float | None
    quota_micros: int | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


def _record(row: sa.Row[tuple[object, ...]]) -> KeyRecord:
    data = row._mapping
    models = data["models"]
    return KeyRecord(
        id=data["id"],
        name=data["name"],
        key_prefix=data["key_prefix"],
        models=tuple(models) if models is not None else None,
        rpm=data["rpm"],
        created_at=data["created_at"],
        revoked_at=data["revoked_at"],
        quota_micros=data["quota_micros"],
        webhook_url=data["webhook_url"],
        webhook_secret=data["webhook_secret"],
    )


async def insert_key(
    engine: AsyncEngine,
    *,
    key_id: str,
    name: str,
    key_hash: str,
    key_prefix: str,
    models: Sequence[str] | None,
    rpm: int | None,
    quota_micros: int | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> KeyRecord:
    now = time.time()
    values = {
        "quota_micros": quota_micros,
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        "id": key_id,
        "name": name,
        "key_hash": key_hash,
        "key_prefix": key_prefix,
        "models": list(models) if models is not None else None,
        "rpm": rpm,
        "created_at": now,
        "revoked_at": None,
    }
    async with engine.begin() as conn:
        await conn.execute(api_keys.insert().values(**values))
    return _record_from(values)


def _record_from(values: Mapping[str, object]) -> KeyRecord:
    models = values["models"]
    return KeyRecord(
        id=str(values["id"]),
        name=str(values["name"]),
        key_prefix=str(values["key_prefix"]),
        models=tuple(models) if isinstance(models, list) else None,
        rpm=values["rpm"] if isinstance(values["rpm"], int) else None,
        created_at=float(values["created_at"]),  # type: ignore[arg-type]
        revoked_at=None,
        quota_micros=values["quota_micros"] if isinstance(values["quota_micros"], int) else None,
        webhook_url=values["webhook_url"] if isinstance(values["webhook_url"], str) else None,
        webhook_secret=values["webhook_secret"] if isinstance(values["webhook_secret"], str) else None,
    )


async def find_by_hash(engine: AsyncEngine, *, key_hash: str) -> KeyRecord | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
    return _record(row) if row else None


async def get_key(engine: AsyncEngine, *, key_id: str) -> KeyRecord | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
    return _record(row) if row else None


async def list_keys(engine: AsyncEngine) -> list[KeyRecord]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))).all()
    return [_record(row) for row in rows]


async def revoke_key(engine: AsyncEngine, *, key_id: str) -> bool:
    """Revoke a key; False when there is no such active key."""
    async with engine.begin() as conn:
        result = await conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
    return bool(result.rowcount)
