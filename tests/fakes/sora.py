"""OpenAI Videos API (Sora 2) emulator, per providers.md §1 and §6.1.

Endpoints (all under /v1, Bearer auth):
  POST   /videos                       create (multipart or JSON)
  GET    /videos/{id}                  retrieve; every call is one poll and may move the job on
  GET    /videos                       list (after / limit / order)
  DELETE /videos/{id}                  delete a completed or failed job
  GET    /videos/{id}/content          bytes: ?variant=video (MP4) | thumbnail (WebP) | spritesheet (JPEG)
  POST   /videos/{id}/remix            new job from a completed one (JSON or multipart {prompt})

Lifecycle: the create answer shows `queued`; then each state is shown for `polls_per_step` retrieves:
queued (0 %) -> in_progress (50 %) -> completed (100 %) or failed. With polls_per_step=1 the first retrieve
answers in_progress and the second completed.

Fault call names (for `faults.queue(call, ...)`): "submit" (create), "remix", "poll" (retrieve), "list",
"delete", "download" (content). "unknown_status" only changes answers that carry Video objects (status
"weird"); "not_found" answers 404 anywhere; "drop_reply" does the work, then answers 500. On create and
remix, "slow_reply" makes the job, then holds the answer `faults.slow_s`; "cut" makes the job, then drops the
connection without an answer.

Choices where the real service is not documented (providers.md §7.1):
  - content of a job that is not completed: 400 invalid_request_error, code null (not 404, so a client can
    tell "not ready" from "no such video"); content after `expires_at`: 404 invalid_request_error.
  - `expires_at` = completed_at + `asset_ttl_s` (default 3600, "about 1 hour").
  - list defaults: limit 20, order desc; an unknown `after` id answers 404 with param "after".
  - unknown request fields answer 400 `unknown_parameter`, as OpenAI's newer endpoints do.
  - error codes for a bad image are `invalid_value`, for a missing prompt `missing_required_parameter`.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream, Fault, InjectedFault, Recorded, make_mp4

# Every accepted model name and the family it belongs to (the family decides the allowed sizes).
MODELS: dict[str, str] = {
    "sora-2": "sora-2",
    "sora-2-2025-10-06": "sora-2",
    "sora-2-2025-12-08": "sora-2",
    "sora-2-pro": "sora-2-pro",
    "sora-2-pro-2025-10-06": "sora-2-pro",
}
SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SIZES_BY_FAMILY: dict[str, tuple[str, ...]] = {"sora-2": SIZES[:2], "sora-2-pro": SIZES}
VARIANTS = ("video", "thumbnail", "spritesheet")
CREATE_FIELDS = ("prompt", "model", "seconds", "size", "input_reference")
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
PROMPT_MAX = 32000
# (status, progress) in order; a job walks this list one step per `polls_per_step` retrieves.
STEPS: tuple[tuple[str, int], ...] = (("queued", 0), ("in_progress", 50), ("completed", 100))
MODERATION = ("moderation_blocked", "Your request was blocked by our moderation system.")
DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
CONTENT_TYPES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}


class ApiError(Exception):
    """An OpenAI-shaped error answer: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


@dataclass
class SoraTask:
    """One video job as the emulator keeps it."""

    id: str
    model: str
    prompt: str
    size: str
    seconds: str
    created_at: int
    seq: int
    step: int = 0
    polls: int = 0
    status: str = "queued"
    progress: int = 0
    completed_at: int | None = None
    expires_at: int | None = None
    error: dict[str, str] | None = None
    remixed_from_video_id: str | None = None
    input_reference: dict[str, Any] | None = None
    fail_with: tuple[str, str] | None = None
    assets: dict[str, bytes] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed")

    def to_json(self, status: str | None = None) -> dict[str, Any]:
        """The §1.5 Video object, every key present."""
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": status or self.status,
            "progress": self.progress,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expires_at": self.expires_at,
            "prompt": self.prompt,
            "size": self.size,
            "seconds": self.seconds,
            "remixed_from_video_id": self.remixed_from_video_id,
            "error": self.error,
        }


