"""Vidu (Shengshu) enterprise API emulator: `Authorization: Token <key>`, the four /ent/v2 create endpoints with
their per-model rules, task query and cancel, the `{code, reason, message, metadata}` error body, and faults.

Behaviour follows /work/shared/reference/providers.md §5 and §6.5; choices where the docs are silent are noted
next to the code.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream, Fault, InjectedFault, Recorded, make_mp4

Q1 = ("viduq1", "viduq1-classic")
Q2 = ("viduq2", "viduq2-pro", "viduq2-turbo", "viduq2-pro-fast")
Q3 = ("viduq3-turbo", "viduq3-pro")
LEGACY = ("vidu2.0", "vidu1.5")
# Union of the CN (late 2025) and older international doc lists per endpoint (providers.md §5.4).
MODELS = {
    "text2video": ("viduq3-turbo", "viduq3-pro", "viduq2", "viduq1", "vidu1.5"),
    "img2video": ("viduq2-pro-fast", "viduq2-pro", "viduq2-turbo", "viduq1", "viduq1-classic", "vidu2.0", "vidu1.5"),
    "start-end2video": (
        "viduq2-pro-fast",
        "viduq2-pro",
        "viduq2-turbo",
        "viduq1",
        "viduq1-classic",
        "vidu2.0",
        "vidu1.5",
    ),
    "reference2video": ("viduq2", "viduq1", "vidu2.0", "vidu1.5"),
}
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
WIDE_ASPECT_RATIOS = ("3:4", "4:3")  # q2/q3 only
STYLES = ("general", "anime")
AMPLITUDES = ("auto", "small", "medium", "large")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,(.*)$", re.DOTALL)
MAX_PAYLOAD = 1_048_576
STATES = ("created", "queueing", "processing", "success")
CANCELLABLE = ("created", "queueing")
FRAME_SIZES = {"16:9": (160, 90), "9:16": (90, 160), "1:1": (96, 96), "3:4": (96, 128), "4:3": (128, 96)}
CREDITS_PER_SECOND = {"360p": 1, "540p": 1, "720p": 2, "1080p": 4}


class ViduError(Exception):
    """A refusal in Vidu's body shape: HTTP status (also the body's `code`) + `reason` + `message`."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def invalid(field_name: str) -> ViduError:
    return ViduError(400, "FieldInvalid", f"invalid field: {field_name}")


def lacking(field_name: str) -> ViduError:
    return ViduError(400, "FieldLacking", f"field is missing or empty: {field_name}")


@dataclass
class ViduTask:
    task_id: str
    endpoint: str
    params: dict[str, Any]  # the normalised create parameters, echoed in the create response
    credits: int
    created_at: str  # RFC3339
    fail_code: str | None = None  # set at creation: the task will end "failed" with this err_code
    polls: int = 0
    state: str = "created"
    err_code: str = ""
    creations: list[dict[str, str]] = field(default_factory=list)
    callback_url: str | None = None
    finished_at: float | None = None  # time.time() when it reached success/failed


def rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def model_family(model: str) -> str:
    if model in Q1:
        return "q1"
    if model in Q2:
        return "q2"
    if model in Q3:
        return "q3"
    return "legacy"


