"""i2v and kf2v: a slow Ken Burns pan/zoom over a still, or an eased cross-fade between two stills.

Each image is cover-fitted once to a canvas a little larger than the frame and kept as Y'CbCr
planes; a frame is then a separable bilinear resample of a crop window, done with integer numpy
gathers (about 3 ms for 720p luma), which keeps sub-pixel motion smooth where integer crops judder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from vidgate.render.caption import caption_overlay
from vidgate.render.spec import RenderError, RenderSpec, rng_for
from vidgate.render.yuv import U8, U16, Planes, halve, rgb_to_yuv, to_alpha256, to_u16

# The canvas is this much larger than the frame, so the deepest zoom samples the image 1:1.
_OVERSCAN = 1.18
# kf2v holds each keyframe still for this fraction of the clip at either end.
_HOLD = 0.12


@dataclass(frozen=True)
class _Source:
    """One image as uint16 planes (uint16 so the blends below never overflow)."""

    y: U16
    u: U16
    v: U16

    @classmethod
    def from_image(cls, image: Image.Image) -> _Source:
        yuv = rgb_to_yuv(np.asarray(image))
        return cls(to_u16(yuv.y), to_u16(halve(yuv.u)), to_u16(halve(yuv.v)))


@dataclass(frozen=True)
class _Path:
    """Where the camera looks: zoom (1 = whole canvas) and pan (0..1 of the slack) eased from start to end."""

    zoom: tuple[float, float]
    pan_x: tuple[float, float]
    pan_y: tuple[float, float]

    def at(self, t: float) -> tuple[float, float, float]:
        """Zoom, pan x and pan y at progress t in 0..1."""
        eased = 0.5 - 0.5 * math.cos(math.pi * t)
        return _lerp(self.zoom, eased), _lerp(self.pan_x, eased), _lerp(self.pan_y, eased)


@dataclass(frozen=True)
class _Axis:
    """For each output pixel along one axis: the source index to its left/top and the 0..256 weight of the next."""

    index: npt.NDArray[np.intp]
    weight: U16
    keep: U16


class _CrossFade:
    """Two canvases held at either end and blended with a smoothstep in between."""

    def __init__(self, first: _Source, last: _Source) -> None:
        self._first, self._last = first, last
        self._mix = _Source(*(np.empty_like(p) for p in _planes(first)))
        self._scratch = _Source(*(np.empty_like(p) for p in _planes(first)))

    def at(self, t: float) -> _Source:
        """The blended canvas at progress t in 0..1 (valid until the next call)."""
        fade = min(1.0, max(0.0, (t - _HOLD) / (1.0 - 2 * _HOLD)))
        weight = round(256 * fade * fade * (3 - 2 * fade))
        if weight == 0:
            return self._first
        if weight == 256:
            return self._last
        # Resampling is linear, so blending the canvases first costs one resample instead of two.
        parts = zip(_planes(self._first), _planes(self._last), _planes(self._mix), _planes(self._scratch), strict=True)
        for first, last, mix, scratch in parts:
            np.multiply(first, np.uint16(256 - weight), out=mix)
            np.multiply(last, np.uint16(weight), out=scratch)
            mix += scratch
            mix >>= 8
        return self._mix


class StillMotion:
    """Draws i2v frames (one image, pan/zoom) or kf2v frames (two images, cross-fade with a slow zoom)."""

    def __init__(self, spec: RenderSpec) -> None:
        self._width, self._height = spec.width, spec.height
        self._canvas = (_even(spec.width * _OVERSCAN), _even(spec.height * _OVERSCAN))
        self._frames = spec.frame_count
        first = _Source.from_image(load_image(_required(spec.first_image, "first_image"), "first_image", self._canvas))
        self._still = first
        self._fade: _CrossFade | None = None
        if spec.mode == "kf2v":
            last_path = _required(spec.last_image, "last_image")
            self._fade = _CrossFade(first, _Source.from_image(load_image(last_path, "last_image", self._canvas)))
        self._path = _path(rng_for(spec, "motion"), keyframes=self._fade is not None)
        self._caption = caption_overlay(spec.prompt, spec.width, spec.height, small=True)

    def draw(self, index: int, out: Planes) -> None:
        """Write frame `index` into `out`."""
        t = index / max(1, self._frames - 1)
        source = self._still if self._fade is None else self._fade.at(t)
        zoom, pan_x, pan_y = self._path.at(t)
        cw, ch = self._canvas
        span_x, span_y = cw / zoom, ch / zoom
        left, top = (cw - span_x) * pan_x, (ch - span_y) * pan_y
        rows = _axis(top, span_y, self._height, ch)
        cols = _axis(left, span_x, self._width, cw)
        _sample(source.y, rows, cols, out.y)
        rows = _axis(top / 2, span_y / 2, self._height // 2, ch // 2)
        cols = _axis(left / 2, span_x / 2, self._width // 2, cw // 2)
        _sample(source.u, rows, cols, out.u)
        _sample(source.v, rows, cols, out.v)
        if self._caption is not None:
            self._caption.apply(out)


def load_image(path: str, role: str, canvas: tuple[int, int]) -> Image.Image:
    """Open an image file and cover-fit it to `canvas`; RenderError if it cannot be read."""
    try:
        with Image.open(path) as image:
            # Let JPEG decode at a reduced scale when the file is much larger than needed.
            image.draft("RGB", (max(canvas), max(canvas)))
            upright = ImageOps.exif_transpose(image)
            return cover_fit(_flatten(upright), canvas)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise RenderError(f"{role} is not a readable image ({path}): {exc}") from exc


def cover_fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale and centre-crop `image` to fill `size` exactly without distortion."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    box_w, box_h = min(image.width, width / scale), min(image.height, height / scale)
    # Clamped: float rounding can otherwise put an edge a hair outside the image, which Pillow rejects.
    left, top = max(0.0, (image.width - box_w) / 2), max(0.0, (image.height - box_h) / 2)
    box = (left, top, left + box_w, top + box_h)
    return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _flatten(image: Image.Image) -> Image.Image:
    # Transparent areas become black rather than whatever colour happens to sit under alpha 0.
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


def _path(rng: np.random.Generator, *, keyframes: bool) -> _Path:
    if keyframes:
        # A gentle push-in shared by both keyframes keeps the cross-fade from looking static.
        drift = float(rng.uniform(-0.15, 0.15))
        return _Path(zoom=(1.0, 1.1), pan_x=(0.5 - drift, 0.5 + drift), pan_y=(0.5, 0.5))
    zoom = (1.0, _OVERSCAN) if rng.random() < 0.6 else (_OVERSCAN, 1.0)
    start_x = float(rng.uniform(0.1, 0.9))
    end_x = float(np.clip(start_x + rng.choice([-1, 1]) * rng.uniform(0.3, 0.6), 0.0, 1.0))
    start_y, end_y = (float(v) for v in rng.uniform(0.25, 0.75, 2))
    return _Path(zoom=zoom, pan_x=(start_x, end_x), pan_y=(start_y, end_y))


def _axis(start: float, span: float, count: int, limit: int) -> _Axis:
    # Pixel centres of the output, mapped into the source window [start, start + span).
    position = start + (np.arange(count, dtype=np.float64) + 0.5) * (span / count) - 0.5
    position = np.clip(position, 0.0, limit - 1.0)
    index = np.minimum(position.astype(np.intp), limit - 2)
    weight = to_alpha256(position - index)
    return _Axis(index, weight, (256 - weight).astype(np.uint16))


def _sample(source: U16, rows: _Axis, cols: _Axis, out: U8) -> None:
    # Separable bilinear: blend row pairs, then column pairs; every product stays below 2**16.
    upper = source[rows.index]
    upper *= rows.keep[:, None]
    lower = source[rows.index + 1]
    lower *= rows.weight[:, None]
    upper += lower
    upper >>= 8
    # np.take walks row by row; `upper[:, index]` walks column by column and thrashes the cache
    # once a plane outgrows it (3x slower at 1920x1920).
    left = np.take(upper, cols.index, axis=1)
    left *= cols.keep
    right = np.take(upper, cols.index + 1, axis=1)
    right *= cols.weight
    left += right
    left >>= 8
    np.copyto(out, left, casting="unsafe")


def _planes(source: _Source) -> tuple[U16, U16, U16]:
    return source.y, source.u, source.v


def _required(path: str | None, role: str) -> str:
    if not path:
        raise RenderError(f"{role} is required for this mode")
    return path


def _lerp(ends: tuple[float, float], t: float) -> float:
    return ends[0] + (ends[1] - ends[0]) * t


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)
