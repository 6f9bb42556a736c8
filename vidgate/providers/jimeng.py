"""Jimeng (即梦) on the Volcengine visual API: models, request bodies, task states, and the V4 signature.

Both calls are `POST {base}/?Action=...&Version=2022-08-31`, signed with Volcengine V4 ("HMAC-SHA256", region
cn-north-1, service cv; providers.md §4.3): CVSync2AsyncSubmitTask with the model's `req_key`, then
CVSync2AsyncGetResult with the same req_key and the task id, so the upstream id we keep is
"<req_key>:<task_id>:<submitted at, unix seconds>". The finished video's URL lives one hour; the poller
downloads it as soon as the task is done.

Decisions where providers.md §4 is uncertain:
  - S2.0 Pro (`jimeng_vgfm_*_l20`): only 5 s is declared. Its docs list no `frames`; new-api sends frames to
    every key, so 121 is sent and tolerated, but nothing shows that 241 makes a 10 s S2.0 video, and billing a
    client 10 s for a video that may be 5 s is worse than a 400. The 3.0 keys take 5 s (121) and 10 s (241).
  - Aspect ratios: 16:9, 4:3, 1:1, 3:4, 9:16, 21:9 for every key (9:21 appears in only one client's list for
    S2.0 and in none for 3.0). 1080P keys declare the 3.0 Pro table's sizes (1920x1088 ...; 1920x1080 and
    1080x1920 are accepted as the same 16:9 / 9:16); 720P keys declare sizes with a 720 px short side, since
    no source gives their exact pixels. Only the aspect ratio reaches the upstream; the stored video's real
    size is probed.
  - `aspect_ratio` is sent for text-to-video only: image-to-video follows the image (3.0 doc: nearest ratio,
    centre-cropped), so image-only models declare a tier rather than sizes.
  - `not_found` within NOT_FOUND_GRACE_S of the submit is read as a passing fault (the task may not be visible
    to GetResult yet); later it fails the task, as does `expired`.
  - Jimeng has no client-chosen task id, so a submit whose reply is lost cannot be looked up: the engine
    treats it as transient and may submit again, which can leave one orphan upstream task.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from vidgate.config import Settings
from vidgate.errors import InvalidRequest, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    SEED,
    UPSTREAM_TASK_LOST,
    Credentials,
    MediaInput,
    Mode,
    ModelSpec,
    Price,
    Progress,
    Provider,
    Role,
    Submitted,
    UpstreamState,
    VideoRequest,
)
from vidgate.providers.http import send
from vidgate.providers.images import as_jpeg_or_png

DEFAULT_BASE_URL = "https://visual.volcengineapi.com"
VERSION = "2022-08-31"
SUBMIT, RESULT = "CVSync2AsyncSubmitTask", "CVSync2AsyncGetResult"
REGION, SERVICE, ALGORITHM = "cn-north-1", "cv", "HMAC-SHA256"
SIGNED_HEADERS = ("content-type", "host", "x-content-sha256", "x-date")
X_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
SUCCESS = 10000
MAX_PROMPT = 800
NOT_FOUND_GRACE_S = 120.0

SIZES_1080 = {
    "16:9": "1920x1088",
    "4:3": "1664x1248",
    "1:1": "1440x1440",
    "3:4": "1248x1664",
    "9:16": "1088x1920",
    "21:9": "2176x928",
}
SIZES_720 = {
    "16:9": "1280x720",
    "4:3": "960x720",
    "1:1": "720x720",
    "3:4": "720x960",
    "9:16": "720x1280",
    "21:9": "1680x720",
}
_ALIASES_1080 = ("1920x1080", "1080x1920")
_STATES: dict[str, UpstreamState] = {"in_queue": "queued", "generating": "in_progress"}
_FRAMES: tuple[Role, ...] = ("first_frame", "last_frame")
# Risk codes about the image or the text -> the field to blame (providers.md §4.7).
_IMAGE_RISK = frozenset({50411, 50511, 50518, 50519, 50522})
_TEXT_RISK = frozenset({50412, 50413, 50512, 50521})
# Every "Risk Not Pass" code (image, text, video, audio, copyright): a content policy block. 50520-50522 are
# the risk check's own internal errors, not a verdict on the content.
_RISK = frozenset({50411, 50511, 50412, 50512, 50413, 50516, 50517, 50518, 50519})
# Failures read "Jimeng: 50413: Post Text Risk Not Pass".
VENDOR = "Jimeng"
# Whole words in "Invalid parameter: ..." messages -> the client's field; the first hit wins.
_PARAM_WORDS = (
    ("frames", "seconds"),
    ("aspect_ratio", "size"),
    ("binary_data_base64", "first_frame"),
    ("image_urls", "first_frame"),
    ("image", "first_frame"),
    ("req_key", "model"),
    ("seed", "seed"),
    ("prompt", "prompt"),
)


def _spec(name: str, modes: frozenset[Mode], tier: str, seconds: tuple[int, ...], price: Price | None) -> ModelSpec:
    table = SIZES_1080 if tier == "1080P" else SIZES_720
    sizes: tuple[str, ...] = ()
    if "t2v" in modes:
        sizes = tuple(table.values()) + (_ALIASES_1080 if tier == "1080P" else ())
    return ModelSpec(
        name=name,
        provider="jimeng",
        modes=modes,
        seconds=seconds,
        default_seconds=5,
        sizes=sizes,
        tiers={tier: table["16:9"]},
        default_size=table["16:9"],
        params={"seed": SEED},
        price=price,
        # Jimeng forgets tasks after 12 h; a healthy one finishes in minutes.
        deadline_s=3 * 3600,
        poll_hint_ms=5000,
        description="Jimeng (ByteDance) video generation on Volcengine",
    )


_T2V: frozenset[Mode] = frozenset({"t2v"})
_I2V: frozenset[Mode] = frozenset({"i2v"})
_KF2V: frozenset[Mode] = frozenset({"kf2v"})
_BOTH = (5, 10)
# Prices: Volcengine Jimeng video generation price list (S2.0 Pro, read 2025-10), a 5 s clip divided by 5, in
# USD per second. The 3.0 models' prices are not in our references (providers.md): None, so an operator who
# routes them sets them in [prices] (startup refuses a routable model without a price).
_S20 = Decimal("0.04")
MODELS: tuple[ModelSpec, ...] = (
    _spec("jimeng_vgfm_t2v_l20", _T2V, "720P", (5,), _S20),
    _spec("jimeng_vgfm_i2v_l20", _I2V, "720P", (5,), _S20),
    _spec("jimeng_t2v_v30", _T2V, "720P", _BOTH, None),
    _spec("jimeng_t2v_v30_1080p", _T2V, "1080P", _BOTH, None),
    _spec("jimeng_i2v_first_v30", _I2V, "720P", _BOTH, None),
    _spec("jimeng_i2v_first_v30_1080", _I2V, "1080P", _BOTH, None),
    _spec("jimeng_i2v_first_tail_v30", _KF2V, "720P", _BOTH, None),
    _spec("jimeng_i2v_first_tail_v30_1080", _KF2V, "1080P", _BOTH, None),
    _spec("jimeng_ti2v_v30_pro", _T2V | _I2V, "1080P", _BOTH, None),
)


# -- Volcengine V4 signing (pure) ----------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_query(query: Iterable[tuple[str, str]]) -> str:
    """Keys sorted; keys and values RFC 3986-encoded with only "-_.~" left as they are (so a space is %20)."""
    pairs = sorted(query, key=lambda pair: pair[0])
    return "&".join(f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}" for key, value in pairs)


def canonical_host(netloc: str) -> str:
    """The Host value as signed: the default ports 80 and 443 are dropped, as the official SDK does."""
    host, _, port = netloc.rpartition(":")
    return host if host and port in ("80", "443") else netloc


def canonical_request(
    method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str], body_sha256: str
) -> str:
    """Method, path, query, the signed headers (each line ends in \\n), their names, the body hash."""
    block = "".join(f"{name}:{headers[name]}\n" for name in SIGNED_HEADERS)
    return "\n".join(
        [method, quote(path or "/", safe="/"), canonical_query(query), block, ";".join(SIGNED_HEADERS), body_sha256]
    )


def credential_scope(short_date: str) -> str:
    return f"{short_date}/{REGION}/{SERVICE}/request"


def string_to_sign(x_date: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, x_date, credential_scope(x_date[:8]), sha256_hex(canonical.encode())])


def signing_key(secret_key: str, short_date: str) -> bytes:
    """kDate -> kRegion -> kService -> kSigning; unlike AWS, the secret gets no "AWS4" prefix."""
    key = secret_key.encode()
    for part in (short_date, REGION, SERVICE, "request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign_request(
    access_key: str,
    secret_key: str,
    *,
    host: str,
    path: str,
    query: Iterable[tuple[str, str]],
    body: bytes,
    now: datetime,
    method: str = "POST",
    content_type: str = "application/json",
) -> dict[str, str]:
    """Every header a signed request sends: Content-Type, Host, X-Date, X-Content-Sha256, Authorization."""
    x_date = now.astimezone(UTC).strftime(X_DATE_FORMAT)
    body_hash = sha256_hex(body)
    signed = {"content-type": content_type, "host": host, "x-content-sha256": body_hash, "x-date": x_date}
    canonical = canonical_request(method.upper(), path, query, signed, body_hash)
    signature = hmac.new(
        signing_key(secret_key, x_date[:8]), string_to_sign(x_date, canonical).encode(), hashlib.sha256
    )
    authorization = (
        f"{ALGORITHM} Credential={access_key}/{credential_scope(x_date[:8])}, "
        f"SignedHeaders={';'.join(SIGNED_HEADERS)}, Signature={signature.hexdigest()}"
    )
    return {
        "Content-Type": content_type,
        "Host": host,
        "X-Date": x_date,
        "X-Content-Sha256": body_hash,
        "Authorization": authorization,
    }


# -- bodies and answers (pure) -------------------------------------------------------------------------------


def aspect_ratio(width: int, height: int) -> str:
    """The Jimeng aspect ratio nearest to a size."""
    ratio = width / height
    return min(SIZES_1080, key=lambda name: abs(ratio - _ratio(name)))


def _ratio(name: str) -> float:
    width, _, height = name.partition(":")
    return int(width) / int(height)


def frames_for(seconds: int) -> int:
    """Jimeng counts length in frames at 24 fps, plus one: 5 s = 121, 10 s = 241."""
    return 24 * seconds + 1


def is_url(item: MediaInput) -> bool:
    return bool(item.url and item.url.startswith(("http://", "https://")))


def image_base64(item: MediaInput) -> str:
    """Raw base64 (no data: prefix) of the input as a JPEG or PNG."""
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


def build_body(req: VideoRequest) -> dict[str, Any]:
    """The CVSync2AsyncSubmitTask body; the req_key is the (upstream) model name."""
    body: dict[str, Any] = {
        "req_key": req.model,
        "prompt": req.prompt,
        "seed": -1 if req.seed is None else req.seed,
        "frames": frames_for(req.seconds),
    }
    images = [item for item in (req.input("first_frame"), req.input("last_frame")) if item is not None]
    if not images:
        body["aspect_ratio"] = aspect_ratio(req.width, req.height)
    elif all(is_url(item) for item in images):
        body["image_urls"] = [item.url for item in images]
    else:
        body["binary_data_base64"] = [image_base64(item) for item in images]
    return body


def upstream_id(req_key: str, task_id: str, submitted_at: float) -> str:
    """What the engine keeps: GetResult needs the req_key; the submit time tells a fresh not_found apart."""
    return f"{req_key}:{task_id}:{int(submitted_at)}"


def split_upstream_id(value: str) -> tuple[str, str, float | None]:
    """(req_key, task_id, submitted_at or None) from an id made by upstream_id."""
    parts = value.split(":")
    if len(parts) == 3 and parts[2].isdigit():
        return parts[0], parts[1], float(parts[2])
    req_key, _, task_id = value.partition(":")
    return req_key, task_id, None


def parse_submit(payload: Mapping[str, Any]) -> str:
    """The task id of a successful submit answer; anything else raises the matching error."""
    _raise_gateway(payload)
    code = payload.get("code")
    if code != SUCCESS:
        raise _business(code, payload.get("message"))
    data = payload.get("data")
    task = data.get("task_id") if isinstance(data, Mapping) else None
    if not isinstance(task, str) or not task:
        raise UpstreamTransient("Jimeng accepted the task but returned no task_id")
    return task


def parse_progress(payload: Mapping[str, Any], *, age_s: float | None = None) -> Progress:
    """A GetResult answer -> Progress. `age_s` is the time since submit (None: unknown, treated as old)."""
    _raise_gateway(payload)
    code = payload.get("code")
    if code != SUCCESS:
        error = _business(code, payload.get("message"))
        if isinstance(error, UpstreamTransient):
            raise error
        return failed_task(error)
    data = payload.get("data")
    status = data.get("status") if isinstance(data, Mapping) else None
    if status in _STATES:
        return Progress(state=_STATES[status])
    if status == "done" and isinstance(data, Mapping):
        url = data.get("video_url")
        if not isinstance(url, str) or not url:
            raise UpstreamTransient("Jimeng task done without a video_url")
        return Progress(state="completed", progress=100, video_url=url)
    if status == "not_found":
        if age_s is not None and age_s < NOT_FOUND_GRACE_S:
            raise UpstreamTransient("Jimeng does not see the task yet (not_found right after submit)")
        gone = UpstreamFailure(VENDOR, "not_found", note="Jimeng no longer knows this task.")
        return Progress.failed(UPSTREAM_TASK_LOST, gone)
    if status == "expired":
        return Progress.failed(UPSTREAM_TASK_LOST, UpstreamFailure(VENDOR, "expired", note="The Jimeng task expired."))
    raise UpstreamTransient(f"unknown Jimeng task status {status!r}")


def business_error(code: int, message: str, *, status: int | None = None) -> UpstreamRejected | UpstreamTransient:
    """A business code (providers.md §4.7) -> the error that says what to do about it."""
    text = f"Jimeng {code}: {message}"
    if code in (50429, 50430):
        return UpstreamTransient(text, status=status or 429)
    if code in (50500, 50501):
        return UpstreamTransient(text, status=status or 500)
    if 50400 <= code < 50600:
        failure = UpstreamFailure(VENDOR, str(code), message or None)
        policy = CONTENT_POLICY_VIOLATION if code in _RISK else None
        return UpstreamRejected(failure.text(), code=policy, param=param_of(code, message), upstream=failure)
    return UpstreamTransient(text, status=status)


def failed_task(refusal: UpstreamRejected) -> Progress:
    """A task that GetResult answers with a business error (risk control ...): failed, in Jimeng's words."""
    failure = refusal.upstream or UpstreamFailure(VENDOR, message=refusal.message)
    return Progress.failed(refusal.code or GENERATION_FAILED, failure)


