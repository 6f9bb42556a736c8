"""Circuit breakers per channel: a channel that keeps failing is taken out for a cool-down, then tried again.

State lives in memory (the hot path reads it) and is mirrored to the channel_health table on every change,
so `vidgate channels` and /metrics can show it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.store.db import protection
from vidgate.store.tables import channel_health

log = logging.getLogger("vidgate.health")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class Breaker:
    state: str = CLOSED
    failures: int = 0
    open_until: float = 0.0
    trial_running: bool = False
    last_error: str | None = None


class ChannelHealth:
    """Per-channel breakers: `threshold` consecutive failures open it for `cooldown_s`; one trial then."""

    def __init__(self, db: AsyncEngine, *, threshold: int, cooldown_s: float) -> None:
        self._db = db
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._breakers: dict[str, Breaker] = {}

    def breaker(self, channel: str) -> Breaker:
        return self._breakers.setdefault(channel, Breaker())

    def is_open(self, channel: str) -> bool:
        """Out of service right now (no side effect; `available` is what lets a trial through)."""
        breaker = self.breaker(channel)
        return (breaker.state == OPEN and time.time() < breaker.open_until) or (
            breaker.state == HALF_OPEN and breaker.trial_running
        )

    def available(self, channel: str, now: float | None = None) -> bool:
        """May a request go to this channel now? An open breaker lets one trial through after its cool-down."""
        now = time.time() if now is None else now
        breaker = self.breaker(channel)
        if breaker.state == CLOSED:
            return True
        if breaker.state == OPEN and now >= breaker.open_until:
            breaker.state = HALF_OPEN
            breaker.trial_running = False
        if breaker.state == HALF_OPEN and not breaker.trial_running:
            breaker.trial_running = True
            return True
        return False

    def retry_after(self, channels: list[str]) -> int:
        now = time.time()
        waits = [self.breaker(name).open_until - now for name in channels if self.breaker(name).state == OPEN]
        return max(1, int(min(waits, default=1.0)) + 1)

    async def success(self, channel: str) -> None:
        breaker = self.breaker(channel)
        changed = breaker.state != CLOSED or breaker.failures
        breaker.state, breaker.failures, breaker.trial_running, breaker.last_error = CLOSED, 0, False, None
        if changed:
            await self._save(channel, breaker)

    async def failure(self, channel: str, error: str) -> None:
        breaker = self.breaker(channel)
        breaker.failures += 1
        breaker.last_error = protection(self._db).redact(error)[:500]
        breaker.trial_running = False
        if breaker.state == HALF_OPEN or breaker.failures >= self._threshold:
            breaker.state = OPEN
            breaker.open_until = time.time() + self._cooldown_s
        await self._save(channel, breaker)

    def snapshot(self) -> dict[str, Breaker]:
        return dict(self._breakers)

    async def _save(self, channel: str, breaker: Breaker) -> None:
        values = {
            "state": breaker.state,
            "failures": breaker.failures,
            "open_until": breaker.open_until if breaker.state == OPEN else None,
            "last_error": breaker.last_error,
            "updated_at": time.time(),
        }
        # An upsert: two processes (or two requests) saving a channel's first state must not collide.
        insert = postgresql.insert if self._db.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(channel_health)
            .values(channel=channel, **values)
            .on_conflict_do_update(index_elements=[channel_health.c.channel], set_=values)
        )
        try:
            async with self._db.begin() as conn:
                await conn.execute(statement)
        except SQLAlchemyError:
            # The mirror is for `vidgate channels` and /metrics; the breaker itself lives in memory.
            log.warning("could not store the health of channel %s", channel, exc_info=True)


async def load_health(db: AsyncEngine) -> dict[str, dict[str, object]]:
    """The stored health of every channel (for `vidgate channels`)."""
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(channel_health))).all()
    return {row.channel: dict(row._mapping) for row in rows}
