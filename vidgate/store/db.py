"""The async engine, built from database_url; migrations applied at startup."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from vidgate.crypto import Vault
from vidgate.errors import ConfigError, SealError
from vidgate.redact import Redactor
from vidgate.store.tables import api_keys, tasks

log = logging.getLogger("vidgate.store")

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
        path = Path(url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        _owner_only(path)


def _owner_only(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite gives its -wal and -shm the same mode),
    and take group/other access away from a file an older vidgate made with the default umask."""
    if not path.exists():
        # An empty file is an empty SQLite database.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if each.stat().st_mode & 0o077:
                each.chmod(0o600)
        except FileNotFoundError:
            continue


@dataclass(frozen=True)
class Protection:
    """How an engine's rows keep secrets: the vault that seals them, the redactor for stored error texts."""

    vault: Vault
    redact: Redactor


_protection: weakref.WeakKeyDictionary[AsyncEngine, Protection] = weakref.WeakKeyDictionary()


def protection(engine: AsyncEngine) -> Protection:
    """The vault and redactor the engine was created with (create_engine)."""
    found = _protection.get(engine)
    if found is None:
        raise RuntimeError("this engine was not made by vidgate.store.db.create_engine (it has no vault)")
    return found


def sealed_context(column: sa.Column[Any], row_id: str) -> str:
    """What a sealed value is bound to: its table, column and row ("tasks.credentials:video_…")."""
    return f"{column.table.name}.{column.name}:{row_id}"


async def check_secret(engine: AsyncEngine) -> None:
    """ConfigError unless the engine's secret opens what is sealed in the database (`secret` was changed)."""
    vault = protection(engine).vault
    async with engine.connect() as conn:
        latest = sa.select(tasks.c.id, tasks.c.credentials).order_by(tasks.c.seq.desc()).limit(1)
        task = (await conn.execute(latest)).first()
        sealed_keys = sa.select(api_keys.c.id, api_keys.c.webhook_secret).where(api_keys.c.webhook_secret.is_not(None))
        key = (await conn.execute(sealed_keys.order_by(api_keys.c.created_at.desc()).limit(1))).first()
    try:
        if task is not None:
            vault.open(task.credentials, context=sealed_context(tasks.c.credentials, task.id))
        if key is not None:
            vault.open(key.webhook_secret, context=sealed_context(api_keys.c.webhook_secret, key.id))
    except SealError as exc:
        raise ConfigError(
            f"`secret` does not open the secrets stored in the database ({exc.message}); "
            "vidgate must run with the secret they were sealed with"
        ) from exc


def create_engine(database_url: str, *, secret: str, redactor: Redactor | None = None) -> AsyncEngine:
    """An AsyncEngine for SQLite (WAL, busy timeout) or PostgreSQL (asyncpg).

    Secrets kept in rows are sealed with a key derived from `secret`; error texts stored in rows go through
    `redactor`. Bound parameters never appear in SQLAlchemy's exception texts (hide_parameters).
    """
    url = async_url(database_url)
    kwargs: dict[str, Any] = {"hide_parameters": True}
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
    _protection[engine] = Protection(Vault(secret), redactor or Redactor([secret]))
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def migrate(database_url: str, *, secret: str, revision: str = "head") -> None:
    """Bring the schema to the newest revision (synchronous; run before the event loop serves).

    `secret` is what migrations that seal stored secrets (0006) seal them with.
    """
    if make_url(database_url).drivername.startswith("sqlite"):
        _prepare_sqlite_path(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = async_url(database_url)
    config.attributes["secret"] = secret
    # env.py runs its own event loop; keep it off any loop already running in this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, config, revision).result()
    url = make_url(database_url)
    if config.attributes.get("replaced_plaintext") and url.drivername.startswith("sqlite") and url.database:
        _truncate_wal(url.database)


def _truncate_wal(path: str) -> None:
    """Checkpoint and empty the WAL: frames written before a migration sealed the secrets still hold them."""
    connection = sqlite3.connect(path, timeout=5)
    try:
        busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        connection.close()
    if busy:
        log.warning("could not empty the WAL of %s (another process is reading); it empties as it is reused", path)


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
