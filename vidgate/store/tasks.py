"""Tasks: the row written before the upstream call, the poller's claims, compare-and-set transitions."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.crypto import SealedJSON, Vault
from vidgate.errors import UpstreamTaken
from vidgate.status import ACTIVE, TaskStatus
from vidgate.store import usage
from vidgate.store.db import protection, sealed_context, sqlite_reader
from vidgate.store.hot import HotStore, hot_store
from vidgate.store.tables import idempotency_keys, tasks

# A row to insert into another table together with a task's terminal transition.
Effect = tuple[sa.Table, Mapping[str, Any]]

_ACTIVE = [status.value for status in ACTIVE]


@dataclass(frozen=True)
class TaskRow:
    """One task as stored."""

    seq: int
    id: str
    key_id: str
    model: str
    provider: str
    channel: str
    upstream_id: str | None
    # Opened from its sealed form on first use; never in a repr.
    credentials: Mapping[str, Any] = field(repr=False)
    status: TaskStatus
    progress: int
    prompt: str
    seconds: int
    size: str
    request: dict[str, Any]
    error_code: str | None
    error_message: str | None
    remixed_from: str | None
    created_at: float
    updated_at: float
    completed_at: float | None
    expires_at: float | None
    deadline_at: float
    next_poll_at: float | None
    lease_owner: str | None
    lease_until: float | None
    polls: int
    poll_failures: int
    last_poll_error: str | None
    video_path: str | None
    thumbnail_path: str | None
    spritesheet_path: str | None
    duration: float | None
    width: int | None
    height: int | None
    has_audio: bool | None
    deleted_at: float | None
    price_micros: int
    attempts: list[dict[str, Any]] | None
    # Stored file names of extra outputs beside the video (None: none).
    extras: list[str] | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


_FIELDS = [f.name for f in fields(TaskRow)]


@dataclass(frozen=True)
class TaskView:
    """What a status read shows: the public columns only (no request body, no credentials)."""

    id: str
    model: str
    status: TaskStatus
    progress: int
    prompt: str
    seconds: int
    size: str
    error_code: str | None
    error_message: str | None
    remixed_from: str | None
    created_at: float
    completed_at: float | None
    expires_at: float | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


_VIEW_FIELDS = [f.name for f in fields(TaskView)]
_VIEW_READ = (*_VIEW_FIELDS, "key_id")
_VIEW_SQL = f"SELECT {', '.join(_VIEW_FIELDS)} FROM tasks WHERE id = ? AND key_id = ? AND deleted_at IS NULL"


async def get_view(engine: AsyncEngine, *, task_id: str, key_id: str) -> TaskView | None:
    """The key's task as a status read shows it (the hot path: no JSON columns decoded)."""
    reader = sqlite_reader(engine)
    found: Any
    hot = hot_store(engine) if reader is None else None
    if reader is not None:
        found = reader.one(_VIEW_SQL, (task_id, key_id))
    elif hot is not None:
        stored = await hot.view_row(task_id, _VIEW_READ)
        if stored is None or stored["key_id"] != key_id:
            return None
        found = tuple(stored[name] for name in _VIEW_FIELDS)
    else:
        query = sa.select(*(tasks.c[name] for name in _VIEW_FIELDS)).where(
            tasks.c.id == task_id, tasks.c.key_id == key_id, tasks.c.deleted_at.is_(None)
        )
        async with engine.connect() as conn:
            found = (await conn.execute(query)).first()
    if found is None:
        return None
    values = dict(zip(_VIEW_FIELDS, tuple(found), strict=True))
    values["status"] = TaskStatus(values["status"])
    return TaskView(**values)


def _task(row: sa.Row[Any] | Mapping[str, Any], vault: Vault) -> TaskRow:
    data = row._mapping if isinstance(row, sa.Row) else row
    values = {name: data[name] for name in _FIELDS}
    values["status"] = TaskStatus(values["status"])
    values["credentials"] = _open_credentials(vault, values["id"], values["credentials"])
    return TaskRow(**values)


def _credentials_context(task_id: str) -> str:
    return sealed_context(tasks.c.credentials, task_id)


def _open_credentials(vault: Vault, task_id: str, sealed: str) -> Mapping[str, Any]:
    return SealedJSON(vault, sealed, context=_credentials_context(task_id))


# Columns that hold texts made from errors (upstream answers, exception texts): redacted before they are stored.
_ERROR_TEXTS = ("error_message", "last_poll_error")


