"""Kling AI (Kuaishou): models, request bodies, task states, HS256 JWT auth, and recovery by external_task_id.

Submit `POST {base}/v1/videos/{text2video|image2video}`; poll `GET {base}/v1/videos/{kind}/{id}`, where the
kind must be the one the task was created under, so the upstream id we keep is "<kind>:<task_id>". The
finished video is `data.task_result.videos[0].url` (a plain URL, kept 30 days), downloaded at once.

Decisions where providers.md §3 leaves room:
  - `size` chooses `aspect_ratio` (16:9, 9:16, 1:1) and `mode`: a 720P size is `std`, a 1080P size `pro`
    (§3.5: std = 720p, pro = 1080p). `mode` is therefore not a metadata key: it would change the price tier
    behind the size's back. image2video has no aspect_ratio (the video follows the image), so there the size
    only picks the mode.
  - kling-v2-1-master is pro (1080P) only; kf2v (`image_tail`) is declared for kling-v1-6 in pro mode only;
    `camera_control` for kling-v1 text-to-video in std mode at 5 s only. These follow the vendor's capability
    map as ComfyUI's Kling nodes encode it (MODE_TEXT2VIDEO, MODE_START_END_FRAME, the camera-control node).
  - `cfg_scale` is not declared for the v2.x models (CN doc: "kling-v2.x 模型不支持"); Kling has no seed.
  - Every task carries `external_task_id` = vidgate's task id. When the create call fails transiently (timeout,
    5xx, a lost or unreadable reply) or is refused (as a resubmit after a crash is, its external id being
    taken; the refusal's wording is undocumented, so any refusal is checked), the task is looked up by that id
    first, so one vidgate task never becomes two upstream tasks on one account. No task: the refusal stands,
    and a transient failure stays transient.
  - A 404 (1203) when polling a task Kling gave us is read as a passing fault, not a failure: its ids live
    30 days, and the per-model deadline still ends a task that is truly gone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import jwt
from jwt.warnings import InsecureKeyLengthWarning

from vidgate.config import Settings
from vidgate.errors import InvalidRequest, ProviderError, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    CAMERA_CONTROL,
    CFG_SCALE,
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    NEGATIVE_PROMPT,
    Credentials,
    MediaInput,
    Mode,
    ModelSpec,
    Param,
    Price,
    Progress,
    Provider,
    Role,
    Submitted,
    UpstreamState,
    VideoRequest,
    per_tier,
)
from vidgate.providers.http import send
from vidgate.providers.images import as_jpeg_or_png

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
# Failures read "Kling: 1301: <its message>" (a refusal) or "Kling: <task_status_msg>" (a failed task).
VENDOR = "Kling"
# A failed task's task_status_msg that speaks of risk control or content rules is a policy block.
_POLICY_TEXT = re.compile(r"risk|sensitive|polic|violat|inappropriate", re.I)
TOKEN_TTL_S = 1800
# Kling refuses a token whose nbf is ahead of its clock; starting a little in the past absorbs skew.
TOKEN_LEEWAY_S = 5
TEXT2VIDEO, IMAGE2VIDEO = "text2video", "image2video"
MAX_PROMPT = 2500

# Aspect ratio -> size, per tier; the tier decides the mode.
SIZES: dict[str, dict[str, str]] = {
    "720P": {"16:9": "1280x720", "9:16": "720x1280", "1:1": "720x720"},
    "1080P": {"16:9": "1920x1080", "9:16": "1080x1920", "1:1": "1080x1080"},
}
MODE_OF_TIER = {"720P": "std", "1080P": "pro"}
CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward")
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")


def _spec(
    name: str, tiers: Sequence[str], modes: frozenset[Mode], params: Mapping[str, Param], price: Price
) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider="kling",
        modes=modes,
        seconds=(5, 10),
        default_seconds=5,
        sizes=tuple(size for tier in tiers for size in SIZES[tier].values()),
        tiers={tier: SIZES[tier]["16:9"] for tier in tiers},
        default_size=SIZES[tiers[0]]["16:9"],
        params=params,
        deadline_s=3 * 3600,
        poll_hint_ms=5000,
        price=price,
        description="Kling AI text/image-to-video",
    )


_BOTH = ("720P", "1080P")
_T2V_I2V: frozenset[Mode] = frozenset({"t2v", "i2v"})
_V2_PARAMS = {"negative_prompt": replace(NEGATIVE_PROMPT, high=MAX_PROMPT)}
_V1_PARAMS = {**_V2_PARAMS, "cfg_scale": CFG_SCALE}
# Prices: Kling AI developer API price list (klingai.com/global/dev/pricing, read 2025-10): std (720p) / pro
# (1080p) 5 s clips in USD, divided by 5 for USD per second.
MODELS: tuple[ModelSpec, ...] = (
    _spec(
        "kling-v1",
        _BOTH,
        _T2V_I2V,
        {**_V1_PARAMS, "camera_control": CAMERA_CONTROL},
        per_tier("0.028", "0.028", "0.098"),
    ),
    _spec("kling-v1-6", _BOTH, _T2V_I2V | {"kf2v"}, _V1_PARAMS, per_tier("0.056", "0.056", "0.098")),
    _spec("kling-v2-master", _BOTH, _T2V_I2V, _V2_PARAMS, Decimal("0.28")),
    _spec("kling-v2-1-master", ("1080P",), _T2V_I2V, _V2_PARAMS, Decimal("0.28")),
)
_STATES: dict[str, UpstreamState] = {"submitted": "queued", "processing": "in_progress"}
_FRAMES: tuple[Role, ...] = ("first_frame", "last_frame")
# Whole words in Kling's parameter-error messages -> what they are about (a role, or a name for field_of).
_PARAM_WORDS = (
    ("image_tail", "last_frame"),
    ("negative_prompt", "negative_prompt"),
    ("camera_control", "camera_control"),
    ("cfg_scale", "cfg_scale"),
    ("model_name", "model"),
    ("aspect_ratio", "size"),
    ("duration", "seconds"),
    ("mode", "size"),
    ("image", "first_frame"),
    ("prompt", "prompt"),
)


def make_jwt(access_key: str, secret_key: str, now: float) -> str:
    """The Bearer token Kling expects: HS256 over {iss, exp, nbf} with the secret key."""
    payload = {"iss": access_key, "exp": int(now) + TOKEN_TTL_S, "nbf": int(now) - TOKEN_LEEWAY_S}
    with warnings.catch_warnings():
        # Kling chooses the secret's length, not the operator; a warning on every request helps nobody.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, secret_key, algorithm="HS256", headers={"typ": "JWT"})


def kind_of(req: VideoRequest) -> str:
    """The endpoint family: image2video when any image is given, else text2video."""
    return IMAGE2VIDEO if req.input("first_frame") or req.input("last_frame") else TEXT2VIDEO


def aspect_ratio(width: int, height: int) -> str:
    """The Kling aspect ratio nearest to a size."""
    ratio = width / height
    return min(("16:9", "9:16", "1:1"), key=lambda name: abs(ratio - _ratio(name)))


def _ratio(name: str) -> float:
    width, _, height = name.partition(":")
    return int(width) / int(height)


def image_value(item: MediaInput) -> str:
    """An http(s) URL as given, else raw base64 (no data: prefix) of a JPEG or PNG."""
    if item.url and item.url.startswith(("http://", "https://")):
        return item.url
    if item.path is not None:
        data, mime = item.path.read_bytes(), item.mime
    elif item.url and item.url.startswith("data:"):
        try:
            data, mime = base64.b64decode(item.url.partition(",")[2]), None
        except (binascii.Error, ValueError) as exc:
            raise UpstreamRejected(f"{item.field}: the data: URI is not valid base64", param=item.field) from exc
    else:
        raise UpstreamRejected(f"{item.field}: no image bytes to send", param=item.field)
    return base64.b64encode(as_jpeg_or_png(data, mime)).decode()


def build_body(
    req: VideoRequest, *, external_task_id: str | None = None, callback_url: str | None = None
) -> dict[str, Any]:
    """The create body for text2video or image2video (see kind_of)."""
    body: dict[str, Any] = {
        "model_name": req.model,
        "duration": str(req.seconds),
        "mode": MODE_OF_TIER.get(req.tier, "std"),
    }
    if req.prompt:
        body["prompt"] = req.prompt
    first, last = req.input("first_frame"), req.input("last_frame")
    if first is None and last is None:
        body["aspect_ratio"] = aspect_ratio(req.width, req.height)
    if first is not None:
        body["image"] = image_value(first)
    if last is not None:
        body["image_tail"] = image_value(last)
    for key in ("negative_prompt", "cfg_scale", "camera_control"):
        if key in req.extras:
            body[key] = req.extras[key]
    if external_task_id:
        body["external_task_id"] = external_task_id
    if callback_url:
        body["callback_url"] = callback_url
    return body


def parse_progress(payload: Mapping[str, Any]) -> Progress:
    """A query answer `{code, message, data}` -> Progress; anything unexpected raises UpstreamTransient."""
    data = payload.get("data")
    if payload.get("code") != 0 or not isinstance(data, Mapping):
        raise UpstreamTransient(f"Kling query answer without task data: {str(payload)[:300]}")
    status = data.get("task_status")
    if status in _STATES:
        return Progress(state=_STATES[status])
    if status == "failed":
        # A failed task carries no code, only task_status_msg (e.g. "Failure to pass the risk control system").
        message = str(data.get("task_status_msg") or "") or None
        code = CONTENT_POLICY_VIOLATION if message and _POLICY_TEXT.search(message) else GENERATION_FAILED
        return Progress.failed(code, UpstreamFailure(VENDOR, message=message))
    if status != "succeed":
        raise UpstreamTransient(f"unknown Kling task_status {status!r}")
    result = data.get("task_result")
    videos = result.get("videos") if isinstance(result, Mapping) else None
    video = videos[0] if isinstance(videos, list) and videos and isinstance(videos[0], Mapping) else {}
    url = video.get("url")
    if not isinstance(url, str) or not url:
        raise UpstreamTransient("Kling task succeeded without a video url")
    return Progress(state="completed", progress=100, video_url=url)


def task_id_of(payload: Any) -> str | None:
    """The task id in a create or query answer, if it carries one."""
    data = payload.get("data") if isinstance(payload, Mapping) and payload.get("code") == 0 else None
    task = data.get("task_id") if isinstance(data, Mapping) else None
    return task if isinstance(task, str) and task else None


def error_from(status: int, body: Any) -> UpstreamRejected | UpstreamTransient:
    """Kling's `{code, message, request_id}` refusal -> the error that says what to do about it."""
    code = body.get("code") if isinstance(body, Mapping) else None
    message = str(body.get("message") or "") if isinstance(body, Mapping) else str(body)[:300]
    text = f"Kling {status} {code}: {message}"
    failure = UpstreamFailure(VENDOR, str(code), message or None)
    if isinstance(code, int) and 1200 <= code <= 1203:
        return UpstreamRejected(failure.text(), param=param_of(message), upstream=failure)
    if code in (1300, 1301):
        # 1301: "content security policy triggered"; 1300: "platform strategy triggered".
        policy = CONTENT_POLICY_VIOLATION if code == 1301 else None
        return UpstreamRejected(failure.text(), code=policy, upstream=failure)
    # Auth (1000-1004) and account (1100-1103) codes are about our key: another channel may work.
    # Rate (1302-1304), server (5000-5002) and anything unrecognised may pass too.
    return UpstreamTransient(text, status=status)


