"""Make a request's image and audio inputs real: store uploads and data URIs, fetch URLs when the
provider needs bytes, and check that each one is what it claims to be, before anything is submitted."""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
from dataclasses import replace
from pathlib import Path

import av
import httpx
from PIL import Image, UnidentifiedImageError

from vidgate import media, netguard
from vidgate.errors import AddressRefused, HostNotResolved, InvalidRequest, PayloadTooLarge
from vidgate.providers.base import MediaInput, VideoRequest

FETCH_TIMEOUT_S = 20.0
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,(?P<data>.*)$", re.S)
_IMAGE_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
}


async def materialize(
    req: VideoRequest,
    *,
    task_dir: Path,
    http: httpx.AsyncClient,
    needs_bytes: bool,
    fetch_private: bool,
    max_bytes: int,
) -> VideoRequest:
    """Return the request with every input checked, and stored under task_dir where bytes are needed."""
    inputs = []
    for index, item in enumerate(req.inputs):
        inputs.append(
            await _materialize_one(
                item,
                dest=task_dir / f"{index}-{item.role}",
                http=http,
                needs_bytes=needs_bytes,
                fetch_private=fetch_private,
                max_bytes=max_bytes,
            )
        )
    return replace(req, inputs=tuple(inputs))


async def _materialize_one(
    item: MediaInput, *, dest: Path, http: httpx.AsyncClient, needs_bytes: bool, fetch_private: bool, max_bytes: int
) -> MediaInput:
    if item.path is not None:
        stored = dest.with_suffix(item.path.suffix or "")
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(item.path.replace, stored)
        mime = await asyncio.to_thread(check_media, stored, item)
        return replace(item, path=stored, mime=mime)
    url = item.url or ""
    if url.startswith("data:"):
        data, declared = await asyncio.to_thread(decode_data_uri, url, item.field, max_bytes)
        stored = dest.with_suffix(mimetypes.guess_extension(declared or "") or ".bin")
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(stored.write_bytes, data)
        mime = await asyncio.to_thread(check_media, stored, item)
        # Decoded once: from here on the bytes travel by path (a provider that needs a data URI or base64
        # encodes the file when it submits), so the task row never holds base64.
        return replace(item, url=None, path=stored, mime=mime)
    if url.startswith(("http://", "https://")) and needs_bytes:
        stored = await fetch(
            url, dest=dest, http=http, field=item.field, fetch_private=fetch_private, max_bytes=max_bytes
        )
        mime = await asyncio.to_thread(check_media, stored, item)
        return replace(item, path=stored, mime=mime)
    if url.startswith("oss://"):
        raise InvalidRequest(f"{item.field}: unknown upload key {url}.", param=item.field)
    return item


def decode_data_uri(uri: str, field: str, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes and declared type of a base64 data: URI."""
    match = _DATA_URI.match(uri)
    if not match:
        raise InvalidRequest(f"{field} is not a base64 data: URI (data:<type>;base64,<data>).", param=field)
    if len(match.group("data")) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"{field} is larger than {max_bytes} bytes.", param=field)
    try:
        return base64.b64decode(match.group("data"), validate=False), match.group("mime")
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{field}: the data: URI is not valid base64.", param=field) from exc


def check_media(path: Path, item: MediaInput) -> str:
    """The file's real type; InvalidRequest when it is not a readable image (or audio, for audio).

    An image is judged by its header first (Pillow's open reads only that): too many pixels or too long a side
    is refused before anything is decoded. Then it is decoded once, which is what proves it readable."""
    if item.role == "audio":
        return _check_audio(path, item.field)
    try:
        with Image.open(path) as image:
            kind = image.format or ""
            _check_dimensions(image.size, item.field)
            if kind not in _IMAGE_FORMATS:
                raise InvalidRequest(
                    f"{item.field}: {kind or 'this'} images are not accepted (JPEG, PNG, WebP, BMP).", param=item.field
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's guard (aligned with ours in vidgate.media) saw the header first.
        raise InvalidRequest(
            f"{item.field} is larger than {media.MAX_IMAGE_PIXELS // 1_000_000} megapixels.", param=item.field
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest(
            f"{item.field} is not a readable image (accepted: JPEG, PNG, WebP, BMP).", param=item.field
        ) from exc
    return _IMAGE_FORMATS[kind]


def _check_dimensions(size: tuple[int, int], field: str) -> None:
    width, height = size
    if max(width, height) > media.MAX_IMAGE_SIDE or width * height > media.MAX_IMAGE_PIXELS:
        raise InvalidRequest(
            f"{field} is {width}x{height}; images may be at most {media.MAX_IMAGE_SIDE} px a side and "
            f"{media.MAX_IMAGE_PIXELS // 1_000_000} megapixels.",
            param=field,
        )


def _check_audio(path: Path, field: str) -> str:
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InvalidRequest(f"{field} has no audio stream.", param=field)
            name = container.format.name
    except av.FFmpegError as exc:
        raise InvalidRequest(f"{field} is not a readable audio file (wav, mp3, m4a, ...).", param=field) from exc
    return "audio/mpeg" if "mp3" in name else "audio/wav" if "wav" in name else "audio/mp4"


async def fetch(
    url: str, *, dest: Path, http: httpx.AsyncClient, field: str, fetch_private: bool, max_bytes: int
) -> Path:
    """Download an http(s) input through the URL guard (public addresses only unless fetch_private), with a
    size and time cap; every failure is a 400 naming the field, and none repeats what a host answered."""
    try:
        netguard.parse_url(url)
    except ValueError as exc:
        raise InvalidRequest(f"{field} is not a valid URL: {exc}.", param=field) from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            async with netguard.get(http, url, policy=netguard.Policy(private=fetch_private)) as response:
                if response.status_code != 200:
                    raise InvalidRequest(f"{field}: fetching {url} answered HTTP {response.status_code}.", param=field)
                ext = mimetypes.guess_extension(response.headers.get("content-type", "").split(";")[0]) or ""
                dest = dest.with_suffix(ext)
                with dest.open("wb") as handle:
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise PayloadTooLarge(f"{field}: {url} is larger than {max_bytes} bytes.", param=field)
                        handle.write(chunk)
    except TimeoutError as exc:
        raise InvalidRequest(f"{field}: fetching {url} took longer than {FETCH_TIMEOUT_S:.0f} s.", param=field) from exc
    except AddressRefused as exc:
        raise InvalidRequest(f"{field}: not fetched, {exc}.", param=field) from exc
    except httpx.TooManyRedirects as exc:
        raise InvalidRequest(
            f"{field}: {url} redirects more than {netguard.MAX_REDIRECTS} times.", param=field
        ) from exc
    except HostNotResolved as exc:
        raise InvalidRequest(f"{field}: not fetched, {exc}.", param=field) from exc
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise InvalidRequest(f"{field}: could not connect to the host of {url}.", param=field) from exc
    except httpx.HTTPError as exc:
        # Only the kind of failure: a protocol error's text can quote what the host sent.
        raise InvalidRequest(f"{field}: fetching {url} failed ({exc.__class__.__name__}).", param=field) from exc
    return dest
