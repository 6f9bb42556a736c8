"""API keys: create, list, revoke, find by hash; what the revocation watcher reads."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.crypto import Vault
from vidgate.errors import SealError
from vidgate.store.db import protection, sealed_context, sqlite_reader
from vidgate.store.tables import api_keys

log = logging.getLogger("vidgate.store")


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
    # Opened from its sealed form (it signs deliveries); never in a repr.
    webhook_secret: str | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


def _webhook_context(key_id: str) -> str:
    return sealed_context(api_keys.c.webhook_secret, key_id)


def _record(row: sa.Row[tuple[object, ...]], vault: Vault) -> KeyRecord:
    data = row._mapping
    models = data["models"]
    sealed = data["webhook_secret"]
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
        webhook_secret=_open_webhook_secret(vault, data["id"], sealed),
    )


def _open_webhook_secret(vault: Vault, key_id: str, sealed: str | None) -> str | None:
    if sealed is None:
        return None
    try:
        return vault.open(sealed, context=_webhook_context(key_id)).decode()
    except SealError as exc:
        # The key still authenticates; only its deliveries fail (recorded on each, as for a key without one).
        log.error("key %s: %s", key_id, exc)
        return None


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
    vault = protection(engine).vault
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
    sealed = vault.seal(webhook_secret.encode(), context=_webhook_context(key_id)) if webhook_secret else None
    async with engine.begin() as conn:
        await conn.execute(api_keys.insert().values(**{**values, "webhook_secret": sealed}))
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
    return _record(row, protection(engine).vault) if row else None


async def get_key(engine: AsyncEngine, *, key_id: str) -> KeyRecord | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
    return _record(row, protection(engine).vault) if row else None


async def list_keys(engine: AsyncEngine) -> list[KeyRecord]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))).all()
    vault = protection(engine).vault
    return [_record(row, vault) for row in rows]


async def revoke_key(engine: AsyncEngine, *, key_id: str) -> bool:
    """Revoke a key; False when there is no such active key."""
    async with engine.begin() as conn:
        result = await conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
    return bool(result.rowcount)


_ACTIVE_SQL = "SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL"


async def is_active(engine: AsyncEngine, *, key_id: str) -> bool:
    """True when the key exists and is not revoked, read from the store now (no cache)."""
    reader = sqlite_reader(engine)
    if reader is not None:
        return reader.one(_ACTIVE_SQL, (key_id,)) is not None
    query = sa.select(sa.literal(1)).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    async with engine.connect() as conn:
        return (await conn.execute(query)).first() is not None


_MARK_SQL = "SELECT count(revoked_at), max(revoked_at) FROM api_keys"


async def revocation_mark(engine: AsyncEngine) -> tuple[int, float | None]:
    """How many keys are revoked, and the latest revocation: it changes with every revoke, on any process.

    Keys are never deleted nor un-revoked, so the count only grows; reading it does not depend on the clocks of
    the processes that revoked. Served by the revoked_at index.
    """
    reader = sqlite_reader(engine)
    if reader is not None:
        found = reader.one(_MARK_SQL, ())
        count, latest = (found[0], found[1]) if found is not None else (0, None)
    else:
        query = sa.select(sa.func.count(api_keys.c.revoked_at), sa.func.max(api_keys.c.revoked_at))
        async with engine.connect() as conn:
            count, latest = (await conn.execute(query)).one()
    return int(count or 0), float(latest) if latest is not None else None


async def revoked_among(engine: AsyncEngine, *, key_ids: Collection[str]) -> set[str]:
    """Which of these keys are revoked (or gone)."""
    ids = list(key_ids)
    found: set[str] = set()
    async with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = sa.select(api_keys.c.id).where(api_keys.c.id.in_(chunk), api_keys.c.revoked_at.is_(None))
            active = set((await conn.execute(query)).scalars())
            found.update(key_id for key_id in chunk if key_id not in active)
    return found
