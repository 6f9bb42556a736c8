"""The async engine, built from database_url; migrations applied at startup."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def async_url(database_url: str) -> str:
    """Map sqlite:/// and postgresql:// to their async drivers."""
    url = make_url(database_url)
    if url.drivername in ("sqlite", "sqlite+aiosqlite"):
        return url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if url.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database_url scheme: {url.drivername}")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _prepare_sqlite_path(database_url: str) -> None:
    url = make_url(database_url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(database_url: str) -> AsyncEngine:
    """An AsyncEngine for SQLite (WAL, busy timeout) or PostgreSQL (asyncpg)."""
    url = async_url(database_url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        _prepare_sqlite_path(database_url)
        kwargs["connect_args"] = {"timeout": 30}
        # SQLite has one writer. Several pooled connections would collide on its lock and wait in its
        # busy handler, which sleeps in steps of milliseconds; one connection makes them queue in asyncio
        # instead (reads on the hot path use their own connection, see SQLiteReader).
        kwargs.update(pool_size=1, max_overflow=0)
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def migrate(database_url: str) -> None:
    """Bring the schema to the newest revision (synchronous; run before the event loop serves)."""
    if make_url(database_url).drivername.startswith("sqlite"):
        _prepare_sqlite_path(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = async_url(database_url)
    # env.py runs its own event loop; keep it off any loop already running in this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, config, "head").result()


PING_TIMEOUT_S = 3.0


async def ping(engine: AsyncEngine, database_url: str) -> None:
    """Raise unless the database answers a query on the schema within PING_TIMEOUT_S.

    For SQLite the file itself is opened afresh (read-only): pooled connections keep working on a file
    that was moved away or replaced, and that must not pass for ready.
    """
    async with asyncio.timeout(PING_TIMEOUT_S):
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1 FROM tasks LIMIT 1"))
        url = make_url(database_url)
        if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
            await asyncio.to_thread(_ping_sqlite_file, url.database)


def _ping_sqlite_file(path: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"database file {path} is missing")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=PING_TIMEOUT_S)
    try:
        connection.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
    finally:
        connection.close()


class SQLiteReader:
    """Point reads on SQLite, run on the calling (event loop) thread.

    aiosqlite hands every query to a worker thread; under load the GIL hand-offs cost far more than the
    query itself (a primary-key lookup takes ~20 µs). In WAL mode readers never wait for writers, so a
    plain read-only connection used from the loop thread is both faster and safe.
    """

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA busy_timeout=1000")

    def one(self, sql: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._connection.execute(sql, params).fetchone()
        return row

    def close(self) -> None:
        self._connection.close()


_readers: weakref.WeakKeyDictionary[AsyncEngine, SQLiteReader] = weakref.WeakKeyDictionary()


def sqlite_reader(engine: AsyncEngine) -> SQLiteReader | None:
    """The loop-thread reader for a SQLite engine (None for PostgreSQL, whose driver is natively async)."""
    if engine.dialect.name != "sqlite":
        return None
    reader = _readers.get(engine)
    if reader is None:
        database = engine.url.database
        if not database or database == ":memory:":
            return None
        reader = _readers[engine] = SQLiteReader(database)
    return reader


def close_reader(engine: AsyncEngine) -> None:
    reader = _readers.pop(engine, None)
    if reader is not None:
        reader.close()
