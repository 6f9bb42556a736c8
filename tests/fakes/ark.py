"""Seedance on Volcengine Ark / BytePlus ModelArk emulator: Bearer API-key auth, the content-generation task API
(create, get, list, delete), per-model body validation, a time-driven lifecycle, callbacks, and fault injection.

Behaviour follows /work/shared/reference/providers-2026.md §1. Choices where the reference is marked [U]:
  - GET/DELETE of an unknown id: 404 `ResourceNotFound` (type NotFound).
  - DELETE of a running task: 400 `InvalidParameter` ("cannot be cancelled"); of a finished one: the record is
    deleted (a later GET is a 404).
  - `filter.model` matches the model string the task was created with (a model id or an `ep-…` endpoint id).
  - The old text-command suffix (`--rs 720p --dur 5 …`) is read loosely: values it cannot use are ignored, and a
    body field given as well wins. Body fields are validated strictly.
Tasks move on by the clock (`step_s` seconds per state) so callbacks fire without polling; `offset` shifts the
emulator's clock (for the 7-day list window and `execution_expires_after`).
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import CutConnection, FakeUpstream, Fault, InjectedFault, Recorded, make_mp4

TASKS_PATH = "/api/v3/contents/generations/tasks"


@dataclass(frozen=True)
class Family:
    """What one Seedance model accepts (§1.4, §1.5)."""

    modes: frozenset[str]  # t2v, first_frame, first_last, reference
    resolutions: tuple[str, ...]
    default_resolution: str
    durations: tuple[int, int]
    any_duration: bool  # -1 (the model picks) allowed
    audio: bool
    frames: bool  # 1.0 family: `frames` allowed
    v2: bool  # 2.x: asset://, videos/audios, no service_tier, no camera_fixed
    draft: bool = False


_ALL = ("480p", "720p", "1080p")


def _v10(modes: set[str], default: str = "720p") -> Family:
    return Family(frozenset(modes), _ALL, default, (2, 12), any_duration=False, audio=False, frames=True, v2=False)


def _v2(resolutions: tuple[str, ...] = _ALL) -> Family:
    modes = frozenset({"t2v", "first_frame", "first_last", "reference"})
    return Family(modes, resolutions, "720p", (4, 15), any_duration=True, audio=True, frames=False, v2=True)


FAMILIES: dict[str, Family] = {
    "seedance-1-0-lite-t2v-250428": _v10({"t2v"}),
    "seedance-1-0-lite-i2v-250428": _v10({"first_frame", "first_last", "reference"}),
    "seedance-1-0-pro-250528": _v10({"t2v", "first_frame", "first_last"}, "1080p"),
    "seedance-1-0-pro-fast-251015": _v10({"t2v", "first_frame"}, "1080p"),
    "seedance-1-5-pro-251215": Family(
        frozenset({"t2v", "first_frame", "first_last"}),
        _ALL,
        "720p",
        (4, 12),
        any_duration=True,
        audio=True,
        frames=False,
        v2=False,
        draft=True,
    ),
    "seedance-2-0-260128": _v2(),
    "seedance-2-0-fast-260128": _v2(("480p", "720p")),
}
# Volcengine ids are "doubao-<stem>"; BytePlus ids are the stem itself, or "dreamina-<stem>" for 2.x.
CN_IDS = {f"doubao-{stem}": stem for stem in FAMILIES}
INTL_IDS = {("dreamina-" + stem if stem.startswith("seedance-2") else stem): stem for stem in FAMILIES}
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive")
# Output sizes (§1.6) as (1.0 family, 1.5 pro and 2.x).
SIZES: dict[str, dict[str, tuple[str, str]]] = {
    "480p": {
        "16:9": ("864x480", "864x496"),
        "4:3": ("736x544", "752x560"),
        "1:1": ("640x640", "640x640"),
        "3:4": ("544x736", "560x752"),
        "9:16": ("480x864", "496x864"),
        "21:9": ("960x416", "992x432"),
    },
    "720p": {
        "16:9": ("1248x704", "1280x720"),
        "4:3": ("1120x832", "1112x834"),
        "1:1": ("960x960", "960x960"),
        "3:4": ("832x1120", "834x1112"),
        "9:16": ("704x1248", "720x1280"),
        "21:9": ("1504x640", "1470x630"),
    },
    "1080p": {
        "16:9": ("1920x1088", "1920x1080"),
        "4:3": ("1664x1248", "1664x1248"),
        "1:1": ("1440x1440", "1440x1440"),
        "3:4": ("1248x1664", "1248x1664"),
        "9:16": ("1088x1920", "1080x1920"),
        "21:9": ("2176x928", "2206x946"),
    },
}
# Small real videos stand in for the output, in the task's aspect (even sides for yuv420p).
FRAME_SIZES = {"16:9": (160, 90), "4:3": (128, 96), "1:1": (96, 96), "3:4": (96, 128), "9:16": (90, 160)}
FRAME_SIZES["21:9"] = (168, 72)
BODY_KEYS = frozenset(
    {
        "model", "content", "callback_url", "return_last_frame", "service_tier", "execution_expires_after",
        "generate_audio", "draft", "tools", "safety_identifier", "resolution", "ratio", "duration", "frames",
        "seed", "camera_fixed", "watermark",
    }
)  # fmt: skip
IMAGE_FORMATS = ("jpeg", "png", "webp", "bmp", "tiff", "gif")
# Prompts that trigger the moderation outcomes: refused at submit, or a task that fails after running.
INPUT_POLICY_TRIGGER = "ARK_BLOCK_INPUT"
OUTPUT_POLICY_TRIGGER = "ARK_BLOCK_OUTPUT"
INPUT_POLICY_CODE = "InputTextSensitiveContentDetected"
OUTPUT_POLICY_CODE = "OutputVideoSensitiveContentDetected"
OUTPUT_POLICY_MSG = "The request failed because the output video may contain sensitive information."
LIST_WINDOW_S = 7 * 86400
SUFFIX = re.compile(
    r"--(rs|resolution|rt|ratio|dur|duration|fps|framespersecond|wm|watermark|seed|cf|camerafixed)\s+(\S+)"
)
_SUFFIX_NAMES = {
    "rs": "resolution",
    "rt": "ratio",
    "dur": "duration",
    "fps": "framespersecond",
    "wm": "watermark",
    "cf": "camera_fixed",
    "camerafixed": "camera_fixed",
}
ACTIVE = ("queued", "running")


class ArkError(Exception):
    """A refusal in Ark's shape: `{"error": {code, message, param?, type}}` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param


