"""When to look at a task next. Pure functions, no clock of their own."""

from __future__ import annotations

import random

# An in-flight upstream task is read often at first, then less often: its video takes minutes.
MAX_POLL_INTERVAL_S = 30.0
# Failed reads (HTTP errors, garbage) back off faster and further, but never give up: the deadline does.
MAX_FAILURE_DELAY_S = 120.0


def poll_delay(polls: int, base_s: float) -> float:
    """Seconds until the next read of a healthy in-flight task, after `polls` reads so far."""
    return min(MAX_POLL_INTERVAL_S, base_s * (1.25 ** min(polls, 40)))


def failure_delay(failures: int, rng: random.Random | None = None, *, base_s: float = 1.0) -> float:
    """Seconds until the next read after `failures` consecutive failed reads, with jitter."""
    ceiling = min(MAX_FAILURE_DELAY_S, base_s * (2 ** min(failures, 10)))
    jitter = (rng or random).uniform(0.5, 1.0)
    return float(ceiling * jitter)