# -- messages in OpenAI's wording ------------------------------------------------------------------------


def quoted_list(values: Sequence[str], conjunction: str = "and") -> str:
    """'a' and 'b' / 'a', 'b', and 'c' (OpenAI uses the serial comma)."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return f" {conjunction} ".join(quoted)
    return ", ".join(quoted[:-1]) + f", {conjunction} " + quoted[-1]


def json_type_name(value: Any) -> str:
    """How OpenAI names a JSON value's type in `invalid_type` messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def invalid_type(param: str, expected: str, value: Any) -> ApiError:
    message = f"Invalid type for '{param}': expected {expected}, but got {json_type_name(value)} instead."
    return ApiError(400, message, param=param, code="invalid_type")


def invalid_value(param: str, value: str, allowed: Sequence[str], suffix: str = "") -> ApiError:
    message = f"Invalid value: '{value}'. Supported values{suffix} are: {quoted_list(allowed)}."
    return ApiError(400, message, param=param, code="invalid_value")


def not_found(video_id: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"Video with id '{video_id}' not found.", param=param)


def server_error(status: int = 500) -> ApiError:
    if status == 503:
        message = "The engine is currently overloaded, please try again later."
    else:
        message = "The server had an error while processing your request. Sorry about that!"
    return ApiError(status, message, type_="server_error")


def mask_key(key: str) -> str:
    """OpenAI echoes a wrong key only partly: first 8 and last 4 characters."""
    return f"{key[:8]}{'*' * max(len(key) - 12, 4)}{key[-4:]}" if len(key) > 12 else key


# -- request validation -----------------------------------------------------------------------------------


def scaled(size: str, factor: int = 8) -> tuple[int, int]:
    """WxH divided by `factor`, rounded to even numbers (H.264 needs even dimensions)."""
    width, height = (int(part) for part in size.split("x"))
    return max(2, round(width / factor / 2) * 2), max(2, round(height / factor / 2) * 2)


