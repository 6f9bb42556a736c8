"""The hot paths' own way to the database: status reads, and the two writes of a create.

Profiled under wrk (py-spy, bench/), SQLAlchemy was where these paths spent their time:
  - PostgreSQL status read: four round trips (the pool's pre-ping, BEGIN, the SELECT, the ROLLBACK of the
    pool's reset) and the statement's cache-key and compile work, ~0.65 ms of CPU a read.
  - SQLite writes: aiosqlite hands every step (cursor, execute, fetch, close, commit, the reset's rollback) to
    its thread, ~10 hand-offs a transaction, each one waiting for the GIL while the event loop is busy; with
    one pooled connection, concurrent creates queued behind each other's hand-offs (~110 ms a transaction).

So here:
  - PostgreSQL: an asyncpg pool owned by the app, beside the SQLAlchemy engine. asyncpg prepares each
    statement once per connection and reuses it. Concurrent status reads go as one `id = ANY($1)` query
    (each reader still gets a row read after it asked). A create's row goes in with one statement
    (idempotency claim, task, reservation as one INSERT … WITH), its upstream id with one UPDATE … RETURNING.
  - SQLite: one writer thread with its own connection runs whole transactions, each one call; what queued
    while it was busy is committed together (one transaction, a savepoint each), so a burst of creates
    costs one hand-off, not one each. Reads stay on the loop thread (db.SQLiteReader).

Only the paths that matter for speed come here; everything else keeps using SQLAlchemy. The functions in
store/tasks.py decide which to use: `hot_store(engine)` is None when there is no hot store for an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.store.tables import idempotency_keys, ledger, tasks

log = logging.getLogger("vidgate.store")

T = TypeVar("T")

# Columns stored as JSON text (SQLAlchemy's JSON type: None is stored as the JSON `null`, as it does).
JSON_COLUMNS = frozenset(column.name for column in tasks.c if isinstance(column.type, sa.JSON))


def integrity_error(statement: str, exc: Exception) -> IntegrityError:
    """A constraint's refusal as SQLAlchemy reports it (store callers catch that), parameters hidden."""
    # The parameters themselves are not kept on it; a placeholder makes the text say they are hidden.
    return IntegrityError(statement, ["hidden"], exc, hide_parameters=True)


def encode(name: str, value: Any) -> Any:
    """A task column's value as the drivers take it."""
    if name in JSON_COLUMNS:
        return orjson.dumps(value).decode()
    return value