def _protect(engine: AsyncEngine, task_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """What to write for `values`: credentials sealed, error texts and attempts redacted."""
    guard = protection(engine)
    out = dict(values)
    if out.get("credentials") is not None:
        out["credentials"] = guard.vault.seal_json(dict(out["credentials"]), context=_credentials_context(task_id))
    for name in _ERROR_TEXTS:
        if isinstance(out.get(name), str):
            out[name] = guard.redact(out[name])
    if out.get("attempts") is not None:
        out["attempts"] = guard.redact.value(out["attempts"])
    return out


async def insert_task(
    engine: AsyncEngine,
    values: Mapping[str, Any],
    *,
    quota_micros: int | None = None,
    idempotency: tuple[str, str] | None = None,
) -> bool:
    """Write a new task row (before anything is sent upstream) and reserve its price, in one transaction.

    With a quota, the key's ledger is summed under a lock on the key row, so concurrent submits of one
    key cannot both pass the check; InsufficientQuota leaves nothing written. With an idempotency
    (key, fingerprint), the key is claimed in the same transaction: False, and nothing written, when
    another request holds it already.
    """
    price = int(values.get("price_micros", 0))
    row = _protect(engine, values["id"], values)
    hot = hot_store(engine)
    if hot is not None:
        return await _insert_hot(hot, values, row, price=price, quota_micros=quota_micros, idempotency=idempotency)
    try:
        async with engine.begin() as conn:
            if idempotency is not None:
                idem_key, fingerprint = idempotency
                await conn.execute(
                    idempotency_keys.insert().values(
                        key_id=values["key_id"],
                        idem_key=idem_key,
                        fingerprint=fingerprint,
                        task_id=values["id"],
                        created_at=values["created_at"],
                    )
                )
            if quota_micros is not None:
                await usage.check_quota(conn, key_id=values["key_id"], amount=price, quota_micros=quota_micros)
            await conn.execute(tasks.insert().values(**row))
            if price:
                await usage.record(
                    conn,
                    key_id=values["key_id"],
                    task_id=values["id"],
                    model=values["model"],
                    kind="reserve",
                    amount=price,
                )
    except IntegrityError:
        if idempotency is None:
            raise
        return False
    return True


async def _insert_hot(
    hot: HotStore,
    values: Mapping[str, Any],
    row: Mapping[str, Any],
    *,
    price: int,
    quota_micros: int | None,
    idempotency: tuple[str, str] | None,
) -> bool:
    """insert_task through the hot store: one call (SQLite: one hand-off to the writer; PostgreSQL: one
    statement, or one short transaction when the key has a quota)."""
    key_id = values["key_id"]
    claim = None
    if idempotency is not None:
        idem_key, fingerprint = idempotency
        claim = {
            "key_id": key_id,
            "idem_key": idem_key,
            "fingerprint": fingerprint,
            "task_id": values["id"],
            "created_at": values["created_at"],
        }
    reserve = None
    if price:
        _, reserve = usage.entry(
            key_id=key_id, task_id=values["id"], model=values["model"], kind="reserve", amount=price
        )
    quota = (key_id, price, quota_micros) if quota_micros is not None else None
    try:
        used = await hot.insert_task(row, reserve=reserve, claim=claim, quota=quota)
    except IntegrityError:
        if idempotency is None:
            raise
        return False
    if used is not None:
        assert quota_micros is not None
        raise usage.over_quota(amount=price, used=used, quota_micros=quota_micros)
    return True


_BY_ID = "SELECT * FROM tasks WHERE id = ? AND deleted_at IS NULL"
_BY_ID_AND_KEY = _BY_ID + " AND key_id = ?"
_JSON_COLUMNS = ("request", "attempts", "extras")


def _from_sqlite(row: Any, vault: Vault) -> TaskRow:
    values = {name: row[name] for name in _FIELDS}
    for name in _JSON_COLUMNS:
        if values[name] is not None:
            values[name] = orjson.loads(values[name])
    if values["has_audio"] is not None:
        values["has_audio"] = bool(values["has_audio"])
    values["status"] = TaskStatus(values["status"])
    values["credentials"] = _open_credentials(vault, values["id"], values["credentials"])
    return TaskRow(**values)


async def get_task(engine: AsyncEngine, *, task_id: str, key_id: str | None = None) -> TaskRow | None:
    """A task that has not been deleted; with key_id, only if that key owns it."""
    vault = protection(engine).vault
    reader = sqlite_reader(engine)
    if reader is not None:
        found = reader.one(_BY_ID_AND_KEY, (task_id, key_id)) if key_id is not None else reader.one(_BY_ID, (task_id,))
        return _from_sqlite(found, vault) if found is not None else None
    hot = hot_store(engine)
    if hot is not None:
        stored = await hot.task_row(task_id, key_id)
        return _from_sqlite(stored, vault) if stored is not None else None
    query = sa.select(tasks).where(tasks.c.id == task_id, tasks.c.deleted_at.is_(None))
    if key_id is not None:
        query = query.where(tasks.c.key_id == key_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _task(row, vault) if row else None


async def list_tasks(
    engine: AsyncEngine,
    *,
    key_id: str,
    limit: int,
    order: Literal["asc", "desc"],
    after_seq: int | None = None,
) -> list[TaskRow]:
    """A page of the key's tasks by creation order; fetch limit+1 to learn whether more follow."""
    query = sa.select(tasks).where(tasks.c.key_id == key_id, tasks.c.deleted_at.is_(None))
    if after_seq is not None:
        query = query.where(tasks.c.seq > after_seq if order == "asc" else tasks.c.seq < after_seq)
    query = query.order_by(tasks.c.seq.asc() if order == "asc" else tasks.c.seq.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    vault = protection(engine).vault
    return [_task(row, vault) for row in rows]


async def page_tasks(
    engine: AsyncEngine,
    *,
    key_id: str,
    page_no: int,
    page_size: int,
    statuses: list[TaskStatus] | None = None,
    model: str | None = None,
    start: float | None = None,
    end: float | None = None,
) -> tuple[list[TaskRow], int]:
    """One numbered page of the key's tasks, newest first, with the total count under the filters."""
    where = [tasks.c.key_id == key_id, tasks.c.deleted_at.is_(None)]
    if statuses is not None:
        where.append(tasks.c.status.in_([status.value for status in statuses]))
    if model:
        where.append(tasks.c.model == model)
    if start is not None:
        where.append(tasks.c.created_at >= start)
    if end is not None:
        where.append(tasks.c.created_at <= end)
    query = (
        sa.select(tasks).where(*where).order_by(tasks.c.seq.desc()).limit(page_size).offset((page_no - 1) * page_size)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        total = (await conn.execute(sa.select(sa.func.count()).select_from(tasks).where(*where))).scalar() or 0
    vault = protection(engine).vault
    return [_task(row, vault) for row in rows], int(total)


async def seq_of(engine: AsyncEngine, *, task_id: str, key_id: str) -> int | None:
    query = sa.select(tasks.c.seq).where(tasks.c.id == task_id, tasks.c.key_id == key_id)
    async with engine.connect() as conn:
        return (await conn.execute(query)).scalar()


async def begin_attempt(
    engine: AsyncEngine,
    *,
    task_id: str,
    owner: str,
    channel: str,
    provider: str,
    credentials: Mapping[str, Any],
    attempts: list[dict[str, Any]],
) -> bool:
    """Note which channel (and account) is about to be asked, before the call; False if the row is no longer
    this owner's to submit (cancelled, deleted, submitted, or its lease taken over)."""
    values = _protect(
        engine,
        task_id,
        {
            "channel": channel,
            "provider": provider,
            "credentials": credentials,
            "attempts": attempts,
            "updated_at": time.time(),
        },
    )
    async with engine.begin() as conn:
        result = await conn.execute(
            tasks.update()
            .where(
                tasks.c.id == task_id,
                tasks.c.upstream_id.is_(None),
                tasks.c.status.in_(_ACTIVE),
                tasks.c.lease_owner == owner,
            )
            .values(**values)
        )
    return bool(result.rowcount)


async def mark_submitted(
    engine: AsyncEngine,
    *,
    task_id: str,
    upstream_id: str,
    channel: str,
    provider: str,
    credentials: Mapping[str, Any],
    next_poll_at: float,
    attempts: list[dict[str, Any]] | None = None,
) -> bool:
    """Record the upstream id and release the submit's lease; only once, and only while the task is active.

    Raises UpstreamTaken when another row already holds that upstream task (two reconcilers matched it).
    """
    values = _protect(
        engine,
        task_id,
        {
            "upstream_id": upstream_id,
            "channel": channel,
            "provider": provider,
            "credentials": credentials,
            "next_poll_at": next_poll_at,
            "attempts": attempts,
            "lease_owner": None,
            "lease_until": None,
            "updated_at": time.time(),
        },
    )
    hot = hot_store(engine)
    if hot is not None:
        try:
            return await hot.mark_submitted(task_id, values, _ACTIVE) is not None
        except IntegrityError as exc:
            raise UpstreamTaken(f"{channel}: upstream task {upstream_id} belongs to another task") from exc
    try:
        async with engine.begin() as conn:
            result = await conn.execute(
                tasks.update()
                .where(tasks.c.id == task_id, tasks.c.upstream_id.is_(None), tasks.c.status.in_(_ACTIVE))
                .values(**values)
            )
    except IntegrityError as exc:
        raise UpstreamTaken(f"{channel}: upstream task {upstream_id} belongs to another task") from exc
    return bool(result.rowcount)


async def upstream_holders(engine: AsyncEngine, *, upstream_ids: Sequence[str]) -> dict[str, str]:
    """The task rows that already hold some of these upstream ids: upstream id -> task id."""
    if not upstream_ids:
        return {}
    query = sa.select(tasks.c.upstream_id, tasks.c.id).where(tasks.c.upstream_id.in_(list(upstream_ids)))
    async with engine.connect() as conn:
        return {str(upstream): str(task) for upstream, task in (await conn.execute(query)).all()}


async def claim_due(engine: AsyncEngine, *, owner: str, now: float, limit: int, lease_s: float) -> list[TaskRow]:
    """Lease up to `limit` active tasks whose next poll is due and whose lease is free or expired, whole rows
    (claim_polls is the poller's lean form of the same claim)."""
    where = sa.and_(_claimable(now), tasks.c.next_poll_at <= now)
    rows = await _claim_rows(engine, where, tasks.c, owner=owner, now=now, limit=limit, lease_s=lease_s)
    vault = protection(engine).vault
    return sorted((_task(row, vault) for row in rows), key=lambda row: row.next_poll_at or 0.0)


async def extend_lease(engine: AsyncEngine, *, task_id: str, owner: str, until: float) -> bool:
    """Keep holding a claimed row while its work (a long download, a submit) goes on; never shortens it."""
    longer = sa.case((tasks.c.lease_until > until, tasks.c.lease_until), else_=until)
    async with engine.begin() as conn:
        result = await conn.execute(
            tasks.update().where(tasks.c.id == task_id, tasks.c.lease_owner == owner).values(lease_until=longer)
        )
    return bool(result.rowcount)


async def record_poll(
    engine: AsyncEngine,
    *,
    task_id: str,
    owner: str,
    status: TaskStatus,
    progress: int,
    next_poll_at: float,
) -> bool:
    """Store a non-terminal reading and release the lease; False if the row moved on meanwhile."""
    async with engine.begin() as conn:
        result = await conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.lease_owner == owner, tasks.c.status.in_(_ACTIVE))
            .values(
                status=status.value,
                progress=progress,
                next_poll_at=next_poll_at,
                polls=tasks.c.polls + 1,
                poll_failures=0,
                lease_owner=None,
                lease_until=None,
                updated_at=time.time(),
            )
        )
    return bool(result.rowcount)


async def record_poll_failure(
    engine: AsyncEngine, *, task_id: str, owner: str, error: str, next_poll_at: float
) -> bool:
    """Note a failed reading (retry later) and release the lease."""
    async with engine.begin() as conn:
        result = await conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.lease_owner == owner, tasks.c.status.in_(_ACTIVE))
            .values(
                next_poll_at=next_poll_at,
                polls=tasks.c.polls + 1,
                poll_failures=tasks.c.poll_failures + 1,
                last_poll_error=protection(engine).redact(error)[:2000],
                lease_owner=None,
                lease_until=None,
                updated_at=time.time(),
            )
        )
    return bool(result.rowcount)


