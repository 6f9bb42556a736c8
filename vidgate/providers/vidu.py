"""Vidu (Shengshu) as an upstream: models and their rules, request bodies, task states, `Token` auth.

Create `POST {base}/ent/v2/{text2video|img2video|start-end2video}` (chosen by the number of images: 0, 1, 2);
poll `GET {base}/ent/v2/tasks/{id}/creations`; the video is `creations[0].url` (a signed URL, no auth, valid
1-24 h), downloaded at once. Cancel is `POST {base}/ent/v2/tasks/{id}/cancel` with {"id": id} and only works
while the task waits. Authorization is `Token <api_key>`, not Bearer.

Decisions where providers.md §5 leaves room:
  - Our size becomes `resolution` (its shorter side: 1920x1080 → "1080p") and, on text2video only,
    `aspect_ratio` (1920x1080 → "16:9"). img2video and start-end2video take no aspect ratio: the video
    follows the image, so there the size only picks the resolution.
  - Models are declared only where §5.4 gives their rules: viduq1 (t2v/i2v/kf2v, 5 s, 1080p), viduq2 (t2v,
    1-10 s, 540p/720p/1080p, also 4:3 and 3:4), viduq2-pro / viduq2-turbo / viduq2-pro-fast (i2v/kf2v, 1-10 s,
    first+last frame 1-8 s; pro-fast 720p/1080p) and vidu2.0 (i2v/kf2v, 4 or 8 s; 8 s only at 720p).
    vidu1.5, viduq1-classic and the q3 models are left out: their rules are version-dependent or missing.
  - Metadata: seed (0 = random upstream), movement_amplitude (auto/small/medium/large) and bgm. Vidu's
    `audio` is left out: the docs do not say which model/endpoint pairs take it.
  - Images: an http(s) URL is passed on as given (Vidu fetches it); stored bytes go as a data: URI with the
    prefix Vidu wants, re-encoded to PNG when they are not PNG/JPEG/WebP. `images` is never sent on text2video.
  - The cover image (`cover_url`, a JPEG) becomes the thumbnail converted to WebP; when that fails vidgate
    makes its own from the video.
  - A 400 for an empty account (CreditInsufficient), an unavailable model, a bad `model` field (a channel's
    model map) and any 401/403/404/429/5xx are the channel's problem: UpstreamTransient, so another channel
    may serve the request. Other 400s are the client's: UpstreamRejected with our field name.
  - A failed task with err_code UserCancelled is reported as cancelled. A failed task carries no message, so its
    error reads "Vidu: <err_code> - <what the error table says it means>".
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError

from vidgate.config import Settings
from vidgate.errors import InvalidRequest, NotSupported, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    BGM,
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    MOVEMENT_AMPLITUDE,
    SEED,
    UPSTREAM_CANCELLED,
    Credentials,
    MediaInput,
    Mode,
    ModelSpec,
    Param,
    Price,
    Progress,
    Provider,
    Submitted,
    UpstreamState,
    VideoRequest,
)
from vidgate.providers.http import download_to, send

log = logging.getLogger("vidgate.providers.vidu")

DEFAULT_BASE_URL = "https://api.vidu.com"
API_PREFIX = "/ent/v2"
ENDPOINTS = {0: "text2video", 1: "img2video", 2: "start-end2video"}
AMPLITUDES = ("auto", "small", "medium", "large")
_RATIOS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4)}
_LINES = {"360p": 360, "540p": 540, "720p": 720, "1080p": 1080}
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
_PARAMS_TAKEN: dict[str, Param] = {
    "seed": replace(SEED, description="Random seed; 0 lets Vidu choose."),
    "movement_amplitude": MOVEMENT_AMPLITUDE,
    "bgm": BGM,
}
_STATES: dict[str, UpstreamState] = {"created": "queued", "queueing": "queued", "processing": "in_progress"}
# What the err_code values of Vidu's error table (§5.7) mean: a failed task carries no text, so this follows the code.
_FAILURES = {
    "CreationPolicyViolation": "The generated video was blocked by Vidu's content policy.",
    "TaskPromptPolicyViolation": "The prompt was blocked by Vidu's content policy.",
    "AuditSubmitIllegal": "The request was blocked by Vidu's content review.",
    "ImageDownloadFailure": "Vidu could not download the input image.",
    "ImageFormatInvalid": "Vidu could not read the input image.",
    "ImageCheckBodyJointsFailed": "Vidu could not find a body pose in the input image.",
    "ImageCheckFaceFailed": "Vidu could not find a usable face in the input image.",
    "ImageObjectsUndetected": "Vidu could not find any subject in the input image.",
    "CreditInsufficient": "The upstream Vidu account ran out of credits.",
    "ModelUnavailable": "The Vidu model is unavailable right now.",
    "UserCancelled": "The task was cancelled.",
    "InternalServiceFailure": "Vidu failed internally while generating the video.",
}
# Failures read "Vidu: CreationPolicyViolation - <what Vidu's table says it means>" (a task) or
# "Vidu: TaskPromptPolicyViolation: <Vidu's message>" (a refused request).
VENDOR = "Vidu"
_POLICY_REASONS = frozenset({"CreationPolicyViolation", "TaskPromptPolicyViolation", "AuditSubmitIllegal"})
# 400 reasons that describe our account or a passing state, not the request: retry later or elsewhere.
_TRANSIENT_REASONS = frozenset({"CreditInsufficient", "ModelUnavailable", "QuotaExceeded", "OperationInProcess"})
_IMAGE_REASONS = frozenset(
    {
        "ImageDownloadFailure", "ImageFormatInvalid", "PageSizeOutOfRange", "ImageCheckBodyJointsFailed",
        "ImageCheckFaceFailed", "ImageObjectsUndetected",
    }
)  # fmt: skip
_FIELD = re.compile(r"field[^:]*:\s*([A-Za-z_]+)")
# Vidu's field -> what it is to us (the client's name comes from req.field_of); "images" is resolved per request.
_PARAMS = {
    "duration": "seconds",
    "resolution": "size",
    "aspect_ratio": "size",
    "prompt": "prompt",
    "seed": "seed",
    "movement_amplitude": "movement_amplitude",
    "bgm": "bgm",
}


@dataclass(frozen=True)
class ViduModel:
    """One Vidu model's rules as §5.4 gives them, from which its ModelSpec is built."""

    name: str
    modes: frozenset[Mode]
    seconds: tuple[int, ...]
    default_seconds: int
    resolutions: tuple[str, ...]
    default_resolution: str
    aspects: tuple[str, ...] = ("16:9", "9:16", "1:1")
    # start-end2video may allow fewer seconds than the model's other endpoints.
    kf2v_max_seconds: int | None = None
    # length -> the only resolutions allowed at that length, where the docs narrow the model's list.
    resolutions_at: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""
    price: Price | None = None


