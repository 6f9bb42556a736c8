"""Any OpenAI-format `/v1/videos` upstream: models, the multipart create body, Video objects, Bearer auth.

OpenAI shut its own Sora API down on 2026-09-24; the protocol lives on in resellers, self-hosted model servers
and other vidgates. The Sora 2 models stay declared (with Sora's rules) for upstreams that still serve them;
any other name a channel lists in `models` is passed on as it is, and the upstream validates it (SPEC §8):
see `declared_model` for what vidgate itself checks.

Create `POST {base}/v1/videos` (multipart: prompt, model, seconds as a string, size "WxH", and the image as a
file part `input_reference`); poll `GET {base}/v1/videos/{id}`; the finished video has no URL, its bytes come
from `GET {base}/v1/videos/{id}/content` (`?variant=thumbnail` WebP, `?variant=spritesheet` JPEG) with the
same key. Remix is `POST {base}/v1/videos/{id}/remix` with JSON {prompt}. Sora has no cancel.

Decisions where providers.md §1 and §7.1 leave room:
  - Sora refuses a reference image that is not exactly the requested WxH. Users send photos, so the adapter
    cover-fits every image to the size (scale to fill, centre crop) instead of refusing it; an image that
    already matches, upright and in JPEG/PNG/WebP, is sent byte for byte.
  - To fit an image the adapter needs its bytes, so `needs_bytes` is set: vidgate fetches http(s) inputs
    (with its private-address guard) and the body is always multipart, never JSON `{image_url}`.
  - Sora 2 videos carry their own soundtrack, which can be neither asked for nor turned off, so the models
    declare `audio=False` ("cannot be requested"); the stored video is probed, so `has_audio` is the truth.
  - "720P" is accepted as a size and means the model's default size (720x1280, Sora's own default).
  - release() keeps the upstream video: remix needs it, and Sora expires its assets by itself.
  - A 401/403, a 404 on create/poll, a 400 about `model` (a channel's model map naming a model the account
    cannot use) and quota/billing codes are the channel's problem, not the client's: UpstreamTransient, so
    another channel can take the request.
  - A create whose answer was lost is looked for with `GET /v1/videos` (newest first, 100 a page): a video
    of the same model, prompt, size and seconds (and remix source), created since the create was sent (less
    CLOCK_SKEW_S). The reference image is not shown by the list, so it cannot be compared. An upstream whose
    list route does not exist (404/405, e.g. a proxy that only relays create and retrieve) cannot look.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError

from vidgate.config import Settings
from vidgate.errors import NotSupported, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    OUR_FAILURE_CODES,
    Credentials,
    MediaInput,
    ModelSpec,
    Price,
    Progress,
    Provider,
    Submitted,
    VideoRequest,
    per_tier,
)
from vidgate.providers.http import download_to, send

log = logging.getLogger("vidgate.providers.openai")

DEFAULT_BASE_URL = "https://api.openai.com"
SECONDS = (4, 8, 12)
SORA2_SIZES = ("720x1280", "1280x720")
PRO_SIZES = (*SORA2_SIZES, "1024x1792", "1792x1024")
DEFAULT_SIZE = "720x1280"
# Sora takes JPEG, PNG and WebP references; anything else (BMP, GIF) is re-encoded.
_ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# Sora's whole status vocabulary (§1.5); anything else is not trusted.
_STATES = frozenset({"queued", "in_progress", "completed", "failed"})
# Upstream `param` -> the client's field it stands for.
_PARAMS = {
    "prompt": "prompt",
    "seconds": "seconds",
    "size": "size",
    "input_reference": "input_reference",
    "input_reference.image_url": "input_reference",
    "input_reference.file_id": "input_reference",
}
# 400 codes that describe our account, not the request: another channel may still serve it.
_ACCOUNT_CODES = frozenset({"billing_hard_limit_reached", "insufficient_quota", "billing_not_active"})
# How failures read: "Upstream: moderation_blocked: <its message>". The upstream may be any OpenAI-format server
# (a reseller, another vidgate), so it is not named after OpenAI; which channel it was stays private.
VENDOR = "Upstream"
# Upstream codes that mean a moderation or policy block (OpenAI's own are undocumented: moderation_blocked, ...).
_POLICY_CODE = re.compile(r"moderation|policy|safety|content_filter", re.I)
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(;[^,;]*)*?;base64,(?P<data>.*)$", re.S)
PREVIEWS = {"thumbnail": "thumbnail.webp", "spritesheet": "spritesheet.jpg"}
# A lookup reads at most this many pages of 100 videos before it gives up telling (it then retries later).
LIST_PAGES = 10
# Tolerance between our clock and the upstream's when comparing creation times.
CLOCK_SKEW_S = 30.0


def _model(name: str, sizes: tuple[str, ...], price: Price, description: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider="openai",
        modes=frozenset({"t2v", "i2v"}),
        seconds=SECONDS,
        default_seconds=4,
        sizes=sizes,
        tiers={"720P": DEFAULT_SIZE},
        default_size=DEFAULT_SIZE,
        audio=False,
        remix=True,
        # Sora renders take minutes (pro at 12 s, longer); two hours covers a busy queue.
        deadline_s=2 * 3600,
        poll_hint_ms=5000,
        price=price,
        description=description,
    )


# Prices: OpenAI API pricing (openai.com/api/pricing, read 2025-10): sora-2 $0.10/s (720p); sora-2-pro $0.30/s
# at 720p, $0.50/s at 1024x1792.
MODELS: tuple[ModelSpec, ...] = (
    _model("sora-2", SORA2_SIZES, Decimal("0.10"), "OpenAI Sora 2 (with its own soundtrack, not controllable)"),
    _model(
        "sora-2-pro",
        PRO_SIZES,
        per_tier("0.30", "0.30", "0.50"),
        "OpenAI Sora 2 Pro, up to 1792x1024 (with its own soundtrack)",
    ),
)
# What a model the channel declares without `seconds` / `sizes` may be asked for; the upstream has the last word.
ANY_SECONDS = tuple(range(1, 61))
ANY_SIZE = (16, 4096)
_TIER_SIZES = {"480P": "832x480", "720P": "1280x720", "1080P": "1920x1080"}


def declared_spec(name: str, *, seconds: Sequence[int] | None = None, sizes: Sequence[str] | None = None) -> ModelSpec:
    """A model of the channel's own naming: text or image to video, the seconds and sizes the channel declares
    (else any, for the upstream to judge), no params (the body carries prompt, model, seconds, size and the
    image only), and no price: `[prices]` must name it (startup refuses it otherwise)."""
    allowed = tuple(sorted(set(seconds))) if seconds else ANY_SECONDS
    return ModelSpec(
        name=name,
        provider="openai",
        modes=frozenset({"t2v", "i2v"}),
        seconds=allowed,
        default_seconds=4 if 4 in allowed else allowed[0],
        sizes=tuple(sizes or ()),
        tiers={} if sizes else _TIER_SIZES,
        default_size=sizes[0] if sizes else "1280x720",
        any_size=None if sizes else ANY_SIZE,
        audio=False,
        remix=True,
        deadline_s=2 * 3600,
        poll_hint_ms=2000,
        description="Served by an OpenAI-format upstream, which validates each request",
    )


def api_base(creds: Credentials) -> str:
    """The API root ending in /v1, whether base_url was given with or without it."""
    base = (creds.base_url or DEFAULT_BASE_URL).rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def build_body(req: VideoRequest) -> dict[str, str]:
    """The text fields of the multipart create body (the image goes in as a separate file part)."""
    return {"prompt": req.prompt, "model": req.model, "seconds": str(req.seconds), "size": req.size}


def fit_image(data: bytes, width: int, height: int) -> tuple[bytes, str]:
    """The image cover-fitted to exactly width x height (scaled to fill, centre-cropped), and its MIME type."""
    with Image.open(io.BytesIO(data)) as image:
        image_format = image.format or ""
        rotated = image.getexif().get(0x0112, 1) not in (1, None)
        if image.size == (width, height) and image_format in _ACCEPTED_FORMATS and not rotated:
            return data, _ACCEPTED_FORMATS[image_format]
        # Phone photos are stored sideways with an EXIF rotation; fit what the user actually sees.
        upright = ImageOps.exif_transpose(image)
        alpha = upright.mode in ("RGBA", "LA") or "transparency" in upright.info
        fitted = ImageOps.fit(upright.convert("RGBA" if alpha else "RGB"), (width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if alpha:
        fitted.save(out, format="PNG")
        return out.getvalue(), "image/png"
    fitted.save(out, format="JPEG", quality=95)
    return out.getvalue(), "image/jpeg"


def reference_bytes(item: MediaInput) -> bytes:
    """The raw bytes of an image input: its stored file, or a data: URI decoded."""
    if item.path is not None:
        return item.path.read_bytes()
    match = _DATA_URI.match(item.url or "")
    if match is None:
        # needs_bytes makes vidgate store every input before submit; a bare URL here has no bytes to send.
        raise UpstreamRejected(f"{item.field}: the image could not be read", param=item.field)
    try:
        return base64.b64decode(match.group("data"))
    except (binascii.Error, ValueError) as exc:
        raise UpstreamRejected(f"{item.field}: the data: URI is not valid base64", param=item.field) from exc


def reference_part(item: MediaInput, width: int, height: int) -> tuple[str, bytes, str]:
    """The `input_reference` file part: (filename, bytes fitted to WxH, MIME type)."""
    try:
        data, mime = fit_image(reference_bytes(item), width, height)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise UpstreamRejected(f"{item.field} is not a readable image", param=item.field) from exc
    suffix = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}[mime]
    return f"reference.{suffix}", data, mime


def parse_progress(payload: Mapping[str, Any]) -> Progress:
    """A Video object → Progress; an unknown or missing status raises UpstreamTransient (read again later)."""
    status = payload.get("status")
    if not isinstance(status, str) or status not in _STATES:
        raise UpstreamTransient(f"unknown Sora video status {status!r}")
    if status == "completed":
        return Progress(state="completed", progress=100)
    if status == "failed":
        found = payload.get("error")
        error: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        failure = upstream_failure(error.get("code"), error.get("message"))
        return Progress.failed(our_code(failure.code) or GENERATION_FAILED, failure)
    raw = payload.get("progress")
    progress = int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    return Progress(state="queued" if status == "queued" else "in_progress", progress=progress)


def upstream_failure(code: Any, message: Any) -> UpstreamFailure:
    """What an OpenAI-format upstream said (an `error` object's code and message), verbatim."""
    return UpstreamFailure(VENDOR, str(code) if code else None, str(message)[:1000] if message else None)


def our_code(upstream_code: str | None) -> str | None:
    """Our code for an upstream's: another vidgate's codes are ours already; moderation codes are a policy block."""
    if upstream_code in OUR_FAILURE_CODES:
        return upstream_code
    if upstream_code and _POLICY_CODE.search(upstream_code):
        return CONTENT_POLICY_VIOLATION
    return None


def map_error(status: int, body: Any) -> Exception:
    """An OpenAI error answer → UpstreamTransient (try later or elsewhere) or UpstreamRejected (the client's)."""
    found = body.get("error") if isinstance(body, Mapping) else None
    error: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    message = str(error.get("message") or (body if isinstance(body, str) else "") or f"HTTP {status}")[:1000]
    code = str(error["code"]) if error.get("code") else None
    param = str(error["param"]) if error.get("param") else None
    text = f"Sora {status}{f' {code}' if code else ''}: {message}"
    if status in (401, 403, 404, 408, 409, 429) or status >= 500:
        return UpstreamTransient(text, status=status)
    if code in _ACCOUNT_CODES or param == "model":
        return UpstreamTransient(text, status=status)
    failure = upstream_failure(code, message)
    return UpstreamRejected(failure.text(), code=our_code(code), param=_PARAMS.get(param or ""), upstream=failure)


def matches(video: Mapping[str, Any], req: VideoRequest, *, since: float, remix_of: str | None) -> bool:
    """Whether a listed Video object could be what a create of `req` (sent at `since`) made."""
    created = video.get("created_at")
    if not isinstance(created, int | float) or created < since - CLOCK_SKEW_S:
        return False
    prompt = video.get("prompt")
    return (
        video.get("model") == req.model
        and (prompt is None or prompt == req.prompt)  # older deployments do not show the prompt
        and video.get("size") == req.size
        and str(video.get("seconds")) == str(req.seconds)
        and video.get("remixed_from_video_id") == remix_of
    )


def _list_error(status: int, body: Any) -> Exception:
    if status in (404, 405):
        return NotSupported(f"this upstream has no video list (HTTP {status})")
    return map_error(status, body)


def _remix_error(status: int, body: Any) -> Exception:
    if status == 404:
        # The source video is gone upstream (deleted or expired); no other channel holds it either.
        return UpstreamRejected(
            "The source video no longer exists upstream, so it cannot be remixed.",
            code="video_not_found",
            param="video_id",
        )
    mapped = map_error(status, body)
    if isinstance(mapped, UpstreamRejected) and mapped.param is None:
        mapped.param = "video_id"
    return mapped


def from_settings(settings: Settings, http: httpx.AsyncClient) -> OpenAIProvider:
    return OpenAIProvider(http)


class OpenAIProvider(Provider):
    """An OpenAI-format video API (Bearer key): the Sora 2 models, and whatever else its channel names."""

    name = "openai"
    # Reference images must be fitted to the exact size, which needs their bytes (see the module docstring).
    needs_bytes = True
    default_base_url = DEFAULT_BASE_URL

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def declared_model(
        self, name: str, *, seconds: Sequence[int] | None = None, sizes: Sequence[str] | None = None
    ) -> ModelSpec:
        return declared_spec(name, seconds=seconds, sizes=sizes)

    @staticmethod
    def _auth(creds: Credentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {creds.api_key}"}

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        # Every text field as a nameless part, so the body is multipart even without an image.
        parts: list[tuple[str, Any]] = [(key, (None, value)) for key, value in build_body(req).items()]
        reference = req.input("first_frame")
        if reference is not None:
            part = await asyncio.to_thread(reference_part, reference, req.width, req.height)
            parts.append(("input_reference", part))
        url = f"{api_base(creds)}/videos"
        data = await send(self.http, "POST", url, headers=self._auth(creds), files=parts, error=map_error)
        return _submitted(data)

    async def remix(self, source_upstream_id: str, req: VideoRequest, creds: Credentials, *, task_id: str) -> Submitted:
        url = f"{api_base(creds)}/videos/{source_upstream_id}/remix"
        data = await send(
            self.http, "POST", url, headers=self._auth(creds), json={"prompt": req.prompt}, error=_remix_error
        )
        return _submitted(data)

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        url = f"{api_base(creds)}/videos"
        found: list[tuple[float, str]] = []
        after: str | None = None
        for _ in range(LIST_PAGES):
            params = {"limit": "100", "order": "desc", **({"after": after} if after else {})}
            page = await send(self.http, "GET", url, headers=self._auth(creds), params=params, error=_list_error)
            videos = page.get("data") if isinstance(page, Mapping) else None
            if not isinstance(videos, list):
                raise UpstreamTransient("Sora answered a video list without a data array")
            listed = [video for video in videos if isinstance(video, Mapping) and isinstance(video.get("id"), str)]
            found += [
                (video["created_at"], video["id"])
                for video in listed
                if matches(video, req, since=since, remix_of=remix_of)
            ]
            times = [video["created_at"] for video in listed if isinstance(video.get("created_at"), int | float)]
            # Newest first: once a page reaches back before the create, older pages cannot hold it.
            if not page.get("has_more") or not listed or (times and min(times) < since - CLOCK_SKEW_S):
                return [video_id for _, video_id in sorted(found)]
            after = str(page.get("last_id") or listed[-1]["id"])
        raise UpstreamTransient(f"Sora lists more than {LIST_PAGES * 100} videos since the create; cannot tell")

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        url = f"{api_base(creds)}/videos/{upstream_id}"
        data = await send(self.http, "GET", url, headers=self._auth(creds), error=map_error)
        if not isinstance(data, Mapping):
            raise UpstreamTransient("Sora answered a video read with something that is not an object")
        progress = parse_progress(data)
        if progress.state == "completed":
            # No URL is ever returned: the bytes live behind /content, read with the same key.
            return replace(progress, video_url=f"{url}/content")
        return progress

    async def download(self, result: Progress, creds: Credentials, dest: Path) -> None:
        if not result.video_url:
            raise UpstreamTransient("no content URL to download")
        await download_to(self.http, result.video_url, dest, base_url=api_base(creds), headers=self._auth(creds))

    async def download_previews(
        self, result: Progress, upstream_id: str, creds: Credentials, folder: Path
    ) -> dict[str, Path]:
        """Sora's own thumbnail (WebP) and spritesheet (JPEG); whichever fails is made from the video instead."""
        stored: dict[str, Path] = {}
        for variant, filename in PREVIEWS.items():
            dest = folder / filename
            url = f"{api_base(creds)}/videos/{upstream_id}/content?variant={variant}"
            try:
                await download_to(self.http, url, dest, base_url=api_base(creds), headers=self._auth(creds))
            except UpstreamTransient as exc:
                log.info("Sora %s of %s unavailable: %s", variant, upstream_id, exc)
                continue
            if _is_format(dest, "WEBP" if variant == "thumbnail" else "JPEG"):
                stored[variant] = dest
            else:
                # The spritesheet's type is not documented (providers.md §1.5); serve only what we promise.
                dest.unlink(missing_ok=True)
        return stored


def _submitted(data: Any) -> Submitted:
    video_id = data.get("id") if isinstance(data, Mapping) else None
    if not isinstance(video_id, str) or not video_id:
        raise UpstreamTransient("Sora accepted the video but returned no id")
    # The create answer's status is not trusted here; the first poll reads the real one.
    return Submitted(upstream_id=video_id)


def _is_format(path: Path, expected: str) -> bool:
    with path.open("rb") as handle:
        head = handle.read(12)
    if expected == "WEBP":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return head[:3] == b"\xff\xd8\xff"