async def finish(
    engine: AsyncEngine,
    *,
    task_id: str,
    status: TaskStatus,
    values: Mapping[str, Any] | None = None,
    effects: Sequence[Effect] = (),
) -> bool:
    """Compare-and-set an active task to a terminal status; True for exactly one caller.

    `effects` (the ledger's settle or refund, the webhook event) are written in the same transaction,
    only by the caller that wins, so a crash can neither lose nor double them.
    """
    now = time.time()
    update = {
        "status": status.value,
        "next_poll_at": None,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": now,
        "completed_at": now,
        **_protect(engine, task_id, values or {}),
    }
    async with engine.begin() as conn:
        result = await conn.execute(
            tasks.update().where(tasks.c.id == task_id, tasks.c.status.in_(_ACTIVE)).values(**update)
        )
        if not result.rowcount:
            return False
        for table, row in effects:
            await conn.execute(table.insert().values(**row))
    return True


async def expired_media(engine: AsyncEngine, *, now: float, limit: int) -> list[str]:
    """Tasks whose stored files are past their retention."""
    query = (
        sa.select(tasks.c.id)
        .where(tasks.c.expires_at < now, tasks.c.video_path.is_not(None))
        .order_by(tasks.c.expires_at)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def forget_media(engine: AsyncEngine, *, task_ids: list[str]) -> None:
    if not task_ids:
        return
    async with engine.begin() as conn:
        await conn.execute(
            tasks.update()
            .where(tasks.c.id.in_(task_ids))
            .values(video_path=None, thumbnail_path=None, spritesheet_path=None, updated_at=time.time())
        )


async def wake(engine: AsyncEngine, *, task_ids: list[str], now: float) -> None:
    """Make tasks due now (a provider reported a change)."""
    if not task_ids:
        return
    async with engine.begin() as conn:
        await conn.execute(
            tasks.update()
            .where(tasks.c.id.in_(task_ids), tasks.c.status.in_(_ACTIVE), tasks.c.next_poll_at > now)
            .values(next_poll_at=now)
        )


async def mark_deleted(engine: AsyncEngine, *, task_id: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.deleted_at.is_(None))
            .values(deleted_at=time.time(), updated_at=time.time())
        )
    return bool(result.rowcount)