def size_for(resolution: str, aspect: str) -> str:
    """The WxH we name a Vidu resolution + aspect ratio by (the shorter side is the resolution's lines)."""
    lines, (wide, high) = _LINES[resolution], _RATIOS[aspect]
    if wide >= high:
        return f"{lines * wide // high}x{lines}"
    return f"{lines}x{lines * high // wide}"


def resolution_of(width: int, height: int) -> str:
    """Vidu's resolution for a size: its shorter side in lines ("1080p")."""
    return f"{min(width, height)}p"


def aspect_of(width: int, height: int) -> str:
    """Vidu's aspect_ratio for a size ("16:9")."""
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def _spec(model: ViduModel) -> ModelSpec:
    tiers = {f"{res[:-1]}P": size_for(res, "16:9") for res in model.resolutions if res in ("720p", "1080p")}
    return ModelSpec(
        name=model.name,
        provider="vidu",
        modes=model.modes,
        seconds=model.seconds,
        default_seconds=model.default_seconds,
        sizes=tuple(size_for(res, aspect) for res in model.resolutions for aspect in model.aspects),
        tiers=tiers,
        default_size=size_for(model.default_resolution, "16:9"),
        params=_PARAMS_TAKEN,
        deadline_s=2 * 3600,
        price=model.price,
        poll_hint_ms=5000,
        description=model.description,
    )