_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


def bad(param: str, message: str) -> ArkError:
    return ArkError(
        400,
        "InvalidParameter",
        f"The parameter `{param}` specified in the request is not valid: {message}",
        param=param,
    )


@dataclass
class ArkTask:
    id: str
    model: str  # as given (model id or endpoint id)
    stem: str  # the family
    body: dict[str, Any]
    resolution: str
    ratio: str
    duration: int | None
    frames: int | None
    seed: int
    created_at: int
    updated_at: int
    expires_after: int
    born: float  # the emulator's clock at creation (created_at is whole seconds)
    status: str = "queued"
    error: dict[str, str] | None = None
    fail: tuple[str, str] | None = None  # (code, message) the task will fail with
    content: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    callback_url: str | None = None
    forced_steps: int = 0


@dataclass
class Callback:
    """One callback delivery attempt: where, what, and how the receiver answered (None: no answer)."""

    url: str
    body: dict[str, Any]
    status: int | None
    at: float = field(default_factory=time.time)


class FakeArk(FakeUpstream):
    """Ark emulator. A task is queued for `step_s` seconds, running for `step_s` more, then finished."""

    name = "ark"

    def __init__(
        self, api_key: str = "ark-test-key", *, region: str = "cn", step_s: float = 0.3, min_image_px: int = 300
    ) -> None:
        if region not in ("cn", "intl"):
            raise ValueError("region is 'cn' (Volcengine ids) or 'intl' (BytePlus ids)")
        self.api_key = api_key
        self.region = self._region = region
        self.step_s = self._step_s = step_s
        self.tasks: dict[str, ArkTask] = {}
        self.callbacks: list[Callback] = []
        self.callbacks_enabled = True
        self.callback_retries = 3
        self.offset = 0.0  # seconds added to the wall clock
        # The docs ask for images of 300-6000 px a side; tests of other parts may lower it to send tiny images.
        self.min_image_px = self._min_image_px = min_image_px
        self._fail_next: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        super().__init__()
        self.file_ttl_s = 86400.0  # X-Tos-Expires=86400

    # -- public knobs -------------------------------------------------------------------------------------------

    @property
    def models(self) -> dict[str, str]:
        return CN_IDS if self.region == "cn" else INTL_IDS

    def now(self) -> float:
        return time.time() + self.offset

    def fail_next(self, code: str = "InternalServiceError", message: str = "The service encountered an error.") -> None:
        """The next created task ends `failed` with this error."""
        self._fail_next.append((code, message))

    def advance(self, task_id: str, steps: int = 1) -> None:
        """Move one task along `steps` states now, whatever the clock says."""
        with self._lock:
            self.tasks[task_id].forced_steps += steps
            self._advance(self.tasks[task_id])

    def reset(self) -> None:
        """Forget all tasks, requests, files, callbacks and faults, so one running fake serves many tests."""
        with self._lock:
            self.tasks.clear()
            self.history.clear()
            self.files.clear()
            self.faults.clear()
            self.callbacks.clear()
            self._fail_next.clear()
            self.callbacks_enabled = True
            self.offset = 0.0
            self.step_s = self._step_s
            self.region = self._region
            self.file_ttl_s = 86400.0
            self.min_image_px = self._min_image_px

    def submits(self) -> list[Recorded]:
        return [r for r in self.calls(TASKS_PATH, "POST")]

    # -- FakeUpstream hooks -------------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route(TASKS_PATH, self._collection, methods=["GET", "POST"]),
            Route(TASKS_PATH + "/{task_id}", self._one, methods=["GET", "DELETE"]),
        ]

    def fault_response(self, kind: Fault) -> Response:
        if kind == "429":
            error = ArkError(429, "ServerOverloaded", "The service is currently unable to handle additional requests.")
            return self._error(error, headers={"x-should-retry": "true"})
        if kind == "502":
            # From the load balancer in front of the API, not from Ark itself.
            return PlainTextResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502)
        if kind == "503":
            return self._error(ArkError(503, "ServiceUnavailable", "The service is temporarily unavailable."))
        return self._error(
            ArkError(500, "InternalServiceError", "The service encountered an unexpected internal error.")
        )

    async def fault(self, call: str) -> None:
        """As the base does, plus "lost_reply" (the work is done, the reply is cut), which the handlers apply."""
        kind = self.faults.draw(call)
        if kind is None:
            return
        if kind == "lost_reply":
            raise InjectedFault(kind, None)
        self.faults.queued.setdefault(call, deque()).appendleft(kind)  # drawn first again by the base
        await super().fault(call)

    def start(self) -> str:
        url = super().start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="fake-ark-ticker", daemon=True)
        self._ticker.start()
        return url

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
        super().stop()

    # -- envelope -----------------------------------------------------------------------------------------------

    @staticmethod
    def _error(err: ArkError, headers: dict[str, str] | None = None) -> JSONResponse:
        request_id = secrets.token_hex(16)
        error: dict[str, Any] = {
            "code": err.code,
            "message": f"{err.message} Request id: {request_id}",
            "type": _TYPES.get(err.status, "BadRequest"),
        }
        if err.param:
            error["param"] = err.param
        return JSONResponse(
            {"error": error}, status_code=err.status, headers={"X-Request-Id": request_id, **(headers or {})}
        )

    def _authenticate(self, entry: Recorded) -> None:
        header = entry.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not header or scheme != "Bearer" or key != self.api_key:
            raise ArkError(
                401,
                "AuthenticationError",
                "The API key or AK/SK in the request is missing or invalid.",
            )

    # -- handlers -----------------------------------------------------------------------------------------------

    async def _collection(self, request: Request) -> Response:
        entry = await self.record(request)
        try:
            self._authenticate(entry)
            if request.method == "POST":
                return await self._create(entry)
            return await self._list(request)
        except ArkError as err:
            return self._error(err)

    async def _one(self, request: Request) -> Response:
        entry = await self.record(request)
        task_id = request.path_params["task_id"]
        call = "poll" if request.method == "GET" else "cancel"
        try:
            self._authenticate(entry)
            injected: str | None = None
            try:
                await self.fault(call)
            except InjectedFault as exc:
                if exc.response is not None:
                    return exc.response
                injected = exc.kind
            with self._lock:
                task = self.tasks.get(task_id)
                if task is None or injected == "not_found":
                    raise ArkError(404, "ResourceNotFound", f"The specified task {task_id} is not found.")
                self._advance(task)
                if request.method == "DELETE":
                    return self._delete(task)
                data = self.task_json(task)
            if injected == "unknown_status":
                data["status"] = "pending_review"
            if injected in ("cut", "lost_reply", "drop_reply"):
                return CutConnection()
            await self.after_work(injected)  # type: ignore[arg-type]
            return JSONResponse(data)
        except ArkError as err:
            return self._error(err)

    async def _create(self, entry: Recorded) -> Response:
        injected: str | None = None
        try:
            await self.fault("submit")
        except InjectedFault as exc:
            if exc.response is not None:
                return exc.response
            injected = exc.kind
        if injected == "not_found":
            raise ArkError(
                404,
                "InvalidEndpointOrModel.NotFound",
                "The model or endpoint does not exist or you do not have access to it.",
            )
        try:
            body = orjson.loads(entry.body) if entry.body else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise ArkError(400, "InvalidParameter", "The request body is not a valid JSON object.")
        with self._lock:
            task = self._new_task(body)
        # The task exists from here on: these faults lose or delay the reply, not the task.
        if injected in ("cut", "lost_reply"):
            return CutConnection()
        if injected == "drop_reply":
            raise ArkError(500, "InternalServiceError", "The service encountered an unexpected internal error.")
        await self.after_work(injected)  # type: ignore[arg-type]
        return JSONResponse({"id": task.id}, headers={"X-Request-Id": secrets.token_hex(16)})

    async def _list(self, request: Request) -> Response:
        try:
            await self.fault("list")
        except InjectedFault as exc:
            if exc.response is not None:
                return exc.response
            if exc.kind in ("cut", "lost_reply", "drop_reply"):
                return CutConnection()
            if exc.kind == "not_found":
                raise ArkError(404, "ResourceNotFound", "The specified resource is not found.") from None
        query = request.query_params
        page_num = self._int_query(query.get("page_num"), "page_num", 1)
        page_size = self._int_query(query.get("page_size"), "page_size", 10)
        status = query.get("filter.status")
        if status is not None and status not in ("queued", "running", "cancelled", "succeeded", "failed", "expired"):
            raise bad("filter.status", f"unknown status {status!r}")
        ids = set(query.getlist("filter.task_ids"))
        model = query.get("filter.model")
        tier = query.get("filter.service_tier")
        now = self.now()
        with self._lock:
            for task in self.tasks.values():
                self._advance(task)
            rows = [
                t
                for t in self.tasks.values()
                if now - LIST_WINDOW_S <= t.created_at < now + 1
                and (status is None or t.status == status)
                and (not ids or t.id in ids)
                and (model is None or t.model == model)
                and (tier is None or t.body.get("service_tier", "default") == tier)
            ]
            # Newest first, as the doc's example lists them; ids end in a counter, which keeps ties in order.
            rows.sort(key=lambda t: (t.created_at, int(t.id.rsplit("-", 1)[1], 36)), reverse=True)
            start = (page_num - 1) * page_size
            items = [self.task_json(t) for t in rows[start : start + page_size]]
        return JSONResponse({"total": len(rows), "items": items})

    def _delete(self, task: ArkTask) -> Response:
        if task.status == "queued":
            task.status, task.updated_at = "cancelled", int(self.now())
            self._notify(task)
        elif task.status == "running":
            raise ArkError(400, "InvalidParameter", f"The task {task.id} is running and cannot be cancelled.")
        else:
            del self.tasks[task.id]
        return JSONResponse({})

    @staticmethod
    def _int_query(raw: str | None, name: str, default: int) -> int:
        if raw is None:
            return default
        if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= 500:
            raise bad(name, "must be an integer in [1, 500]")
        return int(raw)

    # -- validation ---------------------------------------------------------------------------------------------

    def _new_task(self, body: dict[str, Any]) -> ArkTask:
        unknown = sorted(set(body) - BODY_KEYS)
        if unknown:
            raise bad(unknown[0], "unknown parameter")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ArkError(
                400, "MissingParameter", "The request is missing the required parameter `model`.", param="model"
            )
        stem = self.models.get(model) or self._endpoint_stem(model)
        if not stem:
            raise ArkError(
                404,
                "InvalidEndpointOrModel.NotFound",
                f"The model or endpoint {model} does not exist or you do not have access to it.",
            )
        family = FAMILIES[stem]
        text, mode, images = self._check_content(body, family)
        params = {**self._suffix_params(text), **{k: body[k] for k in body if k in _SUFFIX_TARGETS}}
        resolution = self._check_resolution(body, params, family, mode)
        ratio = self._check_ratio(params, stem, family, mode)
        duration, frames = self._check_duration(body, params, family)
        seed = self._check_seed(params)
        self._check_flags(body, params, family, mode)
        expires_after = self._check_expiry(body)
        callback = body.get("callback_url")
        if callback is not None and (not isinstance(callback, str) or not callback.startswith(("http://", "https://"))):
            raise bad("callback_url", "must be an http(s) URL")
        if INPUT_POLICY_TRIGGER in text:
            raise ArkError(
                400,
                INPUT_POLICY_CODE,
                "The request failed because the input text may contain sensitive information.",
            )
        if ratio == "adaptive":
            ratio = self._adaptive_ratio(images)
        now = self.now()
        fail = self._fail_next.pop(0) if self._fail_next else None
        if fail is None and OUTPUT_POLICY_TRIGGER in text:
            fail = (OUTPUT_POLICY_CODE, OUTPUT_POLICY_MSG)
        task = ArkTask(
            id=f"cgt-{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}-{_base36(next(self._ids)):>05}",
            model=model,
            stem=stem,
            body=body,
            resolution=resolution,
            ratio=ratio,
            duration=duration,
            frames=frames,
            seed=seed if seed != -1 else secrets.randbelow(2**31),
            created_at=int(now),
            updated_at=int(now),
            expires_after=expires_after,
            born=now,
            fail=fail,
            callback_url=callback if self.callbacks_enabled else None,
        )
        self.tasks[task.id] = task
        self._notify(task)
        return task

    def _endpoint_stem(self, model: str) -> str | None:
        # An endpoint id "ep-<anything>-<stem>" (the emulator's own convention) stands for that stem.
        if not model.startswith("ep-"):
            return None
        return next((stem for stem in FAMILIES if model.endswith(stem)), None)

    def _check_content(self, body: dict[str, Any], family: Family) -> tuple[str, str, list[tuple[int, int] | None]]:
        content = body.get("content")
        if not isinstance(content, list) or not content:
            raise ArkError(
                400, "MissingParameter", "The request is missing the required parameter `content`.", param="content"
            )
        texts: list[str] = []
        roles: list[str] = []
        sizes: list[tuple[int, int] | None] = []
        videos = audios = 0
        for index, item in enumerate(content):
            where = f"content[{index}]"
            if not isinstance(item, dict):
                raise bad(where, "must be an object")
            kind = item.get("type")
            if kind == "text":
                value = item.get("text")
                if not isinstance(value, str) or not value.strip():
                    raise bad(f"{where}.text", "must be a non-empty string")
                texts.append(value)
            elif kind == "image_url":
                role = item.get("role")
                if role not in (None, "first_frame", "last_frame", "reference_image"):
                    raise bad(f"{where}.role", "must be first_frame, last_frame or reference_image")
                roles.append(role or "")
                sizes.append(self._check_image(item.get("image_url"), f"{where}.image_url", family))
            elif kind in ("video_url", "audio_url"):
                if not family.v2:
                    raise bad(f"{where}.type", f"{kind} is supported only by Seedance 2.x models")
                payload = item.get(kind)
                url = payload.get("url") if isinstance(payload, dict) else None
                if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:", "asset://")):
                    raise bad(f"{where}.{kind}.url", "must be a URL, data URL or asset:// id")
                expected = "reference_video" if kind == "video_url" else "reference_audio"
                if item.get("role") != expected:
                    raise bad(f"{where}.role", f"must be {expected}")
                videos += kind == "video_url"
                audios += kind == "audio_url"
            elif kind == "draft_task":
                raise bad(f"{where}.type", "draft_task is not supported by this emulator")
            else:
                raise bad(f"{where}.type", "must be text, image_url, video_url or audio_url")
        if len(texts) > 1:
            raise bad("content", "at most one text item")
        mode = self._mode(roles, videos, audios)
        if mode not in family.modes:
            allowed = ", ".join(sorted(family.modes))
            raise bad("content", f"this model does not support {mode} (it supports: {allowed})")
        if not texts and mode == "t2v":
            raise ArkError(
                400,
                "MissingParameter",
                "The request is missing the required parameter `content.text`.",
                param="content",
            )
        if videos > 3 or audios > 3 or (audios and not (videos or roles)):
            raise bad("content", "at most 3 videos and 3 audios; audio needs at least one image or video")
        return (texts[0] if texts else ""), mode, sizes

    @staticmethod
    def _mode(roles: list[str], videos: int, audios: int) -> str:
        if "reference_image" in roles or videos or audios:
            if any(role in ("first_frame", "last_frame") for role in roles):
                raise bad("content", "first/last frame and reference modes are mutually exclusive")
            if len(roles) > 9:
                raise bad("content", "at most 9 reference images")
            return "reference"
        if not roles:
            return "t2v"
        if roles in ([""], ["first_frame"]):
            return "first_frame"
        if sorted(roles) == ["first_frame", "last_frame"]:
            return "first_last"
        raise bad("content", "image roles must be one first_frame (role optional), or first_frame + last_frame")

    def _check_image(self, payload: Any, where: str, family: Family) -> tuple[int, int] | None:
        url = payload.get("url") if isinstance(payload, dict) else None
        if not isinstance(url, str) or not url:
            raise bad(f"{where}.url", "must be a URL, a data URL or an asset:// id")
        if url.startswith("asset://"):
            if not family.v2:
                raise bad(f"{where}.url", "asset:// is supported only by Seedance 2.x models")
            return None
        if url.startswith(("http://", "https://")):
            return None  # fetched by the model service; the emulator does not follow it
        match = re.fullmatch(r"data:image/([a-z]+);base64,(.*)", url, re.S)
        if not match or match.group(1) not in (*IMAGE_FORMATS, "jpg", "heic", "heif"):
            raise bad(
                f"{where}.url", "must be http(s), asset:// or data:image/<format>;base64,<data> (lowercase format)"
            )
        try:
            raw = base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise bad(f"{where}.url", "the data URL is not valid base64") from None
        if len(raw) > 30 * 1024 * 1024:
            raise bad(f"{where}.url", "images must be under 30 MB")
        try:
            with Image.open(io.BytesIO(raw)) as img:
                width, height = img.size
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError):
            raise bad(f"{where}.url", "the data is not a readable image") from None
        if not (self.min_image_px <= min(width, height) and max(width, height) <= 6000):
            raise bad(f"{where}.url", f"image sides must be in [{self.min_image_px}, 6000] px")
        if not 0.4 < width / height < 2.5:
            raise bad(f"{where}.url", "image width/height must be in (0.4, 2.5)")
        return width, height

    @staticmethod
    def _suffix_params(text: str) -> dict[str, Any]:
        """The old `--rs 720p --dur 5 …` commands: read loosely (a value it cannot use is ignored)."""
        found: dict[str, Any] = {}
        for name, value in SUFFIX.findall(text):
            key = _SUFFIX_NAMES.get(name, name)
            if key in ("duration", "seed", "framespersecond") and re.fullmatch(r"-?[0-9]+", value):
                found[key] = int(value)
            elif key in ("watermark", "camera_fixed") and value in ("true", "false"):
                found[key] = value == "true"
            elif key in ("resolution", "ratio"):
                found[key] = value
        return found

    @staticmethod
    def _check_resolution(body: dict[str, Any], params: dict[str, Any], family: Family, mode: str) -> str:
        value = params.get("resolution", "480p" if body.get("draft") else family.default_resolution)
        if value not in family.resolutions:
            raise bad("resolution", f"must be one of {', '.join(family.resolutions)} for this model")
        if body.get("draft") and value != "480p":
            raise bad("resolution", "draft mode renders 480p only")
        if mode == "reference" and not family.v2 and value == "1080p":
            raise bad("resolution", "1080p is not supported with reference images")
        return str(value)

    @staticmethod
    def _check_ratio(params: dict[str, Any], stem: str, family: Family, mode: str) -> str:
        modern = family.v2 or family.audio
        default = "adaptive" if modern or mode in ("first_frame", "first_last") else "16:9"
        value = params.get("ratio", default)
        if value not in RATIOS:
            raise bad("ratio", f"must be one of {', '.join(RATIOS)}")
        if value == "adaptive" and mode == "t2v" and not modern:
            raise bad("ratio", "adaptive is supported for text-to-video only by Seedance 1.5 pro and 2.x")
        return str(value)

    @staticmethod
    def _check_duration(body: dict[str, Any], params: dict[str, Any], family: Family) -> tuple[int | None, int | None]:
        if "frames" in body:
            frames = body["frames"]
            if not family.frames:
                raise bad("frames", "frames is supported only by the Seedance 1.0 family")
            if not _is_int(frames) or not 29 <= frames <= 289 or (frames - 25) % 4:
                raise bad("frames", "must be an integer in [29, 289] of the form 25+4n")
            return None, int(frames)
        value = params.get("duration", 5)
        low, high = family.durations
        if not _is_int(value) or not (low <= value <= high or (value == -1 and family.any_duration)):
            extra = " or -1" if family.any_duration else ""
            raise bad("duration", f"must be an integer in [{low}, {high}]{extra} for this model")
        return int(value), None

    @staticmethod
    def _check_seed(params: dict[str, Any]) -> int:
        value = params.get("seed", -1)
        if not _is_int(value) or not -1 <= value <= 2**32 - 1:
            raise bad("seed", "must be an integer in [-1, 4294967295]")
        return int(value)

    @staticmethod
    def _check_flags(body: dict[str, Any], params: dict[str, Any], family: Family, mode: str) -> None:
        for name in ("watermark", "camera_fixed", "return_last_frame", "generate_audio", "draft"):
            if name in params or name in body:
                value = params.get(name, body.get(name))
                if not isinstance(value, bool):
                    raise bad(name, "must be a boolean")
        if "camera_fixed" in params and (family.v2 or mode == "reference"):
            raise bad("camera_fixed", "camera_fixed is not supported by Seedance 2.x nor in reference mode")
        if "generate_audio" in body and not family.audio:
            raise bad("generate_audio", "generate_audio is supported only by Seedance 1.5 pro and 2.x")
        if body.get("draft") and not family.draft:
            raise bad("draft", "draft is supported only by Seedance 1.5 pro")
        if body.get("draft") and body.get("return_last_frame"):
            raise bad("return_last_frame", "not available for drafts")
        if "service_tier" in body:
            if family.v2:
                raise bad("service_tier", "service_tier is not supported by Seedance 2.x")
            if body["service_tier"] not in ("default", "flex"):
                raise bad("service_tier", "must be default or flex")
            if body.get("draft") and body["service_tier"] == "flex":
                raise bad("service_tier", "drafts run on the default tier only")
        if "tools" in body:
            tools = body["tools"]
            if not family.v2 or not isinstance(tools, list) or any(t != {"type": "web_search"} for t in tools):
                raise bad("tools", 'only [{"type": "web_search"}], and only on Seedance 2.0')
        identifier = body.get("safety_identifier")
        if identifier is not None and (not isinstance(identifier, str) or len(identifier) > 64):
            raise bad("safety_identifier", "must be a string of at most 64 characters")

    @staticmethod
    def _check_expiry(body: dict[str, Any]) -> int:
        value = body.get("execution_expires_after", 172800)
        if not _is_int(value) or not 3600 <= value <= 259200:
            raise bad("execution_expires_after", "must be an integer in [3600, 259200]")
        return int(value)

    @staticmethod
    def _adaptive_ratio(images: list[tuple[int, int] | None]) -> str:
        size = next((s for s in images if s), None)
        if size is None:
            return "16:9"
        value = size[0] / size[1]
        named = [r for r in RATIOS if r != "adaptive"]
        return min(named, key=lambda r: abs(value - int(r.split(":")[0]) / int(r.split(":")[1])))

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(0.05):
            with self._lock:
                live = [t for t in self.tasks.values() if t.status in ACTIVE]
                for task in live:
                    self._advance(task)

    def _advance(self, task: ArkTask) -> None:
        if task.status not in ACTIVE:
            return
        now = self.now()
        if now >= task.born + task.expires_after:
            task.status, task.updated_at = "expired", int(now)
            self._notify(task)
            return
        steps = task.forced_steps + (int((now - task.born) / self.step_s) if self.step_s > 0 else 2)
        target = "queued" if steps < 1 else "running" if steps < 2 else "done"
        if target == task.status:
            return
        if task.status == "queued":
            task.status, task.updated_at = "running", int(now)
            self._notify(task)
        if target == "done":
            self._finish(task, int(now))
            self._notify(task)

    def _finish(self, task: ArkTask, now: int) -> None:
        task.updated_at = now
        if task.fail is not None:
            task.status = "failed"
            task.error = {"code": task.fail[0], "message": task.fail[1]}
            task.usage = {"completion_tokens": 0, "total_tokens": 0}
            return
        width, height = FRAME_SIZES.get(task.ratio, (160, 90))
        task.content = {"video_url": self.publish(make_mp4(width, height, seed=len(self.tasks)))}
        if task.body.get("return_last_frame"):
            buffer = io.BytesIO()
            Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format="PNG")
            task.content["last_frame_url"] = self.publish(buffer.getvalue(), "png")
        modern = FAMILIES[task.stem].v2 or FAMILIES[task.stem].audio
        w, h = (int(x) for x in SIZES[task.resolution][task.ratio][1 if modern else 0].split("x"))
        seconds = task.duration if task.duration and task.duration > 0 else (task.frames or 120) / 24
        tokens = int(w * h * 24 * seconds / 1024)
        task.usage = {"completion_tokens": tokens, "total_tokens": tokens}
        task.status = "succeeded"

    def task_json(self, task: ArkTask) -> dict[str, Any]:
        """The task object of GET, list items and callbacks (§1.8)."""
        data: dict[str, Any] = {
            "id": task.id,
            "model": task.model if not task.model.startswith("ep-") else self._model_id(task.stem),
            "status": task.status,
            "error": task.error,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "seed": task.seed,
            "resolution": task.resolution,
            "ratio": task.ratio,
            "framespersecond": 24,
            "service_tier": task.body.get("service_tier", "default"),
            "execution_expires_after": task.expires_after,
        }
        if task.frames is not None:
            data["frames"] = task.frames
        else:
            data["duration"] = task.duration
        if FAMILIES[task.stem].audio:
            data["generate_audio"] = task.body.get("generate_audio", True)
        if "safety_identifier" in task.body:
            data["safety_identifier"] = task.body["safety_identifier"]
        if task.content:
            data["content"] = dict(task.content)
        if task.status in ("succeeded", "failed", "expired", "cancelled"):
            data["usage"] = dict(task.usage or {"completion_tokens": 0, "total_tokens": 0})
        return data

    def _model_id(self, stem: str) -> str:
        return next(name for name, value in self.models.items() if value == stem)

    def _notify(self, task: ArkTask) -> None:
        if task.callback_url is None or task.status == "cancelled":
            return
        body = self.task_json(task)
        tries = 1 + (self.callback_retries if task.status in ("succeeded", "failed") else 0)
        threading.Thread(target=self._deliver, args=(task.callback_url, body, tries), daemon=True).start()

    def _deliver(self, url: str, body: dict[str, Any], tries: int) -> None:
        for _ in range(tries):
            try:
                answer = httpx.post(url, json=body, timeout=5.0)
                status: int | None = answer.status_code
            except httpx.HTTPError:
                status = None
            with self._lock:
                self.callbacks.append(Callback(url=url, body=body, status=status))
            if status is not None and 200 <= status < 300:
                return


_SUFFIX_TARGETS = frozenset({"resolution", "ratio", "duration", "seed", "watermark", "camera_fixed"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text
