"""The prompt drawn as a word-wrapped caption on a translucent band at the bottom of the frame."""

from __future__ import annotations

import unicodedata

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidgate.render.yuv import U8, Overlay, make_overlay

_ELLIPSIS = "…"
# Only this much of a prompt can ever be shown; measuring more would only cost time.
_MAX_CHARS = 600
_BAND_OPACITY = 0.55
_TEXT_FILL = (246, 246, 246, 255)
_STROKE_FILL = (0, 0, 0, 255)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def caption_overlay(text: str, width: int, height: int, *, small: bool = False) -> Overlay | None:
    """The caption band for `text` in a width x height frame, or None when there is nothing to show."""
    clean = clean_text(text)
    if not clean:
        return None
    size = _font_size(width, height, small)
    font = _font(size)
    line_height = size + max(2, size // 4)
    pad = max(2, round(size * 0.55))
    max_lines = 1 if small else _max_lines(height, line_height, pad)
    lines = wrap(clean, font, width - 2 * pad, max_lines)
    band_height = _even(len(lines) * line_height + 2 * pad)
    band = _draw_band(lines, font, width, band_height, line_height, pad)
    return make_overlay(np.asarray(band), height - band_height, 0)


def clean_text(text: str) -> str:
    """Collapse whitespace, drop control characters and make the text safely encodable."""
    text = text[:_MAX_CHARS].encode("utf-8", "replace").decode("utf-8")
    kept = (" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    return " ".join("".join(kept).split())


def wrap(text: str, font: Font, max_width: int, max_lines: int) -> list[str]:
    """Greedy word wrap into at most `max_lines` lines, ending with an ellipsis when text is cut."""
    lines: list[str] = []
    current = ""
    for piece, glued in _pieces(text, font, max_width):
        candidate = current + piece if glued or not current else f"{current} {piece}"
        if current and font.getlength(candidate) > max_width:
            lines.append(current)
            if len(lines) == max_lines:
                return _ellipsize(lines, font, max_width)
            current = piece
        else:
            current = candidate
    lines.append(current)
    return lines


def _pieces(text: str, font: Font, max_width: int) -> list[tuple[str, bool]]:
    # (piece, glued to the previous piece). A word wider than a line, or a run of CJK (which has no
    # spaces), is broken into characters that wrap anywhere.
    pieces: list[tuple[str, bool]] = []
    for word in text.split(" "):
        if font.getlength(word) <= max_width:
            pieces.append((word, False))
        else:
            pieces.append((word[0], False))
            pieces.extend((ch, True) for ch in word[1:])
    return pieces


def _ellipsize(lines: list[str], font: Font, max_width: int) -> list[str]:
    last = lines[-1]
    while last and font.getlength(last + _ELLIPSIS) > max_width:
        last = last[:-1]
    return [*lines[:-1], last.rstrip() + _ELLIPSIS]


def _font_size(width: int, height: int, small: bool) -> int:
    # Sized from the height, but never so large that a portrait frame fits only a word per line.
    if small:
        return max(8, round(min(height / 30, width / 24)))
    return max(9, round(min(height / 19, width / 17)))


def _max_lines(height: int, line_height: int, pad: int) -> int:
    # The band may take at most about a third of the frame.
    return int(min(3, max(1, (height // 3 - 2 * pad) // line_height)))


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _draw_band(lines: list[str], font: Font, width: int, height: int, line_height: int, pad: int) -> Image.Image:
    band = Image.fromarray(_band_alpha(width, height, pad))
    draw = ImageDraw.Draw(band)
    stroke = max(1, line_height // 16)
    top = (height - len(lines) * line_height) // 2
    for index, line in enumerate(lines):
        x = (width - font.getlength(line)) / 2
        y = top + index * line_height + line_height / 2
        draw.text((x, y), line, font=font, fill=_TEXT_FILL, anchor="lm", stroke_width=stroke, stroke_fill=_STROKE_FILL)
    return band


def _band_alpha(width: int, height: int, pad: int) -> U8:
    # Black band whose top edge fades in over `pad` rows, so it reads as a soft shade, not a box.
    ramp = np.clip((np.arange(height, dtype=np.float32) + 0.5) / max(pad, 1), 0.0, 1.0)
    alpha = np.rint(ramp * ramp * (3 - 2 * ramp) * 255 * _BAND_OPACITY).astype(np.uint8)
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., 3] = alpha[:, None]
    return rgba


def _even(value: int) -> int:
    return value + (value % 2)
