"""Facts about stored videos and the preview images made from them. All functions are synchronous."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream
from PIL import Image

# Input images larger than this are refused before they are decoded (SPEC §4, "Untrusted input limits").
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_SIDE = 8192
# Pillow's own decompression-bomb guard, aligned with ours for every image this process opens: it warns above
# MAX_IMAGE_PIXELS and refuses above twice that (its default lets 178 Mpx through).
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
THUMBNAIL_MAX_SIDE = 640
SPRITE_TILE_MAX_SIDE = 256
SPRITE_COLUMNS = 4
SPRITE_TILES = 12
_THUMBNAIL_AT = 1 / 3
# Seek rather than decode forward when the next wanted frame is further ahead than this.
_SEEK_GAP_SECONDS = 4.0


class MediaError(Exception):
    """The file is missing or is not a readable video."""


@dataclass(frozen=True)
class Probe:
    """What a video file holds."""

    duration: float
    width: int
    height: int
    video_codec: str
    pix_fmt: str
    has_audio: bool
    audio_codec: str | None
    fps: float


def probe(path: str) -> Probe:
    """Read the duration, picture format and streams of the video at `path`."""
    with _open(path) as container:
        video = _video_stream(container, path)
        audio = container.streams.audio[0] if container.streams.audio else None
        context = video.codec_context
        return Probe(
            duration=_duration(container, video, path),
            width=context.width,
            height=context.height,
            video_codec=context.name,
            pix_fmt=context.pix_fmt or "",
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            fps=float(video.average_rate or video.guessed_rate or 0),
        )


def make_thumbnail(video_path: str, out_path: str) -> None:
    """Write a WebP of the frame a third of the way in, longest side at most 640 px."""
    info = probe(video_path)
    (frame,) = _frames_at(video_path, [info.duration * _THUMBNAIL_AT])
    frame.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE), Image.Resampling.LANCZOS)
    _save(frame, out_path, "WEBP", quality=82, method=4)


def make_spritesheet(video_path: str, out_path: str) -> None:
    """Write a JPEG grid (4 columns) of up to 12 evenly spaced frames, each tile's longest side at most 256 px."""
    info = probe(video_path)
    count = max(1, min(SPRITE_TILES, math.floor(info.duration * info.fps) if info.fps else SPRITE_TILES))
    # The middle of each of `count` equal slices, so the first and last tiles are not black fades.
    times = [info.duration * (index + 0.5) / count for index in range(count)]
    tiles = _frames_at(video_path, times)
    for tile in tiles:
        tile.thumbnail((SPRITE_TILE_MAX_SIDE, SPRITE_TILE_MAX_SIDE), Image.Resampling.LANCZOS)
    _save(_grid(tiles), out_path, "JPEG", quality=80, optimize=True)


def make_previews(video_path: str, thumbnail_path: str, sprites_path: str, info: Probe | None = None) -> None:
    """make_thumbnail and make_spritesheet in one pass: the file opened and its frames decoded once, without
    decoder threads (a poller makes previews for many small videos; frame threads cost more than they save)."""
    info = info or probe(video_path)
    count = max(1, min(SPRITE_TILES, math.floor(info.duration * info.fps) if info.fps else SPRITE_TILES))
    tile_times = [info.duration * (index + 0.5) / count for index in range(count)]
    thumb_time = info.duration * _THUMBNAIL_AT
    times = sorted({*tile_times, thumb_time})
    with _open(video_path) as container:
        stream = _video_stream(container, video_path)
        try:
            frames = dict(zip(times, _collect(container, stream, times), strict=True))
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode the video in {video_path}: {exc}") from exc
    thumbnail = frames[thumb_time].copy()
    thumbnail.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE), Image.Resampling.LANCZOS)
    tiles = [frames[at].copy() for at in tile_times]
    for tile in tiles:
        tile.thumbnail((SPRITE_TILE_MAX_SIDE, SPRITE_TILE_MAX_SIDE), Image.Resampling.LANCZOS)
    _save(thumbnail, thumbnail_path, "WEBP", quality=82, method=4)
    _save(_grid(tiles), sprites_path, "JPEG", quality=80, optimize=True)


