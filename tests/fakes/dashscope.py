"""An emulator of Alibaba Cloud DashScope's Wan video synthesis API (providers.md §2), used as an upstream.

It speaks the vendor's wire protocol as the real `dashscope` SDK and the gateway see it: Bearer auth against a set of
keys, the mandatory `X-DashScope-Async: enable` header on submit, per-model validation of size / resolution /
duration / audio, a PENDING → RUNNING → SUCCEEDED (or FAILED) task that moves one step per poll, cancel of PENDING
tasks, the task list, and an expiring `video_url` serving a real MP4. Everything received is kept in `history`,
and every created task in `tasks`, so tests can check what reached the upstream and how.

Choices where the reference is uncertain (providers.md §7 item 2) are marked "Decision:" below.

Fault calls: "submit", "poll", "cancel", "list". On submit, "drop_reply" creates the task and answers 500,
"slow_reply" creates it and holds the answer `faults.slow_s`, "cut" creates it and drops the connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream, Fault, Faults, InjectedFault, Recorded, make_mp4

API = "/api/v1"
VIDEO_GENERATION_PATH = f"{API}/services/aigc/video-generation/video-synthesis"
IMAGE2VIDEO_PATH = f"{API}/services/aigc/image2video/video-synthesis"

# The W*H strings of each resolution tier (providers.md §2.4, `size` row).
SIZES_BY_TIER: dict[str, tuple[str, ...]] = {
    "480P": ("832*480", "480*832", "624*624"),
    "720P": ("1280*720", "720*1280", "960*960", "1088*832", "832*1088"),
    "1080P": ("1920*1080", "1080*1920", "1440*1440", "1632*1248", "1248*1632"),
}

Kind = Literal["t2v", "i2v", "kf2v"]
TaskStatus = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED"]
TERMINAL: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "CANCELED"})
BEIJING = timezone(timedelta(hours=8))  # the service reports times in Beijing time, without a zone
MAX_SEED = 2147483647
MP4_MAX_SIDE = 320  # the served clip keeps the requested aspect but stays tiny so tests stay fast


@dataclass(frozen=True)
class ModelSpec:
    """What one Wan model accepts: kind, resolution tiers, durations, audio, and its default size/resolution."""

    kind: Kind
    tiers: tuple[str, ...]
    default: str  # a W*H size for t2v, a tier ("720P") for i2v/kf2v
    durations: tuple[int, ...] = (5,)
    audio: bool = False
    fps: int = 30

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(size for tier in self.tiers for size in SIZES_BY_TIER[tier])


ALL_TIERS = ("480P", "720P", "1080P")

# providers.md §2.4 model tier table. Decision: wan2.2-i2v-flash takes the newer page's 480P/720P/1080P (the
# permissive reading); defaults follow the t2v `size` row and new-api's per-model resolution defaults.
DEFAULT_MODELS: dict[str, ModelSpec] = {
    "wan2.5-t2v-preview": ModelSpec("t2v", ALL_TIERS, "1920*1080", (5, 10), audio=True, fps=24),
    "wan2.2-t2v-plus": ModelSpec("t2v", ("480P", "1080P"), "1920*1080"),
    "wanx2.1-t2v-turbo": ModelSpec("t2v", ("480P", "720P"), "1280*720"),
    "wanx2.1-t2v-plus": ModelSpec("t2v", ("720P",), "1280*720"),
    "wan2.5-i2v-preview": ModelSpec("i2v", ALL_TIERS, "1080P", (5, 10), audio=True, fps=24),
    "wan2.2-i2v-flash": ModelSpec("i2v", ALL_TIERS, "720P"),
    "wan2.2-i2v-plus": ModelSpec("i2v", ("480P", "1080P"), "1080P"),
    "wanx2.1-i2v-plus": ModelSpec("i2v", ("720P",), "720P"),
    "wanx2.1-i2v-turbo": ModelSpec("i2v", ("480P", "720P"), "720P", (3, 4, 5)),
    "wan2.2-kf2v-flash": ModelSpec("kf2v", ALL_TIERS, "720P"),
    "wanx2.1-kf2v-plus": ModelSpec("kf2v", ("720P",), "720P"),
    "wan2.1-kf2v-plus": ModelSpec("kf2v", ("720P",), "720P"),
}

# Messages for tasks that end FAILED (a `FAIL:<Code>` prompt or `fail_next`), worded like the service's.
FAIL_MESSAGES: dict[str, str] = {
    "DataInspectionFailed": "Output data may contain inappropriate content.",
    "InvalidParameter": "The input image resolution is out of range, please check the image.",
    "InternalError": "An internal error has occured, please try again later or contact service support.",
    "InternalError.Algo": "An internal error has occured during execution, please try again later.",
    "InternalError.Timeout": "An internal timeout error has occured during execution, please try again later.",
    "IPInfringementSuspect": "Input data is suspected of being involved in IP infringement.",
}
FAIL_MARKER = re.compile(r"FAIL:([A-Za-z][\w.]*)")

# The status an "unknown_status" fault reports: one no client has ever seen.
ODD_STATUS = "SUSPENDED_X"


def new_id() -> str:
    return str(uuid.uuid4())


def now_beijing() -> datetime:
    return datetime.now(BEIJING)


def stamp(moment: datetime) -> str:
    """`YYYY-MM-DD HH:MM:SS.mmm`, the service's time format."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def parse_size(size: str) -> tuple[int, int]:
    width, height = size.split("*")
    return int(width), int(height)


