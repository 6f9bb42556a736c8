"""The DashScope-native video-synthesis API, under /api/v1 and /alibailian/api/v1.

Usable with the unmodified `dashscope` SDK (1.x-style VideoSynthesis / AioVideoSynthesis and the 2.0
Client().videos): async submit, task fetch (with or without a trailing slash), cancel, list, and the
upload-policy flow that lets the SDK send local files. Replies are HTTP 200 with uppercase statuses;
errors are {request_id, code, message}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import mimetypes
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from vidgate import media
from vidgate.api.deps import ServicesDep, bearer
from vidgate.api.openai_videos import json_response
from vidgate.api.schemas import (
    KEYED,
    SYNTHESIS_BODY,
    SYNTHESIS_HEADERS,
    TASK_LIST_PARAMS,
    UPLOAD_FORM,
    Cancelled,
    Submitted,
    Task,
    TaskList,
    UploadPolicy,
    dashscope_errors,
)
from vidgate.engine import native
from vidgate.errors import Conflict, InvalidRequest, PayloadTooLarge, PermissionDenied
from vidgate.providers.base import VideoRequest
from vidgate.status import TaskStatus
from vidgate.store import tasks as task_store
from vidgate.store import uploads as upload_store
from vidgate.store.keys import KeyRecord
from vidgate.store.tasks import TaskRow

router = APIRouter(tags=["DashScope video synthesis"])

STATUS = {
    TaskStatus.QUEUED: "PENDING",
    TaskStatus.IN_PROGRESS: "RUNNING",
    TaskStatus.COMPLETED: "SUCCEEDED",
    TaskStatus.FAILED: "FAILED",
    TaskStatus.CANCELLED: "CANCELED",
}
_FROM_STATUS = {value: key for key, value in STATUS.items()}
UPLOAD_POLICY_TTL_S = 300
_UPLOAD_TYPES = ("image/", "audio/", "video/")
# Routes behind an API key: declared for OpenAPI (the handlers authenticate with _key()).
_KEYED = [Depends(bearer)]


def request_id() -> str:
    return str(uuid.uuid4())


async def _key(request: Request, svc: ServicesDep) -> KeyRecord:
    record = await svc.keys.authenticate(request.headers.get("authorization"))
    svc.keys.check_rate(record)
    return record


def _time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# -- submit -----------------------------------------------------------------------------------------------


async def _submit(request: Request, svc: ServicesDep) -> Response:
    key = await _key(request, svc)
    if request.headers.get("x-dashscope-async", "").lower() != "enable":
        raise PermissionDenied("current user api does not support synchronous calls", code="AccessDenied")
    body = await _json_body(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest('Model is required: the body needs "model".', param="model", code="BadRequest.EmptyModel")
    spec = svc.registry.spec(model)
    if not key.may_use(model):
        raise PermissionDenied(
            f"Access to model {model} denied for this key.", param="model", code="AccessDenied.Unpurchased"
        )
    resolve = request.headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
    body = await _resolve_uploads(body, key, svc, resolve=resolve)
    passthrough = spec.provider == "dashscope"
    req: VideoRequest = native.to_request(body, spec, passthrough=passthrough)
    row = await svc.submitter.create_request(key, req)
    return json_response({"request_id": request_id(), "output": {"task_id": row.id, "task_status": "PENDING"}})


_SUBMIT_DOC: dict[str, Any] = {
    "dependencies": _KEYED,
    "response_model": Submitted,
    "responses": dashscope_errors(*KEYED, 400, 403, 413, 503),
    "openapi_extra": {"requestBody": SYNTHESIS_BODY, "parameters": SYNTHESIS_HEADERS},
}
router.add_api_route(
    "/services/aigc/video-generation/video-synthesis",
    _submit,
    methods=["POST"],
    summary="Submit a video-synthesis task",
    **_SUBMIT_DOC,
)
router.add_api_route(
    "/services/aigc/image2video/video-synthesis",
    _submit,
    methods=["POST"],
    summary="Submit (image2video path, kf2v)",
    **_SUBMIT_DOC,
)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object {model, input, parameters}.")
    return body


async def _resolve_uploads(body: dict[str, Any], key: KeyRecord, svc: ServicesDep, *, resolve: bool) -> dict[str, Any]:
    """Replace oss:// keys from the upload flow with the stored bytes (as data URIs)."""
    inputs = body.get("input")
    if not isinstance(inputs, Mapping):
        return body
    resolved = dict(inputs)
    for field in native.MEDIA_FIELDS:
        value = inputs.get(field)
        if not isinstance(value, str) or not value.startswith("oss://"):
            continue
        param = f"input.{field}"
        if not resolve:
            raise InvalidRequest(
                f"{param}: oss:// inputs need the header X-DashScope-OssResourceResolve: enable.",
                param=param,
                code="InvalidURL",
            )
        upload = await upload_store.find_upload(svc.db, key=value.removeprefix("oss://"), key_id=key.id)
        if upload is None:
            raise InvalidRequest(f"{param}: no uploaded file {value} for this key.", param=param, code="InvalidURL")
        data = (svc.settings.media_dir / upload.path).read_bytes()
        mime = upload.content_type or mimetypes.guess_type(upload.path)[0] or "application/octet-stream"
        resolved[field] = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return {**body, "input": resolved}


