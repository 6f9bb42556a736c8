"""BT.709 limited-range Y'CbCr 4:2:0 buffers and the cheap drawing operations frames are built from.

Frames are composed directly in the encoder's pixel format: converting RGB to YUV with swscale costs
about as much as encoding a 720p frame, so RGB only appears while precomputing layers.
Blending is exact in Y'CbCr because the conversion from R'G'B' is affine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
F32 = npt.NDArray[np.float32]

# BT.709 luma weights; the encoder tags the stream as BT.709 so players decode with the same matrix.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
# How far a Gaussian blob is drawn, in sigmas: beyond this its alpha is below one 8-bit step.
_BLOB_REACH = 3.3
# Premultiplied values are colour * alpha256; capping them here keeps (out * keep + pre) within uint16.
_PRE_MAX = 255 * 256


@dataclass(frozen=True)
class Planes:
    """One 4:2:0 frame: full-size luma and half-size chroma, each a (rows, columns) uint8 array."""

    y: U8
    u: U8
    v: U8


@dataclass(frozen=True)
class YuvFloat:
    """Full-resolution Y'CbCr in video range (Y 16..235, Cb/Cr 16..240) as float32, for precomputation."""

    y: F32
    u: F32
    v: F32


def rgb_to_yuv(rgb: npt.NDArray[np.floating] | U8) -> YuvFloat:
    """Convert an (..., 3) R'G'B' array with components in 0..255 to video-range Y'CbCr."""
    rgb32 = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    r, g, b = rgb32[..., 0], rgb32[..., 1], rgb32[..., 2]
    luma = _KR * r + _KG * g + _KB * b
    y = 16.0 + 219.0 * luma
    u = 128.0 + 224.0 * (b - luma) / (2.0 * (1.0 - _KB))
    v = 128.0 + 224.0 * (r - luma) / (2.0 * (1.0 - _KR))
    return YuvFloat(y.astype(np.float32), u.astype(np.float32), v.astype(np.float32))


def rgb_color_to_yuv(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """Convert one R'G'B' colour (components 0..1) to video-range Y'CbCr."""
    yuv = rgb_to_yuv(np.array(rgb, dtype=np.float32) * 255.0)
    return float(yuv.y), float(yuv.u), float(yuv.v)


def halve(a: F32, phase: int = 0) -> F32:
    """Average 2x2 blocks of a float array; `phase` 1 starts the column pairs one pixel right."""
    a = a[:, phase:]
    rows, cols = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:rows, :cols]
    out: F32 = (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) * np.float32(0.25)
    return out


def to_u8(a: npt.NDArray[np.floating]) -> U8:
    """Round and clip a float array to uint8."""
    out: U8 = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return out


def to_u16(a: npt.NDArray[np.floating], high: int = 255) -> U16:
    """Round and clip a float array to uint16 values in 0..high."""
    out: U16 = np.clip(np.rint(a), 0, high).astype(np.uint16)
    return out


def to_alpha256(alpha: npt.NDArray[np.floating]) -> U16:
    """Scale a 0..1 alpha array to the 0..256 integer weights the blends use."""
    out: U16 = np.clip(np.rint(alpha * 256.0), 0, 256).astype(np.uint16)
    return out


def copy_planes(src: Planes, dst: Planes) -> None:
    """Copy every plane of `src` into `dst` (same sizes)."""
    np.copyto(dst.y, src.y)
    np.copyto(dst.u, src.u)
    np.copyto(dst.v, src.v)


def blend_const(region: U8, alpha256: U16, value: float) -> None:
    """Blend a constant value into `region` in place with per-pixel weights 0..256."""
    acc = np.multiply(region, 256 - alpha256, dtype=np.uint16)
    acc += alpha256 * np.uint16(round(value))
    acc >>= 8
    np.copyto(region, acc, casting="unsafe")


