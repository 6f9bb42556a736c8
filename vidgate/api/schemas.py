"""Response and request shapes, for the OpenAPI document at /docs (handlers write JSON directly).

The document is tested against the running server (tests/test_fuzz.py, schemathesis): every shape here is
closed (`additionalProperties: false`) and every status a route answers is listed, so a field or a status
added to a handler and not here fails the suite.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field


class Shape(BaseModel):
    """A response shape: the handler writes exactly these fields, no others."""

    model_config = ConfigDict(extra="forbid")


class VideoError(Shape):
    code: str
    message: str


class Video(Shape):
    id: str = Field(examples=["video_4f1c0d3e9b8a47c6a1e2f3d4c5b6a7e8"])
    object: Literal["video"] = "video"
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None
    expires_at: int | None
    seconds: str
    size: str
    prompt: str | None
    remixed_from_video_id: str | None
    error: VideoError | None


class VideoList(Shape):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedVideo(Shape):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


class ParamInfo(Shape):
    type: Literal["bool", "int", "number", "string", "object"]
    allowed: str = Field(description="What the parameter accepts, in words.")
    choices: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    description: str | None = None


class ModelInfo(Shape):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = Field(description="The provider.")
    modes: list[Literal["t2v", "i2v", "kf2v", "a2v"]]
    seconds: list[str]
    default_seconds: str
    sizes: list[str] = Field(description="Allowed sizes and tiers.")
    size_range: list[int] | None = Field(description="[min, max] pixels per side when any even WxH is allowed.")
    tiers: dict[str, str] = Field(description="Tier name -> WxH.")
    default_size: str
    audio: bool
    remix: bool
    metadata_keys: list[str] = Field(description="The metadata keys this model takes (media keys and params).")
    params: dict[str, ParamInfo] = Field(description="The extra parameters (metadata.<name>) and what each accepts.")
    price: str | dict[str, str] | None = Field(description="USD per second of output; per tier when it varies.")
    description: str


class ModelList(Shape):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class UsageDay(Shape):
    date: str
    model: str
    amount_usd: str
    videos: int


class Usage(Shape):
    object: Literal["usage"] = "usage"
    key_id: str
    spent_usd: str = Field(description="Exact decimal USD.")
    quota_usd: str | None
    remaining_usd: str | None
    data: list[UsageDay]


# -- errors --------------------------------------------------------------------------------------------


class OpenAIErrorDetail(Shape):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(Shape):
    """The OpenAI error envelope (every /v1 route and the operator routes)."""

    error: OpenAIErrorDetail


class DashScopeError(Shape):
    """The DashScope error body (every /api/v1 route)."""

    request_id: str
    code: str
    message: str


_WHY = {
    400: "Invalid request: the message and `param` name the field.",
    401: "Missing or unknown API key.",
    403: "The key may not do this.",
    404: "No such object for this key.",
    409: "Conflict with the object's state.",
    413: "The request body or a file is larger than max_upload_bytes.",
    429: "Rate limit, quota or full channels; see retry-after.",
    500: "A bug in vidgate (the log has the details).",
    503: "No upstream channel can take the request now; see retry-after.",
    502: "The upstreams answered with server errors; see retry-after.",
}


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses, in the OpenAI error envelope."""
    return {status: {"model": OpenAIError, "description": _WHY[status]} for status in statuses}


