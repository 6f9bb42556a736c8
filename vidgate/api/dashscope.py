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
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response

from vidgate import media
from vidgate.api import limits
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
from vidgate.engine import uploads as upload_flow
from vidgate.engine.draft import StoredFile, validate
from vidgate.errors import (
    ClientError,
    Conflict,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    StorageUnavailable,
    UpstreamFailure,
)
from vidgate.status import TaskStatus
from vidgate.store import keys as key_store
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
    await svc.keys.check_rate(record)
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
    files = await _resolve_uploads(body, key, svc, resolve=resolve)
    try:
        # The provider decides nothing here but whether the body may go on verbatim: only to DashScope itself.
        draft = native.to_draft(body, spec, passthrough=spec.provider == "dashscope", files=files)
        row = await svc.submitter.create_request(key, validate(draft, spec))
    finally:
        for stored in files.values():
            stored.path.unlink(missing_ok=True)  # moved into the task's folder unless the request failed
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


async def _resolve_uploads(
    body: dict[str, Any], key: KeyRecord, svc: ServicesDep, *, resolve: bool
) -> dict[str, StoredFile]:
    """Stored files for the oss:// keys of the upload flow, by input field: each a copy of this key's upload
    (the request's own, moved into its task), never re-encoded."""
    inputs = body.get("input")
    if not isinstance(inputs, Mapping):
        return {}
    files: dict[str, StoredFile] = {}
    try:
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
            mime = upload.content_type or mimetypes.guess_type(upload.path)[0] or "application/octet-stream"
            copy = svc.settings.media_dir / "tmp" / f"oss-{secrets.token_hex(8)}{Path(upload.path).suffix[:9]}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            if not await svc.storage.fetch(upload.path, copy):
                # Its row outlived its object (a crash between the two, or a sweep in progress).
                raise InvalidRequest(f"{param}: the uploaded file {value} is gone.", param=param, code="InvalidURL")
            files[field] = StoredFile(path=copy, mime=mime)
    except BaseException:
        for stored in files.values():
            stored.path.unlink(missing_ok=True)
        raise
    return files


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
        # Extra outputs (e.g. Seedance's last frame) as `<name>_url`, signed like the video.
        for file_name in row.extras or ():
            name = media.extra_name(file_name)
            if name is not None:
                output[f"{name}_url"] = media.signed_url(
                    svc.settings.public_url, svc.settings.secret, row.id, file_name, expires=expires
                )
    elif row.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        output["code"] = row.error_code or "InternalError"
        output["message"] = row.error_message or "The task failed."
        said = UpstreamFailure.parse(row.error_message) if row.provider == "dashscope" else None
        if said is not None and said.vendor == "DashScope":
            # The upstream is DashScope: its own code and message, as it gave them.
            output["code"], output["message"] = said.code, said.message or ""
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
    # ASCII digits only: "²".isdigit() is True, and int("²") raises.
    if not re.fullmatch(r"[0-9]{1,9}", value) or not low <= int(value) <= high:
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
# GET /uploads hands out a policy and an upload_host URL that carries a signed grant (key, policy id, expiry).
# The unauthenticated POST to that URL is judged by the grant before a byte of its body is read; then the policy
# in the form must be ours and match the grant. One object per policy; a key uploads at most its allowance a day.