@dataclass(frozen=True)
class Overlay:
    """A premultiplied picture placed at an even (top, left) in a frame: out = (out*keep + pre) >> 8."""

    top: int
    left: int
    y_keep: U16
    y_pre: U16
    c_keep: U16
    u_pre: U16
    v_pre: U16

    def apply(self, frame: Planes) -> None:
        """Composite the overlay onto `frame` in place."""
        rows, cols = self.y_keep.shape
        _apply(frame.y[self.top : self.top + rows, self.left : self.left + cols], self.y_keep, self.y_pre)
        ct, cl = self.top // 2, self.left // 2
        crows, ccols = self.c_keep.shape
        _apply(frame.u[ct : ct + crows, cl : cl + ccols], self.c_keep, self.u_pre)
        _apply(frame.v[ct : ct + crows, cl : cl + ccols], self.c_keep, self.v_pre)


def make_overlay(rgba: U8, top: int, left: int) -> Overlay:
    """Build an Overlay from an RGBA uint8 picture of even size placed at an even (top, left)."""
    alpha = rgba[..., 3].astype(np.float32) / np.float32(255.0)
    yuv = rgb_to_yuv(rgba[..., :3])
    a256 = alpha * np.float32(256.0)
    # Premultiply before averaging chroma so transparent pixels do not bleed their colour.
    return Overlay(
        top=top,
        left=left,
        y_keep=(256 - to_alpha256(alpha)).astype(np.uint16),
        y_pre=to_u16(yuv.y * a256, _PRE_MAX),
        c_keep=(256 - to_alpha256(halve(alpha))).astype(np.uint16),
        u_pre=to_u16(halve(yuv.u * a256), _PRE_MAX),
        v_pre=to_u16(halve(yuv.v * a256), _PRE_MAX),
    )


def blend_blob(
    frame: Planes, cx: float, cy: float, sigma: float, alpha: float, color: tuple[float, float, float]
) -> None:
    """Blend a soft round Gaussian blob of a Y'CbCr colour centred at (cx, cy) luma pixels into `frame`."""
    height, width = frame.y.shape
    reach = sigma * _BLOB_REACH
    # Even bounds keep the luma and chroma rectangles exactly aligned.
    x0, x1 = _even_span(cx - reach, cx + reach, width)
    y0, y1 = _even_span(cy - reach, cy + reach, height)
    if x0 >= x1 or y0 >= y1:
        return
    luma_alpha = _gaussian_patch(x0, x1, y0, y1, cx, cy, sigma, alpha)
    blend_const(frame.y[y0:y1, x0:x1], luma_alpha, color[0])
    chroma_alpha = _gaussian_patch(x0 // 2, x1 // 2, y0 // 2, y1 // 2, cx / 2, cy / 2, sigma / 2, alpha)
    blend_const(frame.u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2], chroma_alpha, color[1])
    blend_const(frame.v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2], chroma_alpha, color[2])


def _gaussian_patch(x0: int, x1: int, y0: int, y1: int, cx: float, cy: float, sigma: float, alpha: float) -> U16:
    # A 2-D Gaussian is the outer product of two 1-D ones: two short exp() calls instead of w*h.
    scale = np.float32(-0.5 / (sigma * sigma))
    gx = np.exp(np.square(np.arange(x0, x1, dtype=np.float32) + np.float32(0.5 - cx)) * scale)
    gy = np.exp(np.square(np.arange(y0, y1, dtype=np.float32) + np.float32(0.5 - cy)) * scale)
    # Both factors are at most 1 and alpha at most 1, so adding 0.5 and truncating rounds into 0..256.
    weights = np.outer(gy * np.float32(256.0 * min(1.0, alpha)), gx)
    weights += np.float32(0.5)
    out: U16 = weights.astype(np.uint16)
    return out


def _even_span(low: float, high: float, limit: int) -> tuple[int, int]:
    start = max(0, int(np.floor(low)) // 2 * 2)
    stop = min(limit, (int(np.ceil(high)) + 1) // 2 * 2)
    return start, stop


def _apply(region: U8, keep: U16, pre: U16) -> None:
    acc = region.astype(np.uint16)
    acc *= keep
    acc += pre
    acc >>= 8
    np.copyto(region, acc, casting="unsafe")