class HotStore:
    """What the hot paths ask of the database. Rows come back as mappings of column name to stored value
    (JSON columns as text); store/tasks.py turns them into its own types."""

    async def view_row(self, task_id: str, columns: Sequence[str]) -> Mapping[str, Any] | None:
        raise NotImplementedError

    async def task_row(self, task_id: str, key_id: str | None) -> Mapping[str, Any] | None:
        raise NotImplementedError

    async def insert_task(
        self,
        row: Mapping[str, Any],
        *,
        reserve: Mapping[str, Any] | None,
        claim: Mapping[str, Any] | None,
        quota: tuple[str, int, int] | None,
    ) -> int | None:
        """Write the task row, its reservation (a ledger row) and its idempotency claim together.

        With `quota` (key id, price, quota), the key's ledger is summed under a lock first: its sum is
        returned, and nothing written, when the price does not fit. IntegrityError when the claim is taken.
        """
        raise NotImplementedError

    async def mark_submitted(
        self, task_id: str, values: Mapping[str, Any], active: Sequence[str]
    ) -> Mapping[str, Any] | None:
        """Set `values` on a task not yet submitted and still active; its id when it was, else None.
        IntegrityError when another row holds that upstream task."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------- SQLite

# A transaction for the writer thread: its work, and where to hand back the result.
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class SQLiteWriter(HotStore):
    """One thread, one connection: each transaction is one hand-off; those that queue meanwhile commit
    together (a savepoint each, so one's failure undoes only its own writes)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="vidgate-sqlite-writer", daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a transaction of its own on the writer thread; its result once committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._jobs.put((work, loop, done))
        return await done

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < 256:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                try:
                    connection = connection or self._connect()
                except sqlite3.Error as exc:
                    # Each job fails with the reason; the next one tries to connect again.
                    self._hand_back(batch, [(False, exc)] * len(batch))
                else:
                    self._commit(connection, batch)
                if stop:
                    return
        finally:
            if connection is not None:
                connection.close()

    def _commit(
        self,
        connection: sqlite3.Connection,
        batch: list[_Job],
    ) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for work, _loop, _done in batch:
                connection.execute("SAVEPOINT job")
                try:
                    result = work(connection)
                except BaseException as exc:  # handed to the caller
                    connection.execute("ROLLBACK TO job")
                    connection.execute("RELEASE job")
                    outcomes.append((False, exc))
                else:
                    connection.execute("RELEASE job")
                    outcomes.append((True, result))
            connection.execute("COMMIT")
        except BaseException as exc:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(batch)
        self._hand_back(batch, outcomes)

    @staticmethod
    def _hand_back(batch: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_work, loop, done), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((done, ok, value))
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(_deliver, results)

    async def view_row(self, task_id: str, columns: Sequence[str]) -> Mapping[str, Any] | None:
        raise NotImplementedError("SQLite reads run on the loop thread (db.SQLiteReader)")

    async def task_row(self, task_id: str, key_id: str | None) -> Mapping[str, Any] | None:
        raise NotImplementedError("SQLite reads run on the loop thread (db.SQLiteReader)")

    async def insert_task(
        self,
        row: Mapping[str, Any],
        *,
        reserve: Mapping[str, Any] | None,
        claim: Mapping[str, Any] | None,
        quota: tuple[str, int, int] | None,
    ) -> int | None:
        task_sql, task_values = _insert_sql(tasks.name, row)
        reserve_sql = _insert_sql(ledger.name, reserve) if reserve is not None else None
        claim_sql = _insert_sql(idempotency_keys.name, claim) if claim is not None else None

        def work(connection: sqlite3.Connection) -> int | None:
            statement = claim_sql[0] if claim_sql is not None else task_sql
            try:
                if claim_sql is not None:
                    connection.execute(*claim_sql)
                if quota is not None:
                    key_id, price, limit = quota
                    used = connection.execute(_SPENT_SQLITE, (key_id,)).fetchone()[0]
                    if int(used) + price > limit:
                        # Undoes the claim too; the caller learns why from the sum.
                        raise _OverQuota(int(used))
                statement = task_sql
                connection.execute(task_sql, task_values)
                if reserve_sql is not None:
                    statement = reserve_sql[0]
                    connection.execute(*reserve_sql)
            except sqlite3.IntegrityError as exc:
                raise integrity_error(statement, exc) from None
            return None

        try:
            return await self.run(work)
        except _OverQuota as over:
            return over.used

    async def mark_submitted(
        self, task_id: str, values: Mapping[str, Any], active: Sequence[str]
    ) -> Mapping[str, Any] | None:
        names = list(values)
        sql = (
            f"UPDATE tasks SET {', '.join(f'{name} = ?' for name in names)} WHERE id = ? AND upstream_id IS NULL "
            f"AND status IN ({', '.join('?' * len(active))}) RETURNING id"
        )
        params = (*(encode(name, values[name]) for name in names), task_id, *active)

        def work(connection: sqlite3.Connection) -> Mapping[str, Any] | None:
            try:
                found = connection.execute(sql, params).fetchone()
            except sqlite3.IntegrityError as exc:
                raise integrity_error(sql, exc) from None
            return dict(found) if found is not None else None

        return await self.run(work)

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join, 5)

    def stop_soon(self) -> None:
        self._jobs.put(None)


class _OverQuota(Exception):
    def __init__(self, used: int) -> None:
        super().__init__(used)
        self.used = used


def _deliver(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for done, ok, value in results:
        if done.cancelled():
            continue
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)


_SPENT_SQLITE = "SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE key_id = ?"


