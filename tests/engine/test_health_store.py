"""The breakers' mirror in the database: concurrent first saves of one channel never collide."""

from __future__ import annotations

import asyncio
import uuid

from tests.helpers import SHARED_DB_SECRET
from vidgate.engine.health import ChannelHealth, load_health
from vidgate.store.db import create_engine, migrate


async def test_concurrent_first_saves_of_a_channel_are_one_row(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, secret=SHARED_DB_SECRET)
    db = create_engine(database_url, secret=SHARED_DB_SECRET)
    channel = f"health-{uuid.uuid4().hex}"  # the PostgreSQL database is shared by the whole run
    try:
        # Two processes' breakers (each its own ChannelHealth) record failures of a channel no row names yet:
        # the racing first saves must all land (one row, no duplicate-key error).
        first, second = (ChannelHealth(db, threshold=2, cooldown_s=30) for _ in range(2))
        await asyncio.gather(*(health.failure(channel, "HTTP 500") for health in (first, second) for _ in range(3)))
        assert channel in await load_health(db)
        # Which racing write lands last is not ordered (the last writer wins); the next one is the state.
        await first.failure(channel, "HTTP 500")
        stored = (await load_health(db))[channel]
        assert stored["state"] == "open" and stored["last_error"] == "HTTP 500"
    finally:
        await db.dispose()
