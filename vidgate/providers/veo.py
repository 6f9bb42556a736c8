"""Google Veo, what the Gemini API (providers/gemini.py) and Vertex AI (providers/vertex.py) share: the model
specs, the request body, the Operation parser and Google's error envelope (reference/providers-2026.md §2).

Decisions where §2 leaves room:
  - Sizes are 1280x720 / 720x1280 (720p) and 1920x1080 / 1080x1920 (1080p). `4k` is not offered: vidgate's
    tiers stop at 1080P. The Veo 3.0 ids take 1080p in 16:9 only (one of the Gemini tables; the other lists
    more, so the narrower reading is kept). On the Gemini API 3.1 / 3.1 Lite take 1080p at 8 s only.
  - A model served by both surfaces (veo-3.0-generate-001, veo-3.0-fast-generate-001) gets the same spec on
    both, so a request routed to either (and failed over between them) is valid on both: the modes are the
    ones both accept (Vertex lists no first+last frame for Veo 3.0, so neither declares kf2v there), and so
    are the params (SHARED_PARAMS: Vertex's seed and prompt_extend are not declared for Veo 3.0).
  - Veo 3+ always makes audio on the Gemini API; Vertex is sent `generateAudio: true` for the same output
    (and price) on both. An `audio_url` input is refused: Veo takes none.
  - Images go as `{"bytesBase64Encoded","mimeType"}` (the SDK's form; §2.2 notes the REST samples' other
    form); the provider needs bytes (vidgate fetches URL inputs first).
  - No list or cancel endpoint is documented (§0): find() and cancel() are NotSupported, so a lost submit reply
    is recorded as a possible orphan rather than resubmitted blindly.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from vidgate.errors import InvalidRequest, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    NEGATIVE_PROMPT,
    MediaInput,
    Mode,
    ModelSpec,
    Param,
    Progress,
    VideoRequest,
)
from vidgate.providers.images import as_jpeg_or_png

SIZES_720 = ("1280x720", "720x1280")
SIZES_1080 = ("1920x1080", "1080x1920")
TIERS = {"720P": "1280x720", "1080P": "1920x1080"}
RESOLUTION = {"720P": "720p", "1080P": "1080p"}
# The docs poll every 10 s; latency runs from 11 s to 6 min at peak (§2.2).
POLL_HINT_MS = 10_000
DEADLINE_S = 1800
MAX_PROMPT = 4000  # the limit is 1024 tokens; this only keeps absurd prompts from travelling
T2V_I2V: frozenset[Mode] = frozenset({"t2v", "i2v"})
ALL_MODES: frozenset[Mode] = frozenset({"t2v", "i2v", "kf2v"})
# google.rpc.Code numbers as a done Operation's `error.code` carries them.
GRPC_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}
_SUPPORT_CODE = re.compile(r"[Ss]upport codes?:\s*(\d+)")
_RETRY_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")
# Words in Google's INVALID_ARGUMENT messages -> the request part they are about.
_PARAM_WORDS = (
    ("negativePrompt", "negative_prompt"),
    ("personGeneration", "person_generation"),
    ("enhancePrompt", "prompt_extend"),
    ("seed", "seed"),
    ("durationSeconds", "seconds"),
    ("aspectRatio", "size"),
    ("resolution", "size"),
    ("prompt", "prompt"),
)


def person_generation(*choices: str) -> Param:
    return Param("string", choices=choices, description="Whether people may appear (Veo's personGeneration).")


# What a model served by both surfaces takes on both (the Gemini API has no seed or enhancePrompt, and only
# allow_all/allow_adult), so no value is accepted on one channel and dropped on the other after a failover.
SHARED_PARAMS: Mapping[str, Param] = {
    "negative_prompt": NEGATIVE_PROMPT,
    "person_generation": person_generation("allow_all", "allow_adult"),
}


def spec(
    name: str,
    provider: str,
    *,
    modes: frozenset[Mode],
    seconds: tuple[int, ...],
    full_hd: tuple[str, ...],
    params: Mapping[str, Param],
    price: Decimal | Mapping[str, Decimal],
    audio: bool = True,
    description: str,
) -> ModelSpec:
    """One Veo model: 720p in both ratios, plus the 1080p sizes `full_hd` lists."""
    return ModelSpec(
        name=name,
        provider=provider,
        modes=modes,
        seconds=seconds,
        default_seconds=8,
        sizes=SIZES_720 + full_hd,
        tiers={tier: size for tier, size in TIERS.items() if tier == "720P" or full_hd},
        default_size="1280x720",
        audio=audio,
        params=dict(params),
        deadline_s=DEADLINE_S,
        poll_hint_ms=POLL_HINT_MS,
        price=price,
        description=description,
    )


def check(req: VideoRequest, *, eight_only_1080: bool) -> None:
    """What a ModelSpec cannot say: 1080p at 8 s only (Gemini 3.1), no audio input, prompt length."""
    audio = req.input("audio")
    if audio is not None:
        raise InvalidRequest(f"{req.model} takes no audio input; it makes its own soundtrack.", param=audio.field)
    if len(req.prompt) > MAX_PROMPT:
        raise InvalidRequest(f"prompt is longer than {MAX_PROMPT} characters.", param=req.field_of("prompt"))
    if eight_only_1080 and req.tier == "1080P" and req.seconds != 8:
        raise InvalidRequest(
            f"{req.model} makes 1080p videos of 8 seconds only; use 8 seconds or a 720p size (1280x720, 720x1280).",
            param=req.field_of("seconds"),
        )


def image_of(item: MediaInput) -> dict[str, str]:
    """`{"bytesBase64Encoded","mimeType"}` of a stored image (or a data: URI); JPEG or PNG, as Veo documents."""
    if item.path is not None:
        data = item.path.read_bytes()
    elif item.url and item.url.startswith("data:"):
        try:
            data = base64.b64decode(item.url.partition(",")[2], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UpstreamRejected(f"{item.field}: the data: URI is not valid base64", param=item.field) from exc
    else:
        raise UpstreamRejected(f"{item.field}: no image bytes to send", param=item.field)
    data = as_jpeg_or_png(data, item.mime)
    mime = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": mime}


def build_body(req: VideoRequest, *, vertex: bool) -> dict[str, Any]:
    """The predictLongRunning body; `vertex` adds what only Vertex takes (seed, generateAudio, enhancePrompt)."""
    instance: dict[str, Any] = {}
    if req.prompt:
        instance["prompt"] = req.prompt
    first, last = req.input("first_frame"), req.input("last_frame")
    if first is not None:
        instance["image"] = image_of(first)
    if last is not None:
        instance["lastFrame"] = image_of(last)
    parameters: dict[str, Any] = {
        "aspectRatio": "16:9" if req.width >= req.height else "9:16",
        "durationSeconds": req.seconds,
        "resolution": RESOLUTION.get(req.tier, "720p"),
        "sampleCount": 1,
    }
    if "negative_prompt" in req.extras:
        parameters["negativePrompt"] = req.extras["negative_prompt"]
    if "person_generation" in req.extras:
        parameters["personGeneration"] = req.extras["person_generation"]
    if vertex:
        if req.seed is not None:
            parameters["seed"] = req.seed
        if "prompt_extend" in req.extras:
            parameters["enhancePrompt"] = req.extras["prompt_extend"]
        if req.audio:
            parameters["generateAudio"] = True
    return {"instances": [instance], "parameters": parameters}


def parse_operation(data: Any, vendor: str, *, nested: bool) -> Progress | Mapping[str, Any]:
    """An Operation -> Progress, or, when it finished with videos, the result object that holds them
    (`generateVideoResponse` on the Gemini API (`nested`), `response` itself on Vertex).

    Anything unexpected raises UpstreamTransient: the poll is tried again."""
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
        raise UpstreamTransient(f"{vendor}: an operation answer without a name: {str(data)[:200]}")
    done = data.get("done", False)
    if done is False:
        return Progress(state="in_progress")
    if done is not True:
        raise UpstreamTransient(f"{vendor}: an operation whose done is {done!r}")
    error = data.get("error")
    if isinstance(error, Mapping):
        number = error.get("code")
        code = GRPC_NAMES.get(number, str(number)) if isinstance(number, int) else None
        message = str(error.get("message") or "") or None
        return Progress.failed(GENERATION_FAILED, UpstreamFailure(vendor, code, message))
    response = data.get("response")
    if nested and isinstance(response, Mapping):
        response = response.get("generateVideoResponse")
    if not isinstance(response, Mapping):
        raise UpstreamTransient(f"{vendor}: a done operation with neither response nor error")
    filtered = response.get("raiMediaFilteredCount")
    samples = response.get("generatedSamples" if nested else "videos")
    if isinstance(filtered, int) and filtered > 0 and not samples:
        reasons = response.get("raiMediaFilteredReasons")
        text = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
        found = _SUPPORT_CODE.search(text)
        code = found.group(1) if found else "raiMediaFiltered"
        return Progress.failed(CONTENT_POLICY_VIOLATION, UpstreamFailure(vendor, code, text or None))
    if not isinstance(samples, list) or not samples or not isinstance(samples[0], Mapping):
        raise UpstreamTransient(f"{vendor}: a done operation without videos")
    return response


def error_from(vendor: str) -> Any:
    """The mapper of Google's `{"error":{code,message,status,details}}` for providers/http.send."""

    def mapper(status: int, body: Any) -> UpstreamRejected | UpstreamTransient:
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return UpstreamTransient(f"{vendor} {status}: {str(body)[:300]}", status=status)
        name = str(error.get("status") or status)
        message = str(error.get("message") or "")
        failure = UpstreamFailure(vendor, name, message or None)
        reasons = {str(d.get("reason")) for d in error.get("details") or () if isinstance(d, Mapping)}
        if status == 400 and name == "INVALID_ARGUMENT" and "API_KEY_INVALID" not in reasons:
            return UpstreamRejected(failure.text(), param=param_of(message), upstream=failure)
        # Auth, billing, quota and server trouble belong to this channel: another one may work. So does a
        # NOT_FOUND model (Veo 3.0 is retired on the Gemini API while Vertex still serves it).
        return UpstreamTransient(failure.text(), status=status, retry_after=retry_after(error))

    return mapper


def param_of(message: str) -> str | None:
    return next((name for word, name in _PARAM_WORDS if re.search(rf"\b{word}\b", message)), None)


def retry_after(error: Mapping[str, Any]) -> float | None:
    """RetryInfo.retryDelay ("37s") of a 429, when given."""
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and isinstance(detail.get("retryDelay"), str):
            found = _RETRY_DELAY.match(detail["retryDelay"])
            if found:
                return float(found.group(1))
    return None
