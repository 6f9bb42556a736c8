"""Alembic environment: runs migrations over the async engine vidgate itself uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from vidgate.store.tables import metadata

config = context.config
# Replicas starting together on one PostgreSQL database migrate one at a time: each takes this advisory lock for
# its migration transaction, and the next one finds the schema current. (SQLite serialises writers itself.)
MIGRATION_LOCK = 0x76696467  # "vidg"


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    # Migrations move secrets (0006 seals them): no bound parameter may reach an exception text.
    engine = create_async_engine(config.attributes["database_url"], hide_parameters=True)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_main())
