"""Serving stored files: GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet, with Range."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.datastructures import Headers, QueryParams
from starlette.responses import (
    FileResponse,
    MalformedRangeHeader,
    PlainTextResponse,
    RangeNotSatisfiable,
    Response,
    StreamingResponse,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from vidgate import media
from vidgate.api.deps import KeyDep, Services, ServicesDep
from vidgate.api.schemas import KEYED, openai_errors, text
from vidgate.errors import Conflict, InvalidRequest, NotFound, VidgateError
from vidgate.status import TaskStatus
from vidgate.storage import Storage
from vidgate.store import keys as key_store
from vidgate.store import tasks as task_store

router = APIRouter(prefix="/v1", tags=["OpenAI Videos API"], responses=openai_errors(*KEYED))

Variant = Literal["video", "thumbnail", "spritesheet"]
_TYPES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}
_EXT = {"video": "mp4", "thumbnail": "webp", "spritesheet": "jpg"}
_FILE_TYPES = {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in _TYPES.values()}
_REDIRECT = {"description": "With content_redirect (s3:// storage): `Location` is a presigned URL of the file."}
_FAST_PREFIX, _FAST_SUFFIX, _FAST_ROUTE = "/v1/videos/", "/content", "/v1/videos/{video_id}/content"
# content_redirect: how long the presigned URL a client is sent to stays valid (it is used at once).
PRESIGN_TTL_S = 300
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
        302: _REDIRECT,
        **openai_errors(400, 404, 409),
        416: text("Range not satisfiable."),
    },
)
async def video_content(
    video_id: str, request: Request, svc: ServicesDep, key: KeyDep, variant: str = "video"
) -> Response:
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
    if row.expires_at is not None and row.expires_at < time.time():
        raise NotFound(f"The content of video '{video_id}' has expired.", param="video_id", code="video_expired")
    response = await _serve(
        svc, relative, media_type=_TYPES[variant], filename=f"{video_id}.{_EXT[variant]}", headers=request.headers
    )
    if response is None:
        raise NotFound(f"Video '{video_id}' has no stored {variant}.", param="variant", code="content_not_found")
    return response


files_router = APIRouter(tags=["Signed files"])


@files_router.get(
    "/files/{task_id}/{name}",
    summary="A stored file by signed URL (no API key)",
    response_class=Response,
    openapi_extra={"parameters": _RANGE},
    responses={
        200: {"description": "The file.", "content": _FILE_TYPES},
        206: {"description": "Partial content (Range).", "content": _PARTS},
        302: _REDIRECT,
        403: text("AccessDenied: the URL is invalid or has expired."),
        404: text("NoSuchKey: the file no longer exists."),
        416: text("Range not satisfiable."),
    },
)
async def signed_file(
    task_id: str, name: str, request: Request, svc: ServicesDep, expires: str = "", signature: str = ""
) -> Response:
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
    if variant == "extra":
        media_type, filename = media.extra_type(name) or "application/octet-stream", f"{task_id}-{name}"
    else:
        media_type, filename = _TYPES[variant], f"{task_id}.{_EXT[variant]}"
    response = await _serve(svc, relative, media_type=media_type, filename=filename, headers=request.headers)
    if response is None:
        return PlainTextResponse("NoSuchKey: the file no longer exists.", status_code=404)
    return response


async def _serve(
    svc: Services, key: str | None, *, media_type: str, filename: str, headers: Headers
) -> Response | None:
    """The stored object `key` as the answer (None when there is none): from disk for file: storage, streamed
    from the bucket for s3:// (Range and If-Range from the request's `headers`), or a redirect to a short-lived
    presigned URL with content_redirect."""
    if key is None:
        return None
    storage = svc.storage
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            return None
        return StoredFile(path, media_type=media_type, filename=filename, content_disposition_type="inline")
    if svc.settings.content_redirect:
        url = await storage.presign(key, ttl_s=PRESIGN_TTL_S)
        if url is not None:
            # The presigned URL is already encoded: set as it is (RedirectResponse would quote it again).
            return Response(status_code=302, headers={"location": url, "cache-control": "no-store"})
    return await stream_object(storage, key, headers.get("range"), headers.get("if-range"), media_type, filename)


class ContentFastPath:
    """GET /v1/videos/{id}/content answered ahead of the framework when it succeeds: a file from disk, an object
    streamed from S3, or a redirect. Like the status fast path (api/fast.py), anything else falls through to the
    route above, which decides what every error looks like."""

    def __init__(self, app: ASGIApp, services: dict[str, Services]) -> None:
        self.app = app
        self.services = services  # filled by the app's lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(_FAST_PREFIX) and path.endswith(_FAST_SUFFIX) and "svc" in self.services:
                video_id = path[len(_FAST_PREFIX) : -len(_FAST_SUFFIX)]
                response = await self._answer(scope, video_id, self.services["svc"]) if "/" not in video_id else None
                if response is not None:
                    scope["vidgate.route"] = _FAST_ROUTE
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, video_id: str, svc: Services) -> Response | None:
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        query: bytes = scope["query_string"]
        variant = QueryParams(query).get("variant", "video") if query else "video"
        if authorization is None or not video_id or variant not in _TYPES:
            return None
        try:
            key = await svc.keys.authenticate(authorization.decode("latin-1"))
            row = await task_store.get_media(svc.db, task_id=video_id, key_id=key.id)
            if row is None or row.status != TaskStatus.COMPLETED:
                return None
            if row.expires_at is not None and row.expires_at < time.time():
                return None
            stored = {"video": row.video_path, "thumbnail": row.thumbnail_path, "spritesheet": row.spritesheet_path}
            filename = f"{video_id}.{_EXT[variant]}"
            response = await _serve(
                svc, stored[variant], media_type=_TYPES[variant], filename=filename, headers=Headers(scope=scope)
            )
        except VidgateError:
            return None
        if response is None:
            return None
        try:
            await svc.keys.check_rate(key)  # last: a request that falls through is counted once, by the route
        except VidgateError:
            # Refused after all: let go of an object stream opened for nothing (the route renders the 429).
            body = getattr(response, "body_iterator", None)
            if body is not None and hasattr(body, "aclose"):
                await body.aclose()
            return None
        return response


async def stream_object(
    storage: Storage, key: str, http_range: str | None, if_range: str | None, media_type: str, filename: str
) -> Response | None:
    """Stream a stored object as FileResponse serves a file: Range (206, multipart/byteranges for several
    ranges, 416 past the end), If-Range, ETag and Last-Modified; a malformed Range is ignored. None when missing."""
    ranges: list[tuple[int, int]] = []
    if http_range is not None:
        info = await storage.stat(key)
        if info is None:
            return None
        if if_range is None or if_range in (info.etag, info.last_modified):
            try:
                ranges = StoredFile._parse_range_header(http_range, info.size)
            except RangeNotSatisfiable as exc:
                return PlainTextResponse(status_code=416, headers={"content-range": f"bytes */{exc.max_size}"})
    if len(ranges) > 1:
        return await _multipart(storage, key, ranges, media_type, filename)
    opened = await storage.open(key, ranges[0] if ranges else None)
    if opened is None:
        return None
    info = opened.info
    headers = _file_headers(filename, info.etag, info.last_modified)
    headers["content-length"] = str(opened.end - opened.start)
    status = 200
    if ranges:
        status = 206
        headers["content-range"] = f"bytes {opened.start}-{opened.end - 1}/{info.size}"
    return StreamingResponse(opened.chunks, status_code=status, headers=headers, media_type=media_type)


async def _multipart(
    storage: Storage, key: str, ranges: list[tuple[int, int]], media_type: str, filename: str
) -> Response | None:
    info = await storage.stat(key)
    if info is None:
        return None
    boundary = secrets.token_hex(13)
    heads = [
        f"--{boundary}\r\nContent-Type: {media_type}\r\nContent-Range: bytes {start}-{end - 1}/{info.size}\r\n\r\n"
        for start, end in ranges
    ]
    tail = f"--{boundary}--".encode()
    length = sum(len(head) + (end - start) + 2 for head, (start, end) in zip(heads, ranges, strict=True)) + len(tail)

    async def parts() -> AsyncIterator[bytes | memoryview]:
        for head, byte_range in zip(heads, ranges, strict=True):
            yield head.encode("latin-1")
            opened = await storage.open(key, byte_range)
            if opened is None:
                raise RuntimeError(f"{key} went away while it was being sent")
            try:
                async for chunk in opened.chunks:
                    yield chunk
            finally:
                await opened.aclose()
            yield b"\r\n"
        yield tail

    headers = _file_headers(filename, info.etag, info.last_modified)
    headers["content-length"] = str(length)
    return StreamingResponse(
        parts(), status_code=206, headers=headers, media_type=f"multipart/byteranges; boundary={boundary}"
    )


def _file_headers(filename: str, etag: str, last_modified: str) -> dict[str, str]:
    quoted = quote(filename)
    disposition = f'inline; filename="{filename}"' if quoted == filename else f"inline; filename*=utf-8''{quoted}"
    return {"accept-ranges": "bytes", "content-disposition": disposition, "etag": etag, "last-modified": last_modified}
