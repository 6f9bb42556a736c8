"""MiniMax Hailuo video API emulator: V1 (`base_resp` inside HTTP 200, `file_id` → `files/retrieve` →
expiring `download_url`, the callback challenge handshake) and V2 for MiniMax-H3 (the `content` array, real HTTP
errors, get, list, DELETE), with `Authorization: Bearer` auth and fault injection.

Behaviour follows /work/shared/reference/providers-2026.md §3. Choices where the reference is unsure ([U]) are
marked ASSUMPTION next to the code; the main ones:
  - V2 delete is `DELETE /v2/video_generation/{task_id}` answering `{task_id, action, status}` (one third-party
    spec): a queued task is cancelled, a finished one deleted, a running one refused (409).
  - V2 errors are `{"type":"error","error":{"type","message","http_code"},"request_id"}` (one third-party spec);
    moderation is 422 `unprocessable_entity_error` whose message names 1026/1027 (the CLI's reading).
  - V2 list is newest first; V2 callbacks post the task object as GET returns it (no handshake documented).
  - V1 `MiniMax-Hailuo-2.3-Fast` is image-to-video only (several sources; the skills doc disagrees); the 01
    series is 720P and 6 s only; bracketed camera commands are checked on the Director models only (the
    Hailuo models also take them, but a bracket there may be plain prompt text).
  - V1 callbacks: the challenge is posted in the background once the task exists; status updates are posted
    only after the callee echoed it. An unverified URL gets nothing more (the task still runs).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream, Fault, InjectedFault, Recorded, make_mp4

# -- V1 ---------------------------------------------------------------------------------------------------------
HAILUO_23, HAILUO_23_FAST, HAILUO_02 = "MiniMax-Hailuo-2.3", "MiniMax-Hailuo-2.3-Fast", "MiniMax-Hailuo-02"
T2V_01 = ("T2V-01-Director", "T2V-01")
I2V_01 = ("I2V-01-Director", "I2V-01-live", "I2V-01")
S2V_01 = "S2V-01"
V1_MODELS = (HAILUO_23, HAILUO_23_FAST, HAILUO_02, *T2V_01, *I2V_01, S2V_01)
# Resolutions per model (first = default); 512P on Hailuo-02 is for image-to-video only.
V1_RESOLUTIONS: dict[str, tuple[str, ...]] = {
    HAILUO_23: ("768P", "1080P"),
    HAILUO_23_FAST: ("768P", "1080P"),
    HAILUO_02: ("768P", "512P", "1080P"),
    **{model: ("720P",) for model in (*T2V_01, *I2V_01, S2V_01)},
}
HAILUO = (HAILUO_23, HAILUO_23_FAST, HAILUO_02)
# Models that need first_frame_image, that refuse it, and that take a last frame (FL2V).
NEEDS_FIRST_FRAME = (HAILUO_23_FAST, *I2V_01)
NO_FIRST_FRAME = (*T2V_01, S2V_01)
TAKES_LAST_FRAME = (HAILUO_23, HAILUO_02)
# ASSUMPTION: the models whose bracketed prompt text MiniMax reads strictly as camera commands.
CAMERA_MODELS = ("T2V-01-Director", "I2V-01-Director")
CAMERA_COMMANDS = (
    "Truck left",
    "Truck right",
    "Pan left",
    "Pan right",
    "Push in",
    "Pull out",
    "Pedestal up",
    "Pedestal down",
    "Tilt up",
    "Tilt down",
    "Zoom in",
    "Zoom out",
    "Shake",
    "Tracking shot",
    "Static shot",
)
V1_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "prompt_optimizer",
        "fast_pretreatment",
        "duration",
        "resolution",
        "first_frame_image",
        "last_frame_image",
        "subject_reference",
        "callback_url",
        "aigc_watermark",
    }
)
V1_MAX_PROMPT = 2000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
V1_STATES = ("Preparing", "Queueing", "Processing", "Success")
# Output sizes (small stand-ins with the vendor's aspect) per resolution.
V1_FRAMES = {"512P": (160, 90), "720P": (160, 90), "768P": (160, 90), "1080P": (192, 108)}

# -- V2 ---------------------------------------------------------------------------------------------------------
H3 = "MiniMax-H3"
V2_RESOLUTIONS = ("768P", "2K")
V2_RATIOS = ("adaptive", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
V2_SECONDS = range(4, 16)
V2_DEFAULT_SECONDS = 5
V2_MAX_TEXT = 7000
V2_FIELDS = frozenset({"model", "content", "resolution", "duration", "ratio", "callback_url", "aigc_watermark"})
V2_ROLES = {"image_url": ("first_frame", "last_frame", "reference_image"), "video_url": ("reference_video",)}
V2_ROLES["audio_url"] = ("reference_audio",)
V2_TERMINAL = ("succeeded", "failed", "cancelled", "expired")
V2_STATES = ("queued", "running", "succeeded")
V2_FRAMES = {
    "adaptive": (160, 90),
    "21:9": (224, 96),
    "16:9": (160, 90),
    "4:3": (128, 96),
    "1:1": (96, 96),
    "3:4": (96, 128),
    "9:16": (90, 160),
}

# Prompts the moderation refuses at once (1026), or whose output it blocks (1027, the task fails).
INPUT_BLOCKED = "FORBIDDEN"
OUTPUT_BLOCKED = "BLOCKED_OUTPUT"
SENSITIVE_INPUT_MSG = "input new_sensitive"
SENSITIVE_OUTPUT_MSG = "output new_sensitive"


class MiniMaxError(Exception):
    """A refusal: MiniMax's status code and message (V1 puts them in base_resp; V2 in an HTTP error)."""

    def __init__(self, code: int, message: str, *, http_status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.kind = kind


def invalid(message: str) -> MiniMaxError:
    return MiniMaxError(2013, f"invalid params, {message}")


@dataclass
class MiniMaxTask:
    task_id: str
    api: str  # "v1" | "v2"
    model: str
    body: dict[str, Any]
    resolution: str
    duration: int
    ratio: str
    task_type: str
    created_at: int  # s
    updated_at: int  # s
    fail: tuple[int, str] | None = None  # set at creation: the task will end failed with this code and message
    polls: int = 0
    step: int = 0
    status: str = ""  # V1 or V2 vocabulary, per `api`
    file_id: int | None = None
    url: str | None = None
    callback_url: str | None = None
    callback_verified: bool = False


@dataclass
class Callback:
    """One POST the emulator made to a callback_url, and what came back."""

    url: str
    body: dict[str, Any]
    status: int | None = None
    answer: Any = None
    error: str | None = None
    at: float = field(default_factory=time.time)


class FakeMiniMax(FakeUpstream):
    """MiniMax emulator. `polls_per_step` polls move a task one state along."""

    name = "minimax"

    def __init__(self, api_key: str = "sk-api-test", polls_per_step: int = 1) -> None:
        if polls_per_step < 1:
            raise ValueError("polls_per_step must be >= 1")
        self.api_key = api_key
        self.polls_per_step = polls_per_step
        self.tasks: dict[str, MiniMaxTask] = {}
        self.callbacks: list[Callback] = []
        # The docs ask for a short side over 300 px (V1) and 256-5760 px (V2); tests may lower these.
        self.min_image_px = 300
        self.min_ref_px = 256
        self._fail_next: list[tuple[int, str]] = []
        self._ids = itertools.count(1)
        self._files = itertools.count(1)
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        super().__init__()

    # -- public knobs -------------------------------------------------------------------------------------

    def fail_next(self, code: int = 1027, message: str = SENSITIVE_OUTPUT_MSG) -> None:
        """The next created task ends failed with this status code and message."""
        self._fail_next.append((code, message))

    def reset(self) -> None:
        """Forget all tasks, requests, files, callbacks and faults, so one running fake serves many tests."""
        self.tasks.clear()
        self.history.clear()
        self.files.clear()
        self.faults.clear()
        self.callbacks.clear()
        self._fail_next.clear()
        self.file_ttl_s = 3600.0
        self.min_image_px = 300
        self.min_ref_px = 256

    def advance(self, task_id: str) -> None:
        """Move a task one state along now (as if polled `polls_per_step` times); callbacks follow."""
        task = self.tasks[task_id]
        task.polls += self.polls_per_step
        self._step(task)

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait for the callbacks in flight (for tests on the emulator's own loop)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)

    # -- FakeUpstream hooks -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/video_generation", self._v1_create, methods=["POST"]),
            Route("/v1/query/video_generation", self._v1_query, methods=["GET"]),
            Route("/v1/files/retrieve", self._v1_retrieve, methods=["GET"]),
            Route("/v2/video_generation", self._v2_create, methods=["POST"]),
            # ASSUMPTION: the delete path (one third-party spec; the vendor docs page was not read).
            Route("/v2/video_generation/{task_id}", self._v2_delete, methods=["DELETE"]),
            Route("/v2/query/video_generation", self._v2_list, methods=["GET"]),
            Route("/v2/query/video_generation/{task_id}", self._v2_get, methods=["GET"]),
        ]

    def fault_response(self, kind: Fault) -> Response:
        """V1 and V2 share a host; an injected 429/5xx comes from the gateway in front of both, so it is a
        plain HTTP error. (In-band rate limits are `base_resp` 1002, see `v1_busy`.)"""
        status = int(kind) if kind.isdigit() else 500
        return self._v2_error(MiniMaxError(1002 if status == 429 else 1000, f"injected {kind}", http_status=status))

    async def record(self, request: Request) -> Recorded:
        self._loop = asyncio.get_running_loop()  # where callbacks started from a test's thread run
        return await super().record(request)

    # -- envelopes ----------------------------------------------------------------------------------------

    @staticmethod
    def _base_resp(code: int = 0, message: str = "success") -> dict[str, Any]:
        return {"status_code": code, "status_msg": message}

    def _v1_ok(self, data: dict[str, Any]) -> JSONResponse:
        return JSONResponse({**data, "base_resp": self._base_resp()})

    def _v1_error(self, err: MiniMaxError, **data: Any) -> JSONResponse:
        # Business errors are HTTP 200 with base_resp.status_code != 0; create answers carry an empty task_id.
        return JSONResponse({**data, "base_resp": self._base_resp(err.code, err.message)})

    @staticmethod
    def _v2_error(err: MiniMaxError) -> JSONResponse:
        # ASSUMPTION: the error body of one third-party spec, plus the vendor code the CLI also reads.
        error = {"type": err.kind, "message": err.message, "http_code": str(err.http_status), "code": err.code}
        return JSONResponse(
            {"type": "error", "error": error, "request_id": uuid.uuid4().hex}, status_code=err.http_status
        )

    # -- auth ---------------------------------------------------------------------------------------------

    def _authenticate(self, entry: Recorded) -> None:
        header = entry.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme != "Bearer" or not token:
            raise MiniMaxError(
                1004,
                "login fail: Please carry the API secret key in the 'Authorization' field of the request header",
                http_status=401,
                kind="authentication_error",
            )
        if token != self.api_key:
            raise MiniMaxError(2049, "invalid api key", http_status=401, kind="authentication_error")

    @staticmethod
    def _json_body(entry: Recorded) -> dict[str, Any]:
        try:
            body = orjson.loads(entry.body) if entry.body else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise invalid("the body must be a JSON object")
        return body

    # -- V1 handlers ----------------------------------------------------------------------------------------

    async def _v1_create(self, request: Request) -> Response:
        entry = await self.record(request)
        answer, injected = await self.inject("submit")
        if answer is not None:
            return answer
        try:
            self._authenticate(entry)
            body = self._json_body(entry)
            task = self._v1_new_task(body)
        except MiniMaxError as err:
            return self._v1_error(err, task_id="")
        if injected == "drop_reply":
            # The task exists, but the caller is told the system failed (V1 has no list to find it by).
            return self._v1_error(MiniMaxError(1000, "unknown error"), task_id="")
        if task.callback_url:
            self._spawn(self._v1_handshake(task))
        reply = await self.after_work(injected)
        return reply or self._v1_ok({"task_id": task.task_id})

    async def _v1_query(self, request: Request) -> Response:
        entry = await self.record(request)
        answer, injected = await self.inject("poll")
        if answer is not None:
            return answer
        try:
            self._authenticate(entry)
            task = self.tasks.get(entry.query.get("task_id", ""))
            if task is None or task.api != "v1" or injected == "not_found":
                # Own-account tasks only; an unknown id is a parameter error.
                raise invalid("task_id not found")
        except MiniMaxError as err:
            return self._v1_error(err, task_id=entry.query.get("task_id", ""), status="")
        task.polls += 1
        self._step(task)
        if injected == "drop_reply":
            return self._v1_error(MiniMaxError(1024, "internal error"), task_id=task.task_id, status="")
        data = self._v1_task_data(task)
        if injected == "unknown_status":
            data["status"] = "Weird"
        if task.status == "Fail" and task.fail is not None:
            # ASSUMPTION: a failed task's query carries the reason in base_resp (as its callback does).
            return self._v1_error(MiniMaxError(*task.fail), **data)
        return self._v1_ok(data)

    async def _v1_retrieve(self, request: Request) -> Response:
        entry = await self.record(request)
        try:
            await self.fault("poll")
        except InjectedFault as exc:
            if exc.response is not None:
                return exc.response
        try:
            self._authenticate(entry)
            wanted = entry.query.get("file_id", "")
            task = next((t for t in self.tasks.values() if t.file_id is not None and str(t.file_id) == wanted), None)
            if task is None:
                raise invalid("file_id not found")
        except MiniMaxError as err:
            return self._v1_error(err, file=None)
        width, height = V1_FRAMES[task.resolution]
        # A fresh, expiring URL on every retrieve (the documented lifetime is about one hour).
        url = self.publish(make_mp4(width, height, seed=task.file_id or 0))
        assert task.file_id is not None
        file = {
            "file_id": task.file_id,  # an integer, as the reference warns
            "bytes": len(self.files[url.split("/_files/")[1].split("?")[0]]),
            "created_at": task.updated_at,
            "filename": "output.mp4",
            "purpose": "video_generation",
            "download_url": url,
        }
        return self._v1_ok({"file": file})

    # -- V1 validation ------------------------------------------------------------------------------------

    def _v1_new_task(self, body: dict[str, Any]) -> MiniMaxTask:
        model = body.get("model")
        if model not in V1_MODELS:
            raise invalid(
                f"model {model!r} is not supported by /v1/video_generation; supported: {', '.join(V1_MODELS)}"
            )
        unknown = sorted(set(body) - V1_FIELDS)
        if unknown:
            raise invalid(f"unknown field(s): {', '.join(unknown)}")
        first, last = body.get("first_frame_image"), body.get("last_frame_image")
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise invalid("prompt must be a string")
        if len(prompt) > V1_MAX_PROMPT:
            raise invalid(f"prompt must be at most {V1_MAX_PROMPT} characters")
        if not prompt and not first:
            raise invalid("prompt is required for text-to-video")
        for name in ("prompt_optimizer", "fast_pretreatment", "aigc_watermark"):
            if name in body and not isinstance(body[name], bool):
                raise invalid(f"{name} must be a boolean")
        if "fast_pretreatment" in body and model not in HAILUO:
            raise invalid(f"fast_pretreatment is not supported by {model}")
        allowed = V1_RESOLUTIONS[model]
        resolution = body.get("resolution", allowed[0])
        if resolution not in allowed:
            raise invalid(f"resolution {resolution!r} is not supported by {model}; supported: {', '.join(allowed)}")
        duration = body.get("duration", 6)
        durations = (6, 10) if model in HAILUO else (6,)
        if isinstance(duration, bool) or duration not in durations:
            listed = ", ".join(str(d) for d in durations)
            raise invalid(f"duration {duration!r} is not supported by {model}; supported: {listed}")
        if duration == 10 and resolution == "1080P":
            raise invalid("duration 10 is not supported at 1080P; use 768P")
        if model in NEEDS_FIRST_FRAME and not first:
            raise invalid(f"first_frame_image is required by {model}")
        if model in NO_FIRST_FRAME and first:
            raise invalid(f"first_frame_image is not supported by {model}")
        if last is not None:
            if model not in TAKES_LAST_FRAME:
                raise invalid(f"last_frame_image is not supported by {model}")
            if not first:
                raise invalid("last_frame_image needs first_frame_image")
        if resolution == "512P" and not first:
            raise invalid("resolution 512P is for image-to-video only")
        if resolution == "512P" and last is not None:
            raise invalid("first-and-last-frame generation needs 768P or 1080P")
        for name in ("first_frame_image", "last_frame_image"):
            if body.get(name) is not None:
                self._check_image(name, body[name], self.min_image_px, (2 / 5, 5 / 2))
        self._check_subject(model, body.get("subject_reference"))
        if model in CAMERA_MODELS:
            self._check_camera(prompt)
        callback = self._check_callback(body.get("callback_url"))
        self._moderate(prompt)
        task_type = "s2v" if model == S2V_01 else "fl2v" if last else "i2v" if first else "t2v"
        return self._add(
            MiniMaxTask(
                task_id=self._task_id(),
                api="v1",
                model=str(model),
                body=body,
                resolution=str(resolution),
                duration=int(duration),
                ratio="16:9",
                task_type=task_type,
                created_at=int(time.time()),
                updated_at=int(time.time()),
                fail=self._failure(prompt),
                status=V1_STATES[0],
                callback_url=callback,
            )
        )

    def _check_subject(self, model: str, subject: Any) -> None:
        if model != S2V_01:
            if subject is not None:
                raise invalid(f"subject_reference is not supported by {model}")
            return
        if not isinstance(subject, list) or len(subject) != 1 or not isinstance(subject[0], dict):
            raise invalid("subject_reference is required by S2V-01: one {type: character, image: [url]}")
        item = subject[0]
        images = item.get("image")
        if item.get("type") != "character" or not isinstance(images, list) or len(images) != 1:
            raise invalid("subject_reference[0] must be {type: character, image: [one image]}")
        self._check_image("subject_reference[0].image[0]", images[0], self.min_image_px, (2 / 5, 5 / 2))

    @staticmethod
    def _check_camera(prompt: str) -> None:
        for group in re.findall(r"\[([^\[\]]*)\]", prompt):
            commands = [part.strip() for part in group.split(",")]
            if len(commands) > 3:
                raise invalid(f"at most 3 camera commands may be combined, got [{group}]")
            wrong = [c for c in commands if c not in CAMERA_COMMANDS]
            if wrong:
                raise invalid(f"unknown camera command(s) {', '.join(wrong)}; supported: {', '.join(CAMERA_COMMANDS)}")

    @staticmethod
    def _check_callback(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise invalid("callback_url must be an http(s) URL")
        return value

    def _check_image(self, name: str, value: Any, min_px: int, ratio: tuple[float, float]) -> None:
        """A public URL (not fetched), or a data: URI of a JPEG, PNG or WebP checked for size and shape."""
        if not isinstance(value, str) or not value:
            raise invalid(f"{name} must be a URL or a data: URI")
        if value.startswith(("http://", "https://", "mm_file://")):
            return
        header, comma, payload = value.partition(",")
        if not value.startswith("data:image/") or not comma or not header.endswith(";base64"):
            raise invalid(f"{name} must be a URL or a data:image/...;base64, URI")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"{name} is not valid base64") from None
        if len(raw) > MAX_IMAGE_BYTES:
            raise invalid(f"{name} must be under 20MB")
        try:
            with Image.open(io.BytesIO(raw)) as img:
                fmt, (width, height) = img.format, img.size
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError):
            raise invalid(f"{name} is not a valid image") from None
        if fmt not in ("JPEG", "PNG", "WEBP"):
            raise invalid(f"{name} format {fmt} is not supported; use JPG, JPEG, PNG or WebP")
        if min(width, height) < min_px:
            raise invalid(f"{name} short side must be at least {min_px}px")
        if not ratio[0] <= width / height <= ratio[1]:
            raise invalid(f"{name} aspect ratio must be between 2:5 and 5:2")

    def _moderate(self, text: str) -> None:
        if INPUT_BLOCKED in text:
            raise MiniMaxError(1026, SENSITIVE_INPUT_MSG, http_status=422, kind="unprocessable_entity_error")

    def _failure(self, text: str) -> tuple[int, str] | None:
        if self._fail_next:
            return self._fail_next.pop(0)
        return (1027, SENSITIVE_OUTPUT_MSG) if OUTPUT_BLOCKED in text else None

    def _task_id(self) -> str:
        # Decimal strings of about 15-18 digits.
        return f"{int(time.time() * 1000)}{next(self._ids):04d}"

    def _add(self, task: MiniMaxTask) -> MiniMaxTask:
        self.tasks[task.task_id] = task
        return task

    # -- V2 handlers ----------------------------------------------------------------------------------------

    async def _v2_create(self, request: Request) -> Response:
        entry = await self.record(request)
        answer, injected = await self.inject("submit")
        if answer is not None:
            return answer
        try:
            self._authenticate(entry)
            task = self._v2_new_task(self._json_body(entry))
        except MiniMaxError as err:
            return self._v2_error(err)
        if injected == "drop_reply":
            return self._v2_error(MiniMaxError(1000, "unknown error", http_status=500, kind="api_error"))
        reply = await self.after_work(injected)
        # The create answer has no base_resp.
        return reply or JSONResponse({"task_id": task.task_id})

    async def _v2_get(self, request: Request) -> Response:
        entry = await self.record(request)
        answer, injected = await self.inject("poll")
        if answer is not None:
            return answer
        try:
            self._authenticate(entry)
            task = self.tasks.get(request.path_params["task_id"])
            if task is None or task.api != "v2" or injected == "not_found":
                raise MiniMaxError(2013, "task not found", http_status=404, kind="not_found_error")
        except MiniMaxError as err:
            return self._v2_error(err)
        task.polls += 1
        self._step(task)
        if injected == "drop_reply":
            return self._v2_error(MiniMaxError(1024, "internal error", http_status=500, kind="api_error"))
        data = self._v2_task_data(task)
        if injected == "unknown_status":
            data["status"] = "weird"
        return JSONResponse({"task": data})

    async def _v2_list(self, request: Request) -> Response:
        entry = await self.record(request)
        try:
            await self.fault("list")
        except InjectedFault as exc:
            if exc.response is not None:
                return exc.response
        try:
            self._authenticate(entry)
            page_num = self._int_query(entry.query, "page_num", 1, 1, 10_000)
            page_size = self._int_query(entry.query, "page_size", 20, 1, 100)
            items = self._filtered(entry.query)
        except MiniMaxError as err:
            return self._v2_error(err)
        # ASSUMPTION: newest first (the order is not documented).
        items.sort(key=lambda t: (t.created_at, t.task_id), reverse=True)
        start = (page_num - 1) * page_size
        page = [self._v2_task_data(t) for t in items[start : start + page_size]]
        return JSONResponse({"items": page, "total": len(items)})

    async def _v2_delete(self, request: Request) -> Response:
        entry = await self.record(request)
        try:
            self._authenticate(entry)
            task = self.tasks.get(request.path_params["task_id"])
            if task is None or task.api != "v2":
                raise MiniMaxError(2013, "task not found", http_status=404, kind="not_found_error")
            if task.status == "running":
                # ASSUMPTION (as Ark): a running task cannot be cancelled.
                raise MiniMaxError(
                    2013, "task is running and cannot be cancelled", http_status=409, kind="conflict_error"
                )
        except MiniMaxError as err:
            return self._v2_error(err)
        if task.status == "queued":
            task.status, task.updated_at = "cancelled", int(time.time())
            self._v2_notify(task)
            return JSONResponse({"task_id": task.task_id, "action": "cancel", "status": task.status})
        del self.tasks[task.task_id]
        return JSONResponse({"task_id": task.task_id, "action": "delete", "status": "deleted"})

    @staticmethod
    def _int_query(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
        raw = query.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise MiniMaxError(2013, f"{name} must be an integer from {low} to {high}")
        return int(raw)

    def _filtered(self, query: dict[str, str]) -> list[MiniMaxTask]:
        items = [t for t in self.tasks.values() if t.api == "v2"]
        status = query.get("filter.status")
        if status:
            if status not in (*V2_STATES, *V2_TERMINAL):
                raise MiniMaxError(2013, f"filter.status {status!r} is not a task status")
            items = [t for t in items if t.status == status]
        ids = query.get("filter.task_ids")
        if ids:
            wanted = set(ids.split(","))
            items = [t for t in items if t.task_id in wanted]
        if query.get("filter.model"):
            items = [t for t in items if t.model == query["filter.model"]]
        if query.get("filter.task_type"):
            items = [t for t in items if t.task_type == query["filter.task_type"]]
        return items

    # -- V2 validation --------------------------------------------------------------------------------------

    def _v2_new_task(self, body: dict[str, Any]) -> MiniMaxTask:
        if body.get("model") != H3:
            raise MiniMaxError(
                2013, f"model {body.get('model')!r} is not supported by /v2/video_generation; supported: {H3}"
            )
        unknown = sorted(set(body) - V2_FIELDS)
        if unknown:
            raise MiniMaxError(2013, f"unknown field(s): {', '.join(unknown)}")
        resolution = body.get("resolution", "768P")
        if resolution not in V2_RESOLUTIONS:
            raise MiniMaxError(2013, f"resolution must be one of {', '.join(V2_RESOLUTIONS)}")
        duration = body.get("duration", V2_DEFAULT_SECONDS)
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in V2_SECONDS:
            raise MiniMaxError(2013, "duration must be an integer from 4 to 15")
        if "aigc_watermark" in body and not isinstance(body["aigc_watermark"], bool):
            raise MiniMaxError(2013, "aigc_watermark must be a boolean")
        text, roles = self._v2_content(body.get("content"))
        frames = roles & {"first_frame", "last_frame"}
        ratio = body.get("ratio")
        if ratio is not None and ratio not in V2_RATIOS:
            raise MiniMaxError(2013, f"ratio must be one of {', '.join(V2_RATIOS)}")
        if not roles:
            if ratio in (None, "adaptive"):
                raise MiniMaxError(2013, "text-only input needs a concrete ratio (not adaptive)")
        elif frames and ratio not in (None, "adaptive"):
            raise MiniMaxError(2013, "frame input takes ratio adaptive")
        callback = self._check_callback(body.get("callback_url"))
        self._moderate(text)
        task_type = (
            "t2v"
            if not roles
            else "fl2v"
            if frames == {"first_frame", "last_frame"}
            else "i2v"
            if frames
            else "r2v"  # ASSUMPTION: the name of the reference mode's task_type
        )
        now = int(time.time())
        return self._add(
            MiniMaxTask(
                task_id=self._task_id(),
                api="v2",
                model=H3,
                body=body,
                resolution=str(resolution),
                duration=duration,
                ratio=str(ratio or "adaptive"),
                task_type=task_type,
                created_at=now,
                updated_at=now,
                fail=self._failure(text),
                status=V2_STATES[0],
                callback_url=callback,
            )
        )

    def _v2_content(self, content: Any) -> tuple[str, set[str]]:
        """Checks the content array; returns the text and the media roles present."""
        if not isinstance(content, list) or not content:
            raise MiniMaxError(2013, "content must be a non-empty array")
        texts: list[str] = []
        counts: dict[str, int] = {}
        for index, item in enumerate(content):
            where = f"content[{index}]"
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text":
                if not isinstance(item.get("text"), str) or not item["text"]:
                    raise MiniMaxError(2013, f"{where}.text must be a non-empty string")
                texts.append(item["text"])
                continue
            if kind not in V2_ROLES:
                raise MiniMaxError(2013, f"{where}.type must be one of text, {', '.join(V2_ROLES)}")
            role = item.get("role")
            if role not in V2_ROLES[kind]:
                raise MiniMaxError(2013, f"{where}.role must be one of {', '.join(V2_ROLES[kind])} for {kind}")
            ref = item.get(kind)
            url = ref.get("url") if isinstance(ref, dict) else None
            if not isinstance(url, str) or not url:
                raise MiniMaxError(2013, f"{where}.{kind}.url is required")
            if kind == "image_url":
                self._v2_image(f"{where}.image_url.url", url)
            elif not url.startswith(("http://", "https://", "mm_file://", "data:")):
                raise MiniMaxError(2013, f"{where}.{kind}.url must be a URL, a data: URI or mm_file://")
            counts[role] = counts.get(role, 0) + 1
        text = "\n".join(texts)
        if len(text) > V2_MAX_TEXT:
            raise MiniMaxError(2013, f"text must be at most {V2_MAX_TEXT} characters")
        limits = {"first_frame": 1, "last_frame": 1, "reference_image": 9, "reference_video": 3, "reference_audio": 3}
        for role, count in counts.items():
            if count > limits[role]:
                raise MiniMaxError(2013, f"at most {limits[role]} {role} item(s)")
        roles = set(counts)
        references = roles & {"reference_image", "reference_video", "reference_audio"}
        if references and roles & {"first_frame", "last_frame"}:
            raise MiniMaxError(2013, "frame and reference inputs cannot be mixed")
        if sum(counts[r] for r in references) > 12:
            raise MiniMaxError(2013, "at most 12 references in all")
        if "reference_audio" in roles and not roles & {"reference_image", "reference_video"}:
            raise MiniMaxError(2013, "reference_audio needs at least one reference image or video")
        if not text and not roles:
            raise MiniMaxError(2013, "content needs text or media")
        return text, roles

    def _v2_image(self, name: str, url: str) -> None:
        try:
            self._check_image(name, url, self.min_ref_px, (0.4, 2.5))
        except MiniMaxError as err:
            raise MiniMaxError(2013, err.message.removeprefix("invalid params, ")) from None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _step(self, task: MiniMaxTask) -> None:
        states = V1_STATES if task.api == "v1" else V2_STATES
        if task.status not in states[:-1]:
            return  # finished (or cancelled)
        step = min(task.polls // self.polls_per_step, len(states) - 1)
        if step <= task.step:
            return
        task.step = step
        task.updated_at = int(time.time())
        if step < len(states) - 1:
            task.status = states[step]
        elif task.fail is not None:
            task.status = "Fail" if task.api == "v1" else "failed"
        else:
            task.status = states[-1]
            if task.api == "v1":
                task.file_id = int(f"{int(time.time())}{next(self._files):05d}")
            else:
                width, height = V2_FRAMES[task.ratio]
                task.url = self.publish(make_mp4(width, height, seed=len(self.tasks)))
        if task.api == "v1":
            self._v1_notify(task)
        else:
            self._v2_notify(task)

    def _v1_task_data(self, task: MiniMaxTask) -> dict[str, Any]:
        data: dict[str, Any] = {"task_id": task.task_id, "status": task.status}
        if task.status == "Success":
            width, height = {"512P": (912, 512), "720P": (1280, 720), "768P": (1366, 768)}.get(
                task.resolution, (1920, 1080)
            )
            data.update(file_id=str(task.file_id), video_width=width, video_height=height)
        return data

    def _v2_task_data(self, task: MiniMaxTask) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": task.task_id,
            "model": task.model,
            "status": task.status,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "resolution": task.resolution,
            "duration": task.duration,
            "ratio": task.ratio,
            "task_type": task.task_type,
            "modality": "video",
        }
        if task.status == "succeeded":
            data["content"] = {"url": task.url}
            data["usage"] = {"total_seconds": task.duration, "output_seconds": task.duration, "input_seconds": 0}
        if task.status == "failed" and task.fail is not None:
            data["error"] = {"code": str(task.fail[0]), "message": task.fail[1]}
        return data

    # -- callbacks ------------------------------------------------------------------------------------------

    def _spawn(self, work: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Called from a test's thread (advance()): run it on the server's loop.
            if self._loop is None:
                work.close()
                return
            asyncio.run_coroutine_threadsafe(work, self._loop)
            return
        self._loop = loop
        job = loop.create_task(work)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def _post(self, url: str, body: dict[str, Any]) -> Callback:
        record = Callback(url=url, body=body)
        self.callbacks.append(record)
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                answer = await client.post(url, json=body)
            record.status = answer.status_code
            try:
                record.answer = answer.json()
            except ValueError:
                record.answer = answer.text[:200]
        except httpx.HTTPError as exc:
            record.error = f"{exc.__class__.__name__}: {exc}"
        return record

    async def _v1_handshake(self, task: MiniMaxTask) -> None:
        assert task.callback_url is not None
        challenge = secrets.token_urlsafe(16)
        reply = await self._post(task.callback_url, {"challenge": challenge})
        task.callback_verified = reply.status == 200 and reply.answer == {"challenge": challenge}

    def _v1_notify(self, task: MiniMaxTask) -> None:
        if not task.callback_url or not task.callback_verified:
            return
        status = {"Success": "success", "Fail": "failed"}.get(task.status, "processing")
        body: dict[str, Any] = {"task_id": task.task_id, "status": status}
        if task.file_id is not None:
            body["file_id"] = str(task.file_id)
        code, message = task.fail if task.status == "Fail" and task.fail else (0, "success")
        body["base_resp"] = self._base_resp(code, message)
        self._spawn(self._post(task.callback_url, body))

    def _v2_notify(self, task: MiniMaxTask) -> None:
        # ASSUMPTION: V2 callbacks post the task object as GET returns it, on each status change.
        if task.callback_url:
            self._spawn(self._post(task.callback_url, {"task": self._v2_task_data(task)}))
