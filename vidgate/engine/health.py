"""Circuit breakers per channel: a channel that keeps failing is taken out for a cool-down, then tried again.

State lives in memory (the hot path reads it) and is mirrored to the channel_health table on every change,
so `vidgate channels` and /metrics can show it. Each change is also published through shared_state: with
`redis_url` set, every process and replica applies it (a channel that fails on one replica is open on all).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.shared_state import BREAKERS, Message, Shared
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

    def __init__(
        self,
        db: AsyncEngine,
        *,
        threshold: int,
        cooldown_s: float,
        shared: Shared | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._breakers: dict[str, Breaker] = {}
        self._shared = shared
        self._clock = clock
        self._origin = f"health-{secrets.token_hex(6)}"

    async def start(self) -> None:
        """Take up the breakers other processes keep, and follow their changes from now on."""
        if self._shared is None:
            return
        self._shared.subscribe(BREAKERS, self._origin, self._apply)
        for message in (await self._shared.kept(BREAKERS)).values():
            self._apply(message)

    def breaker(self, channel: str) -> Breaker:
        return self._breakers.setdefault(channel, Breaker())

    def is_open(self, channel: str) -> bool:
        """Out of service right now (no side effect; `available` is what lets a trial through)."""
        breaker = self.breaker(channel)
        return (breaker.state == OPEN and self._clock() < breaker.open_until) or (
            breaker.state == HALF_OPEN and breaker.trial_running
        )

    def available(self, channel: str, now: float | None = None) -> bool:
        """May a request go to this channel now? An open breaker lets one trial through after its cool-down."""
        now = self._clock() if now is None else now
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
        now = self._clock()
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
            breaker.open_until = self._clock() + self._cooldown_s
        await self._save(channel, breaker)

    def snapshot(self) -> dict[str, Breaker]:
        return dict(self._breakers)

    def _apply(self, message: Message) -> None:
        """Another process changed a channel's breaker: take its state (a hostile-shaped message is dropped)."""
        channel, state, failures, open_until = (
            message.get("channel"),
            message.get("state"),
            message.get("failures"),
            message.get("open_until"),
        )
        if not isinstance(channel, str) or state not in (CLOSED, OPEN) or not isinstance(failures, int):
            return
        if not isinstance(open_until, (int, float)):
            return
        breaker = self.breaker(channel)
        breaker.state, breaker.failures, breaker.open_until = state, failures, float(open_until)
        breaker.trial_running = False
        last_error = message.get("last_error")
        breaker.last_error = last_error if isinstance(last_error, str) else None

    async def _publish(self, channel: str, breaker: Breaker) -> None:
        if self._shared is None:
            return
        state = OPEN if breaker.state == HALF_OPEN else breaker.state
        message: dict[str, Any] = {
            "channel": channel,
            "state": state,
            "failures": breaker.failures,
            "open_until": breaker.open_until,
            "last_error": breaker.last_error,
        }
        await self._shared.publish(BREAKERS, self._origin, message, keep=channel)

    async def _save(self, channel: str, breaker: Breaker) -> None:
        await self._publish(channel, breaker)
        values = {
            "state": breaker.state,
            "failures": breaker.failures,
            "open_until": breaker.open_until if breaker.state == OPEN else None,
            "last_error": breaker.last_error,
            "updated_at": self._clock(),
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