async def next_due(engine: AsyncEngine) -> float | None:
    """When the earliest active task can next be claimed (due, and its lease free), for the poller's sleep."""
    claimable_at = sa.case(
        (tasks.c.lease_until > tasks.c.next_poll_at, tasks.c.lease_until), else_=tasks.c.next_poll_at
    )
    query = sa.select(sa.func.min(claimable_at)).where(tasks.c.status.in_(_ACTIVE))
    async with engine.connect() as conn:
        due = (await conn.execute(query)).scalar()
    return float(due) if due is not None else None


async def in_flight_by_channel(engine: AsyncEngine) -> dict[str, int]:
    """Unfinished tasks per channel (for max_in_flight and `vidgate channels`)."""
    query = sa.select(tasks.c.channel, sa.func.count()).where(tasks.c.status.in_(_ACTIVE)).group_by(tasks.c.channel)
    async with engine.connect() as conn:
        return {channel: int(count) for channel, count in (await conn.execute(query)).all()}


async def set_attempts(engine: AsyncEngine, *, task_id: str, attempts: list[dict[str, Any]]) -> None:
    values = _protect(engine, task_id, {"attempts": attempts})
    async with engine.begin() as conn:
        await conn.execute(tasks.update().where(tasks.c.id == task_id).values(**values))


