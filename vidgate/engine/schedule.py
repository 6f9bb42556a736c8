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


# -- learned durations: sparse polls until a task's completion is near, dense after ------------------------------

# How many recent completions per (channel, model) are kept, and how many are needed before they are trusted.
SAMPLES_KEPT = 64
MIN_SAMPLES = 5
# Once completion is near, a task is read this often (at most; a model whose hint is shorter uses the hint):
# the completion is then seen within this long after the upstream finished.
DENSE_S = 2.0
# Where the upstream calls back, polls are only the fallback for a lost callback: this much sparser.
CALLBACK_SPARSE_FACTOR = 4.0
# The dense window opens a little before the earliest recent completion (the 2nd percentile), and lasts until
# the latest typical one (p90) times OVERDUE_FACTOR; after that the task is late and reads back off.
EARLY_QUANTILE = 0.02
EARLY_MARGIN = 0.97
OVERDUE_FACTOR = 1.5
# How fast reads of a late task thin out: the interval grows by this share of how late it is.
OVERDUE_SLOPE = 0.1


class Durations:
    """Typical durations (creation to completion, in seconds) per (channel, model), from recent completions.

    Kept in memory per process, rebuilt from finished rows at start (store.tasks.recent_durations) and fed by
    every completion this process sees; nothing per task."""

    def __init__(self, kept: int = SAMPLES_KEPT) -> None:
        self._kept = kept
        self._samples: dict[tuple[str, str], list[float]] = {}
        self._window: dict[tuple[str, str], tuple[float, float] | None] = {}

    def add(self, channel: str, model: str, seconds: float) -> None:
        if not seconds > 0:
            return
        samples = self._samples.setdefault((channel, model), [])
        samples.append(seconds)
        if len(samples) > self._kept:
            del samples[: len(samples) - self._kept]
        self._window.pop((channel, model), None)

    def replace(self, rows: list[tuple[str, str, float]]) -> None:
        """Start over from (channel, model, seconds) rows, newest first."""
        self._samples.clear()
        self._window.clear()
        for channel, model, seconds in reversed(rows):
            self.add(channel, model, seconds)

    def window(self, channel: str, model: str) -> tuple[float, float] | None:
        """(p2, p90) of the recent durations, or None while fewer than MIN_SAMPLES are known."""
        key = (channel, model)
        if key in self._window:
            return self._window[key]
        samples = self._samples.get(key, [])
        found = None
        if len(samples) >= MIN_SAMPLES:
            ordered = sorted(samples)
            last = len(ordered) - 1
            found = (ordered[int(last * EARLY_QUANTILE)], ordered[round(last * 0.9)])
        self._window[key] = found
        return found


def next_poll_in(
    *, age: float, polls: int, base_s: float, window: tuple[float, float] | None, called_back: bool = False
) -> float:
    """Seconds until the next read of a healthy in-flight task `age` seconds old, read `polls` times so far.

    Without a learned `window` (p2, p90 of the model's durations on this channel), reads thin out from
    `base_s` (poll_delay). With one: reads at most MAX_POLL_INTERVAL_S apart until the dense window opens a
    little before p2, then a read every DENSE_S (or `base_s`, if shorter) until well past p90, then thinning
    out again. `called_back`: the upstream calls back on completion, so the dense reads are
    only a fallback and CALLBACK_SPARSE_FACTOR times sparser.
    """
    if window is None:
        return poll_delay(polls, base_s)
    early, late = window
    dense = min(DENSE_S, base_s)
    if called_back:
        dense *= CALLBACK_SPARSE_FACTOR
    opens, closes = early * EARLY_MARGIN, late * OVERDUE_FACTOR
    if age < opens - dense:
        return min(MAX_POLL_INTERVAL_S, opens - age)
    if age <= closes:
        return dense
    return min(MAX_POLL_INTERVAL_S, dense + (age - closes) * OVERDUE_SLOPE)