def param_of(message: str) -> str | None:
    """The client field a Kling parameter message is about (roles stand for the request's own field)."""
    return next((param for word, param in _PARAM_WORDS if re.search(rf"\b{word}\b", message)), None)


def from_settings(settings: Settings, http: httpx.AsyncClient) -> KlingProvider:
    """The registry's factory (providers/registry.py)."""
    return KlingProvider(http)


class KlingProvider(Provider):
    """Kling video models on one Kling account (access key + secret key)."""

    name = "kling"
    default_base_url = DEFAULT_BASE_URL
    accepts_callback = True

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def check(self, req: VideoRequest) -> None:
        """Refuse what Kling's capability map forbids for this model/mode/tier combination."""
        if len(req.prompt) > MAX_PROMPT:
            field = req.field_of("prompt")
            raise InvalidRequest(f"{field} is longer than {MAX_PROMPT} characters (Kling's limit).", param=field)
        if req.mode == "kf2v" and req.tier != "1080P":
            field = req.field_of("size")
            raise InvalidRequest(
                f"{req.model} takes a last frame only in pro mode: {field} must be a 1080P size (e.g. 1920x1080).",
                param=field,
            )
        if "camera_control" in req.extras:
            check_camera(req)

    def base_url(self, creds: Credentials) -> str:
        return super().base_url(creds).removesuffix("/v1")

    def _headers(self, creds: Credentials) -> dict[str, str]:
        token = make_jwt(creds.access_key, creds.secret_key, time.time())
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        kind = kind_of(req)
        # Images are read and re-encoded (GIF, WebP, BMP -> PNG) here: blocking work, off the event loop.
        body = await asyncio.to_thread(build_body, req, external_task_id=task_id, callback_url=callback_url)
        url = f"{self.base_url(creds)}/v1/videos/{kind}"
        try:
            answer = await send(self.http, "POST", url, headers=self._headers(creds), json=body, error=error_from)
        except UpstreamTransient as exc:
            return await self._recover(req, task_id, creds, exc)
        except UpstreamRejected as exc:
            # A resubmit is refused because our external_task_id exists; Kling does not document the wording,
            # so every refusal is checked against a task of ours before it is believed.
            refusal = UpstreamRejected(exc.message, code=exc.code, param=_client_param(exc.param, req))
            return await self._recover(req, task_id, creds, refusal)
        upstream = task_id_of(answer)
        if upstream is None:
            return await self._recover(req, task_id, creds, UpstreamTransient("Kling answered without a task_id"))
        return Submitted(upstream_id=f"{kind}:{upstream}")

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        """The task whose external_task_id is our task id, if Kling has one (it is unique per account)."""
        kind = kind_of(req)
        url = f"{self.base_url(creds)}/v1/videos/{kind}/{task_id}"
        try:
            answer = await send(self.http, "GET", url, headers=self._headers(creds), error=error_from)
        except UpstreamRejected:
            return []  # no such task (1203)
        upstream = task_id_of(answer)
        if upstream is None:
            raise UpstreamTransient("Kling's lookup by external_task_id gave no task_id")
        return [f"{kind}:{upstream}"]

    async def _recover(self, req: VideoRequest, task_id: str, creds: Credentials, cause: ProviderError) -> Submitted:
        # The create may have gone through even though its answer did not reach us: ask by our own id.
        try:
            found = await self.find(req, creds, task_id=task_id, since=0.0)
        except UpstreamTransient as exc:
            raise UpstreamTransient(f"Kling create failed ({cause}); looking it up failed too ({exc})") from exc
        if found:
            return Submitted(upstream_id=found[0])
        if isinstance(cause, UpstreamRejected):
            raise cause
        raise UpstreamTransient(f"Kling create failed ({cause}) and no task {task_id} exists", nothing_created=True)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        kind, _, task = upstream_id.partition(":")
        if kind not in (TEXT2VIDEO, IMAGE2VIDEO) or not task:
            message = f"{upstream_id!r} is not a Kling task id of vidgate's making."
            return Progress(state="failed", error_code="bad_upstream_id", error_message=message)
        url = f"{self.base_url(creds)}/v1/videos/{kind}/{task}"
        try:
            answer = await send(self.http, "GET", url, headers=self._headers(creds), error=error_from)
        except UpstreamRejected as exc:
            # A refusal to read a task Kling itself named is no verdict on the task (see module docstring).
            raise UpstreamTransient(f"Kling query refused: {exc}") from exc
        if not isinstance(answer, Mapping):
            raise UpstreamTransient("Kling query answer is not an object")
        return parse_progress(answer)