_I2V: frozenset[Mode] = frozenset({"i2v", "kf2v"})
_Q2 = tuple(range(1, 11))
VIDU_MODELS: tuple[ViduModel, ...] = (
    # Price: Vidu API pricing (platform.vidu.com, read 2025-10), a viduq1 1080p 5 s clip divided by 5, USD/s.
    # The other models' prices are not in our references: None, so an operator routing them sets [prices].
    ViduModel(
        "viduq1", frozenset({"t2v", "i2v", "kf2v"}), (5,), 5, ("1080p",), "1080p",
        description="Vidu Q1: text, image or first+last frame to video, 5 s at 1080p", price=Decimal("0.08"),
    ),
    ViduModel(
        "viduq2", frozenset({"t2v"}), _Q2, 5, ("540p", "720p", "1080p"), "720p",
        aspects=("16:9", "9:16", "1:1", "4:3", "3:4"),
        description="Vidu Q2 text-to-video, 1-10 s",
    ),
    ViduModel(
        "viduq2-pro", _I2V, _Q2, 5, ("540p", "720p", "1080p"), "720p", kf2v_max_seconds=8,
        description="Vidu Q2 Pro: image or first+last frame to video",
    ),
    ViduModel(
        "viduq2-turbo", _I2V, _Q2, 5, ("540p", "720p", "1080p"), "720p", kf2v_max_seconds=8,
        description="Vidu Q2 Turbo: image or first+last frame to video",
    ),
    ViduModel(
        "viduq2-pro-fast", _I2V, _Q2, 5, ("720p", "1080p"), "720p", kf2v_max_seconds=8,
        description="Vidu Q2 Pro Fast: image or first+last frame to video",
    ),
    ViduModel(
        "vidu2.0", _I2V, (4, 8), 4, ("360p", "720p", "1080p"), "720p", resolutions_at={8: ("720p",)},
        description="Vidu 2.0: image or first+last frame to video, 4 or 8 s",
    ),
)  # fmt: skip
_RULES = {model.name: model for model in VIDU_MODELS}
MODELS: tuple[ModelSpec, ...] = tuple(_spec(model) for model in VIDU_MODELS)


def check_request(req: VideoRequest) -> None:
    """Refuse what Vidu's rules forbid beyond the ModelSpec: length-dependent limits."""
    rules = _RULES.get(req.model)
    if rules is None:
        return
    if req.mode == "kf2v" and rules.kf2v_max_seconds is not None and req.seconds > rules.kf2v_max_seconds:
        allowed = ", ".join(f"'{s}'" for s in rules.seconds if s <= rules.kf2v_max_seconds)
        field_name = req.field_of("seconds")
        raise InvalidRequest(
            f"Invalid value for '{field_name}': '{req.seconds}'. With a first and last frame {req.model} accepts: "
            f"{allowed}.",
            param=field_name,
        )
    narrowed = rules.resolutions_at.get(req.seconds)
    resolution = resolution_of(req.width, req.height)
    if narrowed is not None and resolution not in narrowed:
        sizes = ", ".join(size_for(res, aspect) for res in narrowed for aspect in rules.aspects)
        field_name = req.field_of("size")
        raise InvalidRequest(
            f"Invalid value for '{field_name}': '{req.size}'. {req.model} makes {req.seconds} s videos only at "
            f"{'/'.join(narrowed)}: {sizes}.",
            param=field_name,
        )


def image_inputs(req: VideoRequest) -> list[MediaInput]:
    """The request's images in Vidu's order: first frame, then last frame."""
    return [item for role in ("first_frame", "last_frame") if (item := req.input(role)) is not None]


def endpoint(req: VideoRequest) -> str:
    """The create path for a request, chosen by how many images it carries."""
    return f"{API_PREFIX}/{ENDPOINTS[len(image_inputs(req))]}"