class FakeVidu(FakeUpstream):
    """Vidu emulator. `polls_per_step` query polls move a task one state along
    (created→queueing→processing→success).

    With `finish_after_s` set, tasks run by the clock instead (processing at once, finished that many seconds
    after creation), and a task created with a `callback_url` gets the query body POSTed to it on each of
    those status changes (as Vidu does).
    """

    name = "vidu"

    def __init__(self, api_key: str = "vda_test", polls_per_step: int = 1) -> None:
        if polls_per_step < 1:
            raise ValueError("polls_per_step must be >= 1")
        self.api_key = api_key
        self.polls_per_step = polls_per_step
        self.tasks: dict[str, ViduTask] = {}
        # `images: null` on text2video is accepted by default (new-api always sends it and whether the real
        # service refuses it is unknown, providers.md §7.5); set True to refuse it with FieldUnwanted.
        self.reject_null_images = False
        self._fail_next: list[str] = []
        self._ids = itertools.count(1)
        self.finish_after_s: float | None = None
        self._callback_jobs: set[asyncio.Task[None]] = set()
        super().__init__()

    # -- public knobs -------------------------------------------------------------------------------------

    def fail_next(self, err_code: str = "CreationPolicyViolation") -> None:
        """The next created task ends `failed` with this `err_code`."""
        self._fail_next.append(err_code)

    def reset(self) -> None:
        """Forget all tasks, requests, files and faults, so one running fake can serve many tests."""
        self.tasks.clear()
        self.history.clear()
        self.files.clear()
        self.faults.clear()
        self._fail_next.clear()
        self.file_ttl_s = 3600.0
        self.reject_null_images = False
        self.finish_after_s = None
        self.callbacks_sent.clear()

    # -- FakeUpstream hooks -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/ent/v2/tasks/{task_id}/creations", self._query, methods=["GET"]),
            Route("/ent/v2/tasks/{task_id}/cancel", self._cancel, methods=["POST"]),
            Route("/ent/v2/{endpoint}", self._create, methods=["POST"]),
        ]

    def fault_response(self, kind: Fault) -> Response:
        if kind == "429":
            return self._error(ViduError(429, "TooManyRequests", "too many requests, please retry later"))
        if kind == "502":
            # A 502 comes from the load balancer in front of the API, not from Vidu itself.
            return PlainTextResponse(
                "<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502, media_type="text/html"
            )
        if kind == "503":
            # Not in Vidu's published table; a maintenance window answers like this behind their gateway.
            return self._error(ViduError(503, "ServiceUnavailable", "service unavailable"))
        if kind == "timeout":
            return self._error(ViduError(504, "GatewayTimeout", "upstream request timeout"))
        return self._error(ViduError(500, "InternalServiceFailure", "internal service failure"))

    # -- envelope -----------------------------------------------------------------------------------------

    @staticmethod
    def _error(err: ViduError) -> JSONResponse:
        body = {
            "code": err.status,
            "reason": err.reason,
            "message": err.message,
            "metadata": {"trace_id": secrets.token_hex(16)},
        }
        return JSONResponse(body, status_code=err.status)

    def _authenticate(self, entry: Recorded) -> None:
        # Exactly "Token <key>": "Bearer <key>" with the right key is refused too, as the real service does.
        if entry.headers.get("authorization") != f"Token {self.api_key}":
            raise ViduError(401, "Unauthorized", "unauthorized")

    async def _injected(self, call: str) -> tuple[Response | None, Fault | None]:
        """Apply a queued fault: (a ready response, None) or (None, a fault the handler interprets)."""
        try:
            await self.fault(call)
        except InjectedFault as exc:
            return exc.response, (None if exc.response is not None else exc.kind)
        return None, None

    # -- handlers -------------------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        entry = await self.record(request)
        endpoint = request.path_params["endpoint"]
        try:
            if endpoint not in MODELS:
                raise ViduError(404, "NotFound", f"not found: /ent/v2/{endpoint}")
            self._authenticate(entry)
            response, injected = await self._injected("submit")
            if response is not None:
                return response
            task = self._new_task(endpoint, self._parse_body(entry))
            if injected == "drop_reply":
                # The task exists upstream but the client only sees a 500 (a ghost task that still costs credits).
                raise ViduError(500, "InternalServiceFailure", "internal service failure")
            state = "paused_x" if injected == "unknown_status" else task.state
            return JSONResponse(
                {
                    "task_id": task.task_id,
                    "state": state,
                    **task.params,
                    "credits": task.credits,
                    "created_at": task.created_at,
                }
            )
        except ViduError as err:
            return self._error(err)

    async def _query(self, request: Request) -> Response:
        entry = await self.record(request)
        try:
            self._authenticate(entry)
            response, injected = await self._injected("poll")
            if response is not None:
                return response
            task = self.tasks.get(request.path_params["task_id"])
            if task is None or injected == "not_found":
                raise ViduError(404, "TaskNotFound", "task not found")
            if injected == "unknown_status":
                return JSONResponse({**self._task_data(task), "state": "paused_x"})
            self._advance(task)
            if injected == "drop_reply":
                raise ViduError(500, "InternalServiceFailure", "internal service failure")
            return JSONResponse(self._task_data(task))
        except ViduError as err:
            return self._error(err)

    async def _cancel(self, request: Request) -> Response:
        entry = await self.record(request)
        try:
            self._authenticate(entry)
            response, _ = await self._injected("cancel")
            if response is not None:
                return response
            task = self.tasks.get(request.path_params["task_id"])
            if task is None:
                raise ViduError(404, "TaskNotFound", "task not found")
            if task.state not in CANCELLABLE:
                raise ViduError(400, "BadRequest", f"task state is {task.state}, can not cancel")
            task.state, task.err_code = "failed", "UserCancelled"
            return JSONResponse({})
        except ViduError as err:
            return self._error(err)

    # -- validation -----------------------------------------------------------------------------------------

    @staticmethod
    def _parse_body(entry: Recorded) -> dict[str, Any]:
        try:
            body = orjson.loads(entry.body) if entry.body else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise ViduError(400, "BadRequest", "request body must be a JSON object")
        return body

    def _new_task(self, endpoint: str, body: dict[str, Any]) -> ViduTask:
        model = self._check_model(endpoint, body)
        images = self._check_images(endpoint, model, body)
        prompt = self._check_prompt(endpoint, model, body)
        duration = self._check_duration(endpoint, model, body)
        resolution = self._check_resolution(model, duration, body)
        params: dict[str, Any] = {"model": model}
        if endpoint == "text2video":
            params["style"] = self._check_enum(body, "style", "general", STYLES)
        params["prompt"] = prompt
        if images:
            params["images"] = images
        params["duration"] = duration
        params["seed"] = self._check_seed(body)
        if endpoint in ("text2video", "reference2video"):
            params["aspect_ratio"] = self._check_aspect(model, body)
        params["resolution"] = resolution
        params["movement_amplitude"] = self._check_enum(body, "movement_amplitude", "auto", AMPLITUDES)
        params.update(self._check_flags(body))
        params["payload"] = self._check_payload(body)
        callback = body.get("callback_url")
        if callback is not None and not (isinstance(callback, str) and callback.startswith(("http://", "https://"))):
            raise invalid("callback_url")
        task = self._store(endpoint, params, body)
        task.callback_url = callback
        if self.finish_after_s is not None:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._by_clock, task, "processing")
            loop.call_later(self.finish_after_s, self._by_clock, task, "success")
        return task

    def _by_clock(self, task: ViduTask, state: str) -> None:
        """Move a clock-driven task along and call back."""
        if task.state in ("success", "failed"):
            return
        if state != "success":
            task.state = state
        elif task.fail_code is not None:
            task.state, task.err_code = "failed", task.fail_code
            task.finished_at = time.time()
        else:
            self._finish(task)
        if task.callback_url:
            job = asyncio.get_running_loop().create_task(self.call_back(task.callback_url, self._task_data(task)))
            self._callback_jobs.add(job)
            job.add_done_callback(self._callback_jobs.discard)

    def _store(self, endpoint: str, params: dict[str, Any], body: dict[str, Any]) -> ViduTask:
        fail = self._fail_next.pop(0) if self._fail_next else None
        if fail is None and "FAIL" in params["prompt"]:
            fail = "CreationPolicyViolation"
        credits = params["duration"] * CREDITS_PER_SECOND.get(params["resolution"], 2)
        if params["off_peak"]:
            credits = max(1, credits // 2)
        task = ViduTask(
            task_id=f"9162050{int(time.time()) % 10**7:07d}{next(self._ids):04d}",
            endpoint=endpoint,
            params=params,
            credits=credits,
            created_at=rfc3339_now(),
            fail_code=fail,
        )
        self.tasks[task.task_id] = task
        return task

    @staticmethod
    def _check_model(endpoint: str, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not model:
            raise lacking("model")
        if model not in MODELS[endpoint]:
            raise invalid("model")
        return str(model)

    def _check_images(self, endpoint: str, model: str, body: dict[str, Any]) -> list[str]:
        images = body.get("images")
        if endpoint == "text2video":
            if "images" in body and (images is not None or self.reject_null_images):
                raise ViduError(400, "FieldUnwanted", "unwanted field: images")
            return []
        if not images:
            raise lacking("images")
        if not isinstance(images, list):
            raise invalid("images")
        low, high = {"img2video": (1, 1), "start-end2video": (2, 2)}.get(endpoint, (1, 3 if model in LEGACY else 7))
        if not low <= len(images) <= high:
            raise ViduError(400, "FieldItemCountOutOfRange", f"field item count out of range: images ({low}-{high})")
        for image in images:
            self._check_image(image)
        return list(images)

    @staticmethod
    def _check_image(value: Any) -> None:
        """A URL (not fetched) or base64 WITH a `data:image/...;base64,` prefix of a png/jpeg/webp."""
        if not isinstance(value, str):
            raise invalid("images")
        if value.startswith(("http://", "https://")):
            return
        match = DATA_URI.match(value)
        if match is None:
            # Raw base64 (Kling's style) lands here: Vidu wants the data URI prefix.
            raise invalid("images")
        try:
            raw = base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise invalid("images") from None
        try:
            with Image.open(io.BytesIO(raw)) as img:
                fmt, (width, height) = img.format, img.size
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError):
            raise ViduError(400, "ImageFormatInvalid", "image format invalid") from None
        if fmt not in IMAGE_FORMATS:
            raise ViduError(400, "ImageFormatInvalid", f"image format invalid: {fmt}")
        if not 1 / 4 < width / height < 4:
            raise ViduError(400, "PageSizeOutOfRange", "image aspect ratio must be within 1:4 and 4:1")

    @staticmethod
    def _check_prompt(endpoint: str, model: str, body: dict[str, Any]) -> str:
        prompt = body.get("prompt")
        if prompt is None or prompt == "":
            if endpoint == "text2video":
                raise lacking("prompt")
            return ""
        if not isinstance(prompt, str):
            raise invalid("prompt")
        limit = 5000 if model in Q3 else 2000
        if len(prompt) > limit:
            raise invalid("prompt")
        return prompt

    @staticmethod
    def _check_duration(endpoint: str, model: str, body: dict[str, Any]) -> int:
        family = model_family(model)
        default = 4 if family == "legacy" else 5
        duration = body.get("duration", default)
        if isinstance(duration, bool) or not isinstance(duration, int):
            raise invalid("duration")
        if family == "q1":
            allowed = range(5, 6)
        elif family == "legacy":
            allowed = range(4, 9, 4)
        elif family == "q2":
            allowed = range(1, 9 if endpoint == "start-end2video" else 11)
        else:
            allowed = range(1, 17)
        if duration not in allowed:
            raise invalid("duration")
        return duration

    @staticmethod
    def _check_resolution(model: str, duration: int, body: dict[str, Any]) -> str:
        family = model_family(model)
        allowed: tuple[str, ...]
        if family == "q1":
            allowed, default = ("1080p",), "1080p"
        elif family == "legacy":
            allowed, default = (("360p", "720p", "1080p"), "360p") if duration == 4 else (("720p",), "720p")
        elif model == "viduq2-pro-fast":
            allowed, default = ("720p", "1080p"), "720p"
        else:
            # q3 resolutions are not captured in the docs; assumed equal to q2's.
            allowed, default = ("540p", "720p", "1080p"), "720p"
        resolution = body.get("resolution", default)
        # A raw size such as "1280x720" is refused like any unlisted value: Vidu only speaks in "<lines>p".
        if not isinstance(resolution, str) or resolution not in allowed:
            raise invalid("resolution")
        return resolution

    @staticmethod
    def _check_aspect(model: str, body: dict[str, Any]) -> str:
        aspect = body.get("aspect_ratio", "16:9")
        allowed = ASPECT_RATIOS + (WIDE_ASPECT_RATIOS if model_family(model) in ("q2", "q3") else ())
        if aspect not in allowed:
            raise invalid("aspect_ratio")
        return str(aspect)

    @staticmethod
    def _check_enum(body: dict[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = body.get(name, default)
        if value not in allowed:
            raise invalid(name)
        return str(value)

    @staticmethod
    def _check_seed(body: dict[str, Any]) -> int:
        seed = body.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise invalid("seed")
        # 0 or absent means random; the response reports the seed actually used.
        return seed or secrets.randbelow(2**31 - 1) + 1

    @staticmethod
    def _check_flags(body: dict[str, Any]) -> dict[str, bool]:
        flags = {}
        for name in ("bgm", "off_peak", "watermark", "audio"):
            value = body.get(name, False)
            if not isinstance(value, bool):
                raise invalid(name)
            flags[name] = value
        if flags["off_peak"] and flags["audio"]:
            raise invalid("off_peak")
        if not flags["audio"]:
            del flags["audio"]  # only echoed when asked for, as in the doc sample
        return flags

    @staticmethod
    def _check_payload(body: dict[str, Any]) -> str:
        payload = body.get("payload", "")
        if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD:
            raise invalid("payload")
        return payload

    # -- state machine and rendering --------------------------------------------------------------------------

    def _advance(self, task: ViduTask) -> None:
        """Count a poll; every `polls_per_step` polls move the task one state along."""
        if task.state in ("success", "failed") or self.finish_after_s is not None:
            return
        task.polls += 1
        state = STATES[min(task.polls // self.polls_per_step, len(STATES) - 1)]
        if state != "success":
            task.state = state
        elif task.fail_code is not None:
            task.state, task.err_code = "failed", task.fail_code
            task.finished_at = time.time()
        else:
            self._finish(task)

    def _finish(self, task: ViduTask) -> None:
        # Published at completion so a test can set file_ttl_s beforehand to get an already-expired URL.
        width, height = FRAME_SIZES.get(task.params.get("aspect_ratio", "16:9"), (160, 90))
        video = make_mp4(width, height, seed=len(self.tasks))
        task.creations = [
            {
                "id": f"{task.task_id}01",
                "url": self.publish(video),
                "cover_url": self.publish(jpeg_cover(width, height), suffix="jpg"),
                "watermarked_url": self.publish(video),
            }
        ]
        task.state = "success"
        task.finished_at = time.time()

    @staticmethod
    def _task_data(task: ViduTask) -> dict[str, Any]:
        return {
            "id": task.task_id,
            "state": task.state,
            "err_code": task.err_code,
            "credits": task.credits,
            "payload": task.params["payload"],
            "bgm": task.params["bgm"],
            "off_peak": task.params["off_peak"],
            "creations": task.creations,
        }


def jpeg_cover(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()
