"""The optional AAC track's samples: a synthesised chord, or a given audio file fitted to the duration."""

from __future__ import annotations

import math

import av
import numpy as np
import numpy.typing as npt

from vidgate.render.spec import RenderError, RenderSpec, rng_for
from vidgate.render.yuv import F32

SAMPLE_RATE = 48_000
LAYOUT = "stereo"
# Semitone offsets of chords that sound calm when sustained (major, minor 7, sus2, major 7, add9).
_CHORDS = ((0, 4, 7, 12), (0, 3, 7, 10), (0, 2, 7, 12), (0, 4, 7, 11), (0, 4, 7, 14))
_PEAK = 0.3

F64 = npt.NDArray[np.float64]


def audio_track(spec: RenderSpec) -> F32 | None:
    """The (2, seconds * 48000) float32 samples for the spec's audio track, or None for no track."""
    if spec.audio_path is not None:
        return load_audio(spec.audio_path, spec.seconds)
    if spec.audio:
        return synthesize(spec)
    return None


def synthesize(spec: RenderSpec) -> F32:
    """A soft, slowly breathing chord chosen from the prompt and seed."""
    rng = rng_for(spec, "audio")
    count = spec.seconds * SAMPLE_RATE
    t = np.arange(count, dtype=np.float64) / SAMPLE_RATE
    root = 45 + int(rng.integers(0, 12))
    chord = _CHORDS[int(rng.integers(0, len(_CHORDS)))]
    mix = np.zeros((2, count), dtype=np.float32)
    for step, interval in enumerate(chord):
        mono = _voice(rng, t, _midi_hz(root + interval)) * np.float32(1.0 / (1 + 0.25 * step))
        pan = float(rng.uniform(0.15, 0.85)) * math.pi / 2
        mix[0] += mono * np.float32(math.cos(pan))
        mix[1] += mono * np.float32(math.sin(pan))
    mix *= _envelope(count, spec.seconds)
    peak = float(np.abs(mix).max())
    if peak > 0:
        mix *= np.float32(_PEAK / peak)
    return mix


def load_audio(path: str, seconds: int) -> F32:
    """Decode `path`, resample to 48 kHz stereo and trim or pad with silence to `seconds`."""
    need = seconds * SAMPLE_RATE
    try:
        chunks = _decode(path, need)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise RenderError(f"audio_path is not a readable audio file ({path}): {exc}") from exc
    samples = np.concatenate(chunks, axis=1)[:, :need] if chunks else np.zeros((2, 0), np.float32)
    out = np.zeros((2, need), dtype=np.float32)
    out[:, : samples.shape[1]] = samples
    return out


def _decode(path: str, need: int) -> list[F32]:
    with av.open(path) as container:
        if not container.streams.audio:
            raise RenderError(f"audio_path has no audio stream ({path})")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=LAYOUT, rate=SAMPLE_RATE)
        chunks: list[F32] = []
        have = 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().astype(np.float32, copy=False))
                have += out.samples
            if have >= need:
                return chunks
        chunks.extend(out.to_ndarray().astype(np.float32, copy=False) for out in resampler.resample(None))
        return chunks


def _voice(rng: np.random.Generator, t: F64, hz: float) -> F32:
    # A sine with a little second and third harmonic for warmth, swelling at its own slow rate.
    tone = np.zeros(t.shape, dtype=np.float32)
    for harmonic, weight in ((1, 1.0), (2, 0.16), (3, 0.05)):
        tone += np.float32(weight) * _sine(t, hz * harmonic, float(rng.uniform(0, 2 * math.pi)))
    swell = 0.65 + 0.35 * _sine(t, float(rng.uniform(0.06, 0.2)), float(rng.uniform(0, 2 * math.pi)))
    out: F32 = tone * swell
    return out


def _sine(t: F64, hz: float, phase: float) -> F32:
    # Wrap the phase in float64 first: float32 sin is fast, but not accurate for arguments in the thousands.
    # (x - floor(x) rather than np.mod, which is several times slower for the same result here.)
    cycles = t * hz + phase / (2 * math.pi)
    cycles -= np.floor(cycles)
    out: F32 = np.sin(cycles.astype(np.float32) * np.float32(2 * math.pi))
    return out


def _envelope(count: int, seconds: int) -> F32:
    # Raised-cosine fade in and out, so the track neither clicks on nor stops dead.
    attack = max(1, int(min(1.2, seconds * 0.25) * SAMPLE_RATE))
    release = max(1, int(min(1.8, seconds * 0.35) * SAMPLE_RATE))
    env = np.ones(count, dtype=np.float32)
    env[:attack] = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, attack, dtype=np.float32))
    env[count - release :] = np.minimum(
        env[count - release :], 0.5 + 0.5 * np.cos(np.linspace(0.0, math.pi, release, dtype=np.float32))
    )
    return env


def _midi_hz(note: int) -> float:
    return 440.0 * math.pow(2.0, (note - 69) / 12)
