"""Kling AI (Kuaishou) video API emulator: HS256 JWT auth, text2video / image2video create, query (by task_id or
external_task_id) and list, the `{code, message, request_id}` envelope, and fault injection.

Behaviour follows /work/shared/reference/providers.md §3 and §6.3. Where the docs are silent the choices are
noted next to the code (e.g. an unknown model is 400/1201, not 404/1203).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream, Fault, InjectedFault, Recorded, make_mp4

T2V_MODELS = ("kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master", "kling-v2-5-turbo", "kling-v2-6")
I2V_MODELS = (
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
)
MODELS = {"text2video": T2V_MODELS, "image2video": I2V_MODELS}
DURATIONS = ("5", "10")
MODES = ("std", "pro")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward")
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
MAX_PROMPT = 2500
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_FORMATS = ("JPEG", "PNG")
# Happy path; a failing task replaces the last state with "failed".
STATES = ("submitted", "processing", "succeed")
RISK_CONTROL_MSG = "Failure to pass the risk control system"
# Small stand-ins for 720p/1080p output, in the task's aspect ratio (even sizes, as H.264 yuv420p needs).
FRAME_SIZES = {"16:9": (160, 90), "9:16": (90, 160), "1:1": (96, 96)}


class KlingError(Exception):
    """A refusal in Kling's envelope: HTTP status + business code + message."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