async def count_by_status(engine: AsyncEngine) -> dict[str, int]:
    query = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
    async with engine.connect() as conn:
        return {status: count for status, count in (await conn.execute(query)).all()}


@dataclass(frozen=True)
class StoredMedia:
    """What a content request needs of a task: its state and where its files are (storage keys)."""

    status: TaskStatus
    expires_at: float | None
    video_path: str | None
    thumbnail_path: str | None
    spritesheet_path: str | None


_MEDIA_FIELDS = [f.name for f in fields(StoredMedia)]
_MEDIA_SQL = f"SELECT {', '.join(_MEDIA_FIELDS)} FROM tasks WHERE id = ? AND key_id = ? AND deleted_at IS NULL"


async def get_media(engine: AsyncEngine, *, task_id: str, key_id: str) -> StoredMedia | None:
    """The key's task as the content fast path needs it (no JSON columns decoded, nothing unsealed)."""
    reader = sqlite_reader(engine)
    found: Any
    if reader is not None:
        found = reader.one(_MEDIA_SQL, (task_id, key_id))
    else:
        query = sa.select(*(tasks.c[name] for name in _MEDIA_FIELDS)).where(
            tasks.c.id == task_id, tasks.c.key_id == key_id, tasks.c.deleted_at.is_(None)
        )
        async with engine.connect() as conn:
            found = (await conn.execute(query)).first()
    if found is None:
        return None
    status, expires_at, video, thumbnail, sprites = tuple(found)
    return StoredMedia(TaskStatus(status), expires_at, video, thumbnail, sprites)


