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
import numpy.typing as npt

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
    to_planes,
    to_u8,
)

RGB = tuple[float, float, float]


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
    color: tuple[float, float, float]

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
        self._top = _even_floor(float(far_ridge.min()))
        self._near_top = _even_floor(float(near_ridge.min()))
        self._bottom = min(spec.height, _even_ceil(float(near_ridge.max()) + 1))
        horizon = float(far_ridge.mean())
        sky = _row_gradient(spec.height, (0.0, 0.55 * horizon, horizon), palette.sky)
        near_fill = _row_gradient(spec.height, (self._near_top, spec.height), palette.near)
        far_fill = _row_gradient(spec.height, (self._top, spec.height), palette.far)
        self._background = self._static_layer(rng, sky, near_fill)
        self._far = self._far_strip(sky, far_fill, far_ridge, speed)
        self._near = self._near_strip(near_ridge, 2 * speed)
        self._near_color = _rows_yuv(near_fill[self._near_top : self._bottom])
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

    def _static_layer(self, rng: np.random.Generator, sky: F32, near_fill: F32) -> Planes:
        # Rows top..bottom are redrawn from the strips every frame; only sky and ground stay.
        rgb = np.empty((self._height, self._width, 3), dtype=np.float32)
        rgb[:] = sky[:, None, :]
        _add_stars(rgb, rng, self._top)
        rgb[self._bottom :] = near_fill[self._bottom :, None, :]
        return to_planes(rgb_to_yuv(rgb))

    def _far_strip(self, sky: F32, far_fill: F32, ridge: F32, speed: int) -> _Strip:
        top, bottom = self._top, self._bottom
        rows = np.arange(top, bottom, dtype=np.float32)[:, None]
        # Fraction of each pixel below the outline: an anti-aliased edge for free.
        cover = np.clip(rows + 1.0 - ridge[None, :], 0.0, 1.0)[..., None]
        rgb = sky[top:bottom, None, :] * (1.0 - cover) + far_fill[top:bottom, None, :] * cover
        yuv = rgb_to_yuv(rgb)
        chroma = [np.stack([to_u8(halve(yuv.u, phase)), to_u8(halve(yuv.v, phase))]) for phase in (0, 1)]
        return _Strip(to_u8(yuv.y), chroma[0], chroma[1], speed)

    def _near_strip(self, ridge: F32, speed: int) -> _Strip:
        rows = np.arange(self._near_top, self._bottom, dtype=np.float32)[:, None]
        cover = np.clip(rows + 1.0 - ridge[None, :], 0.0, 1.0)
        return _Strip(to_alpha256(cover), to_alpha256(halve(cover, 0)), to_alpha256(halve(cover, 1)), speed)


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


def _row_gradient(height: int, positions: tuple[float, ...], colors: tuple[RGB, ...]) -> F32:
    """Per-row RGB (height, 3): `colors` at row `positions`, linear between, held beyond the ends."""
    rows = np.arange(height, dtype=np.float64) + 0.5
    channels = [np.interp(rows, positions, [color[c] for color in colors]) for c in range(3)]
    out: F32 = np.stack(channels, axis=1).astype(np.float32)
    return out


def _rows_yuv(rgb_rows: F32) -> tuple[U16, U16, U16]:
    # One colour per luma row; chroma rows average row pairs like the 4:2:0 planes do.
    yuv = rgb_to_yuv(rgb_rows)
    u = yuv.u.reshape(-1, 2).mean(axis=1)
    v = yuv.v.reshape(-1, 2).mean(axis=1)
    return _rint16(yuv.y), _rint16(u), _rint16(v)


def _rint16(a: npt.NDArray[np.floating]) -> U16:
    return np.rint(a).astype(np.uint16)


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


def _add_stars(rgb: F32, rng: np.random.Generator, horizon: int) -> None:
    height, width = rgb.shape[:2]
    count = width * height // 4000
    if horizon < 4 or count == 0:
        return
    ys = (rng.random(count) ** 1.6 * horizon * 0.8).astype(np.intp)
    xs = rng.integers(0, width, count)
    # Fainter towards the horizon, where the sky is bright anyway.
    strength = (rng.uniform(0.25, 0.8, count) * (1.0 - ys / horizon)).astype(np.float32)[:, None]
    rgb[ys, xs] = rgb[ys, xs] * (1.0 - strength) + 255.0 * strength


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
            )
        )
    return orbs


def _even_floor(value: float) -> int:
    return max(0, math.floor(value) // 2 * 2)


def _even_ceil(value: float) -> int:
    return math.ceil(value / 2) * 2
