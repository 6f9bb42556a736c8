"""t2v: an animated landscape (sky, two parallax hill ranges, drifting glowing orbs) with the prompt as caption.

Everything expensive is precomputed once: the static sky and ground, and two long horizontal strips
holding the hill ranges. A frame is then a plane copy, two strip slices with one blend over the hill
rows only, a few small Gaussian blobs and the caption overlay.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from vidgate.render.caption import caption_overlay
from vidgate.render.spec import RenderSpec, rng_for
from vidgate.render.yuv import (
    F32,
    U8,
    U16,
    Planes,
    blend_blob,
    copy_planes,
    halve,
    rgb_color_to_yuv,
    rgb_to_yuv,
    to_alpha256,
    to_u8,
    to_u16,
)

RGB = tuple[float, float, float]
# An orb is a wide soft halo with a small, whiter core this fraction of its size.
_CORE = 0.3


@dataclass(frozen=True)
class _Palette:
    sky: tuple[RGB, RGB, RGB]  # top, middle, at the horizon
    far: tuple[RGB, RGB]  # ridge colour, foot colour
    near: tuple[RGB, RGB]
    orb_hue: float


@dataclass(frozen=True)
class _Orb:
    x: float
    y: float
    amp_x: float
    amp_y: float
    period_x: float
    period_y: float
    phase_x: float
    phase_y: float
    sigma: float
    alpha: float
    pulse_period: float
    pulse_phase: float
    color: tuple[float, float, float]  # Y'CbCr of the halo
    core: tuple[float, float, float]  # Y'CbCr of the small bright centre

    def at(self, t: float) -> tuple[float, float, float]:
        """Centre x, centre y and alpha at time t seconds."""
        x = self.x + self.amp_x * math.sin(2 * math.pi * t / self.period_x + self.phase_x)
        y = self.y + self.amp_y * math.sin(2 * math.pi * t / self.period_y + self.phase_y)
        alpha = self.alpha * (0.82 + 0.18 * math.sin(2 * math.pi * t / self.pulse_period + self.pulse_phase))
        return x, y, alpha


@dataclass(frozen=True)
class _Strip:
    """A hill range precomputed along its whole scroll path over rows top..top+rows of the frame."""

    y: U8 | U16  # luma (far strip) or luma alpha 0..256 (near strip)
    # Chroma for even and odd luma scroll offsets: odd ones average columns (1,2), (3,4)... instead.
    # The far strip stacks U and V as (2, rows, columns); the near strip has one alpha plane.
    c_even: U8 | U16
    c_odd: U8 | U16
    speed: int  # luma pixels per frame

    def window(self, index: int, width: int) -> tuple[U8 | U16, U8 | U16]:
        """The luma and chroma columns visible at frame `index`."""
        offset = index * self.speed
        chroma = self.c_odd if offset % 2 else self.c_even
        return self.y[..., offset : offset + width], chroma[..., offset // 2 : offset // 2 + width // 2]


@dataclass(frozen=True)
class _Rows:
    """A vertical gradient: one video-range Y'CbCr colour per frame row, each component shaped (height,)."""

    y: F32
    u: F32
    v: F32

    def mix(self, other: _Rows, rows: slice, cover: F32) -> tuple[F32, F32, F32]:
        """self over `rows`, blended towards `other` by a (rows, columns) coverage in 0..1."""

        def one(a: F32, b: F32) -> F32:
            out: F32 = a[rows, None] + (b[rows, None] - a[rows, None]) * cover
            return out

        return one(self.y, other.y), one(self.u, other.u), one(self.v, other.v)