# -- the poller's lean path (engine/poller.py) -----------------------------------------------------------------


@dataclass(frozen=True)
class PollRow:
    """What one poll of a task needs, and no more: no request body, no attempts, no result columns."""

    id: str
    key_id: str
    model: str
    provider: str
    channel: str
    upstream_id: str | None
    # Opened from its sealed form on first use; never in a repr.
    credentials: Mapping[str, Any] = field(repr=False)
    status: TaskStatus
    progress: int
    seconds: int
    price_micros: int
    created_at: float
    deadline_at: float
    polls: int
    poll_failures: int
    last_poll_error: str | None


@dataclass(frozen=True)
class Reading:
    """The outcome of one non-terminal poll, to be stored with the others of its batch (record_readings).

    `error` set: the read failed (try again later); else `status` and `progress` are what the upstream said."""

    task_id: str
    next_poll_at: float
    status: TaskStatus | None = None
    progress: int = 0
    error: str | None = None


_POLL_FIELDS = [f.name for f in fields(PollRow)]
_POLL_COLUMNS = [tasks.c[name] for name in _POLL_FIELDS]
_ACTIVE_SQL = "status IN ('queued', 'in_progress')"
assert set(_ACTIVE) == {"queued", "in_progress"}


def _poll_row(row: sa.Row[Any], vault: Vault) -> PollRow:
    values = dict(zip(_POLL_FIELDS, tuple(row), strict=True))
    values["status"] = TaskStatus(values["status"])
    values["credentials"] = _open_credentials(vault, values["id"], values["credentials"])
    return PollRow(**values)


def _claimable(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        tasks.c.status.in_(_ACTIVE),
        sa.or_(tasks.c.lease_until.is_(None), tasks.c.lease_until < now),
    )


async def _claim(
    engine: AsyncEngine, where: sa.ColumnElement[bool], *, owner: str, now: float, limit: int, lease_s: float
) -> list[PollRow]:
    rows = await _claim_rows(engine, where, _POLL_COLUMNS, owner=owner, now=now, limit=limit, lease_s=lease_s)
    vault = protection(engine).vault
    return [_poll_row(row, vault) for row in rows]