def image_value(item: MediaInput) -> str:
    """An http(s) URL as given, else the stored bytes as a data: URI in a type Vidu reads."""
    if item.url and item.url.startswith(("http://", "https://")):
        return item.url
    if item.path is None:
        if item.url and item.url.startswith("data:"):
            return item.url
        raise UpstreamRejected(f"{item.field}: no image to send", param=item.field)
    data, mime = item.path.read_bytes(), item.mime or ""
    if mime not in _IMAGE_TYPES:
        data, mime = _as_png(data, item.field), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _as_png(data: bytes, field_name: str) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            out = io.BytesIO()
            image.convert("RGBA" if "A" in image.getbands() else "RGB").save(out, format="PNG")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise UpstreamRejected(f"{field_name} is not a readable image", param=field_name) from exc
    return out.getvalue()


def build_body(req: VideoRequest, *, callback_url: str | None = None) -> dict[str, Any]:
    """The Vidu create body: model, prompt, images (never on text2video), duration, resolution, extras."""
    body: dict[str, Any] = {"model": req.model, "prompt": req.prompt}
    images = [image_value(item) for item in image_inputs(req)]
    if images:
        body["images"] = images
    body["duration"] = req.seconds
    body["resolution"] = resolution_of(req.width, req.height)
    if not images:
        body["aspect_ratio"] = aspect_of(req.width, req.height)
    if req.seed is not None:
        body["seed"] = req.seed
    for key in ("movement_amplitude", "bgm"):
        if key in req.extras:
            body[key] = req.extras[key]
    if callback_url:
        body["callback_url"] = callback_url
    return body


def parse_progress(payload: Mapping[str, Any]) -> Progress:
    """A task query answer → Progress; an unknown state or a success without a video raises UpstreamTransient."""
    state = payload.get("state")
    if state in _STATES:
        return Progress(state=_STATES[state])
    if state == "success":
        creations = payload.get("creations")
        first = creations[0] if isinstance(creations, list) and creations else None
        url = first.get("url") if isinstance(first, Mapping) else None
        if not isinstance(url, str) or not url:
            raise UpstreamTransient("Vidu reported success without a creation URL")
        cover = first.get("cover_url") if isinstance(first, Mapping) else None
        return Progress(
            state="completed",
            progress=100,
            video_url=url,
            thumbnail_url=cover if isinstance(cover, str) and cover else None,
        )
    if state == "failed":
        # A failed task carries only err_code; what the code means (Vidu's error table) follows it as a note.
        code = str(payload.get("err_code") or "") or None
        failure = UpstreamFailure(VENDOR, code, note=_FAILURES.get(code or ""))
        if code == "UserCancelled":
            return Progress.failed(UPSTREAM_CANCELLED, failure, state="cancelled")
        return Progress.failed(our_code(code) or GENERATION_FAILED, failure)
    raise UpstreamTransient(f"unknown Vidu task state {state!r}")


def map_error(status: int, body: Any, *, images_param: str | None = None) -> Exception:
    """A Vidu error answer {code, reason, message} → UpstreamTransient or UpstreamRejected with our field."""
    reason = str(body.get("reason") or "") if isinstance(body, Mapping) else ""
    message = str(body.get("message") or "") if isinstance(body, Mapping) else str(body or "")[:300]
    text = f"Vidu {status} {reason}: {message}".strip()
    if status in (401, 403, 404, 408, 429, 499) or status >= 500 or reason in _TRANSIENT_REASONS:
        return UpstreamTransient(text, status=status)
    match = _FIELD.search(message)
    vidu_field = match.group(1) if match else None
    if vidu_field == "model":
        # The channel's model (map) is wrong for this endpoint: our configuration, not the client's request.
        return UpstreamTransient(text, status=status)
    params = {**_PARAMS, "images": images_param} if images_param else _PARAMS
    param = params.get(vidu_field or "")
    if param is None and reason in _IMAGE_REASONS:
        param = images_param
    if param is None and reason == "TaskPromptPolicyViolation":
        param = "prompt"
    failure = UpstreamFailure(VENDOR, reason or None, message or None)
    return UpstreamRejected(failure.text(), code=our_code(reason), param=param, upstream=failure)