@dataclass
class KlingTask:
    task_id: str
    kind: str  # "text2video" | "image2video": the family it must be queried under
    body: dict[str, Any]
    model_name: str
    duration: str
    aspect_ratio: str
    external_task_id: str | None
    created_at: int  # ms
    updated_at: int  # ms
    fail_message: str | None = None  # set at creation: the task will end "failed" with this message
    polls: int = 0
    status: str = "submitted"
    status_msg: str = ""
    videos: list[dict[str, str]] = field(default_factory=list)
    callback_url: str | None = None
    finished_at: float | None = None  # time.time() when it reached succeed/failed


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeKling(FakeUpstream):
    """Kling emulator. `polls_per_step` query polls move a task one state along (submitted→processing→succeed).

    With `finish_after_s` set, tasks run by the clock instead: processing at once, finished that many seconds
    after creation whatever the polls, and a task created with a `callback_url` gets the task object POSTed
    to it on each of those status changes (as Kling does).
    """

    name = "kling"

    def __init__(self, access_key: str = "ak-test", secret_key: str = "sk-test", polls_per_step: int = 1) -> None:
        if polls_per_step < 1:
            raise ValueError("polls_per_step must be >= 1")
        self.access_key = access_key
        self.secret_key = secret_key
        self.polls_per_step = polls_per_step
        self.tasks: dict[str, KlingTask] = {}
        # Decoded JWT claims of every API request in arrival order (None when the token could not be decoded);
        # `claims_of(recorded)` maps one history entry to its claims.
        self.jwt_claims: list[dict[str, Any] | None] = []
        self._claims_by_entry: dict[int, dict[str, Any] | None] = {}
        self._fail_next: list[str] = []
        # The docs ask for >=300 px images; tests of other components may lower this to send tiny images.
        self.min_image_px = 300
        # Seconds from creation to the end (or a function drawing them per task); None: tasks move by polls.
        self.finish_after_s: float | Callable[[], float] | None = None
        # How long every query waits before it answers (an upstream's latency).
        self.query_latency_s = 0.0
        # One video per frame size for every task (cheap, for benchmarks), instead of a distinct one per task.
        self.reuse_video = False
        self._videos: dict[tuple[int, int], bytes] = {}
        self._callback_jobs: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        super().__init__()

    # -- public knobs -------------------------------------------------------------------------------------

    def fail_next(self, message: str = RISK_CONTROL_MSG) -> None:
        """The next created task ends `failed` with this `task_status_msg`."""
        self._fail_next.append(message)

    def reset(self) -> None:
        """Forget all tasks, requests, files and faults, so one running fake can serve many tests."""
        self.tasks.clear()
        self.history.clear()
        self.files.clear()
        self.faults.clear()
        self.jwt_claims.clear()
        self._claims_by_entry.clear()
        self._fail_next.clear()
        self.file_ttl_s = 3600.0
        self.min_image_px = 300
        self.finish_after_s = None
        self.query_latency_s = 0.0
        self.callbacks_sent.clear()

    def claims_of(self, entry: Recorded) -> dict[str, Any] | None:
        return self._claims_by_entry.get(id(entry))

    def task_by_external_id(self, external_task_id: str) -> KlingTask | None:
        return next((t for t in self.tasks.values() if t.external_task_id == external_task_id), None)

    # -- FakeUpstream hooks -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos/{kind}", self._collection, methods=["GET", "POST"]),
            Route("/v1/videos/{kind}/{task_id}", self._query, methods=["GET"]),
        ]

    def fault_response(self, kind: Fault) -> Response:
        if kind == "429":
            return self._error(KlingError(429, 1302, "request too fast, rate limit exceeded, please retry later"))
        if kind == "503":
            return self._error(KlingError(503, 5001, "service temporarily unavailable, under maintenance"))
        if kind == "502":
            # A 502 comes from the load balancer in front of the API, not from Kling itself.
            return PlainTextResponse(
                "<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502, media_type="text/html"
            )
        if kind == "timeout":
            return self._error(KlingError(504, 5002, "server internal timeout, please retry later"))
        return self._error(KlingError(500, 5000, "server internal error"))

    # -- envelope -----------------------------------------------------------------------------------------

    @staticmethod
    def _error(err: KlingError) -> JSONResponse:
        return JSONResponse(
            {"code": err.code, "message": err.message, "request_id": str(uuid.uuid4())}, status_code=err.http_status
        )

    @staticmethod
    def _ok(data: Any) -> JSONResponse:
        return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data})

    # -- auth -----------------------------------------------------------------------------------------------

    def _authenticate(self, entry: Recorded) -> None:
        """Verify the per-request JWT like Kling: empty → 1001, unparsable/bad signature → 1002, unknown AK → 1000,
        nbf in the future → 1003, exp passed → 1004 (all HTTP 401)."""
        header = entry.headers.get("authorization")
        if not header:
            raise KlingError(401, 1001, "Authorization is empty")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token or " " in token:
            raise KlingError(401, 1002, "Authorization is invalid: expected 'Bearer <jwt>'")
        claims = self._decode_unverified(token)
        self.jwt_claims.append(claims)
        self._claims_by_entry[id(entry)] = claims
        if claims is None:
            raise KlingError(401, 1002, "Authorization is invalid: token is not a JWT")
        if claims.get("iss") != self.access_key:
            raise KlingError(401, 1000, "Authentication failed: unknown access key (iss)")
        if not self._signature_ok(token):
            raise KlingError(401, 1002, "Authorization is invalid: signature verification failed")
        self._check_times(claims)

    @staticmethod
    def _decode_unverified(token: str) -> dict[str, Any] | None:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        return claims if isinstance(claims, dict) else None

    def _signature_ok(self, token: str) -> bool:
        """HS256 over `header.payload` with the secret key as UTF-8 bytes. Computed with hmac directly because
        PyJWT warns about keys shorter than 32 bytes, and the test suite turns warnings into errors."""
        try:
            if jwt.get_unverified_header(token).get("alg") != "HS256":
                return False
        except jwt.PyJWTError:
            return False
        signing_input, _, signature = token.rpartition(".")
        expected = hmac.new(self.secret_key.encode(), signing_input.encode(), hashlib.sha256).digest()
        try:
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(expected, given)

    @staticmethod
    def _check_times(claims: dict[str, Any]) -> None:
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        # exp is required: Kling's sample always sends it and an adapter that forgets it should fail loudly.
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise KlingError(401, 1002, "Authorization is invalid: exp claim is required")
        if nbf is not None and (not isinstance(nbf, int | float) or isinstance(nbf, bool)):
            raise KlingError(401, 1002, "Authorization is invalid: nbf must be a number")
        # One second of slack for clock rounding only; the official sample back-dates nbf by 5 s for this reason.
        if nbf is not None and nbf > now + 1:
            raise KlingError(401, 1003, "Authorization is not yet valid (nbf is in the future)")
        if exp < now:
            raise KlingError(401, 1004, "Authorization is expired (exp has passed)")

    # -- handlers -------------------------------------------------------------------------------------------

    async def _collection(self, request: Request) -> Response:
        entry = await self.record(request)
        kind = request.path_params["kind"]
        try:
            if kind not in MODELS:
                raise KlingError(404, 1202, f"requested method is invalid: /v1/videos/{kind}")
            self._authenticate(entry)
            if request.method == "POST":
                return await self._create(entry, kind)
            return await self._list(entry, kind)
        except KlingError as err:
            return self._error(err)

    async def _create(self, entry: Recorded, kind: str) -> Response:
        answer, injected = await self.inject("submit")
        if answer is not None:
            return answer
        if injected == "not_found":
            raise KlingError(404, 1203, "requested resource does not exist")
        task = self._new_task(kind, self._parse_body(entry))
        if injected == "drop_reply":
            # The task exists upstream but the client only sees a 500: it must recover via external_task_id.
            raise KlingError(500, 5000, "server internal error")
        cut = await self.after_work(injected)
        if cut is not None:
            return cut  # "cut": the task exists, the connection drops before the answer
        data = self._task_data(task)
        if injected == "unknown_status":
            data["task_status"] = "weird"
        return self._ok(data)

    async def _list(self, entry: Recorded, kind: str) -> Response:
        try:
            await self.fault("list")
        except InjectedFault as exc:
            if exc.response is not None:
                return exc.response
        page_num = self._int_param(entry.query, "pageNum", 1, 1, 1000)
        page_size = self._int_param(entry.query, "pageSize", 30, 1, 500)
        # Newest first, as a task console would list them (the docs do not state the order).
        family = sorted(
            (t for t in self.tasks.values() if t.kind == kind),
            key=lambda t: (t.created_at, int(t.task_id[-6:])),  # ids end in a counter: ties in a ms keep order
            reverse=True,
        )
        start = (page_num - 1) * page_size
        return self._ok([self._task_data(t) for t in family[start : start + page_size]])

    async def _query(self, request: Request) -> Response:
        entry = await self.record(request)
        kind, wanted = request.path_params["kind"], request.path_params["task_id"]
        try:
            if kind not in MODELS:
                raise KlingError(404, 1202, f"requested method is invalid: /v1/videos/{kind}")
            self._authenticate(entry)
            answer, injected = await self.inject("poll")
            if answer is not None:
                return answer
            if self.query_latency_s:
                await asyncio.sleep(self.query_latency_s)
            task = self.tasks.get(wanted) or self.task_by_external_id(wanted)
            if task is None or task.kind != kind or injected == "not_found":
                raise KlingError(404, 1203, "requested resource does not exist: task not found")
            if injected == "unknown_status":
                return self._ok({**self._task_data(task), "task_status": "weird"})
            self._advance(task)
            if injected == "drop_reply":
                raise KlingError(500, 5000, "server internal error")
            return self._ok(self._task_data(task))
        except KlingError as err:
            return self._error(err)

    # -- validation -----------------------------------------------------------------------------------------

    @staticmethod
    def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
        raw = query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise KlingError(400, 1201, f"{name} must be an integer") from None
        if not low <= value <= high:
            raise KlingError(400, 1201, f"{name} must be between {low} and {high}")
        return value

    @staticmethod
    def _parse_body(entry: Recorded) -> dict[str, Any]:
        try:
            body = orjson.loads(entry.body) if entry.body else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise KlingError(400, 1200, "invalid request parameters: the body must be a JSON object")
        return body

    def _new_task(self, kind: str, body: dict[str, Any]) -> KlingTask:
        model = self._check_model(kind, body)
        duration = self._check_choice(body, "duration", "5", DURATIONS)
        self._check_choice(body, "mode", "std", MODES)
        self._check_prompt(kind, body)
        self._check_cfg_scale(model, body)
        self._check_sound(model, body)
        self._check_camera(body)
        if kind == "text2video":
            aspect = self._check_choice(body, "aspect_ratio", "16:9", ASPECT_RATIOS)
        else:
            aspect = self._check_images(body)
        external = self._check_external_id(body)
        callback = body.get("callback_url")
        if callback is not None and not (isinstance(callback, str) and callback.startswith(("http://", "https://"))):
            raise KlingError(400, 1201, "callback_url must be an http(s) URL")
        ts = now_ms()
        fail = self._fail_next.pop(0) if self._fail_next else None
        if fail is None and "FAIL" in str(body.get("prompt") or ""):
            fail = RISK_CONTROL_MSG
        task = KlingTask(
            task_id=f"{int(time.time() * 1000)}{next(self._ids):06d}",
            kind=kind,
            body=body,
            model_name=model,
            duration=duration,
            aspect_ratio=aspect,
            external_task_id=external,
            created_at=ts,
            updated_at=ts,
            fail_message=fail,
            callback_url=callback,
        )
        self.tasks[task.task_id] = task
        if self.finish_after_s is not None:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._by_clock, task, "processing")
            after = self.finish_after_s() if callable(self.finish_after_s) else self.finish_after_s
            loop.call_later(after, self._by_clock, task, "succeed")
        return task

    def _by_clock(self, task: KlingTask, status: str) -> None:
        """Move a clock-driven task along and call back."""
        if task.status in ("succeed", "failed"):
            return
        task.updated_at = now_ms()
        if status != "succeed":
            task.status = status
        elif task.fail_message is not None:
            task.status, task.status_msg = "failed", task.fail_message
        else:
            self._finish(task)
        if task.status in ("succeed", "failed"):
            task.finished_at = time.time()
        if task.callback_url:
            job = asyncio.get_running_loop().create_task(self.call_back(task.callback_url, self._task_data(task)))
            self._callback_jobs.add(job)
            job.add_done_callback(self._callback_jobs.discard)

    @staticmethod
    def _check_model(kind: str, body: dict[str, Any]) -> str:
        # The legacy `model` field is still accepted when model_name is absent (new-api sends both).
        model = body.get("model_name") or body.get("model") or "kling-v1"
        if model not in MODELS[kind]:
            allowed = ", ".join(MODELS[kind])
            raise KlingError(400, 1201, f"model_name '{model}' is not supported by {kind}; supported: {allowed}")
        return str(model)

    @staticmethod
    def _check_choice(body: dict[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = body.get(name, default)
        choices = ", ".join(f'"{a}"' for a in allowed)
        if not isinstance(value, str):
            kind = type(value).__name__
            raise KlingError(400, 1201, f"{name} must be a string, one of {choices} (got {kind} {value!r})")
        if value not in allowed:
            raise KlingError(400, 1201, f"{name} '{value}' is invalid; allowed: {choices}")
        return value

    @staticmethod
    def _check_prompt(kind: str, body: dict[str, Any]) -> None:
        for name in ("prompt", "negative_prompt"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise KlingError(400, 1201, f"{name} must be a string")
            if value is not None and len(value) > MAX_PROMPT:
                raise KlingError(400, 1201, f"{name} must be at most {MAX_PROMPT} characters")
        if kind == "text2video" and not body.get("prompt"):
            raise KlingError(400, 1201, "prompt is required for text2video")

    @staticmethod
    def _check_cfg_scale(model: str, body: dict[str, Any]) -> None:
        if "cfg_scale" not in body:
            return
        value = body["cfg_scale"]
        if model.startswith("kling-v2"):
            # CN doc: "kling-v2.x 模型不支持" cfg_scale.
            raise KlingError(400, 1201, f"cfg_scale is not supported by {model} (kling-v2.x models)")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise KlingError(400, 1201, "cfg_scale must be a number between 0 and 1")

    @staticmethod
    def _check_sound(model: str, body: dict[str, Any]) -> None:
        sound = body.get("sound", "off")
        if sound not in ("on", "off"):
            raise KlingError(400, 1201, 'sound must be "on" or "off"')
        if sound == "on" and model != "kling-v2-6":
            raise KlingError(400, 1201, f"sound is not supported by {model}")

    @staticmethod
    def _check_camera(body: dict[str, Any]) -> None:
        camera = body.get("camera_control")
        if camera is None:
            return
        if not isinstance(camera, dict) or camera.get("type") not in CAMERA_TYPES:
            raise KlingError(400, 1201, f"camera_control.type must be one of {', '.join(CAMERA_TYPES)}")
        config = camera.get("config")
        if camera["type"] != "simple":
            if config is not None:
                raise KlingError(400, 1201, "camera_control.config is only allowed with type 'simple'")
            return
        if not isinstance(config, dict):
            raise KlingError(400, 1201, "camera_control.config is required with type 'simple'")
        values = [config.get(axis, 0) for axis in CAMERA_AXES]
        if any(isinstance(v, bool) or not isinstance(v, int | float) or not -10 <= v <= 10 for v in values):
            raise KlingError(400, 1201, "camera_control.config values must be numbers in [-10, 10]")
        if sum(1 for v in values if v != 0) != 1:
            raise KlingError(400, 1201, "camera_control.config must have exactly one non-zero value")

    def _check_images(self, body: dict[str, Any]) -> str:
        """image2video rules; returns the aspect ratio the output will follow (the image's, when known)."""
        if "aspect_ratio" in body:
            raise KlingError(400, 1201, "aspect_ratio is not supported by image2video: the video follows the image")
        image, tail = body.get("image"), body.get("image_tail")
        if not image and not tail:
            raise KlingError(400, 1201, "image is required (or image_tail)")
        masks = body.get("static_mask") or body.get("dynamic_masks")
        groups = [bool(image and tail), bool(masks), bool(body.get("camera_control"))]
        if sum(groups) > 1:
            raise KlingError(
                400, 1201, "image+image_tail, static_mask/dynamic_masks and camera_control cannot be used together"
            )
        sizes = {
            name: self._check_image(name, value) for name, value in (("image", image), ("image_tail", tail)) if value
        }
        size = sizes.get("image") or sizes.get("image_tail")
        return nearest_aspect(*size) if size else "16:9"

    def _check_image(self, name: str, value: Any) -> tuple[int, int] | None:
        """A URL (not fetched) or raw base64 of a jpg/png; returns the decoded size, None for a URL."""
        if not isinstance(value, str):
            raise KlingError(400, 1201, f"{name} must be a string (URL or raw base64)")
        if value.startswith("data:"):
            raise KlingError(400, 1201, f"{name} must be a URL or raw base64 without the data: prefix")
        if value.startswith(("http://", "https://")):
            return None
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise KlingError(400, 1201, f"{name} is neither a URL nor valid base64") from None
        if len(raw) > MAX_IMAGE_BYTES:
            raise KlingError(400, 1201, f"{name} must be at most 10MB")
        try:
            with Image.open(io.BytesIO(raw)) as img:
                fmt, (width, height) = img.format, img.size
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError):
            raise KlingError(400, 1201, f"{name} is not a valid image (jpg/jpeg/png)") from None
        if fmt not in IMAGE_FORMATS:
            raise KlingError(400, 1201, f"{name} format {fmt} is not supported; use jpg/jpeg/png")
        if min(width, height) < self.min_image_px:
            raise KlingError(400, 1201, f"{name} must be at least {self.min_image_px}px on each side")
        if not 1 / 2.5 <= width / height <= 2.5:
            raise KlingError(400, 1201, f"{name} aspect ratio must be between 1:2.5 and 2.5:1")
        return width, height

    def _check_external_id(self, body: dict[str, Any]) -> str | None:
        external = body.get("external_task_id")
        if external is None or external == "":
            return None
        if not isinstance(external, str):
            raise KlingError(400, 1201, "external_task_id must be a string")
        if self.task_by_external_id(external) is not None:
            raise KlingError(400, 1201, f"external_task_id '{external}' already exists; it must be unique")
        return external

    # -- state machine and rendering --------------------------------------------------------------------------

    def _advance(self, task: KlingTask) -> None:
        """Count a poll; every `polls_per_step` polls move the task one state along."""
        if task.status in ("succeed", "failed") or self.finish_after_s is not None:
            return
        task.polls += 1
        step = min(task.polls // self.polls_per_step, len(STATES) - 1)
        status = STATES[step]
        if status == task.status:
            return
        task.updated_at = now_ms()
        if status != "succeed":
            task.status = status
        elif task.fail_message is not None:
            task.status, task.status_msg = "failed", task.fail_message
            task.finished_at = time.time()
        else:
            self._finish(task)

    def _finish(self, task: KlingTask) -> None:
        # Published at completion so a test can set file_ttl_s beforehand to get an already-expired URL.
        width, height = FRAME_SIZES[task.aspect_ratio]
        if self.reuse_video:
            video = self._videos.get((width, height)) or self._videos.setdefault(
                (width, height), make_mp4(width, height)
            )
            url = self.publish_shared(video)
        else:
            url = self.publish(make_mp4(width, height, seed=len(self.tasks)))
        task.videos = [{"id": str(uuid.uuid4()), "url": url, "duration": f"{task.duration}.0"}]
        task.status = "succeed"
        task.finished_at = time.time()

    def _task_data(self, task: KlingTask) -> dict[str, Any]:
        info = {"external_task_id": task.external_task_id} if task.external_task_id else {}
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": task.status,
            "task_status_msg": task.status_msg,
            "task_info": info,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
        }
        if task.status == "succeed":
            units = {"5": 1, "10": 2}[task.duration] * (2 if task.body.get("mode") == "pro" else 1)
            data["final_unit_deduction"] = str(units)
            watermark = task.body.get("watermark_info")
            data["watermark_info"] = {"enabled": isinstance(watermark, dict) and bool(watermark.get("enabled"))}
            data["task_result"] = {"videos": task.videos}
        return data


def nearest_aspect(width: int, height: int) -> str:
    """The output aspect an image2video task gets: the supported ratio closest to the image's."""
    ratio = width / height
    return min(ASPECT_RATIOS, key=lambda a: abs(ratio - int(a.split(":")[0]) / int(a.split(":")[1])))
