"""What a render is asked to produce, and the checks a request must pass before any work starts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

MIN_SIDE = 64
MAX_SIDE = 1920
MIN_SECONDS = 1
MAX_SECONDS = 20
MIN_FPS = 1
MAX_FPS = 60
MODES = ("t2v", "i2v", "kf2v")


class RenderError(Exception):
    """The render cannot be done: an invalid spec or an unreadable input file."""


@dataclass(frozen=True)
class RenderSpec:
    """Everything that determines a rendered video; equal specs give byte-identical files."""

    width: int
    height: int
    seconds: int
    prompt: str
    seed: int
    mode: str
    first_image: str | None = None
    last_image: str | None = None
    audio: bool = False
    audio_path: str | None = None
    fps: int = 24

    @property
    def frame_count(self) -> int:
        """How many video frames the output holds."""
        return self.seconds * self.fps


def validate(spec: RenderSpec) -> None:
    """Raise RenderError naming the first field of `spec` that is out of contract."""
    for name in ("width", "height"):
        value = getattr(spec, name)
        _require_int(name, value, MIN_SIDE, MAX_SIDE)
        if value % 2:
            raise RenderError(f"{name} must be even (H.264 4:2:0 needs even sides), got {value}")
    _require_int("seconds", spec.seconds, MIN_SECONDS, MAX_SECONDS)
    _require_int("fps", spec.fps, MIN_FPS, MAX_FPS)
    if not _is_int(spec.seed) or spec.seed < 0:
        raise RenderError(f"seed must be an integer >= 0, got {spec.seed!r}")
    if not isinstance(spec.prompt, str):
        raise RenderError("prompt must be a string")
    if spec.mode not in MODES:
        raise RenderError(f"mode must be one of {', '.join(MODES)}, got {spec.mode!r}")
    if spec.mode in ("i2v", "kf2v") and not spec.first_image:
        raise RenderError(f"mode {spec.mode} needs first_image")
    if spec.mode == "kf2v" and not spec.last_image:
        raise RenderError("mode kf2v needs last_image")


def rng_for(spec: RenderSpec, purpose: str) -> np.random.Generator:
    """A random generator fixed by the spec's prompt and seed, separate per `purpose`."""
    # Hashing (rather than seeding with `seed` alone) makes every prompt look different at seed 0,
    # and a per-purpose salt keeps the audio from shifting when the picture code draws more numbers.
    key = f"{purpose}\x00{spec.seed}\x00{spec.prompt}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but `width=True` is a caller bug, not a 1-pixel video.
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(name: str, value: object, low: int, high: int) -> None:
    if not _is_int(value):
        raise RenderError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise RenderError(f"{name} must be between {low} and {high}, got {value}")