_GRANT = re.compile(
    r"(?P<key_id>[A-Za-z0-9_-]{1,32})\.(?P<policy_id>[0-9a-f]{16})\.(?P<expires>[0-9]{1,12})\.(?P<sig>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class UploadGrant:
    """What a signed upload URL allows: one object, for this key, under this policy, until `expires`."""

    key_id: str
    policy_id: str
    expires: int

    def token(self, secret: str) -> str:
        return f"{self.key_id}.{self.policy_id}.{self.expires}.{self._signature(secret)}"

    def _signature(self, secret: str) -> str:
        message = f"upload:{self.key_id}:{self.policy_id}:{self.expires}".encode()
        return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()

    @classmethod
    def read(cls, token: str, secret: str, *, now: float) -> UploadGrant:
        """The grant in an upload URL; PermissionDenied unless it is well-formed, ours and unexpired."""
        match = _GRANT.fullmatch(token)
        if match is None:
            raise PermissionDenied("The upload URL is not one vidgate made.", code="AccessDenied")
        grant = cls(match["key_id"], match["policy_id"], int(match["expires"]))
        if not hmac.compare_digest(grant._signature(secret), match["sig"]):
            raise PermissionDenied("The upload URL signature does not match.", code="AccessDenied")
        if grant.expires < now:
            raise PermissionDenied("The upload policy has expired.", code="AccessDenied")
        return grant


def _policy_signature(secret: str, policy: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()


def _over_allowance(svc: ServicesDep) -> RateLimited:
    allowance = svc.settings.upload_allowance_bytes
    return RateLimited(
        f"This key's upload allowance ({allowance} bytes a day) is used up; try again later.",
        retry_after=3600,
        code="Throttling.AllocationQuota",
        param="file",
    )


async def _upload_room(key_id: str, svc: ServicesDep) -> int:
    """Bytes the key may upload now; RateLimited when its allowance is used up."""
    allowance = svc.settings.upload_allowance_bytes
    remaining = await upload_flow.remaining_allowance(svc.db, key_id=key_id, allowance=allowance, now=time.time())
    if remaining <= 0:
        raise _over_allowance(svc)
    return remaining


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
    limit = min(svc.settings.max_upload_bytes, await _upload_room(key.id, svc))
    grant = UploadGrant(key.id, secrets.token_hex(8), int(time.time()) + UPLOAD_POLICY_TTL_S)
    upload_dir = f"dashscope-instant/{key.id}/{datetime.now(UTC):%Y-%m-%d}/{grant.policy_id}"
    claims = {
        "expiration": grant.expires,
        "key_id": key.id,
        "policy_id": grant.policy_id,
        "dir": upload_dir,
        "max_bytes": limit,
    }
    policy = base64.b64encode(orjson.dumps(claims)).decode()
    # The upload host is vidgate itself, under the same prefix the client used.
    prefix = "/alibailian/api/v1" if request.url.path.startswith("/alibailian/") else "/api/v1"
    data = {
        "policy": policy,
        "signature": _policy_signature(svc.settings.secret, policy),
        "upload_dir": upload_dir,
        "upload_host": f"{svc.settings.public_url}{prefix}/uploads/oss/{grant.token(svc.settings.secret)}",
        "expire_in_seconds": UPLOAD_POLICY_TTL_S,
        "max_file_size_mb": max(1, limit // (1024 * 1024)),
        "capacity_limit_mb": max(1, svc.settings.upload_allowance_bytes // (1024 * 1024)),
        "oss_access_key_id": "vidgate",
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    }
    return json_response({"request_id": request_id(), "data": data})


@router.post("/uploads/oss", include_in_schema=False)
async def upload_without_grant() -> Response:
    """Upload URLs from before signed grants (or typed by hand): refused without reading the body."""
    raise PermissionDenied("This upload URL carries no grant; get a new policy from GET /uploads.", code="AccessDenied")


@router.post(
    "/uploads/oss/{grant}",
    summary="Upload host (form POST named by the policy)",
    response_class=Response,
    responses={200: {"description": "Stored (empty body)."}, **dashscope_errors(400, 403, 413, 429)},
    openapi_extra={"requestBody": UPLOAD_FORM},
)
async def upload_file(grant: str, request: Request, svc: ServicesDep) -> Response:
    """Receive one file under a policy from GET /uploads; no Authorization header (the signed URL and the
    policy are the proof, and the URL is checked before the body is read)."""
    allowed = UploadGrant.read(grant, svc.settings.secret, now=time.time())
    await _refuse_revoked(svc, key_id=allowed.key_id)
    if await upload_store.policy_used(svc.db, policy_id=allowed.policy_id):
        raise PermissionDenied("This upload policy was already used (one object per policy).", code="AccessDenied")
    room = await _upload_room(allowed.key_id, svc)
    limit = min(svc.settings.max_upload_bytes, room)
    over = _over_allowance(svc) if room < svc.settings.max_upload_bytes else None
    too_big = over or PayloadTooLarge(f"The file is larger than {limit} bytes.", param="file")
    limits.lower_cap(request.scope, limit + limits.FORM_OVERHEAD, too_big)
    # Only now is the body read.
    form = await _upload_form(request)
    try:
        upload, key, content_type = _checked_form(form, allowed, svc)
        stored = await _store_upload(
            svc, upload, key=key, grant=allowed, content_type=content_type, cap=(limit, too_big)
        )
    finally:
        await form.close()
    if stored == "taken":
        raise PermissionDenied("This upload policy was already used (one object per policy).", code="AccessDenied")
    if stored == "over_allowance":
        raise _over_allowance(svc)
    return Response(status_code=200)


async def _upload_form(request: Request) -> Any:
    try:
        return await request.form(max_files=4, max_fields=20, max_part_size=64 * 1024)
    except HTTPException as exc:
        raise InvalidRequest(f"The upload form could not be read: {exc.detail}", param="file") from exc


def _checked_form(form: Any, grant: UploadGrant, svc: ServicesDep) -> tuple[UploadFile, str, str]:
    """(file, object key, content type) from a form whose policy is ours, matches the grant and names the key."""
    policy, signature, key = (form.get(name) for name in ("policy", "Signature", "key"))
    if not (isinstance(policy, str) and isinstance(signature, str) and isinstance(key, str) and policy and key):
        raise PermissionDenied("policy, Signature and key are required.", code="AccessDenied")
    if not media.same_signature(_policy_signature(svc.settings.secret, policy), signature):
        raise PermissionDenied("The upload policy signature does not match.", code="AccessDenied")
    claims = _claims(policy)
    if claims.get("policy_id") != grant.policy_id or claims.get("key_id") != grant.key_id:
        raise PermissionDenied(
            "The policy in the form is not the one this upload URL was made for.", code="AccessDenied"
        )
    folder = claims.get("dir")
    if not isinstance(folder, str) or not key.startswith(folder + "/") or ".." in key or len(key) > 400:
        raise PermissionDenied("The key is outside the policy's upload_dir.", code="AccessDenied")
    files = form.getlist("file")
    if len(files) > 1:
        raise InvalidRequest("The form has more than one part named file; send one file per policy.", param="file")
    upload = files[0] if files else None
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("The form needs a file part named file.", param="file")
    content_type = str(form.get("x-oss-content-type") or upload.content_type or mimetypes.guess_type(key)[0] or "")
    if not content_type.startswith(_UPLOAD_TYPES):
        raise InvalidRequest(
            f"Only image, audio and video files can be uploaded (got {content_type or 'unknown'}).", param="file"
        )
    return upload, key, content_type


def _claims(policy: str) -> dict[str, Any]:
    # Signed by us, so well-formed unless the secret leaked; still never a 500.
    try:
        claims = orjson.loads(base64.b64decode(policy, validate=True))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise PermissionDenied("The upload policy is malformed.", code="AccessDenied") from exc
    if not isinstance(claims, dict):
        raise PermissionDenied("The upload policy is malformed.", code="AccessDenied")
    return claims


async def _refuse_revoked(svc: ServicesDep, *, key_id: str) -> None:
    """An upload policy goes with the key it was issued to: once that key is revoked, the policy is refused."""
    if not await key_store.is_active(svc.db, key_id=key_id):
        raise PermissionDenied("The key this upload policy was issued to has been revoked.", code="AccessDenied")


async def _store_upload(
    svc: ServicesDep,
    upload: UploadFile,
    *,
    key: str,
    grant: UploadGrant,
    content_type: str,
    cap: tuple[int, ClientError],
) -> upload_store.Stored:
    limit, too_big = cap
    relative = f"uploads/{hashlib.sha256(key.encode()).hexdigest()}{mimetypes.guess_extension(content_type) or ''}"
    # Received into a local temp file first (capped as it arrives), then stored.
    partial = svc.settings.media_dir / f"{relative}.{secrets.token_hex(4)}.part"
    partial.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with partial.open("wb") as handle:
            while chunk := await upload.read(1024 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_big
                handle.write(chunk)
        if size == 0:
            raise InvalidRequest("The uploaded file is empty.", param="file")
        now = time.time()
        stored = await upload_store.insert_upload(
            svc.db,
            key=key,
            key_id=grant.key_id,
            path=relative,
            size=size,
            content_type=content_type,
            policy_id=grant.policy_id,
            allowance=svc.settings.upload_allowance_bytes,
            since=now - upload_flow.ALLOWANCE_WINDOW_S,
            now=now,
        )
        if stored == "stored":
            try:
                await svc.storage.put_file(relative, partial, content_type=content_type)
            except StorageUnavailable:
                await upload_store.forget_uploads(svc.db, keys=[key])
                raise
        return stored
    finally:
        partial.unlink(missing_ok=True)