def param_of(code: int, message: str) -> str | None:
    """The client field a refusal is about (roles stand for the request's own image field)."""
    if code in _IMAGE_RISK:
        return "first_frame"
    if code in _TEXT_RISK:
        return "prompt"
    return next((param for word, param in _PARAM_WORDS if re.search(rf"\b{word}\b", message)), None)


def error_from(status: int, body: Any) -> UpstreamRejected | UpstreamTransient:
    """A non-2xx answer: the gateway envelope (our credentials or request signing) or a business code."""
    if isinstance(body, Mapping):
        gateway = _gateway_error(body)
        if gateway is not None:
            return UpstreamTransient(f"Volcengine gateway {status}: {gateway}", status=status)
        code = body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return business_error(code, str(body.get("message") or ""), status=status)
    return UpstreamTransient(f"Jimeng HTTP {status}: {str(body)[:300]}", status=status)


def _gateway_error(body: Mapping[str, Any]) -> str | None:
    meta = body.get("ResponseMetadata")
    error = meta.get("Error") if isinstance(meta, Mapping) else None
    if not isinstance(error, Mapping):
        return None
    return f"{error.get('CodeN')} {error.get('Code')}: {error.get('Message')}"


def _raise_gateway(payload: Mapping[str, Any]) -> None:
    gateway = _gateway_error(payload)
    if gateway is not None:
        raise UpstreamTransient(f"Volcengine gateway: {gateway}")