def check_camera(req: VideoRequest) -> None:
    """camera_control as the docs allow it: kling-v1 text-to-video, std (720P), 5 s, a valid shape."""
    param = req.field_of("camera_control")
    if req.mode != "t2v":
        raise InvalidRequest(f"{param} works only for text-to-video on Kling.", param=param)
    if req.tier != "720P" or req.seconds != 5:
        raise InvalidRequest(f"{param} needs a 720P size and 5 seconds on Kling.", param=param)
    camera = req.extras["camera_control"]
    kind = camera.get("type") if isinstance(camera, Mapping) else None
    if kind not in CAMERA_TYPES:
        raise InvalidRequest(f"{param}.type must be one of: {', '.join(CAMERA_TYPES)}.", param=param)
    config = camera.get("config")
    if kind != "simple":
        if config is not None:
            raise InvalidRequest(f"{param}.config goes only with type 'simple'.", param=param)
        return
    values = [config.get(axis, 0) for axis in CAMERA_AXES] if isinstance(config, Mapping) else []
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and -10 <= v <= 10 for v in values)
    if not values or not numbers or sum(1 for v in values if v != 0) != 1:
        raise InvalidRequest(
            f"{param}.config needs exactly one non-zero value in [-10, 10] among: " + ", ".join(CAMERA_AXES) + ".",
            param=param,
        )


def _client_param(param: str | None, req: VideoRequest) -> str | None:
    for role in _FRAMES:
        if param == role:
            item = req.input(role)
            return item.field if item else None
    return req.field_of(param) if param else None
