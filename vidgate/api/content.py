"""Serving stored files: GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet, with Range."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from starlette.responses import FileResponse, MalformedRangeHeader, PlainTextResponse, Response

from vidgate import media
from vidgate.api.deps import KeyDep, ServicesDep
from vidgate.api.schemas import KEYED, openai_errors, text
from vidgate.errors import Conflict, InvalidRequest, NotFound
from vidgate.status import TaskStatus
from vidgate.store import keys as key_store
from vidgate.store import tasks as task_store

router = APIRouter(prefix="/v1", tags=["OpenAI Videos API"], responses=openai_errors(*KEYED))

Variant = Literal["video", "thumbnail", "spritesheet"]
_TYPES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}
_EXT = {"video": "mp4", "thumbnail": "webp", "spritesheet": "jpg"}
_FILE_TYPES = {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in _TYPES.values()}
_PARTS = {**_FILE_TYPES, "multipart/byteranges": {"schema": {"type": "string", "format": "binary"}}}
_RANGE = [
    {
        "name": "Range",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "bytes=START-END[, ...]; a range that cannot be read is ignored (the whole file, 200).",
    }
]


class StoredFile(FileResponse):
    """Starlette's FileResponse, except that a malformed Range header is ignored, as RFC 9110 allows, instead
    of a plain-text 400 (outside every surface's error shape). An unsatisfiable range is still a 416."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # serve the whole file


@router.get(
    "/videos/{video_id}/content",
    summary="Download video content",
    response_class=Response,
    openapi_extra={"parameters": _RANGE},
    responses={
        200: {"description": "The file.", "content": _FILE_TYPES},
        206: {"description": "Partial content (Range).", "content": _PARTS},
        **openai_errors(400, 404, 409),
        416: text("Range not satisfiable."),
    },
)
async def video_content(video_id: str, svc: ServicesDep, key: KeyDep, variant: str = "video") -> Response:
    """The MP4 (or its WebP thumbnail / JPEG spritesheet); honours HTTP Range."""
    if variant not in _TYPES:
        raise InvalidRequest(
            f"Invalid value for 'variant': '{variant}'. Supported values are: video, thumbnail, spritesheet.",
            param="variant",
        )
    row = await task_store.get_task(svc.db, task_id=video_id, key_id=key.id)
    if row is None:
        raise NotFound(f"No video found with id '{video_id}'.", param="video_id", code="video_not_found")
    if row.status != TaskStatus.COMPLETED:
        if row.active:
            raise Conflict(f"Video '{video_id}' is {row.status.value} ({row.progress}%); its content is not ready yet.")
        raise InvalidRequest(
            f"Video '{video_id}' {row.status.value}; it has no content.", param="video_id", code="video_failed"
        )
    relative = {"video": row.video_path, "thumbnail": row.thumbnail_path, "spritesheet": row.spritesheet_path}[variant]
    path = svc.settings.media_dir / relative if relative else None
    if row.expires_at is not None and row.expires_at < time.time():
        raise NotFound(f"The content of video '{video_id}' has expired.", param="video_id", code="video_expired")
    if path is None or not path.is_file():
        raise NotFound(f"Video '{video_id}' has no stored {variant}.", param="variant", code="content_not_found")
    return StoredFile(
        path, media_type=_TYPES[variant], filename=f"{video_id}.{_EXT[variant]}", content_disposition_type="inline"
    )


files_router = APIRouter(tags=["Signed files"])


@files_router.get(
    "/files/{task_id}/{name}",
    summary="A stored file by signed URL (no API key)",
    response_class=Response,
    openapi_extra={"parameters": _RANGE},
    responses={
        200: {"description": "The file.", "content": _FILE_TYPES},
        206: {"description": "Partial content (Range).", "content": _PARTS},
        403: text("AccessDenied: the URL is invalid or has expired."),
        404: text("NoSuchKey: the file no longer exists."),
        416: text("Range not satisfiable."),
    },
)
async def signed_file(task_id: str, name: str, svc: ServicesDep, expires: str = "", signature: str = "") -> Response:
    """What DashScope's `video_url` points at: valid until `expires`, only with the signature vidgate made."""
    variant = media.FILE_NAMES.get(name) or ("extra" if media.extra_type(name) else None)
    if variant is None or not media.verify_signature(
        svc.settings.secret, task_id, name, expires, signature, now=time.time()
    ):
        return PlainTextResponse("AccessDenied: the URL is invalid or has expired.", status_code=403)
    row = await task_store.get_task(svc.db, task_id=task_id)
    if row is not None and not await key_store.is_active(svc.db, key_id=row.key_id):
        # The URL was signed for a key that has since been revoked: it goes with the key.
        return PlainTextResponse("AccessDenied: the URL is invalid or has expired.", status_code=403)
    relative = None
    if row is not None and row.status == TaskStatus.COMPLETED and variant == "extra" and row.video_path:
        # An extra output (Progress.extras) lives beside the video under its own name.
        relative = str(Path(row.video_path).parent / name)
    elif row is not None and row.status == TaskStatus.COMPLETED and variant != "extra":
        relative = {"video": row.video_path, "thumbnail": row.thumbnail_path, "spritesheet": row.spritesheet_path}[
            variant
        ]
    path = svc.settings.media_dir / relative if relative else None
    if path is None or not path.is_file():
        return PlainTextResponse("NoSuchKey: the file no longer exists.", status_code=404)
    if variant == "extra":
        return StoredFile(
            path, media_type=media.extra_type(name), filename=f"{task_id}-{name}", content_disposition_type="inline"
        )
    return StoredFile(
        path, media_type=_TYPES[variant], filename=f"{task_id}.{_EXT[variant]}", content_disposition_type="inline"
    )
