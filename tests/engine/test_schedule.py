"""Backoff is pure: poll intervals grow to a cap; failure delays grow, jitter, and cap."""

from __future__ import annotations

import random
from itertools import pairwise

from vidgate.engine.schedule import MAX_FAILURE_DELAY_S, MAX_POLL_INTERVAL_S, failure_delay, poll_delay


def test_poll_delay_grows_to_cap() -> None:
    delays = [poll_delay(n, 0.25) for n in range(60)]
    assert delays[0] == 0.25
    assert all(a <= b for a, b in pairwise(delays))
    assert delays[-1] == MAX_POLL_INTERVAL_S


def test_failure_delay_jitters_within_bounds() -> None:
    rng = random.Random(1)
    for failures in range(1, 30):
        ceiling = min(MAX_FAILURE_DELAY_S, 2.0**failures)
        value = failure_delay(failures, rng)
        assert ceiling * 0.5 <= value <= ceiling