def dashscope_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses, in the DashScope error body."""
    return {status: {"model": DashScopeError, "description": _WHY[status]} for status in statuses}


def text(description: str) -> dict[str, Any]:
    """A plain-text response."""
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


# Every route behind an API key can answer these.
KEYED = (401, 429, 500)


# -- operators -------------------------------------------------------------------------------------------


class Health(Shape):
    status: Literal["ok"]


class ReadyChecks(Shape):
    database: str
    poller: str
    media_dir: str


class Ready(Shape):
    status: Literal["ok", "unavailable"]
    failing: list[Literal["database", "poller", "media_dir"]]
    checks: ReadyChecks


# -- DashScope ---------------------------------------------------------------------------------------------

TaskStatusName = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"]


class SubmittedOutput(Shape):
    task_id: str
    task_status: Literal["PENDING"]


class Submitted(Shape):
    request_id: str
    output: SubmittedOutput


class TaskOutput(Shape):
    """A task's `output`; fields without a value are left out, as DashScope does."""

    task_id: str
    task_status: TaskStatusName
    submit_time: str = Field(default="", description="YYYY-MM-DD hh:mm:ss.mmm, UTC")
    scheduled_time: str = ""
    end_time: str = ""
    orig_prompt: str = ""
    actual_prompt: str = ""
    video_url: str = Field(default="", description="Signed, expiring URL of the video (SUCCEEDED).")
    code: str = Field(default="", description="Why it failed (FAILED, CANCELED).")
    message: str = ""


class TaskUsage(Shape):
    video_duration: int
    video_count: int
    video_ratio: str


class Task(Shape):
    request_id: str
    output: TaskOutput
    usage: TaskUsage | None = Field(default=None, description="Absent for an UNKNOWN task.")


class ListedTask(TaskOutput):
    model_name: str
    status: TaskStatusName
    usage: TaskUsage


class TaskList(Shape):
    request_id: str
    data: list[ListedTask]
    tasks: list[ListedTask] = Field(description="The same rows as `data`.")
    total: int
    total_page: int
    page_no: int
    page_size: int


class Cancelled(Shape):
    request_id: str


class UploadPolicyData(Shape):
    policy: str
    signature: str
    upload_dir: str
    upload_host: str
    expire_in_seconds: int
    max_file_size_mb: int
    capacity_limit_mb: int
    oss_access_key_id: str
    x_oss_object_acl: str
    x_oss_forbid_overwrite: str


class UploadPolicy(Shape):
    request_id: str
    data: UploadPolicyData


_CREATE_FIELDS: dict[str, Any] = {
    "prompt": {"type": "string", "description": "What the video shows (required)."},
    "model": {"type": "string", "description": "A model from GET /v1/models; defaults to the configured one."},
    "seconds": {"type": "string", "description": "Length in seconds, as the model allows (string or integer)."},
    "size": {"type": "string", "description": "WxH, W*H, or a tier 480P/720P/1080P."},
    "resolution": {"type": "string", "description": "A tier (480P/720P/1080P); alias of a tier size."},
    "metadata": {"type": "string", "description": "JSON object (or JSON string) of provider extras."},
}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


_CREATE_EXAMPLE = {"prompt": "a red fox in the snow", "model": "vidgate-local", "seconds": "1", "size": "64x64"}
CREATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "example": _CREATE_EXAMPLE,
            "schema": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    **_CREATE_FIELDS,
                    "input_reference": {"type": "string", "format": "binary", "description": "First-frame image."},
                },
            },
        },
        "application/json": {
            "example": _CREATE_EXAMPLE,
            "schema": {
                "type": "object",
                "required": ["prompt"],
                # In JSON, null is the same as leaving a field out.
                "properties": {
                    "prompt": _CREATE_FIELDS["prompt"],
                    **{name: _or_null(_CREATE_FIELDS[name]) for name in ("model", "size", "resolution")},
                    "seconds": {**_CREATE_FIELDS["seconds"], "type": ["string", "integer", "null"]},
                    "metadata": {**_CREATE_FIELDS["metadata"], "type": ["object", "string", "null"]},
                    "input_reference": {
                        "description": "An image URL or data: URI, or {image_url}.",
                        "anyOf": [
                            {"type": "string"},
                            {"type": "object", "properties": {"image_url": {"type": "string"}}},
                            {"type": "null"},
                        ],
                    },
                },
            },
        },
    },
}
_REMIX_SCHEMA = {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}}
REMIX_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": _REMIX_SCHEMA, "example": {"prompt": "the same fox, at night"}},
        "multipart/form-data": {"schema": _REMIX_SCHEMA, "example": {"prompt": "the same fox, at night"}},
    },
}