def our_code(reason: str | None) -> str | None:
    """Our code for a Vidu reason / err_code: its policy and review blocks are a content policy violation."""
    return CONTENT_POLICY_VIOLATION if reason in _POLICY_REASONS else None


def _mapper(req: VideoRequest) -> Callable[[int, Any], Exception]:
    images = image_inputs(req)
    field_name = images[0].field if images else None

    def mapped(status: int, body: Any) -> Exception:
        error = map_error(status, body, images_param=field_name)
        if isinstance(error, UpstreamRejected) and error.param and error.param != field_name:
            error.param = req.field_of(error.param)
        return error

    return mapped


def from_settings(settings: Settings, http: httpx.AsyncClient) -> ViduProvider:
    return ViduProvider(http)


class ViduProvider(Provider):
    """Vidu models on a Vidu enterprise account (`Token` key)."""

    name = "vidu"
    default_base_url = DEFAULT_BASE_URL
    accepts_callback = True

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def check(self, req: VideoRequest) -> None:
        check_request(req)

    def base_url(self, creds: Credentials) -> str:
        # base_url may carry the /ent/v2 prefix or not; the documented paths are appended either way.
        return super().base_url(creds).removesuffix(API_PREFIX)

    @staticmethod
    def _headers(creds: Credentials) -> dict[str, str]:
        return {"Authorization": f"Token {creds.api_key}", "Accept": "application/json"}

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        # Reading and base64-encoding images can take a while; keep it off the event loop.
        body = await asyncio.to_thread(build_body, req, callback_url=callback_url)
        url = self.base_url(creds) + endpoint(req)
        data = await send(self.http, "POST", url, headers=self._headers(creds), json=body, error=_mapper(req))
        task = data.get("task_id") if isinstance(data, Mapping) else None
        if isinstance(task, int) and not isinstance(task, bool):
            task = str(task)
        if not isinstance(task, str) or not task:
            raise UpstreamTransient("Vidu accepted the task but returned no task_id")
        return Submitted(upstream_id=task)

    async def _query(self, upstream_id: str, creds: Credentials) -> Progress:
        url = f"{self.base_url(creds)}{API_PREFIX}/tasks/{upstream_id}/creations"
        data = await send(self.http, "GET", url, headers=self._headers(creds), error=map_error)
        if not isinstance(data, Mapping):
            raise UpstreamTransient("Vidu answered a task query with something that is not an object")
        return parse_progress(data)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        return await self._query(upstream_id, creds)

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        url = f"{self.base_url(creds)}{API_PREFIX}/tasks/{upstream_id}/cancel"
        try:
            await send(self.http, "POST", url, headers=self._headers(creds), json={"id": upstream_id}, error=map_error)
        except UpstreamRejected as exc:
            # "task state is processing, can not cancel": only waiting tasks can be cancelled.
            raise NotSupported(f"Vidu would not cancel: {exc}") from exc

    async def download_previews(
        self, result: Progress, upstream_id: str, creds: Credentials, folder: Path
    ) -> dict[str, Path]:
        """Vidu's cover (a JPEG) as the WebP thumbnail; without it vidgate makes its own from the video."""
        progress = result
        if progress.thumbnail_url is None:
            return {}
        cover, thumbnail = folder / "cover.jpg", folder / "thumbnail.webp"
        try:
            await download_to(self.http, progress.thumbnail_url, cover, base_url=self.base_url(creds))
            await asyncio.to_thread(_to_webp, cover, thumbnail)
        except (UpstreamTransient, UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
            log.info("Vidu cover of %s unusable: %s", upstream_id, exc)
            thumbnail.unlink(missing_ok=True)
            return {}
        finally:
            cover.unlink(missing_ok=True)
        return {"thumbnail": thumbnail}


def _to_webp(source: Path, dest: Path) -> None:
    with Image.open(source) as image:
        image.convert("RGB").save(dest, format="WEBP", quality=85)