# -- tasks ------------------------------------------------------------------------------------------------


def task_output(row: TaskRow, svc: ServicesDep) -> dict[str, Any]:
    """The `output` object of a task query."""
    status = STATUS[row.status]
    output: dict[str, Any] = {
        "task_id": row.id,
        "task_status": status,
        "submit_time": _time(row.created_at),
        "scheduled_time": _time(row.created_at) if row.status != TaskStatus.QUEUED else None,
        "end_time": _time(row.completed_at) if not row.active else None,
        "orig_prompt": row.prompt,
        "actual_prompt": row.prompt,
    }
    if row.status == TaskStatus.COMPLETED:
        expires = int(time.time()) + svc.settings.signed_url_ttl
        if row.expires_at:
            expires = min(expires, int(row.expires_at))
        output["video_url"] = media.signed_url(
            svc.settings.public_url, svc.settings.secret, row.id, "video.mp4", expires=expires
        )
    elif row.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        output["code"] = row.error_code or "InternalError"
        output["message"] = row.error_message or "The task failed."
    return {key: value for key, value in output.items() if value is not None}


def task_usage(row: TaskRow) -> dict[str, Any]:
    ratio = row.size.replace("x", "*")
    if row.width and row.height:
        ratio = f"{row.width}*{row.height}"
    duration = round(row.duration) if row.duration else row.seconds
    return {
        "video_duration": duration,
        "video_count": 1 if row.status == TaskStatus.COMPLETED else 0,
        "video_ratio": ratio,
    }


