"""Secrets in the store, on SQLite and PostgreSQL: sealed at rest, never in stored error texts or exception
texts; migration 0006 seals the rows an older vidgate wrote; revocations reach another process's KeyRing."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.helpers import PG_ADMIN_URL

# One secret for every store test: on PostgreSQL they share one database.
from tests.store.test_store import SECRET, task_values
from vidgate.auth import KeyRing, new_key, new_webhook_secret
from vidgate.errors import ConfigError, SealError, Unauthenticated
from vidgate.redact import Redactor
from vidgate.status import TaskStatus
from vidgate.store import keys as key_store
from vidgate.store import tables
from vidgate.store import tasks as task_store
from vidgate.store.db import MIGRATIONS, async_url, check_secret, create_engine, migrate

CHANNEL_KEY = "sk-channel-" + "Q7" * 12


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate, database_url, secret=SECRET)
    engine = create_engine(database_url, secret=SECRET, redactor=Redactor([SECRET, CHANNEL_KEY]))
    yield engine
    await engine.dispose()


async def everything_stored(engine: AsyncEngine) -> str:
    """Every value of every column of every table, as one text."""

    def dump(conn: sa.Connection) -> str:
        meta = sa.MetaData()
        meta.reflect(conn)
        return "\n".join(
            repr(tuple(row)) for table in meta.sorted_tables for row in conn.execute(sa.select(table)).all()
        )

    async with engine.connect() as conn:
        return await conn.run_sync(dump)


async def test_credentials_and_webhook_secrets_are_sealed_and_open_again(db: AsyncEngine) -> None:
    creds = {"channel": "wan", "base_url": "http://up", "api_key": CHANNEL_KEY, "access_key": "", "secret_key": ""}
    whsec = new_webhook_secret()
    ring = KeyRing(db)
    key, record = await ring.create(name="hooks", webhook_url="http://127.0.0.1:9/hook", webhook_secret=whsec)
    values = task_values(record.id, credentials=creds)
    await task_store.insert_task(db, values)
    stored = await everything_stored(db)
    assert CHANNEL_KEY not in stored and whsec not in stored and key not in stored
    # The app reads them back, on every path that returns rows.
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.credentials == creds and CHANNEL_KEY not in repr(row)
    claimed = await task_store.claim_due(db, owner="me", now=time.time(), limit=10, lease_s=30)
    assert [r.credentials for r in claimed if r.id == values["id"]] == [creds]
    listed = await task_store.list_tasks(db, key_id=record.id, limit=5, order="desc")
    assert listed[0].credentials == creds
    found = await key_store.get_key(db, key_id=record.id)
    assert found is not None and found.webhook_secret == whsec and whsec not in repr(found)
    assert (await ring.authenticate(f"Bearer {key}")).webhook_secret == whsec
    # Resealed on submit, with the channel that took it.
    other = {**creds, "channel": "wan-b", "api_key": CHANNEL_KEY + "-b"}
    args = {"channel": "wan-b", "provider": "dashscope", "credentials": other, "next_poll_at": time.time()}
    assert await task_store.mark_submitted(db, task_id=values["id"], upstream_id="u1", **args)
    assert CHANNEL_KEY not in await everything_stored(db)
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.credentials == other
    await check_secret(db)  # the secret opens what is stored
    wrong = create_engine(make_url(async_url_of(db)).render_as_string(hide_password=False), secret="changed")
    try:
        with pytest.raises(ConfigError, match="secret"):
            await check_secret(wrong)
    finally:
        await wrong.dispose()


def async_url_of(engine: AsyncEngine) -> str:
    url = engine.url
    driver = "sqlite" if url.drivername.startswith("sqlite") else "postgresql"
    return url.set(drivername=driver).render_as_string(hide_password=False)


async def test_stored_error_texts_are_redacted(db: AsyncEngine) -> None:
    client_key = new_key()
    values = task_values("key_" + secrets.token_hex(4))
    await task_store.insert_task(db, values)
    await task_store.claim_due(db, owner="me", now=time.time(), limit=100, lease_s=30)
    leak = f"DashScope 401 InvalidApiKey: Invalid API-key provided: {CHANNEL_KEY} (client {client_key})"
    assert await task_store.record_poll_failure(db, task_id=values["id"], owner="me", error=leak, next_poll_at=0)
    await task_store.set_attempts(db, task_id=values["id"], attempts=[{"channel": "wan", "error": leak}])
    assert await task_store.finish(
        db, task_id=values["id"], status=TaskStatus.FAILED, values={"error_code": "x", "error_message": leak}
    )
    stored = await everything_stored(db)
    assert CHANNEL_KEY not in stored and client_key not in stored
    row = await task_store.get_task(db, task_id=values["id"])
    assert row is not None and row.error_message and "[redacted]" in row.error_message
    assert row.last_poll_error and "[redacted]" in row.last_poll_error
    assert row.attempts and "[redacted]" in row.attempts[0]["error"]


async def test_database_errors_carry_no_parameters(db: AsyncEngine) -> None:
    values = task_values("key_" + secrets.token_hex(4), prompt="prompt-marker-" + secrets.token_hex(6))
    await task_store.insert_task(db, values)
    with pytest.raises(IntegrityError) as caught:
        await task_store.insert_task(db, values)
    text = str(caught.value) + repr(caught.value)
    assert values["prompt"] not in text and "v1." not in text
    assert "parameters hidden" in text


# -- migration 0006 ------------------------------------------------------------------------------------------


def alembic(database_url: str, action: str, revision: str, secret: str | None) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = async_url(database_url)
    if secret is not None:
        config.attributes["secret"] = secret
    getattr(command, action)(config, revision)


async def write_old_rows(database_url: str, creds: dict[str, Any], whsec: str) -> tuple[str, str]:
    """Rows as vidgate at revision 0003 wrote them: credentials and the webhook secret in plaintext."""
    engine = create_async_engine(async_url(database_url))
    key_id, task_id = "key_" + secrets.token_hex(8), "video_" + secrets.token_hex(16)
    now = time.time()
    try:
        if database_url.startswith("sqlite"):
            async with engine.connect() as conn:
                # As vidgate runs it: the new rows then sit in the WAL, not (yet) in the database file.
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: _reflect(sync))
            await conn.execute(
                tables["api_keys"]
                .insert()
                .values(
                    id=key_id,
                    name="old",
                    key_hash=secrets.token_hex(32),
                    key_prefix="sk-vg-abcd…",
                    created_at=now,
                    webhook_url="http://127.0.0.1:9/hook",
                    webhook_secret=whsec,
                )
            )
            row = {**task_values(key_id, credentials=creds), "id": task_id}
            await conn.execute(tables["tasks"].insert().values(**row))
    finally:
        await engine.dispose()
    return key_id, task_id


def _reflect(conn: sa.Connection) -> dict[str, sa.Table]:
    meta = sa.MetaData()
    meta.reflect(conn, only=["api_keys", "tasks"])
    return dict(meta.tables)


@pytest.fixture
async def fresh_database_url(database_url: str) -> AsyncIterator[str]:
    """A database with nothing in it yet (the PostgreSQL one of the session is already migrated)."""
    if database_url.startswith("sqlite"):
        yield database_url
        return
    import asyncpg

    name = f"vidgate_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_migration_seals_plaintext_rows_and_downgrade_restores_them(fresh_database_url: str) -> None:
    database_url = fresh_database_url
    creds = {"channel": "old", "base_url": "http://up", "api_key": CHANNEL_KEY, "access_key": "", "secret_key": ""}
    whsec = new_webhook_secret()
    await asyncio.to_thread(alembic, database_url, "upgrade", "0003", None)
    key_id, task_id = await write_old_rows(database_url, creds, whsec)
    plain = create_async_engine(async_url(database_url))
    try:
        async with plain.connect() as conn:
            before = str((await conn.execute(sa.text("SELECT credentials FROM tasks"))).all())
        assert CHANNEL_KEY in before  # what the old schema kept, so the check below means something

        # Without the secret the migration refuses (it will not leave half the rows sealed). The revisions
        # before it go first: on SQLite a failed run does not undo the table rebuilds of earlier revisions.
        await asyncio.to_thread(alembic, database_url, "upgrade", "0005", None)
        with pytest.raises(RuntimeError, match="secret"):
            await asyncio.to_thread(alembic, database_url, "upgrade", "head", None)
        await asyncio.to_thread(migrate, database_url, secret=SECRET)
        engine = create_engine(database_url, secret=SECRET)
        try:
            stored = await everything_stored(engine)
            assert CHANNEL_KEY not in stored and whsec not in stored
            row = await task_store.get_task(engine, task_id=task_id)
            assert row is not None and row.credentials == creds
            key = await key_store.get_key(engine, key_id=key_id)
            assert key is not None and key.webhook_secret == whsec
        finally:
            await engine.dispose()
        if database_url.startswith("sqlite"):
            # Not even in the file's free pages or the WAL.
            path = Path(make_url(database_url).database or "")
            raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
            assert CHANNEL_KEY.encode() not in raw and whsec.encode() not in raw

        await asyncio.to_thread(alembic, database_url, "downgrade", "0003", SECRET)
        async with plain.connect() as conn:
            credentials = (await conn.execute(sa.text("SELECT credentials FROM tasks"))).scalar_one()
            webhook = (await conn.execute(sa.text("SELECT webhook_secret FROM api_keys"))).scalar_one()
        assert (credentials if isinstance(credentials, dict) else json.loads(credentials)) == creds
        assert webhook == whsec
    finally:
        await plain.dispose()


# -- revocation across processes -----------------------------------------------------------------------------


async def test_a_revocation_by_another_process_evicts_the_cached_key(db: AsyncEngine, database_url: str) -> None:
    here = KeyRing(db)
    await here.start()
    elsewhere = create_engine(database_url, secret=SECRET)  # another process: its own engine and ring
    try:
        key, record = await KeyRing(elsewhere).create(name="soon revoked")
        kept, _ = await KeyRing(elsewhere).create(name="kept")
        assert (await here.authenticate(f"Bearer {key}")).id == record.id
        await here.authenticate(f"Bearer {kept}")
        assert await key_store.revoke_key(elsewhere, key_id=record.id)
        # Still cached here until the watcher looks (this is what the watcher is for) ...
        assert (await here.authenticate(f"Bearer {key}")).id == record.id
        await here.check_revocations()
        # ... and refused once it has looked; the other key stays cached and valid.
        with pytest.raises(Unauthenticated):
            await here.authenticate(f"Bearer {key}")
        await here.authenticate(f"Bearer {kept}")
        # A refused key is not remembered as refused: nothing about it is cached at all.
        with pytest.raises(Unauthenticated):
            await here.authenticate(f"Bearer {new_key()}")
        assert all(entry.record is not None and entry.record.active for entry in here._cache.values())
    finally:
        await here.stop()
        await elsewhere.dispose()


async def test_the_watcher_refuses_a_revoked_key_within_its_interval(db: AsyncEngine, database_url: str) -> None:
    ring = KeyRing(db, revocation_check_s=0.1)
    await ring.start()
    elsewhere = create_engine(database_url, secret=SECRET)
    try:
        key, record = await KeyRing(elsewhere).create(name="watched")
        await ring.authenticate(f"Bearer {key}")
        assert await key_store.revoke_key(elsewhere, key_id=record.id)
        revoked_at = time.monotonic()
        while True:
            try:
                await ring.authenticate(f"Bearer {key}")
            except Unauthenticated:
                break
            assert time.monotonic() - revoked_at < 1.0
            await asyncio.sleep(0.01)
    finally:
        await ring.stop()
        await elsewhere.dispose()


async def test_a_row_that_does_not_open_fails_only_where_its_secrets_are_used(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, secret=SECRET)
    foreign = create_engine(database_url, secret="the secret of a misconfigured replica")
    ours = create_engine(database_url, secret=SECRET)
    key, record = await KeyRing(foreign).create(name="foreign", webhook_url="http://h/x", webhook_secret="whsec_x")
    try:
        values = task_values(record.id, credentials={"channel": "c", "api_key": CHANNEL_KEY})
        await task_store.insert_task(foreign, values)
        # Reads, pages and the poller's claims still work for every other row ...
        row = await task_store.get_task(ours, task_id=values["id"])
        assert row is not None and row.status == TaskStatus.QUEUED
        claimed = await task_store.claim_due(ours, owner="x", now=time.time(), limit=1000, lease_s=30)
        assert values["id"] in {r.id for r in claimed}
        # ... and the row's own credentials fail where they are needed.
        with pytest.raises(SealError):
            dict(row.credentials)
        # Its key still authenticates; it has no usable webhook secret.
        assert (await KeyRing(ours).authenticate(f"Bearer {key}")).webhook_secret is None
    finally:
        # Leave nothing foreign in the run's shared PostgreSQL database (servers check the secret on it).
        async with ours.begin() as conn:
            await conn.execute(tables.tasks.delete().where(tables.tasks.c.key_id == record.id))
            await conn.execute(tables.api_keys.delete().where(tables.api_keys.c.id == record.id))
        await foreign.dispose()
        await ours.dispose()