def _grid(tiles: list[Image.Image]) -> Image.Image:
    columns = min(SPRITE_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    tile_w, tile_h = tiles[0].size
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * tile_w, (index // columns) * tile_h))
    return sheet


def _frames_at(path: str, times: list[float]) -> list[Image.Image]:
    """The first frame at or after each of the ascending `times` (seconds from the start), as RGB images."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            return list(_collect(container, stream, times))
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode the video in {path}: {exc}") from exc


def _collect(container: InputContainer, stream: VideoStream, times: list[float]) -> Iterator[Image.Image]:
    time_base = stream.time_base or Fraction(1, av.time_base)
    # Frame times count from the stream's start time, which is not always zero.
    start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
    # Half a frame of slack so float rounding never skips the frame that starts at a target.
    slack = 0.5 / float(stream.average_rate or 24)
    frames: Iterator[av.VideoFrame] = iter(())
    # One converter for every frame: its scaling context is made once, not per frame (~0.4 ms each).
    to_rgb = VideoReformatter()
    position = -math.inf
    last: av.VideoFrame | None = None
    for target in (start + t for t in times):
        if target - position > _SEEK_GAP_SECONDS:
            # Seek to the keyframe before the target, then decode forward to it.
            container.seek(int(target / time_base), stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
        while last is None or position < target - slack:
            frame = next(frames, None)
            if frame is None:
                break
            last = frame
            position = frame.time if frame.time is not None else position
        if last is None:
            raise MediaError("the video has no decodable frames")
        # Past the end of the stream the last frame stands in.
        yield Image.fromarray(to_rgb.reformat(last, format="rgb24").to_ndarray())


def _duration(container: InputContainer, stream: VideoStream, path: str) -> float:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        seconds = 0.0
    if seconds <= 0:
        raise MediaError(f"{path} is a still image or has no duration, not a video")
    return seconds


@contextlib.contextmanager
def _open(path: str) -> Iterator[InputContainer]:
    try:
        container = av.open(path, mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path} is not a readable video: {exc}") from exc
    with container:
        yield container


def _video_stream(container: InputContainer, path: str) -> VideoStream:
    if not container.streams.video:
        raise MediaError(f"{path} has no video stream")
    return container.streams.video[0]


def _save(image: Image.Image, out_path: str, format: str, **options: object) -> None:
    # Written beside the target and renamed, so readers never see half an image.
    partial = out_path + ".part"
    try:
        image.convert("RGB").save(partial, format=format, **options)
        os.replace(partial, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


# -- signed content URLs ---------------------------------------------------------------------------------
# A task's stored files can be fetched without an API key through /files/{task_id}/{name}?expires&signature,
# as the DashScope SDK downloads `video_url`: HMAC-SHA256 over the path and the expiry, with the secret.

FILE_NAMES = {"video.mp4": "video", "thumbnail.webp": "thumbnail", "spritesheet.jpg": "spritesheet"}
# Extra outputs a provider reports (Progress.extras, e.g. Seedance's last frame), stored beside the video.
EXTRA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".bin": "application/octet-stream",
}
_EXTRA = re.compile(r"^extra-(?P<name>[a-z0-9_]{1,40})(?P<ext>\.[a-z0-9]{2,4})$")


def extra_file_name(name: str, url: str) -> str | None:
    """The stored file name of an extra output (its type from the URL's suffix); None for a name we refuse."""
    suffix = Path(url.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    file_name = f"extra-{name}{suffix if suffix in EXTRA_TYPES else '.bin'}"
    return file_name if _EXTRA.match(file_name) else None


def extra_files(folder: Path) -> dict[str, Path]:
    """The extra outputs stored in a task's folder, by name."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.iterdir()):
        match = _EXTRA.match(path.name)
        if match and match.group("ext") in EXTRA_TYPES and path.is_file():
            found[match.group("name")] = path
    return found


def extra_name(file_name: str) -> str | None:
    """The output name of a stored extra output's file name ("extra-last_frame.png" -> "last_frame")."""
    match = _EXTRA.match(file_name)
    return match.group("name") if match and match.group("ext") in EXTRA_TYPES else None


def extra_type(file_name: str) -> str | None:
    """The media type of a stored extra output's file name; None when it is not one."""
    match = _EXTRA.match(file_name)
    return EXTRA_TYPES.get(match.group("ext")) if match else None


_EXPIRES = re.compile(r"[0-9]{1,12}")


def _signature(secret: str, task_id: str, name: str, expires: int) -> str:
    message = f"{task_id}/{name}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_url(public_url: str, secret: str, task_id: str, name: str, *, expires: int) -> str:
    """An absolute URL for a stored file that stays valid until `expires` (UNIX seconds)."""
    signature = _signature(secret, task_id, name, expires)
    return f"{public_url}/files/{task_id}/{name}?expires={expires}&signature={signature}"


def verify_signature(secret: str, task_id: str, name: str, expires: str, signature: str, *, now: float) -> bool:
    """True when the signature is ours for this file and has not expired (any text in, never an exception)."""
    # ASCII digits only: "²".isdigit() is True, and int("²") raises.
    if not _EXPIRES.fullmatch(expires) or int(expires) < now:
        return False
    return same_signature(_signature(secret, task_id, name, int(expires)), signature)


def same_signature(expected: str, given: str) -> bool:
    """Constant-time comparison of a signature we computed with one a client sent (which may be any text)."""
    return given.isascii() and hmac.compare_digest(expected, given)