async def _fetch(task_id: str, request: Request, svc: ServicesDep) -> Response:
    key = await _key(request, svc)
    row = await task_store.get_task(svc.db, task_id=task_id, key_id=key.id)
    if row is None:
        # DashScope answers unknown (and foreign) ids with 200 and UNKNOWN.
        return json_response({"request_id": request_id(), "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
    return json_response({"request_id": request_id(), "output": task_output(row, svc), "usage": task_usage(row)})


router.add_api_route(
    "/tasks/{task_id}",
    _fetch,
    methods=["GET"],
    summary="Query a task",
    response_model=Task,
    responses=dashscope_errors(*KEYED),
    dependencies=_KEYED,
)
router.add_api_route("/tasks/{task_id}/", _fetch, methods=["GET"], include_in_schema=False)


@router.post(
    "/tasks/{task_id}/cancel",
    summary="Cancel a pending task",
    response_model=Cancelled,
    responses=dashscope_errors(*KEYED, 400, 503),
    dependencies=_KEYED,
)
async def cancel_task(task_id: str, request: Request, svc: ServicesDep) -> Response:
    """Cancel a task that is still PENDING."""
    key = await _key(request, svc)
    row = await task_store.get_task(svc.db, task_id=task_id, key_id=key.id)
    try:
        if row is None:
            raise Conflict("no such task")
        await svc.submitter.cancel(row, key)
    except Conflict as exc:
        raise Conflict(
            "Failed to cancel the task, please confirm if the task is in PENDING status.", code="UnsupportedOperation"
        ) from exc
    return json_response({"request_id": request_id()})


@router.get(
    "/tasks",
    summary="List tasks",
    response_model=TaskList,
    responses=dashscope_errors(*KEYED, 400),
    openapi_extra={"parameters": TASK_LIST_PARAMS},
    dependencies=_KEYED,
)
async def list_tasks(request: Request, svc: ServicesDep) -> Response:
    """The key's tasks, newest first, one numbered page at a time (rows under both `data` and `tasks`)."""
    key = await _key(request, svc)
    query = request.query_params
    page_no = _int(query.get("page_no"), "page_no", default=1, low=1, high=100_000)
    page_size = _int(query.get("page_size"), "page_size", default=10, low=1, high=100)
    statuses = None
    if query.get("status"):
        names = [name.strip().upper() for name in query["status"].split(",")]
        unknown = [name for name in names if name not in _FROM_STATUS]
        if unknown:
            raise InvalidRequest(f"status must be one of {', '.join(_FROM_STATUS)}; got {unknown[0]}.", param="status")
        statuses = [_FROM_STATUS[name] for name in names]
    rows, total = await task_store.page_tasks(
        svc.db,
        key_id=key.id,
        page_no=page_no,
        page_size=page_size,
        statuses=statuses,
        model=query.get("model_name") or None,
        start=_stamp(query.get("start_time"), "start_time"),
        end=_stamp(query.get("end_time"), "end_time"),
    )
    items = [
        {**task_output(row, svc), "model_name": row.model, "status": STATUS[row.status], "usage": task_usage(row)}
        for row in rows
    ]
    return json_response(
        {
            "request_id": request_id(),
            "data": items,
            "tasks": items,
            "total": total,
            "total_page": math.ceil(total / page_size) if total else 0,
            "page_no": page_no,
            "page_size": page_size,
        }
    )


def _int(value: str | None, param: str, *, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidRequest(f"{param} must be an integer from {low} to {high}.", param=param)
    return int(value)


def _stamp(value: str | None, param: str) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise InvalidRequest(f"{param} must be YYYYMMDDhhmmss.", param=param) from exc


# -- uploads (the SDK's way to send local files) ------------------------------------------------------------


def _policy_signature(secret: str, policy: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()


@router.get(
    "/uploads",
    summary="Upload policy for local files",
    response_model=UploadPolicy,
    responses=dashscope_errors(*KEYED, 400),
    dependencies=_KEYED,
)
async def upload_policy(request: Request, svc: ServicesDep, action: str = "", model: str = "") -> Response:
    """A short-lived policy that lets the SDK POST one file to vidgate's upload host."""
    key = await _key(request, svc)
    if action != "getPolicy":
        raise InvalidRequest("action must be getPolicy.", param="action")
    limit = svc.settings.max_upload_bytes
    upload_dir = f"dashscope-instant/{key.id}/{datetime.now(UTC):%Y-%m-%d}/{secrets.token_hex(8)}"
    expires = int(time.time()) + UPLOAD_POLICY_TTL_S
    policy = base64.b64encode(
        orjson.dumps({"expiration": expires, "key_id": key.id, "dir": upload_dir, "max_bytes": limit})
    ).decode()
    # The upload host is vidgate itself, under the same prefix the client used.
    prefix = "/alibailian/api/v1" if request.url.path.startswith("/alibailian/") else "/api/v1"
    data = {
        "policy": policy,
        "signature": _policy_signature(svc.settings.secret, policy),
        "upload_dir": upload_dir,
        "upload_host": f"{svc.settings.public_url}{prefix}/uploads/oss",
        "expire_in_seconds": UPLOAD_POLICY_TTL_S,
        "max_file_size_mb": max(1, limit // (1024 * 1024)),
        "capacity_limit_mb": 999999999,
        "oss_access_key_id": "vidgate",
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    }
    return json_response({"request_id": request_id(), "data": data})


@router.post(
    "/uploads/oss",
    summary="Upload host (form POST named by the policy)",
    response_class=Response,
    responses={200: {"description": "Stored (empty body)."}, **dashscope_errors(400, 403, 413, 500)},
    openapi_extra={"requestBody": UPLOAD_FORM},
)
async def upload_file(request: Request, svc: ServicesDep) -> Response:
    """Receive one file under a policy from GET /uploads; no Authorization header (the policy is the proof)."""
    limit = svc.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + 64 * 1024:
        raise PayloadTooLarge(f"The file is larger than {limit} bytes.", param="file", code="BadRequest.TooLarge")
    async with request.form(max_files=1, max_fields=20, max_part_size=64 * 1024) as form:
        policy, signature, key = (form.get(name) for name in ("policy", "Signature", "key"))
        upload = form.get("file")
        if not all(isinstance(value, str) and value for value in (policy, signature, key)):
            raise PermissionDenied("policy, Signature and key are required.", code="AccessDenied")
        assert isinstance(policy, str) and isinstance(signature, str) and isinstance(key, str)
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500).
        if not hmac.compare_digest(_policy_signature(svc.settings.secret, policy).encode(), signature.encode()):
            raise PermissionDenied("The upload policy signature does not match.", code="AccessDenied")
        claims = orjson.loads(base64.b64decode(policy))
        if claims["expiration"] < time.time():
            raise PermissionDenied("The upload policy has expired.", code="AccessDenied")
        if not key.startswith(claims["dir"] + "/") or ".." in key or len(key) > 400:
            raise PermissionDenied("The key is outside the policy's upload_dir.", code="AccessDenied")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("The form needs a file part named file.", param="file")
        content_type = str(form.get("x-oss-content-type") or upload.content_type or mimetypes.guess_type(key)[0] or "")
        if not content_type.startswith(_UPLOAD_TYPES):
            raise InvalidRequest(
                f"Only image, audio and video files can be uploaded (got {content_type or 'unknown'}).", param="file"
            )
        await _store_upload(svc, upload, key=key, key_id=claims["key_id"], content_type=content_type, limit=limit)
    return Response(status_code=200)


async def _store_upload(
    svc: ServicesDep, upload: UploadFile, *, key: str, key_id: str, content_type: str, limit: int
) -> None:
    relative = f"uploads/{hashlib.sha256(key.encode()).hexdigest()}{mimetypes.guess_extension(content_type) or ''}"
    path = svc.settings.media_dir / relative
    partial = path.with_name(path.name + f".{secrets.token_hex(4)}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with partial.open("wb") as handle:
            while chunk := await upload.read(1024 * 1024):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"The file is larger than {limit} bytes.", param="file", code="BadRequest.TooLarge"
                    )
                handle.write(chunk)
        if size == 0:
            raise InvalidRequest("The uploaded file is empty.", param="file")
        stored = await upload_store.insert_upload(
            svc.db, key=key, key_id=key_id, path=relative, size=size, content_type=content_type
        )
        if not stored:
            raise Conflict("An object with this key already exists (x-oss-forbid-overwrite).", code="FileAlreadyExists")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