def _business(code: Any, message: Any) -> UpstreamRejected | UpstreamTransient:
    if not isinstance(code, int) or isinstance(code, bool):
        return UpstreamTransient(f"Jimeng answer without a business code: {str(message)[:300]}")
    return business_error(code, str(message or ""))


# -- the provider --------------------------------------------------------------------------------------------


def from_settings(settings: Settings, http: httpx.AsyncClient) -> JimengProvider:
    """The registry's factory (providers/registry.py)."""
    return JimengProvider(http)


class JimengProvider(Provider):
    """Jimeng video models on one Volcengine account (access key + secret key)."""

    name = "jimeng"
    default_base_url = DEFAULT_BASE_URL

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def check(self, req: VideoRequest) -> None:
        """Refuse what Jimeng would: a long prompt, or images given partly as URLs and partly as bytes."""
        if len(req.prompt) > MAX_PROMPT:
            field = req.field_of("prompt")
            raise InvalidRequest(f"{field} is longer than {MAX_PROMPT} characters (Jimeng's limit).", param=field)
        images = [item for item in (req.input("first_frame"), req.input("last_frame")) if item is not None]
        if len({is_url(item) for item in images}) > 1:
            # image_urls and binary_data_base64 exclude each other, and vidgate does not fetch URLs for Jimeng.
            raise InvalidRequest(
                "Jimeng needs both frames as http(s) URLs or both as files/data URIs, not one of each.",
                param=images[-1].field,
            )

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        # Images are read and re-encoded (GIF, WebP, BMP -> PNG) in build_body: blocking work, off the event loop.
        body = await asyncio.to_thread(build_body, req)
        try:
            answer = await self._call(creds, SUBMIT, body)
        except UpstreamRejected as exc:
            raise UpstreamRejected(exc.message, code=exc.code, param=_client_param(exc.param, req)) from exc
        task = parse_submit(answer)
        return Submitted(upstream_id=upstream_id(req.model, task, time.time()))

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        req_key, task, submitted_at = split_upstream_id(upstream_id)
        try:
            answer = await self._call(creds, RESULT, {"req_key": req_key, "task_id": task})
        except UpstreamRejected as exc:
            # GetResult reports a task's own failure (risk control ...) as a business error, HTTP 400.
            return failed_task(exc)
        age = time.time() - submitted_at if submitted_at is not None else None
        return parse_progress(answer, age_s=age)

    async def _call(self, creds: Credentials, action: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        parts = urlsplit((creds.base_url or DEFAULT_BASE_URL).rstrip("/"))
        path = parts.path + "/"
        host = canonical_host(parts.netloc)
        query = (("Action", action), ("Version", VERSION))
        body = orjson.dumps(payload)
        headers = sign_request(
            creds.access_key, creds.secret_key, host=host, path=path, query=query, body=body, now=datetime.now(UTC)
        )
        # The query is written exactly as it was signed, and the body is sent as the bytes that were hashed.
        url = f"{parts.scheme}://{parts.netloc}{quote(path, safe='/')}?{canonical_query(query)}"
        answer = await send(self.http, "POST", url, headers=headers, content=body, error=error_from)
        if not isinstance(answer, Mapping):
            raise UpstreamTransient(f"Jimeng {action} answer is not an object")
        return answer


def _client_param(param: str | None, req: VideoRequest) -> str | None:
    for role in _FRAMES:
        if param == role:
            item = req.input(role)
            return item.field if item else None
    return req.field_of(param) if param else None
