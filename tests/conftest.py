"""Fixtures: settings on a temporary folder, databases (SQLite and PostgreSQL), a running server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.entry_points import register_source_providers
from tests.helpers import PG_ADMIN_URL, Server, free_port, pg_reachable, write_config

register_source_providers()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run (dropped afterwards); skipped only if PostgreSQL is unreachable."""
    if not pg_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    import asyncpg

    name = f"vidgate_test_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store/engine test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One vidgate per test module, on SQLite, with the local provider."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    srv = Server(config=write_config(folder, port=port), port=port, log=folder / "server.log")
    srv.start()
    yield srv
    srv.stop()
