"""Replicas started together on a fresh PostgreSQL database migrate it one at a time (an advisory lock), instead
of racing to create the same tables (all but one used to fail to start)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import PG_ADMIN_URL, pg_reachable

pytestmark = pytest.mark.skipif(not pg_reachable(), reason=f"PostgreSQL is not reachable at {PG_ADMIN_URL}")


@pytest.fixture
def fresh_database() -> Iterator[str]:
    import asyncpg

    name = f"vidgate_migrate_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_four_processes_migrate_one_fresh_database_at_once(fresh_database: str) -> None:
    code = f"from vidgate.store.db import migrate; migrate({fresh_database!r}, secret='s' * 32)"
    processes = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    results = [(process.communicate(timeout=120)[1].decode()[-2000:], process.returncode) for process in processes]
    assert [status for _, status in results] == [0, 0, 0, 0], [error for error, status in results if status]