async def _claim_rows(
    engine: AsyncEngine,
    where: sa.ColumnElement[bool],
    columns: Iterable[sa.ColumnElement[Any]],
    *,
    owner: str,
    now: float,
    limit: int,
    lease_s: float,
) -> Sequence[sa.Row[Any]]:
    """One UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) … RETURNING `columns`: on PostgreSQL replicas
    skip each other's locked rows; on SQLite the statement takes the single write lock, so it is exclusive."""
    due = (
        sa.select(tasks.c.id)
        .where(where)
        .order_by(tasks.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        tasks.update()
        .where(tasks.c.id.in_(due), where)
        .values(lease_owner=owner, lease_until=now + lease_s)
        .returning(*columns)
    )
    async with engine.begin() as conn:
        return (await conn.execute(statement)).all()


async def claim_polls(
    engine: AsyncEngine, *, owner: str, now: float, limit: int, lease_s: float, ahead: float = 0.0
) -> list[PollRow]:
    """claim_due for the poller: the same lease and SKIP LOCKED claim, returning only the columns a poll needs
    (no JSON column is read or decoded); rows due within `ahead` seconds are taken too (one claim, not many)."""
    where = sa.and_(_claimable(now), tasks.c.next_poll_at <= now + ahead)
    return await _claim(engine, where, owner=owner, now=now, limit=limit, lease_s=lease_s)


async def claim_ids(
    engine: AsyncEngine, *, task_ids: Sequence[str], owner: str, now: float, lease_s: float, provider: str | None = None
) -> list[PollRow]:
    """Lease these tasks now, due or not (an upstream called back about them), where active, submitted
    (a row still being submitted is its submitter's), of `provider` when given, and not leased by anyone."""
    if not task_ids:
        return []
    where = sa.and_(_claimable(now), tasks.c.id.in_(list(task_ids)), tasks.c.upstream_id.is_not(None))
    if provider is not None:
        where = sa.and_(where, tasks.c.provider == provider)
    return await _claim(engine, where, owner=owner, now=now, limit=len(task_ids), lease_s=lease_s)


async def still_active(engine: AsyncEngine, *, task_ids: Sequence[str], provider: str | None = None) -> set[str]:
    """Which of these tasks are unfinished (and of `provider`, when given)."""
    if not task_ids:
        return set()
    query = sa.select(tasks.c.id).where(tasks.c.id.in_(list(task_ids)), tasks.c.status.in_(_ACTIVE))
    if provider is not None:
        query = query.where(tasks.c.provider == provider)
    async with engine.connect() as conn:
        return {str(found) for found in (await conn.execute(query)).scalars()}


_READ_OK = sa.text(
    "UPDATE tasks SET status = :status, progress = :progress, next_poll_at = :next_poll_at, polls = polls + 1, "
    "poll_failures = 0, lease_owner = NULL, lease_until = NULL, updated_at = :now "
    f"WHERE id = :id AND lease_owner = :owner AND {_ACTIVE_SQL}"
)
_READ_FAILED = sa.text(
    "UPDATE tasks SET next_poll_at = :next_poll_at, polls = polls + 1, poll_failures = poll_failures + 1, "
    "last_poll_error = :error, lease_owner = NULL, lease_until = NULL, updated_at = :now "
    f"WHERE id = :id AND lease_owner = :owner AND {_ACTIVE_SQL}"
)


async def record_readings(engine: AsyncEngine, *, owner: str, readings: Sequence[Reading]) -> None:
    """Store many non-terminal readings (record_poll / record_poll_failure for each) in one transaction, and
    release their leases; a row that moved on meanwhile (finished, or its lease taken over) is left alone."""
    if not readings:
        return
    now = time.time()
    redact = protection(engine).redact
    ok = [
        {
            "id": r.task_id,
            "owner": owner,
            "status": (r.status or TaskStatus.QUEUED).value,
            "progress": r.progress,
            "next_poll_at": r.next_poll_at,
            "now": now,
        }
        for r in readings
        if r.error is None
    ]
    failed = [
        {"id": r.task_id, "owner": owner, "error": redact(r.error)[:2000], "next_poll_at": r.next_poll_at, "now": now}
        for r in readings
        if r.error is not None
    ]
    async with engine.begin() as conn:
        if ok:
            await conn.execute(_READ_OK, ok)
        if failed:
            await conn.execute(_READ_FAILED, failed)


async def extend_leases(engine: AsyncEngine, *, task_ids: Sequence[str], owner: str, until: float) -> None:
    """extend_lease for many rows in one statement."""
    if not task_ids:
        return
    longer = sa.case((tasks.c.lease_until > until, tasks.c.lease_until), else_=until)
    async with engine.begin() as conn:
        await conn.execute(
            tasks.update()
            .where(tasks.c.id.in_(list(task_ids)), tasks.c.lease_owner == owner)
            .values(lease_until=longer)
        )


async def next_claimable(engine: AsyncEngine, *, window: int = 256) -> float | None:
    """When one of the earliest-due active tasks can next be claimed (due, and its lease free); only the
    `window` earliest by next_poll_at are looked at (through the index), so a replica's poller sleeps cheaply."""
    earliest = (
        sa.select(tasks.c.next_poll_at, tasks.c.lease_until)
        .where(tasks.c.next_poll_at.is_not(None), tasks.c.status.in_(_ACTIVE))
        .order_by(tasks.c.next_poll_at)
        .limit(window)
        .subquery()
    )
    claimable_at = sa.case(
        (earliest.c.lease_until > earliest.c.next_poll_at, earliest.c.lease_until), else_=earliest.c.next_poll_at
    )
    async with engine.connect() as conn:
        due = (await conn.execute(sa.select(sa.func.min(claimable_at)))).scalar()
    return float(due) if due is not None else None


async def recent_durations(engine: AsyncEngine, *, limit: int = 5000) -> list[tuple[str, str, float]]:
    """(channel, model, seconds from creation to completion) of the most recently created completed tasks,
    newest first: what the poller learns typical durations from (engine/schedule.Durations)."""
    query = (
        sa.select(tasks.c.channel, tasks.c.model, tasks.c.completed_at - tasks.c.created_at)
        .where(tasks.c.status == TaskStatus.COMPLETED.value, tasks.c.completed_at.is_not(None))
        .order_by(tasks.c.seq.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [(str(ch), str(model), float(took)) for ch, model, took in (await conn.execute(query)).all()]
