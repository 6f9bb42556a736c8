"""The OpenAI Videos API: /v1/videos (create, retrieve, list, delete, remix) and /v1/models."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response

from vidgate.api import limits
from vidgate.api.deps import KeyDep, Services, ServicesDep
from vidgate.api.schemas import (
    CREATE_BODY,
    KEYED,
    REMIX_BODY,
    DeletedVideo,
    ModelList,
    Video,
    VideoList,
    openai_errors,
)
from vidgate.engine import idempotency
from vidgate.engine.normalize import RawCreate, Upload
from vidgate.errors import InvalidRequest, NotFound, PayloadTooLarge
from vidgate.providers.base import ModelSpec, Price
from vidgate.status import TaskStatus
from vidgate.store import tasks as task_store
from vidgate.store.tasks import TaskRow, TaskView

router = APIRouter(prefix="/v1", tags=["OpenAI Videos API"], responses=openai_errors(*KEYED))

_TEXT_FIELDS = ("prompt", "model", "seconds", "size", "resolution", "metadata")
# Remix and other small JSON or form bodies.
SMALL_BODY_BYTES = 1024 * 1024
_BRACKET = re.compile(r"^input_reference\[(image_url|file_id)\]$")
# extra_body={"metadata": {...}} as the SDK flattens it into a multipart form: metadata[key]=value.
_METADATA_ITEM = re.compile(r"^metadata\[([A-Za-z0-9_]{1,64})\]$")
IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "Retries with the same key and body within 24 h return the same video, created once.",
    "schema": {"type": "string", "pattern": "^[ -~]{1,255}$"},
}


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def video_object(row: TaskRow | TaskView) -> dict[str, Any]:
    """The OpenAI Video object for a task (a cancelled task reads as failed: clients know four states)."""
    status = row.status
    error = None
    if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        error = {"code": row.error_code or "failed", "message": row.error_message or "The video failed."}
    return {
        "id": row.id,
        "object": "video",
        "model": row.model,
        "status": "failed" if status == TaskStatus.CANCELLED else status.value,
        "progress": row.progress,
        "created_at": int(row.created_at),
        "completed_at": int(row.completed_at) if row.completed_at and status == TaskStatus.COMPLETED else None,
        "expires_at": int(row.expires_at) if row.expires_at else None,
        "seconds": str(row.seconds),
        "size": row.size,
        "prompt": row.prompt,
        "remixed_from_video_id": row.remixed_from,
        "error": error,
    }


def poll_after(svc: Services, row: TaskRow | TaskView) -> dict[str, str]:
    if not row.active:
        return {}
    try:
        hint = svc.registry.spec(row.model).poll_hint_ms
    except InvalidRequest:
        hint = 2000
    return {"openai-poll-after-ms": str(hint)}


async def _owned(svc: ServicesDep, key_id: str, video_id: str) -> TaskRow:
    row = await task_store.get_task(svc.db, task_id=video_id, key_id=key_id)
    if row is None:
        raise NotFound(f"No video found with id '{video_id}'.", param="video_id", code="video_not_found")
    return row


@router.post(
    "/videos",
    response_model=Video,
    summary="Create a video",
    openapi_extra={"requestBody": CREATE_BODY, "parameters": [IDEMPOTENCY_HEADER]},
    responses=openai_errors(400, 403, 409, 413, 429, 502, 503),
)
async def create_video(request: Request, svc: ServicesDep, key: KeyDep) -> Response:
    """Create a video from a prompt (and optionally an image). Accepts multipart/form-data and JSON.

    With an `Idempotency-Key` header, the same key and body within 24 h return the first request's video
    (no second task, no second charge); the same key with another body is a 409 `idempotency_key_reused`.
    """
    header = request.headers.get(idempotency.HEADER)
    if header is not None:
        idempotency.check_key(header)
    raw = await read_create(request, svc)
    try:
        claim = await idempotency.for_create(header, raw) if header is not None else None
        row = await svc.submitter.create(key, raw, idempotency=claim)
    finally:
        if isinstance(raw.input_reference, Upload):
            raw.input_reference.path.unlink(missing_ok=True)
    return json_response(video_object(row), headers=poll_after(svc, row))


@router.get("/videos", response_model=VideoList, summary="List videos", responses=openai_errors(400))
async def list_videos(
    svc: ServicesDep,
    key: KeyDep,
    after: str | None = None,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
) -> Response:
    """The calling key's videos, newest first by default, paginated with `after`."""
    if not 1 <= limit <= 100:
        raise InvalidRequest(f"Invalid value for 'limit': {limit}. It must be from 1 to 100.", param="limit")
    after_seq = None
    if after:
        after_seq = await task_store.seq_of(svc.db, task_id=after, key_id=key.id)
        if after_seq is None:
            raise InvalidRequest(f"Invalid value for 'after': no video '{after}'.", param="after")
    rows = await task_store.list_tasks(svc.db, key_id=key.id, limit=limit + 1, order=order, after_seq=after_seq)
    page = rows[:limit]
    return json_response(
        {
            "object": "list",
            "data": [video_object(row) for row in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(rows) > limit,
        }
    )


@router.get("/videos/{video_id}", response_model=Video, summary="Retrieve a video", responses=openai_errors(404))
async def retrieve_video(video_id: str, svc: ServicesDep, key: KeyDep) -> Response:
    """A video's status; while it is unfinished, `openai-poll-after-ms` says when to look again."""
    row = await _owned(svc, key.id, video_id)
    return json_response(video_object(row), headers=poll_after(svc, row))


@router.delete(
    "/videos/{video_id}", response_model=DeletedVideo, summary="Delete a video", responses=openai_errors(404)
)
async def delete_video(video_id: str, svc: ServicesDep, key: KeyDep) -> Response:
    """Delete a video and its stored files; an unfinished one is cancelled first."""
    row = await _owned(svc, key.id, video_id)
    await svc.submitter.delete(row)
    return json_response({"id": row.id, "object": "video.deleted", "deleted": True})


@router.post(
    "/videos/{video_id}/remix",
    response_model=Video,
    summary="Remix a video",
    openapi_extra={"requestBody": REMIX_BODY},
    responses=openai_errors(400, 403, 404, 409, 413, 503),
)
async def remix_video(video_id: str, request: Request, svc: ServicesDep, key: KeyDep) -> Response:
    """A new video from a completed one with a new prompt (models whose provider supports remix)."""
    fields = await read_fields(request, svc)
    row = await svc.submitter.remix(key, video_id, fields.get("prompt"))
    return json_response(video_object(row), headers=poll_after(svc, row))


@router.get("/models", response_model=ModelList, summary="List models", tags=["Models"])
async def list_models(svc: ServicesDep, key: KeyDep) -> Response:
    """The models this key may use, with what each accepts."""
    prices = svc.settings.prices
    data = [model_object(spec, prices) for spec in svc.registry.models() if key.may_use(spec.name)]
    return json_response({"object": "list", "data": data})


def model_object(spec: ModelSpec, prices: Mapping[str, Price]) -> dict[str, Any]:
    price = prices.get(spec.name, spec.price)
    return {
        "id": spec.name,
        "object": "model",
        "created": 0,
        "owned_by": spec.provider,
        "modes": sorted(spec.modes),
        "seconds": [str(s) for s in spec.seconds],
        "default_seconds": str(spec.default_seconds),
        "sizes": spec.allowed_sizes(),
        "size_range": list(spec.any_size) if spec.any_size else None,
        "tiers": dict(spec.tiers),
        "default_size": spec.default_size,
        "audio": spec.audio,
        "remix": spec.remix,
        "metadata_keys": sorted([*spec.media_keys(), *spec.params]),
        "params": {name: param.describe() for name, param in sorted(spec.params.items())},
        "price": price_json(price),
        "description": spec.description,
    }


def price_json(price: Price | None) -> str | dict[str, str] | None:
    """USD per second as decimal strings: one for every tier, or one per tier."""
    if price is None:
        return None
    if isinstance(price, Mapping):
        return {tier: str(value) for tier, value in price.items()}
    return str(price)


# -- request bodies -----------------------------------------------------------------------------------


async def read_fields(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """A small body as a dict, from JSON, multipart or a urlencoded form (remix and the like)."""
    limits.lower_cap(request.scope, SMALL_BODY_BYTES)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await _form(request, SMALL_BODY_BYTES)
        return {key: value for key, value in form.multi_items() if isinstance(value, str)}
    return await _json_object(request)


async def read_create(request: Request, svc: ServicesDep) -> RawCreate:
    """The create fields from multipart/form-data (any openai SDK ≥ 2.27) or JSON (older SDKs)."""
    limit = svc.settings.max_upload_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _raw_from_form(request, svc, limit)
    body = await _json_object(request)
    raw = RawCreate()
    for name in (*_TEXT_FIELDS, "input_reference"):
        setattr(raw, name, body.get(name))
    return raw


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "The body is not valid JSON; send application/json or multipart/form-data.", code="invalid_json"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The JSON body must be an object.", code="invalid_json")
    return data


async def _form(request: Request, limit: int) -> Any:
    try:
        return await request.form(max_files=8, max_fields=64, max_part_size=limit)
    except HTTPException as exc:
        raise InvalidRequest(f"The multipart body could not be read: {exc.detail}") from exc


async def _raw_from_form(request: Request, svc: ServicesDep, limit: int) -> RawCreate:
    form = await _form(request, limit)
    raw = RawCreate()
    try:
        _refuse_repeated(form)
        for name, value in form.multi_items():
            if name in _TEXT_FIELDS:
                if name == "metadata" and isinstance(raw.metadata, dict):
                    raise InvalidRequest("metadata is given both whole and key by key; send one.", param="metadata")
                setattr(raw, name, value if isinstance(value, str) else None)
            elif name == "input_reference":
                raw.input_reference = await _save_upload(value, svc, limit) if isinstance(value, UploadFile) else value
            elif (match := _BRACKET.match(name)) and isinstance(value, str):
                # extra_body={"input_reference": {...}} arrives flattened in bracket style.
                raw.input_reference = {match.group(1): value}
            elif (match := _METADATA_ITEM.match(name)) and isinstance(value, str):
                if raw.metadata not in (None, "") and not isinstance(raw.metadata, dict):
                    raise InvalidRequest("metadata is given both whole and key by key; send one.", param="metadata")
                raw.metadata = {**(raw.metadata or {}), match.group(1): _form_value(value)}
            elif name.startswith("metadata["):
                raise InvalidRequest(
                    f"{name}: nested metadata cannot be read from a form; send metadata as a JSON string.",
                    param="metadata",
                )
    finally:
        await form.close()
    return raw


def _form_value(text: str) -> Any:
    """A flattened metadata value: the JSON it spells (7, true, {"a": 1}) or else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _refuse_repeated(form: Any) -> None:
    """Each create field at most once: of two files (or values) for one field, neither may silently win."""
    seen: set[str] = set()
    for name, value in form.multi_items():
        field = "input_reference" if _BRACKET.match(name) else name
        if field not in _TEXT_FIELDS and field != "input_reference":
            continue
        if field in seen:
            kind = "file" if isinstance(value, UploadFile) else "value"
            raise InvalidRequest(
                f"The form gives {field} more than once (another {kind}); send one.",
                param=field,
                code="duplicate_field",
            )
        seen.add(field)


async def _save_upload(upload: UploadFile, svc: ServicesDep, limit: int) -> Upload:
    folder = svc.settings.media_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "".join(ch for ch in (upload.filename or "").rpartition(".")[2][:8] if ch.isalnum())
    path = folder / f"upload-{secrets.token_hex(8)}{'.' + suffix if suffix else ''}"
    size = 0
    with path.open("wb") as handle:
        while chunk := await upload.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                handle.close()
                path.unlink(missing_ok=True)
                raise PayloadTooLarge(f"input_reference is larger than {limit} bytes.", param="input_reference")
            handle.write(chunk)
    if size == 0:
        path.unlink(missing_ok=True)
        raise InvalidRequest("input_reference is an empty file.", param="input_reference")
    return Upload(path=path, filename=upload.filename or "upload", content_type=upload.content_type, size=size)