class TextScene:
    """Draws t2v frames for one spec."""

    def __init__(self, spec: RenderSpec) -> None:
        rng = rng_for(spec, "scene")
        self._fps = spec.fps
        self._width, self._height = spec.width, spec.height
        palette = _palette(rng)
        frames = spec.frame_count
        speed = max(1, round(spec.width / 1280))
        far_ridge = _ridge(rng, spec, base=0.6, amp=0.05, length=spec.width + speed * frames + 2)
        near_ridge = _ridge(rng, spec, base=0.71, amp=0.065, length=spec.width + 2 * speed * frames + 2)
        # Only rows top..bottom ever change; the sky above and the ground below are static.
        self._top = _even_floor(float(far_ridge.min()))
        self._near_top = _even_floor(float(near_ridge.min()))
        self._bottom = min(spec.height, _even_ceil(float(near_ridge.max()) + 1))
        horizon = float(far_ridge.mean())
        sky = _gradient(spec.height, (0.0, 0.55 * horizon, horizon), palette.sky)
        far_fill = _gradient(spec.height, (self._top, spec.height), palette.far)
        near_fill = _gradient(spec.height, (self._near_top, spec.height), palette.near)
        self._background = self._static_layer(rng, sky, near_fill)
        self._far = self._far_strip(sky, far_fill, far_ridge, speed)
        self._near = self._near_strip(near_ridge, 2 * speed)
        rows = slice(self._near_top, self._bottom)
        self._near_color = (
            to_u16(near_fill.y[rows]),
            to_u16(_pairs(near_fill.u[rows])),
            to_u16(_pairs(near_fill.v[rows])),
        )
        self._orbs = _orbs(rng, palette, spec)
        self._caption = caption_overlay(spec.prompt, spec.width, spec.height)

    def draw(self, index: int, out: Planes) -> None:
        """Write frame `index` into `out`."""
        copy_planes(self._background, out)
        self._draw_hills(index, out)
        t = index / self._fps
        for orb in self._orbs:
            x, y, alpha = orb.at(t)
            blend_blob(out, x, y, orb.sigma, alpha, orb.color)
            blend_blob(out, x, y, orb.sigma * _CORE, min(1.0, alpha * 1.15), orb.core)
        if self._caption is not None:
            self._caption.apply(out)

    def _draw_hills(self, index: int, out: Planes) -> None:
        top, bottom, near_top = self._top, self._bottom, self._near_top
        far_y, far_c = self._far.window(index, self._width)
        out.y[top:bottom] = far_y
        out.u[top // 2 : bottom // 2] = far_c[0]
        out.v[top // 2 : bottom // 2] = far_c[1]
        alpha_y, alpha_c = self._near.window(index, self._width)
        ny, nu, nv = self._near_color
        _blend_rows(out.y[near_top:bottom], alpha_y, ny)
        _blend_rows(out.u[near_top // 2 : bottom // 2], alpha_c, nu)
        _blend_rows(out.v[near_top // 2 : bottom // 2], alpha_c, nv)

    def _static_layer(self, rng: np.random.Generator, sky: _Rows, ground: _Rows) -> Planes:
        # Sky above `bottom`, ground below; the rows between are redrawn from the strips every frame.
        below = np.arange(self._height) >= self._bottom
        y, u, v = (np.where(below, g, s) for s, g in ((sky.y, ground.y), (sky.u, ground.u), (sky.v, ground.v)))
        luma = np.repeat(to_u8(y)[:, None], self._width, axis=1)
        _add_stars(luma, rng, self._top)
        half = self._width // 2
        return Planes(
            luma, np.repeat(to_u8(_pairs(u))[:, None], half, axis=1), np.repeat(to_u8(_pairs(v))[:, None], half, axis=1)
        )

    def _far_strip(self, sky: _Rows, fill: _Rows, ridge: F32, speed: int) -> _Strip:
        rows = slice(self._top, self._bottom)
        y, u, v = sky.mix(fill, rows, _coverage(rows, ridge))
        chroma = [np.stack([to_u8(halve(u, phase)), to_u8(halve(v, phase))]) for phase in (0, 1)]
        return _Strip(to_u8(y), chroma[0], chroma[1], speed)

    def _near_strip(self, ridge: F32, speed: int) -> _Strip:
        cover = _coverage(slice(self._near_top, self._bottom), ridge)
        return _Strip(to_alpha256(cover), to_alpha256(halve(cover, 0)), to_alpha256(halve(cover, 1)), speed)


def _coverage(rows: slice, ridge: F32) -> F32:
    # The fraction of each pixel below the outline: an anti-aliased edge for free.
    centres = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None]
    cover: F32 = np.clip(centres + 1.0 - ridge[None, :], 0.0, 1.0)
    return cover


def _pairs(a: F32) -> F32:
    # Per-row values for chroma rows, which each cover two luma rows.
    out: F32 = a.reshape(-1, 2).mean(axis=1)
    return out


def _blend_rows(region: U8, alpha: U8 | U16, color: U16) -> None:
    # region = region + (color - region) * alpha, with a per-row colour (the ground's vertical gradient).
    acc = region.astype(np.uint16)
    acc *= 256 - alpha
    acc += color[:, None] * alpha
    acc >>= 8
    np.copyto(region, acc, casting="unsafe")


def _palette(rng: np.random.Generator) -> _Palette:
    hue = float(rng.random())
    warm = float(rng.uniform(-0.12, 0.12))

    def hsv(h: float, s: float, v: float) -> RGB:
        r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
        return r * 255, g * 255, b * 255

    return _Palette(
        sky=(hsv(hue, 0.7, 0.16), hsv(hue + warm / 2, 0.55, 0.5), hsv(hue + warm, 0.42, 0.95)),
        far=(hsv(hue + 0.5, 0.32, 0.5), hsv(hue + 0.52, 0.4, 0.3)),
        near=(hsv(hue + 0.55, 0.5, 0.22), hsv(hue + 0.58, 0.55, 0.07)),
        orb_hue=hue + 0.5 + float(rng.uniform(-0.1, 0.1)),
    )


def _gradient(height: int, positions: tuple[float, ...], colors: tuple[RGB, ...]) -> _Rows:
    """`colors` at row `positions`, linear between and held beyond the ends."""
    rows = np.arange(height, dtype=np.float64) + 0.5
    rgb = np.stack([np.interp(rows, positions, [color[c] for color in colors]) for c in range(3)], axis=1)
    yuv = rgb_to_yuv(rgb)
    return _Rows(yuv.y, yuv.u, yuv.v)


def _ridge(rng: np.random.Generator, spec: RenderSpec, *, base: float, amp: float, length: int) -> F32:
    """A hill outline: the row where the hill starts, for each strip column."""
    x = np.arange(length, dtype=np.float64) / spec.width
    outline = np.zeros(length, dtype=np.float64)
    # A few sines of rising frequency and falling weight read as hills rather than waves.
    for cycles, weight in ((rng.uniform(0.5, 1.1), 1.0), (rng.uniform(1.6, 2.8), 0.45), (rng.uniform(4, 7), 0.14)):
        outline += weight * np.sin(2 * math.pi * cycles * x + rng.uniform(0, 2 * math.pi))
    outline /= 1.59
    ridge: F32 = (spec.height * (base - amp * outline)).astype(np.float32)
    return ridge


def _add_stars(luma: U8, rng: np.random.Generator, horizon: int) -> None:
    height, width = luma.shape
    count = width * height // 4000
    if horizon < 4 or count == 0:
        return
    ys = (rng.random(count) ** 1.6 * horizon * 0.8).astype(np.intp)
    xs = rng.integers(0, width, count)
    # Fainter towards the horizon, where the sky is bright anyway. Luma only: a star takes the sky's tint.
    strength = rng.uniform(0.25, 0.8, count) * (1.0 - ys / horizon)
    base = luma[ys, xs].astype(np.float64)
    luma[ys, xs] = to_u8(base + (235.0 - base) * strength)


def _orbs(rng: np.random.Generator, palette: _Palette, spec: RenderSpec) -> list[_Orb]:
    width, height = spec.width, spec.height
    short = min(width, height)
    orbs = []
    for _ in range(int(rng.integers(3, 7))):
        hue = palette.orb_hue + float(rng.uniform(-0.14, 0.14))
        r, g, b = colorsys.hsv_to_rgb(hue % 1.0, float(rng.uniform(0.25, 0.6)), 1.0)
        orbs.append(
            _Orb(
                x=float(rng.uniform(0.1, 0.9)) * width,
                y=float(rng.uniform(0.12, 0.55)) * height,
                amp_x=float(rng.uniform(0.04, 0.16)) * width,
                amp_y=float(rng.uniform(0.02, 0.08)) * height,
                period_x=float(rng.uniform(6, 14)),
                period_y=float(rng.uniform(4, 10)),
                phase_x=float(rng.uniform(0, 2 * math.pi)),
                phase_y=float(rng.uniform(0, 2 * math.pi)),
                sigma=float(rng.uniform(0.025, 0.06)) * short,
                alpha=float(rng.uniform(0.5, 0.85)),
                pulse_period=float(rng.uniform(2, 5)),
                pulse_phase=float(rng.uniform(0, 2 * math.pi)),
                color=rgb_color_to_yuv((r, g, b)),
                core=rgb_color_to_yuv((0.35 * r + 0.65, 0.35 * g + 0.65, 0.35 * b + 0.65)),
            )
        )
    return orbs


def _even_floor(value: float) -> int:
    return max(0, math.floor(value) // 2 * 2)


def _even_ceil(value: float) -> int:
    return math.ceil(value / 2) * 2
