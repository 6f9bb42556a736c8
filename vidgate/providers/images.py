"""Image bytes as upstreams want them (shared by the adapters that send base64)."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from vidgate.errors import UpstreamRejected

_JPEG_PNG = {"image/jpeg", "image/png"}


def as_jpeg_or_png(data: bytes, mime: str | None) -> bytes:
    """JPEG or PNG bytes: as given when they already are, else re-encoded as PNG (WebP, BMP, GIF uploads).

    Blocking (a 36 Mpx GIF takes ~1 s): adapters call it from build_body, which their submit runs in a thread."""
    if mime in _JPEG_PNG:
        return data
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format in ("JPEG", "PNG"):
                return data
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except (UnidentifiedImageError, OSError) as exc:
        raise UpstreamRejected(f"the input image cannot be read: {exc}") from exc