def check_image(data: bytes, size: str, param: str = "input_reference") -> tuple[int, int]:
    """The reference must be a jpeg/png/webp image of exactly the requested size."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image_format, dims = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        message = (
            f"Invalid file '{param}': could not read the image. "
            f"Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
        )
        raise ApiError(400, message, param=param, code="invalid_value") from exc
    if image_format not in IMAGE_FORMATS:
        message = (
            f"Invalid file '{param}': unsupported image format ({image_format}). "
            f"Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
        )
        raise ApiError(400, message, param=param, code="invalid_value")
    width, height = (int(part) for part in size.split("x"))
    if dims != (width, height):
        raise ApiError(
            400, "Inpaint image must match the requested width and height", param=param, code="invalid_value"
        )
    return dims


def check_prompt(fields: Mapping[str, Any]) -> str:
    if "prompt" not in fields or fields["prompt"] is None:
        raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    prompt = fields["prompt"]
    if not isinstance(prompt, str):
        raise invalid_type("prompt", "a string", prompt)
    if not prompt:
        message = (
            "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead."
        )
        raise ApiError(400, message, param="prompt", code="string_below_min_length")
    if len(prompt) > PROMPT_MAX:
        message = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length {PROMPT_MAX}, "
            f"but got a string with length {len(prompt)} instead."
        )
        raise ApiError(400, message, param="prompt", code="string_above_max_length")
    return prompt


def check_choice(fields: Mapping[str, Any], param: str, allowed: Sequence[str], default: str) -> str:
    """A string enum field; JSON non-strings get `invalid_type` ("expected one of ... or ...")."""
    value = fields.get(param)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid_type(param, f"one of {quoted_list(allowed, 'or')}", value)
    if value not in allowed:
        raise invalid_value(param, value, allowed)
    return value


def check_reference_object(ref: Any, size: str) -> dict[str, Any]:
    """JSON `input_reference`: exactly one of {image_url} (data URL or http(s) URL) or {file_id}."""
    if not isinstance(ref, dict):
        raise invalid_type("input_reference", "an object", ref)
    for key in ref:
        if key not in ("image_url", "file_id"):
            raise ApiError(
                400,
                f"Unknown parameter: 'input_reference.{key}'.",
                param=f"input_reference.{key}",
                code="unknown_parameter",
            )
    present = [key for key in ("image_url", "file_id") if ref.get(key) is not None]
    if len(present) != 1:
        raise ApiError(
            400,
            "Invalid 'input_reference': expected exactly one of 'image_url' or 'file_id'.",
            param="input_reference",
            code="invalid_value",
        )
    key = present[0]
    value = ref[key]
    param = f"input_reference.{key}"
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if key == "file_id":
        if not value:
            raise ApiError(400, f"Invalid '{param}': empty string.", param=param, code="invalid_value")
        return {"kind": "file_id", "file_id": value}
    if value.startswith(("http://", "https://")):
        # A remote image is accepted as is: the emulator never fetches it.
        return {"kind": "image_url", "url": value}
    match = DATA_URL.match(value)
    if match is None:
        raise ApiError(
            400,
            f"Invalid '{param}': expected a valid URL or a base64-encoded data URL.",
            param=param,
            code="invalid_value",
        )
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(
            400, f"Invalid '{param}': the data URL is not valid base64.", param=param, code="invalid_value"
        ) from exc
    dims = check_image(data, size, param)
    return {"kind": "data_url", "mime": match["mime"], "size": dims, "bytes": len(data)}


@dataclass(frozen=True)
class UploadedFile:
    """A multipart file part (record() keeps them as dicts; this keeps them apart from nested objects)."""

    filename: str | None
    content_type: str | None
    data: bytes


def check_reference_file(ref: UploadedFile, size: str) -> dict[str, Any]:
    dims = check_image(ref.data, size)
    return {"kind": "file", "filename": ref.filename, "content_type": ref.content_type, "size": dims}


def check_reference(ref: Any, size: str, multipart: bool) -> dict[str, Any]:
    """Multipart: a file part or `input_reference[...]` fields; JSON: an object. A multipart string is refused."""
    if isinstance(ref, UploadedFile):
        return check_reference_file(ref, size)
    if multipart and isinstance(ref, str):
        raise ApiError(
            400,
            "Invalid type for 'input_reference': expected a file, but got a string instead.",
            param="input_reference",
            code="invalid_type",
        )
    return check_reference_object(ref, size)


def form_fields(form: Mapping[str, Any]) -> dict[str, Any]:
    """Multipart fields, with `input_reference[image_url]`-style keys folded into an object."""
    fields: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for key, value in form.items():
        if isinstance(value, dict):
            value = UploadedFile(value["filename"], value["content_type"], value["data"])
        match = re.fullmatch(r"input_reference\[(\w+)\]", key)
        if match:
            nested[match[1]] = value
        else:
            fields[key] = value
    if nested:
        if "input_reference" in fields:
            raise ApiError(
                400,
                "Invalid 'input_reference': given both as a file and as an object.",
                param="input_reference",
                code="invalid_value",
            )
        fields["input_reference"] = nested
    return fields


def request_fields(entry: Recorded) -> tuple[dict[str, Any], bool]:
    """(fields, is_multipart) of a create/remix body; anything but JSON or multipart is refused."""
    content_type = entry.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return form_fields(entry.form), True
    if "json" in content_type:
        try:
            data = orjson.loads(entry.body)
        except orjson.JSONDecodeError as exc:
            message = (
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                "sent was not valid JSON.)"
            )
            raise ApiError(400, message) from exc
        if not isinstance(data, dict):
            raise invalid_type("body", "an object", data)
        return data, False
    raise ApiError(
        400,
        f"Unsupported content type: '{content_type or 'none'}'. "
        "This API method only accepts 'application/json' and 'multipart/form-data' requests.",
    )


def reject_unknown(fields: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in fields:
        if key not in allowed:
            raise ApiError(400, f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")


# -- the emulator ----------------------------------------------------------------------------------------

Handler = Callable[[Request, Recorded, Fault | None], Awaitable[Response]]


class FakeSora(FakeUpstream):
    """The OpenAI Videos API as an upstream; see the module docstring for behaviour and choices."""

    name = "sora"

    def __init__(
        self,
        api_keys: frozenset[str] = frozenset({"sk-openai-test"}),
        polls_per_step: int = 1,
        other_models: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None,
    ) -> None:
        """`other_models`: model -> (seconds, sizes) it takes besides Sora's own, as another OpenAI-format server
        (a self-hosted model, another gateway) would serve them; Sora's models keep Sora's rules."""
        if polls_per_step < 1:
            raise ValueError("polls_per_step must be >= 1")
        self.api_keys = api_keys
        self.other_models = dict(other_models or {})
        self.polls_per_step = polls_per_step
        self.tasks: dict[str, SoraTask] = {}
        self.deleted: dict[str, SoraTask] = {}
        self.poll_after_ms = 20  # small so the SDK's poll() helper stays fast
        self.retry_after_s = 1
        self.asset_ttl_s = 3600
        self.video_fps = 24
        self._fail_queue: deque[tuple[str, str]] = deque()
        self._seq = 0
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos", self._endpoint("submit", self._create), methods=["POST"]),
            Route("/v1/videos", self._endpoint("list", self._list), methods=["GET"]),
            Route("/v1/videos/{video_id}", self._endpoint("poll", self._retrieve), methods=["GET"]),
            Route("/v1/videos/{video_id}", self._endpoint("delete", self._delete), methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", self._endpoint("download", self._content), methods=["GET"]),
            Route("/v1/videos/{video_id}/remix", self._endpoint("remix", self._remix), methods=["POST"]),
        ]

    def fault_response(self, kind: Fault) -> Response:
        if kind == "429":
            error = ApiError(
                429,
                "Rate limit reached for videos in organization org-fake on requests per minute (RPM): "
                "Limit 25, Used 25, Requested 1. Please try again in 2.4s.",
                type_="requests",
                code="rate_limit_exceeded",
                headers={
                    "retry-after": str(self.retry_after_s),
                    "x-ratelimit-limit-requests": "25",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": "2.4s",
                },
            )
            return error.response()
        return server_error(int(kind) if kind.isdigit() else 500).response()

    # -- knobs for tests ------------------------------------------------------------------------------

    def fail_next(self, code: str, message: str) -> None:
        """The next job created (create or remix) ends `failed` with this error."""
        self._fail_queue.append((code, message))

    def advance(self, video_id: str, steps: int = 1) -> SoraTask:
        """Move a job on without polling (e.g. to get a completed remix source quickly)."""
        task = self.tasks[video_id]
        for _ in range(steps):
            self._step(task)
        return task

    # -- plumbing -------------------------------------------------------------------------------------

    def _endpoint(self, call: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Record, authenticate, apply the queued fault, then run the handler; ApiError becomes its answer."""

        async def endpoint(request: Request) -> Response:
            entry = await self.record(request)
            # record() copied the parts; closing the form frees its spooled upload files (else ResourceWarning).
            await request.close()
            try:
                self._authorize(entry)
                try:
                    await self.fault(call)
                    kind: Fault | None = None
                except InjectedFault as exc:
                    if exc.response is not None:
                        return exc.response
                    kind = exc.kind
                if kind == "not_found":
                    raise ApiError(404, f"Invalid URL ({request.method} {request.url.path})")
                return await handler(request, entry, kind)
            except ApiError as exc:
                return exc.response()

        return endpoint

    def _authorize(self, entry: Recorded) -> None:
        header = entry.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            raise ApiError(401, message, code="invalid_api_key")
        key = header[7:].strip()
        if key not in self.api_keys:
            message = (
                f"Incorrect API key provided: {mask_key(key)}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            raise ApiError(401, message, code="invalid_api_key")

    def _video_response(self, task: SoraTask, kind: Fault | None) -> JSONResponse:
        status = "weird" if kind == "unknown_status" else None
        headers = {"openai-poll-after-ms": str(self.poll_after_ms), "x-request-id": f"req_{secrets.token_hex(16)}"}
        return JSONResponse(task.to_json(status), headers=headers)

    def _task(self, video_id: str) -> SoraTask:
        task = self.tasks.get(video_id)
        if task is None:
            raise not_found(video_id)
        return task

    def _new_task(self, *, model: str, prompt: str, size: str, seconds: str, **extra: Any) -> SoraTask:
        self._seq += 1
        fail_with = self._fail_queue.popleft() if self._fail_queue else None
        if fail_with is None and "FAIL" in prompt:
            fail_with = MODERATION
        task = SoraTask(
            id=f"video_{secrets.token_hex(24)}",
            model=model,
            prompt=prompt,
            size=size,
            seconds=seconds,
            created_at=int(time.time()),
            seq=self._seq,
            fail_with=fail_with,
            **extra,
        )
        self.tasks[task.id] = task
        return task

    def _step(self, task: SoraTask) -> None:
        """One move along queued -> in_progress -> completed|failed; terminal jobs stay put."""
        if task.terminal:
            return
        task.step += 1
        if task.step < len(STEPS) - 1:
            task.status, task.progress = STEPS[task.step]
            return
        now = int(time.time())
        if task.fail_with is not None:
            code, message = task.fail_with
            task.status, task.error = "failed", {"code": code, "message": message}
        else:
            task.status, task.progress = STEPS[-1]
            task.expires_at = now + self.asset_ttl_s
        task.completed_at = now

    # -- handlers -------------------------------------------------------------------------------------

    async def _create(self, request: Request, entry: Recorded, kind: Fault | None) -> Response:
        fields, multipart = request_fields(entry)
        reject_unknown(fields, CREATE_FIELDS)
        prompt = check_prompt(fields)
        model = check_choice(fields, "model", (*MODELS, *self.other_models), "sora-2")
        if model in self.other_models:
            other_seconds, other_sizes = self.other_models[model]
            seconds = check_choice(fields, "seconds", tuple(other_seconds), other_seconds[0])
            size = check_choice(fields, "size", tuple(other_sizes), other_sizes[0])
        else:
            seconds = check_choice(fields, "seconds", SECONDS, "4")
            size = check_choice(fields, "size", SIZES, "720x1280")
            allowed_sizes = SIZES_BY_FAMILY[MODELS[model]]
            if size not in allowed_sizes:
                raise invalid_value("size", size, allowed_sizes, f" for model '{model}'")
        reference = None
        if fields.get("input_reference") is not None:
            reference = check_reference(fields["input_reference"], size, multipart)
        task = self._new_task(model=model, prompt=prompt, size=size, seconds=seconds, input_reference=reference)
        if kind == "drop_reply":
            raise server_error()
        return await self.after_work(kind) or self._video_response(task, kind)

    async def _retrieve(self, request: Request, entry: Recorded, kind: Fault | None) -> Response:
        task = self._task(request.path_params["video_id"])
        task.polls += 1
        # The create answer showed step 0 once; each state is then shown polls_per_step times in all.
        while not task.terminal and task.step < task.polls // self.polls_per_step:
            self._step(task)
        if kind == "drop_reply":
            raise server_error()
        return self._video_response(task, kind)

    async def _list(self, request: Request, entry: Recorded, kind: Fault | None) -> Response:
        limit = self._limit(entry.query.get("limit"))
        order = entry.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid_value("order", order, ("asc", "desc"))
        ordered = sorted(self.tasks.values(), key=lambda t: t.seq, reverse=order == "desc")
        after = entry.query.get("after")
        if after:
            ids = [t.id for t in ordered]
            if after not in ids:
                raise not_found(after, param="after")
            ordered = ordered[ids.index(after) + 1 :]
        page = ordered[:limit]
        if kind == "drop_reply":
            raise server_error()
        status = "weird" if kind == "unknown_status" else None
        return JSONResponse(
            {
                "object": "list",
                "data": [t.to_json(status) for t in page],
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(ordered) > len(page),
            }
        )

    @staticmethod
    def _limit(raw: str | None) -> int:
        if raw is None:
            return 20
        try:
            limit = int(raw)
        except ValueError as exc:
            raise invalid_type("limit", "an integer", raw) from exc
        if limit < 0:
            raise ApiError(
                400,
                f"Invalid 'limit': integer below minimum value. Expected a value >= 0, but got {limit} instead.",
                param="limit",
                code="integer_below_min_value",
            )
        if limit > 100:
            raise ApiError(
                400,
                f"Invalid 'limit': integer above maximum value. Expected a value <= 100, but got {limit} instead.",
                param="limit",
                code="integer_above_max_value",
            )
        return limit

    async def _delete(self, request: Request, entry: Recorded, kind: Fault | None) -> Response:
        task = self._task(request.path_params["video_id"])
        if not task.terminal:
            raise ApiError(
                400,
                f"Video '{task.id}' is still {task.status} and cannot be deleted; "
                "only completed or failed videos can be deleted.",
            )
        self.deleted[task.id] = self.tasks.pop(task.id)
        if kind == "drop_reply":
            raise server_error()
        return JSONResponse({"id": task.id, "object": "video.deleted", "deleted": True})

    async def _content(self, request: Request, entry: Recorded, kind: Fault | None) -> Response:
        task = self._task(request.path_params["video_id"])
        variant = entry.query.get("variant", "video")
        if variant not in VARIANTS:
            raise invalid_value("variant", variant, VARIANTS)
        if task.status == "failed":
            raise ApiError(400, f"Video '{task.id}' failed; no content is available.")
        if task.status != "completed":
            raise ApiError(
                400,
                f"Video '{task.id}' is not ready yet (status: {task.status}). "
                "Use GET /v1/videos/{video_id} to check its status.",
            )
        if task.expires_at is not None and task.expires_at < time.time():
            raise ApiError(404, f"The content for video '{task.id}' has expired.")
        if variant not in task.assets:
            # Encoding happens off the event loop so other requests are not held up.
            task.assets[variant] = await run_in_threadpool(self._render, task, variant)
        if kind == "drop_reply":
            raise server_error()
        return Response(task.assets[variant], media_type=CONTENT_TYPES[variant])

    def _render(self, task: SoraTask, variant: str) -> bytes:
        width, height = scaled(task.size)
        if variant == "video":
            return make_mp4(width, height, seconds=int(task.seconds), fps=self.video_fps, seed=task.seq)
        if variant == "thumbnail":
            buffer = io.BytesIO()
            Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, format="WEBP")
            return buffer.getvalue()
        # Spritesheet: a row of frames, each a different shade, like a scrub-bar preview strip.
        frames = 4
        sheet = Image.new("RGB", (width * frames, height))
        for index in range(frames):
            sheet.paste(Image.new("RGB", (width, height), (60 * index, 100, 200 - 40 * index)), (width * index, 0))
        buffer = io.BytesIO()
        sheet.save(buffer, format="JPEG", quality=80)
        return buffer.getvalue()

    async def _remix(self, request: Request, entry: Recorded, kind: Fault | None) -> Response:
        source = self._task(request.path_params["video_id"])
        fields, _ = request_fields(entry)
        reject_unknown(fields, ("prompt",))
        prompt = check_prompt(fields)
        if source.status != "completed":
            raise ApiError(
                400, f"Video '{source.id}' is {source.status}; only completed videos can be remixed.", param="video_id"
            )
        task = self._new_task(
            model=source.model, prompt=prompt, size=source.size, seconds=source.seconds, remixed_from_video_id=source.id
        )
        if kind == "drop_reply":
            raise server_error()
        return await self.after_work(kind) or self._video_response(task, kind)
