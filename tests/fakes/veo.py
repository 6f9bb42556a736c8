"""What the Gemini API and Vertex AI Veo emulators share: Google's error envelope, the per-model rules of
reference/providers-2026.md §2.2 / §2.3, image checks, and the operation store.

Both surfaces take `{"instances":[{prompt, image, lastFrame, referenceImages, video}], "parameters":{...}}`;
what differs (auth, which parameters exist, image encodings, where the result goes) lives in gemini.py and
vertex.py. An unknown field is refused the way Google's JSON parser refuses it (400 INVALID_ARGUMENT,
`Invalid JSON payload received. Unknown name "x" at 'parameters': Cannot find field.`).
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.responses import JSONResponse

from tests.fakes.base import make_mp4

# gRPC status name -> (HTTP status, numeric code) as google.rpc.Status carries them.
STATUSES = {
    "INVALID_ARGUMENT": (400, 3),
    "FAILED_PRECONDITION": (400, 9),
    "UNAUTHENTICATED": (401, 16),
    "PERMISSION_DENIED": (403, 7),
    "NOT_FOUND": (404, 5),
    "RESOURCE_EXHAUSTED": (429, 8),
    "INTERNAL": (500, 13),
    "UNAVAILABLE": (503, 14),
    "DEADLINE_EXCEEDED": (504, 4),
}
# A prompt containing this ends filtered (raiMediaFilteredCount 1); one containing FAIL_TRIGGER ends in `error`.
FILTER_TRIGGER = "forbidden-scene"
FILTER_REASON = "Unable to generate videos because the prompt could violate our policies. Support codes: 58061214"
FAIL_TRIGGER = "FAIL-GENERATION"
FAIL_MESSAGE = "Video generation failed due to an internal error. Please retry."
IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp")
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_PROMPT_WORDS = 1024  # the docs' limit is 1024 tokens; words are a fair stand-in for an emulator
# Small stand-ins for 720p/1080p output, in the task's aspect ratio (even sizes, as H.264 yuv420p needs).
FRAME_SIZES = {"16:9": (160, 90), "9:16": (90, 160)}


class GoogleError(Exception):
    """A refusal as google.rpc.Status: `{"error":{"code","message","status","details"}}`."""

    def __init__(self, status: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []

    def response(self) -> JSONResponse:
        http, _ = STATUSES[self.status]
        body: dict[str, Any] = {"code": http, "message": self.message, "status": self.status}
        if self.details:
            body["details"] = self.details
        return JSONResponse({"error": body}, status_code=http)


def quota_error() -> GoogleError:
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    return GoogleError("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [retry])


def fault_error(kind: str) -> GoogleError:
    if kind == "429":
        return quota_error()
    if kind == "503":
        return GoogleError("UNAVAILABLE", "The service is currently unavailable.")
    if kind == "timeout":
        return GoogleError("DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")
    return GoogleError("INTERNAL", "Internal error encountered.")


@dataclass(frozen=True)
class Rules:
    """What one model accepts on one surface."""

    inputs: frozenset[str]  # of image, lastFrame, referenceImages, video
    resolutions: tuple[str, ...]
    durations: tuple[int, ...]
    eight_only: frozenset[str] = frozenset()  # resolutions that need durationSeconds 8
    wide_only: frozenset[str] = frozenset()  # resolutions offered in 16:9 only
    audio: bool = True  # Veo 3+: native audio (Vertex's generateAudio is allowed)
    max_samples: int = 1


@dataclass
class Operation:
    name: str
    model: str
    body: dict[str, Any]
    aspect: str
    seconds: int
    samples: int
    outcome: str  # "ok" | "filtered" | "error"
    polls: int = 0
    done: bool = False
    created: float = field(default_factory=time.time)
    videos: list[bytes] = field(default_factory=list)


def check_fields(where: str, value: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    for key in value:
        if key not in allowed:
            raise GoogleError(
                "INVALID_ARGUMENT",
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.",
            )


def check_image(where: str, value: Any, *, gcs: bool, inline_data: bool) -> tuple[int, int] | None:
    """`{"bytesBase64Encoded","mimeType"}` (both surfaces), `{"inlineData":{"mimeType","data"}}` (Gemini's REST
    samples) or `{"gcsUri","mimeType"}` (Vertex). Returns the decoded size, None for a gcsUri."""
    if not isinstance(value, dict):
        raise GoogleError("INVALID_ARGUMENT", f"{where} must be an object")
    if inline_data and "inlineData" in value:
        check_fields(where, value, {"inlineData"})
        inner = value["inlineData"]
        if not isinstance(inner, dict):
            raise GoogleError("INVALID_ARGUMENT", f"{where}.inlineData must be an object")
        check_fields(f"{where}.inlineData", inner, {"mimeType", "data"})
        data, mime = inner.get("data"), inner.get("mimeType")
    else:
        check_fields(
            where, value, {"bytesBase64Encoded", "mimeType", "gcsUri"} if gcs else {"bytesBase64Encoded", "mimeType"}
        )
        data, mime = value.get("bytesBase64Encoded"), value.get("mimeType")
        if gcs and "gcsUri" in value:
            uri = value["gcsUri"]
            if data is not None or not isinstance(uri, str) or not uri.startswith("gs://"):
                raise GoogleError(
                    "INVALID_ARGUMENT", f"{where}: exactly one of gcsUri (gs://...) or bytesBase64Encoded"
                )
            return None
    if mime not in IMAGE_MIMES:
        raise GoogleError("INVALID_ARGUMENT", f"{where}.mimeType must be one of {', '.join(IMAGE_MIMES)}; got {mime!r}")
    if not isinstance(data, str) or not data:
        raise GoogleError("INVALID_ARGUMENT", f"{where}: image bytes are required")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise GoogleError("INVALID_ARGUMENT", f"{where}: invalid base64 image data") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise GoogleError("INVALID_ARGUMENT", f"{where}: image larger than 20 MB")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt, size = img.format, img.size
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise GoogleError("INVALID_ARGUMENT", f"{where}: the image could not be decoded") from None
    if f"image/{str(fmt).lower()}".replace("jpg", "jpeg") != mime:
        raise GoogleError("INVALID_ARGUMENT", f"{where}: mimeType {mime} does not match the {fmt} image data")
    return size


def duration_of(value: Any, rules: Rules) -> int:
    """durationSeconds as an integer (SDK) or a string (the doc's table); both accepted."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GoogleError("INVALID_ARGUMENT", "durationSeconds must be an integer")
    try:
        seconds = int(value)
    except ValueError:
        raise GoogleError("INVALID_ARGUMENT", f"durationSeconds {value!r} is not a number") from None
    if seconds not in rules.durations:
        allowed = ", ".join(str(s) for s in rules.durations)
        raise GoogleError("INVALID_ARGUMENT", f"durationSeconds {seconds} is not supported; supported: {allowed}")
    return seconds


def choice(params: dict[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise GoogleError("INVALID_ARGUMENT", f"{name} {value!r} is not supported; supported: {', '.join(allowed)}")
    return str(value)


class OperationStore:
    """Operations by id; `polls_per_step` reads move one from pending to done."""

    def __init__(self, polls_per_step: int = 1) -> None:
        self.polls_per_step = polls_per_step
        self.ops: dict[str, Operation] = {}
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"{secrets.token_hex(6)}{next(self._ids):04d}"

    def outcome_of(self, prompt: str) -> str:
        if FILTER_TRIGGER in prompt:
            return "filtered"
        if FAIL_TRIGGER in prompt:
            return "error"
        return "ok"

    def advance(self, op: Operation) -> None:
        if op.done:
            return
        op.polls += 1
        if op.polls >= self.polls_per_step:
            op.done = True
            if op.outcome == "ok":
                width, height = FRAME_SIZES[op.aspect]
                op.videos = [make_mp4(width, height, seed=index + len(self.ops)) for index in range(op.samples)]


def check_instance(
    instance: Any, rules: Rules, *, gcs: bool, inline_data: bool, extra: frozenset[str] = frozenset()
) -> tuple[set[str], str]:
    """The inputs an instance uses (of image, lastFrame, referenceImages, video) and its prompt."""
    if not isinstance(instance, dict):
        raise GoogleError("INVALID_ARGUMENT", "instances[0] must be an object")
    check_fields("instances[0]", instance, {"prompt", "image", "lastFrame", "referenceImages", "video"} | extra)
    prompt = instance.get("prompt", "")
    if not isinstance(prompt, str):
        raise GoogleError("INVALID_ARGUMENT", "instances[0].prompt must be a string")
    if len(prompt.split()) > MAX_PROMPT_WORDS:
        raise GoogleError("INVALID_ARGUMENT", f"The prompt is longer than {MAX_PROMPT_WORDS} tokens.")
    used = {name for name in ("image", "lastFrame", "referenceImages", "video") if name in instance}
    for name in sorted(used - rules.inputs):
        raise GoogleError("INVALID_ARGUMENT", f"{name} isn't supported by this model.")
    if not prompt and not used:
        raise GoogleError("INVALID_ARGUMENT", "instances[0].prompt is required for text-to-video")
    if "lastFrame" in used and "image" not in used:
        raise GoogleError("INVALID_ARGUMENT", "lastFrame requires image (the first frame)")
    for name in ("image", "lastFrame"):
        if name in instance:
            check_image(f"instances[0].{name}", instance[name], gcs=gcs, inline_data=inline_data)
    if "referenceImages" in instance:
        refs = instance["referenceImages"]
        if not isinstance(refs, list) or not 1 <= len(refs) <= 3:
            raise GoogleError("INVALID_ARGUMENT", "referenceImages takes 1 to 3 images")
        for index, ref in enumerate(refs):
            where = f"instances[0].referenceImages[{index}]"
            if not isinstance(ref, dict):
                raise GoogleError("INVALID_ARGUMENT", f"{where} must be an object")
            check_fields(where, ref, {"image", "referenceType"})
            if ref.get("referenceType", "asset") not in ("asset", "style"):
                raise GoogleError("INVALID_ARGUMENT", f"{where}.referenceType must be asset or style")
            check_image(f"{where}.image", ref.get("image"), gcs=gcs, inline_data=inline_data)
    if "video" in instance:
        video = instance["video"]
        if not isinstance(video, dict) or not (video.get("uri") or video.get("encodedVideo") or video.get("gcsUri")):
            raise GoogleError("INVALID_ARGUMENT", "instances[0].video needs uri, gcsUri or encodedVideo")
    return used, prompt


def check_common(params: dict[str, Any], rules: Rules, used: set[str]) -> tuple[str, int]:
    """aspectRatio, durationSeconds, resolution and their combinations; returns (aspect, seconds)."""
    aspect = choice(params, "aspectRatio", "16:9", ("16:9", "9:16"))
    seconds = duration_of(params.get("durationSeconds", 8), rules)
    resolution = choice(params, "resolution", "720p", rules.resolutions)
    if resolution in rules.eight_only and seconds != 8:
        raise GoogleError("INVALID_ARGUMENT", f"resolution {resolution} requires durationSeconds 8")
    if resolution in rules.wide_only and aspect != "16:9":
        raise GoogleError("INVALID_ARGUMENT", f"resolution {resolution} is only supported with aspectRatio 16:9")
    if ("referenceImages" in used or "video" in used) and seconds != 8:
        raise GoogleError("INVALID_ARGUMENT", "reference images and video extension require durationSeconds 8")
    if "video" in used and resolution != "720p":
        raise GoogleError("INVALID_ARGUMENT", "video extension supports 720p only")
    negative = params.get("negativePrompt")
    if negative is not None and not isinstance(negative, str):
        raise GoogleError("INVALID_ARGUMENT", "negativePrompt must be a string")
    return aspect, seconds


def samples_of(params: dict[str, Any], rules: Rules) -> int:
    count = params.get("sampleCount", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= rules.max_samples:
        raise GoogleError("INVALID_ARGUMENT", f"sampleCount must be an integer from 1 to {rules.max_samples}")
    return count


def parse_json(body: bytes) -> dict[str, Any]:
    import orjson

    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise GoogleError("INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object.")
    return data