def _insert_sql(table: str, row: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    names = list(row)
    marks = ", ".join("?" * len(names))
    values = tuple(encode(name, row[name]) if table == tasks.name else row[name] for name in names)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", values


# ------------------------------------------------------------------------------------------- PostgreSQL


class PostgresStore(HotStore):
    """asyncpg, used directly: prepared statements, no per-request compilation, batched status reads."""

    # Status reads in one query at most; a second batch may run while one is in flight.
    BATCH = 256
    READERS = 2

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        # Status reads waiting for the next batch, by the columns they read.
        self._waiting: dict[tuple[str, ...], list[tuple[str, asyncio.Future[Mapping[str, Any] | None]]]] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._view_sql: dict[tuple[str, ...], str] = {}

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = 20) -> PostgresStore:
        import asyncpg

        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, max_inactive_connection_lifetime=60, reset=_keep_session
        )
        return cls(pool)

    async def view_row(self, task_id: str, columns: Sequence[str]) -> Mapping[str, Any] | None:
        cols = tuple(columns)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Mapping[str, Any] | None] = loop.create_future()
        self._waiting.setdefault(cols, []).append((task_id, done))
        if len(self._readers) < self.READERS:
            reader = loop.create_task(self._read_batches())
            self._readers.add(reader)
            reader.add_done_callback(self._readers.discard)
        return await done

    async def _read_batches(self) -> None:
        while self._waiting:
            cols, waiting = next(iter(self._waiting.items()))
            batch = waiting[: self.BATCH]
            del waiting[: len(batch)]
            if not waiting:
                del self._waiting[cols]
            sql = self._view_sql.get(cols)
            if sql is None:
                sql = self._view_sql[cols] = (
                    f"SELECT {', '.join(cols)} FROM tasks WHERE id = ANY($1::text[]) AND deleted_at IS NULL"
                )
            try:
                async with self._pool.acquire() as connection:
                    rows = await connection.fetch(sql, list({task_id for task_id, _ in batch}))
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:
                for _, done in batch:
                    if not done.done():
                        done.cancel()
                raise
            found = {row["id"]: row for row in rows}
            for task_id, done in batch:
                if not done.done():
                    done.set_result(found.get(task_id))

    async def task_row(self, task_id: str, key_id: str | None) -> Mapping[str, Any] | None:
        async with self._pool.acquire() as connection:
            if key_id is None:
                found = await connection.fetchrow(_PG_BY_ID, task_id)
            else:
                found = await connection.fetchrow(_PG_BY_ID_AND_KEY, task_id, key_id)
        return found  # type: ignore[no-any-return]

    async def insert_task(
        self,
        row: Mapping[str, Any],
        *,
        reserve: Mapping[str, Any] | None,
        claim: Mapping[str, Any] | None,
        quota: tuple[str, int, int] | None,
    ) -> int | None:
        import asyncpg

        sql, params = _pg_insert(row, reserve, claim)
        async with self._pool.acquire() as connection:
            try:
                if quota is None:
                    # One statement: it commits or fails as a whole.
                    await connection.execute(sql, *params)
                    return None
                key_id, price, limit = quota
                async with connection.transaction():
                    # The key row's lock orders concurrent submits of one key; the sum is read after it.
                    await connection.execute(_PG_LOCK_KEY, key_id)
                    used = int(await connection.fetchval(_PG_SPENT, key_id))
                    if used + price > limit:
                        return used
                    await connection.execute(sql, *params)
                    return None
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise integrity_error(sql, exc) from None

    async def mark_submitted(
        self, task_id: str, values: Mapping[str, Any], active: Sequence[str]
    ) -> Mapping[str, Any] | None:
        import asyncpg

        names = list(values)
        sets = ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=3))
        sql = f"UPDATE tasks SET {sets} WHERE id = $1 AND upstream_id IS NULL AND status = ANY($2::text[]) RETURNING id"
        async with self._pool.acquire() as connection:
            try:
                found = await connection.fetchrow(sql, task_id, list(active), *(encode(n, values[n]) for n in names))
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise integrity_error(sql, exc) from None
        return found  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(connection: Any) -> None:
    """What a connection needs on its way back to the pool: nothing beyond what asyncpg always does (end an
    open transaction). Its default reset (unlock advisory locks, close cursors, unlisten, reset settings) is a
    round trip on every release; these connections never take locks, open cursors, listen or change settings."""


_PG_BY_ID = "SELECT * FROM tasks WHERE id = $1 AND deleted_at IS NULL"
_PG_BY_ID_AND_KEY = "SELECT * FROM tasks WHERE id = $1 AND deleted_at IS NULL AND key_id = $2"
_PG_LOCK_KEY = "SELECT id FROM api_keys WHERE id = $1 FOR UPDATE"
_PG_SPENT = "SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE key_id = $1"


def _pg_insert(
    row: Mapping[str, Any], reserve: Mapping[str, Any] | None, claim: Mapping[str, Any] | None
) -> tuple[str, list[Any]]:
    """One INSERT … WITH statement for the task, its reservation and its idempotency claim."""
    params: list[Any] = []
    parts: list[str] = []
    for table, values, encoded in (
        (idempotency_keys.name, claim, False),
        (tasks.name, row, True),
        (ledger.name, reserve, False),
    ):
        if values is None:
            continue
        names = list(values)
        marks = ", ".join(f"${len(params) + n}" for n in range(1, len(names) + 1))
        params.extend(encode(name, values[name]) if encoded else values[name] for name in names)
        parts.append(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})")
    *first, last = parts
    ctes = ", ".join(f"w{n} AS ({part})" for n, part in enumerate(first))
    return (f"WITH {ctes} {last}" if ctes else last), params


# ---------------------------------------------------------------------------------------- per engine

_stores: weakref.WeakKeyDictionary[AsyncEngine, HotStore] = weakref.WeakKeyDictionary()


def hot_store(engine: AsyncEngine) -> HotStore | None:
    """The engine's hot store: started by `start` (the app's lifespan); for a SQLite file made on first use."""
    found = _stores.get(engine)
    if found is None and engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            return None
        writer = SQLiteWriter(database)
        weakref.finalize(engine, writer.stop_soon)
        found = _stores[engine] = writer
    return found


async def start(engine: AsyncEngine) -> HotStore | None:
    """Open the engine's hot store (PostgreSQL: an asyncpg pool beside the engine's own)."""
    if engine.dialect.name == "postgresql" and engine not in _stores:
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        _stores[engine] = await PostgresStore.connect(dsn)
    return hot_store(engine)


async def stop(engine: AsyncEngine) -> None:
    found = _stores.pop(engine, None)
    if found is not None:
        await found.close()