def closest_size(tier: str, aspect: float) -> str:
    """The tier's W*H whose aspect is nearest the input image's: i2v output follows the image's shape."""
    return min(SIZES_BY_TIER[tier], key=lambda size: abs(parse_size(size)[0] / parse_size(size)[1] - aspect))


def clip_dimensions(width: int, height: int) -> tuple[int, int]:
    """Scale down to MP4_MAX_SIDE keeping the aspect; even sides because the MP4 is yuv420p."""
    scale = min(1.0, MP4_MAX_SIDE / max(width, height))
    return max(16, round(width * scale / 2) * 2), max(16, round(height * scale / 2) * 2)


class Refusal(Exception):
    """A request-level error: answered as HTTP `status` with the vendor's `{request_id, code, message}` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"request_id": new_id(), "code": code, "message": message}, status_code=status)


def invalid(message: str) -> Refusal:
    return Refusal(400, "InvalidParameter", message)


@dataclass
class FakeTask:
    """One submitted task, with everything the request carried and where it is in its lifecycle."""

    task_id: str
    model: str
    kind: Kind
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    api_key: str
    duration: int
    ratio: str  # the output W*H, also reported as usage.video_ratio
    fps: int
    prompt: str | None
    prompt_extend: bool
    status: str = "PENDING"
    polls: int = 0
    fail: tuple[str, str] | None = None
    submitted_at: datetime = field(default_factory=now_beijing)
    scheduled_at: datetime | None = None
    ended_at: datetime | None = None
    video_url: str | None = None
    video: bytes | None = None

    @property
    def input(self) -> dict[str, Any]:
        value: dict[str, Any] = self.body["input"]
        return value

    @property
    def parameters(self) -> dict[str, Any]:
        value: dict[str, Any] = self.body.get("parameters") or {}
        return value


class FakeDashScope(FakeUpstream):
    """DashScope video synthesis as an upstream: submit, poll, cancel, and an expiring result URL.

    Knobs: `api_keys`, `polls_per_step` (0 = tasks only move through `advance()`), `kf2v_any_path`, `models`
    (per-model overrides), `latency_s` (delay before each API answer), `clip_seconds` (length of the served MP4).
    """

    name = "dashscope"

    def __init__(
        self,
        api_keys: set[str] | None = None,
        polls_per_step: int = 1,
        kf2v_any_path: bool = False,
        models: dict[str, ModelSpec] | None = None,
        latency_s: float = 0.0,
        clip_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.api_keys: set[str] = set(api_keys) if api_keys is not None else {"sk-ds-test"}
        self.polls_per_step = polls_per_step
        self.kf2v_any_path = kf2v_any_path
        self.models: dict[str, ModelSpec] = {**DEFAULT_MODELS, **(models or {})}
        self.latency_s = latency_s
        self.clip_seconds = clip_seconds
        self._initial = (set(self.api_keys), polls_per_step, kf2v_any_path, dict(self.models), latency_s, clip_seconds)
        self.tasks: dict[str, FakeTask] = {}
        self._fail_next: deque[tuple[str, str]] = deque()
        # Polls run in worker threads (the MP4 encode must not block the server loop) and tests may call
        # advance() from their own thread, so lifecycle moves are serialised.
        self._lock = threading.Lock()
        self.app.add_exception_handler(HTTPException, self._http_error)

    # -- routes ---------------------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route(VIDEO_GENERATION_PATH, self._submit, methods=["POST"]),
            Route(IMAGE2VIDEO_PATH, self._submit, methods=["POST"]),
            Route(f"{API}/tasks/{{task_id}}", self._poll, methods=["GET"]),
            # AioVideoSynthesis polls with a trailing slash (clients.md B.3).
            Route(f"{API}/tasks/{{task_id}}/", self._poll, methods=["GET"]),
            Route(f"{API}/tasks/{{task_id}}/cancel", self._cancel, methods=["POST"]),
            Route(f"{API}/tasks", self._list, methods=["GET"]),
        ]

    def fault_response(self, kind: Fault) -> Response:
        if kind == "429":
            return error_response(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
        if kind == "502":
            # A 502 comes from the front proxy, not the API: an HTML page (the SDK reports code "Unknown").
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>", 502)
        if kind == "503":
            return error_response(503, "ServiceUnavailable", "The service is temporarily unavailable, please retry.")
        if kind == "timeout":
            # Sent only after the hang, when the client has normally given up already.
            return error_response(504, "RequestTimeOut", "Request timed out, please try again later.")
        return error_response(500, "InternalError", FAIL_MESSAGES["InternalError"])

    # -- test controls --------------------------------------------------------------------------------------

    def fail_next(self, code: str, message: str | None = None) -> None:
        """Make the next submitted task end FAILED with this code (and message, or the code's usual one)."""
        self._fail_next.append((code, message or FAIL_MESSAGES.get(code, f"Task failed: {code}.")))

    def reset(self) -> None:
        """Forget every request, task, file and fault and restore the constructor's knobs, so one running
        emulator can serve many tests (starting and stopping a server costs ~0.15 s each time)."""
        keys, self.polls_per_step, self.kf2v_any_path, models, self.latency_s, self.clip_seconds = self._initial
        self.api_keys, self.models = set(keys), dict(models)
        with self._lock:
            self.history.clear()
            self.tasks.clear()
            self.files.clear()
            self._fail_next.clear()
        self.faults = Faults()
        self.file_ttl_s = 3600.0

    def advance(self, task_id: str) -> str:
        """Move a task one step now (PENDING → RUNNING → SUCCEEDED/FAILED), whatever `polls_per_step` says."""
        task = self.tasks[task_id]
        with self._lock:
            self._move(task)
        return task.status

    def submits(self) -> list[Recorded]:
        return [r for r in self.history if r.method == "POST" and r.path.endswith("/video-synthesis")]

    # -- handlers ---------------------------------------------------------------------------------------------

    async def _submit(self, request: Request) -> Response:
        entry = await self.record(request)
        await self._delay()
        try:
            key = self._authorize(entry)
            if entry.headers.get("x-dashscope-async", "").strip().lower() != "enable":
                raise Refusal(403, "AccessDenied", "current user api does not support synchronous calls")
        except Refusal as refusal:
            return refusal.response()
        fault = await self._draw("submit")
        if fault is not None and fault.response is not None:
            return fault.response
        if fault is not None and fault.kind == "not_found":
            return error_response(404, "NotFound", f"url error, please check url: {entry.path}")
        try:
            task = self._create(entry, key)
        except Refusal as refusal:
            return refusal.response()
        if fault is not None and fault.kind == "drop_reply":
            return self.fault_response("500")  # the task exists, but the client never learns its id
        cut = await self.after_work(fault.kind if fault is not None else None)
        if cut is not None:
            return cut
        status = ODD_STATUS if fault is not None and fault.kind == "unknown_status" else task.status
        return JSONResponse({"request_id": new_id(), "output": {"task_id": task.task_id, "task_status": status}})

    async def _poll(self, request: Request) -> Response:
        entry = await self.record(request)
        await self._delay()
        try:
            key = self._authorize(entry)
        except Refusal as refusal:
            return refusal.response()
        fault = await self._draw("poll")
        if fault is not None and fault.response is not None:
            return fault.response
        task_id = request.path_params["task_id"]
        task = self._owned(task_id, key)
        if task is None or (fault is not None and fault.kind == "not_found"):
            return JSONResponse({"request_id": new_id(), "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
        await asyncio.to_thread(self._count_poll, task)
        if fault is not None and fault.kind == "drop_reply":
            return self.fault_response("500")
        body = self._task_body(task)
        if fault is not None and fault.kind == "unknown_status":
            body["output"]["task_status"] = ODD_STATUS
        return JSONResponse(body)

    async def _cancel(self, request: Request) -> Response:
        entry = await self.record(request)
        await self._delay()
        try:
            key = self._authorize(entry)
        except Refusal as refusal:
            return refusal.response()
        fault = await self._draw("cancel")
        if fault is not None and fault.response is not None:
            return fault.response
        task = self._owned(request.path_params["task_id"], key)
        with self._lock:
            # Decision: an unknown id gets the same refusal as a task past PENDING (shape unverified, §7 item 2).
            if task is None or task.status != "PENDING":
                return error_response(
                    400,
                    "UnsupportedOperation",
                    "Failed to cancel the task, please confirm if the task is in PENDING status.",
                )
            task.status, task.ended_at = "CANCELED", now_beijing()
        if fault is not None and fault.kind == "drop_reply":
            return self.fault_response("500")
        return JSONResponse({"request_id": new_id()})

    async def _list(self, request: Request) -> Response:
        """The key's tasks, newest first, a numbered page at a time (SDK `Tasks.list`, clients.md B.3).

        Decision: the real body is undocumented (providers.md §2.2); rows go under both `data` and `tasks`,
        with `total`, `total_page`, `page_no`, `page_size`. Each row carries `task_id`, `task_status`,
        `model_name`, the task's times (Beijing time, as the task query gives them) and `orig_prompt`.
        `start_time` / `end_time` are YYYYMMDDhhmmss in Beijing time and bound `submit_time`.
        """
        entry = await self.record(request)
        await self._delay()
        try:
            key = self._authorize(entry)
            page_no = _bounded(entry.query, "page_no", 1, 1, 100_000)
            page_size = _bounded(entry.query, "page_size", 10, 1, 100)
            start, end = _window(entry.query, "start_time"), _window(entry.query, "end_time")
        except Refusal as refusal:
            return refusal.response()
        fault = await self._draw("list")
        if fault is not None and fault.response is not None:
            return fault.response
        model, status = entry.query.get("model_name"), entry.query.get("status")
        with self._lock:
            rows = [
                task
                for task in self.tasks.values()
                if task.api_key == key
                and (not model or task.model == model)
                and (not status or task.status == status)
                and (start is None or task.submitted_at >= start)
                and (end is None or task.submitted_at <= end)
            ]
            rows.sort(key=lambda task: task.submitted_at, reverse=True)
            page = [self._list_row(task) for task in rows[(page_no - 1) * page_size : page_no * page_size]]
        total = len(rows)
        return JSONResponse(
            {
                "request_id": new_id(),
                "data": page,
                "tasks": page,
                "total": total,
                "total_page": -(-total // page_size),
                "page_no": page_no,
                "page_size": page_size,
            }
        )

    def _list_row(self, task: FakeTask) -> dict[str, Any]:
        row = {key: value for key, value in self._task_body(task)["output"].items() if key not in ("video_url",)}
        row.update(model_name=task.model, orig_prompt=task.prompt or "")
        return row

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        # Decision: unknown routes / methods answer in the vendor's JSON error shape, not Starlette's plain text.
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return error_response(404, "NotFound", f"url error, please check url: {request.url.path}")
        return error_response(status, "InvalidParameter", f"{request.method} is not supported on {request.url.path}")

    # -- request checks ---------------------------------------------------------------------------------------

    def _authorize(self, entry: Recorded) -> str:
        scheme, _, key = entry.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or key not in self.api_keys:
            raise Refusal(401, "InvalidApiKey", "Invalid API-key provided.")
        return key

    def _owned(self, task_id: str, key: str) -> FakeTask | None:
        # Decision: a task is visible only to the key that created it; another key sees UNKNOWN, as for an id
        # of another account.
        task = self.tasks.get(task_id)
        return task if task is not None and task.api_key == key else None

    async def _draw(self, call: str) -> InjectedFault | None:
        try:
            await self.fault(call)
        except InjectedFault as fault:
            return fault
        return None

    async def _delay(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

    def _create(self, entry: Recorded, key: str) -> FakeTask:
        body = self._json_body(entry)
        model, spec = self._model(body, entry.path)
        inputs = body.get("input")
        if not isinstance(inputs, dict) or not inputs:
            raise Refusal(400, "BadRequest.EmptyInput", "Required input parameter missing from request.")
        parameters = body.get("parameters")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise invalid("parameters must be an object")
        prompt = self._prompt(inputs, spec)
        oss_ok = entry.headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
        aspect = self._images(inputs, spec, oss_ok)
        self._audio(model, spec, inputs, parameters, oss_ok)
        ratio = self._output_size(model, spec, parameters, aspect)
        duration = self._duration(model, spec, parameters)
        self._scalars(parameters)
        fail = self._fail_next.popleft() if self._fail_next else self._fail_from_prompt(prompt)
        task = FakeTask(
            task_id=new_id(),
            model=model,
            kind=spec.kind,
            path=entry.path,
            body=body,
            headers=dict(entry.headers),
            api_key=key,
            duration=duration,
            ratio=ratio,
            fps=spec.fps,
            prompt=prompt,
            prompt_extend=parameters.get("prompt_extend", True) is not False,
            fail=fail,
        )
        self.tasks[task.task_id] = task
        return task

    @staticmethod
    def _json_body(entry: Recorded) -> dict[str, Any]:
        try:
            body = orjson.loads(entry.body) if entry.body else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise invalid("The request body is not a valid JSON object.")
        return body

    def _model(self, body: dict[str, Any], path: str) -> tuple[str, ModelSpec]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise Refusal(400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
        spec = self.models.get(model)
        if spec is None:
            # Decision: unknown models are 400 InvalidParameter "Model not exist." (not 404 Model.NotExist).
            raise invalid("Model not exist.")
        on_image2video = path == IMAGE2VIDEO_PATH
        if spec.kind == "kf2v" and not on_image2video and not self.kf2v_any_path:
            raise invalid(f"Model {model} is not supported on this url, please use {IMAGE2VIDEO_PATH}")
        if spec.kind != "kf2v" and on_image2video:
            raise invalid(f"Model {model} is not supported on this url, please use {VIDEO_GENERATION_PATH}")
        return model, spec

    @staticmethod
    def _prompt(inputs: dict[str, Any], spec: ModelSpec) -> str | None:
        prompt = inputs.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise invalid("input.prompt must be a string")
        if spec.kind == "t2v" and not (prompt or "").strip():
            raise invalid("Field required: input.prompt")
        negative = inputs.get("negative_prompt")
        if negative is not None and not isinstance(negative, str):
            raise invalid("input.negative_prompt must be a string")
        return prompt

    def _images(self, inputs: dict[str, Any], spec: ModelSpec, oss_ok: bool) -> float | None:
        """Check the image inputs the model needs; the aspect of the leading image when it is a data: URI."""
        if spec.kind == "i2v":
            return self._media_url(inputs, "img_url", "image", oss_ok, required=True)
        if spec.kind == "kf2v":
            aspect = self._media_url(inputs, "first_frame_url", "image", oss_ok, required=True)
            self._media_url(inputs, "last_frame_url", "image", oss_ok, required=False)
            return aspect
        return None

    def _audio(
        self, model: str, spec: ModelSpec, inputs: dict[str, Any], parameters: dict[str, Any], oss_ok: bool
    ) -> None:
        if not spec.audio:
            for name, where in (("audio_url", inputs), ("audio", parameters)):
                if where.get(name) is not None:
                    raise invalid(f"{name} is not supported by model {model}")
            return
        if parameters.get("audio") is not None and not isinstance(parameters["audio"], bool):
            raise invalid("parameters.audio must be a boolean")
        self._media_url(inputs, "audio_url", "audio", oss_ok, required=False)

    @staticmethod
    def _media_url(inputs: dict[str, Any], name: str, media: str, oss_ok: bool, required: bool) -> float | None:
        """Validate an image/audio reference without fetching it; for a data: image, return its aspect (w/h)."""
        value = inputs.get(name)
        if value is None or value == "":
            if required:
                raise invalid(f"Field required: input.{name}")
            return None
        if not isinstance(value, str):
            raise invalid(f"input.{name} must be a string")
        if value.startswith(("http://", "https://")):
            return None
        if value.startswith("oss://"):
            # oss:// keys from the SDK's upload flow resolve only with the header the SDK adds (clients.md B.4).
            if not oss_ok:
                raise Refusal(400, "InvalidURL", "Invalid URL provided in your request.")
            return None
        if value.startswith("data:"):
            return _data_uri_aspect(name, value, media)
        raise Refusal(400, "InvalidURL", "Invalid URL provided in your request.")

    @staticmethod
    def _output_size(model: str, spec: ModelSpec, parameters: dict[str, Any], aspect: float | None) -> str:
        size, resolution = parameters.get("size"), parameters.get("resolution")
        if spec.kind == "t2v":
            if resolution is not None:
                raise invalid(f"resolution is not supported for t2v models, use size (model {model})")
            size = spec.default if size is None else size
            if size not in spec.sizes:
                raise invalid(f"The size {size} is not supported by model {model}; supported: {', '.join(spec.sizes)}")
            return str(size)
        if size is not None:
            raise invalid(f"size is not supported for {spec.kind} models, use resolution (model {model})")
        tier = spec.default if resolution is None else resolution
        if tier not in spec.tiers:
            raise invalid(
                f"The resolution {tier} is not supported by model {model}; supported: {', '.join(spec.tiers)}"
            )
        return closest_size(str(tier), aspect if aspect is not None else 16 / 9)

    @staticmethod
    def _duration(model: str, spec: ModelSpec, parameters: dict[str, Any]) -> int:
        duration = parameters.get("duration", 5 if 5 in spec.durations else spec.durations[0])
        # Decision: strict int (a "5" string or a bool is refused), so a gateway sending the wrong type shows up.
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in spec.durations:
            allowed = ", ".join(str(d) for d in spec.durations)
            raise invalid(f"The duration {duration!r} is not supported by model {model}; supported: {allowed}")
        return duration

    @staticmethod
    def _scalars(parameters: dict[str, Any]) -> None:
        seed = parameters.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            raise invalid(f"parameters.seed must be an integer in [0, {MAX_SEED}]")
        for name in ("prompt_extend", "watermark"):
            if parameters.get(name) is not None and not isinstance(parameters[name], bool):
                raise invalid(f"parameters.{name} must be a boolean")

    @staticmethod
    def _fail_from_prompt(prompt: str | None) -> tuple[str, str] | None:
        match = FAIL_MARKER.search(prompt or "")
        if match is None:
            return None
        code = match.group(1).rstrip(".")
        return code, FAIL_MESSAGES.get(code, f"Task failed: {code}.")

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _count_poll(self, task: FakeTask) -> None:
        """One poll: every `polls_per_step` polls after the first, the task moves one step."""
        with self._lock:
            task.polls += 1
            step = self.polls_per_step
            if task.status not in TERMINAL and step > 0 and task.polls > 1 and (task.polls - 1) % step == 0:
                self._move(task)

    def _move(self, task: FakeTask) -> None:
        """PENDING → RUNNING → SUCCEEDED / FAILED; the caller holds the lock."""
        if task.status == "PENDING":
            task.status, task.scheduled_at = "RUNNING", now_beijing()
        elif task.status == "RUNNING":
            if task.fail is None:
                self._render(task)
            task.status = "SUCCEEDED" if task.fail is None else "FAILED"
            task.ended_at = now_beijing()

    def _render(self, task: FakeTask) -> None:
        width, height = clip_dimensions(*parse_size(task.ratio))
        seed = int(task.task_id[:8], 16)
        task.video = make_mp4(width, height, seconds=self.clip_seconds, fps=task.fps, seed=seed)
        task.video_url = self.publish(task.video)

    def _task_body(self, task: FakeTask) -> dict[str, Any]:
        output: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": task.status,
            "submit_time": stamp(task.submitted_at),
        }
        if task.scheduled_at is not None:
            output["scheduled_time"] = stamp(task.scheduled_at)
        if task.ended_at is not None:
            output["end_time"] = stamp(task.ended_at)
        body: dict[str, Any] = {"request_id": new_id(), "output": output}
        if task.status == "SUCCEEDED":
            output["video_url"] = task.video_url
            output["orig_prompt"] = task.prompt or ""
            # Decision: like the docs say, actual_prompt (the LLM rewrite) is only returned with prompt_extend on.
            if task.prompt_extend:
                output["actual_prompt"] = rewrite(task.prompt)
            body["usage"] = {"video_duration": task.duration, "video_count": 1, "video_ratio": task.ratio}
        elif task.status == "FAILED" and task.fail is not None:
            output["code"], output["message"] = task.fail
        return body


def _bounded(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}")
    return int(value)


def _window(query: dict[str, str], name: str) -> datetime | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    except ValueError as exc:
        raise invalid(f"{name} must be YYYYMMDDhhmmss") from exc


def rewrite(prompt: str | None) -> str:
    """A stand-in for the service's prompt extension, so actual_prompt differs from orig_prompt."""
    base = (prompt or "").strip() or "The subject in the picture moves naturally"
    return f"{base}. Cinematic look, soft natural light, rich detail, the camera slowly pushes in."


def _data_uri_aspect(name: str, value: str, media: str) -> float | None:
    """Decode a `data:<mime>;base64,...` reference; for images return width/height, refusing undecodable data."""
    header, comma, payload = value.partition(",")
    if not comma or not header.endswith(";base64") or not header[5:].startswith(f"{media}/"):
        raise invalid(f"input.{name} is not a valid base64 data URL of type {media}/*")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"input.{name} is not valid base64") from exc
    if media != "image":
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise Refusal(
            400,
            "InvalidParameter.DataInspection",
            "The media format is not supported or incorrect for the data inspection.",
        ) from exc
    return width / height if height else None