_MEDIA_URL = {"type": "string", "description": "An http(s) URL, a data: URI or (with the resolve header) oss://KEY."}
_SYNTHESIS_INPUT = {
    "prompt": {"type": "string"},
    "negative_prompt": {"type": "string"},
    "img_url": _MEDIA_URL,
    "first_frame_url": _MEDIA_URL,
    "last_frame_url": _MEDIA_URL,
    "audio_url": _MEDIA_URL,
    "template": {"type": "string"},
}
_SYNTHESIS_PARAMETERS = {
    "duration": {"type": "integer", "description": "Seconds, as the model allows."},
    "size": {"type": "string", "description": "W*H (text-to-video)."},
    "resolution": {"type": "string", "description": "480P/720P/1080P (image-to-video)."},
    "seed": {"type": "integer"},
    "audio": {"type": "boolean"},
    "watermark": {"type": "boolean"},
    "prompt_extend": {"type": "boolean"},
}
SYNTHESIS_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "example": {"model": "vidgate-local", "input": {"prompt": "a red fox"}, "parameters": {"duration": 1}},
            "schema": {
                "type": "object",
                "required": ["model", "input"],
                # As in DashScope, null is the same as leaving a field out.
                "properties": {
                    "model": {"type": "string", "description": "Any model from GET /v1/models."},
                    "input": {
                        "type": "object",
                        "properties": {name: _or_null(field) for name, field in _SYNTHESIS_INPUT.items()},
                    },
                    "parameters": {
                        "type": ["object", "null"],
                        "properties": {name: _or_null(field) for name, field in _SYNTHESIS_PARAMETERS.items()},
                    },
                },
            },
        }
    },
}
SYNTHESIS_HEADERS: list[dict[str, Any]] = [
    {
        "name": "X-DashScope-Async",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "enum": ["enable"]},
        "description": "Tasks are asynchronous; without `enable` the answer is 403 AccessDenied.",
    },
    {
        "name": "X-DashScope-OssResourceResolve",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "`enable` lets inputs name files sent through the upload policy as oss://KEY (any other "
        "value leaves it off).",
    },
]


def _page(high: int, default: int) -> dict[str, Any]:
    # An empty value means the default.
    number = {"type": "integer", "minimum": 1, "maximum": high}
    return {"anyOf": [number, {"type": "string", "maxLength": 0}], "default": default}


_STAMP = {"type": "string", "pattern": "^([0-9]{14})?$", "description": "Empty means no bound."}
TASK_LIST_PARAMS: list[dict[str, Any]] = [
    {"name": "page_no", "in": "query", "schema": _page(100_000, 1)},
    {"name": "page_size", "in": "query", "schema": _page(100, 10)},
    {
        "name": "status",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Comma-separated PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED.",
    },
    {"name": "model_name", "in": "query", "schema": {"type": "string"}},
    {"name": "start_time", "in": "query", "schema": _STAMP, "description": "YYYYMMDDhhmmss, UTC."},
    {"name": "end_time", "in": "query", "schema": _STAMP, "description": "YYYYMMDDhhmmss, UTC."},
]
UPLOAD_FORM: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["policy", "Signature", "key", "file"],
                "properties": {
                    "OSSAccessKeyId": {"type": "string"},
                    "policy": {"type": "string", "description": "From GET /uploads."},
                    "Signature": {"type": "string", "description": "From GET /uploads."},
                    "key": {"type": "string", "description": "upload_dir/filename."},
                    "x-oss-object-acl": {"type": "string"},
                    "x-oss-forbid-overwrite": {"type": "string"},
                    "x-oss-content-type": {"type": "string"},
                    "success_action_status": {"type": "string"},
                    "file": {"type": "string", "format": "binary"},
                },
            }
        }
    },
}


# -- the document ------------------------------------------------------------------------------------------


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document without the 422 it assumes for every route with parameters: vidgate answers bad
    input with a 400 in the surface's own error shape, and each route lists that itself."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in document["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            document.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = document
    return app.openapi_schema
