"""MiniMax Hailuo: the V1 video API (Hailuo 2.3 / 2.3-Fast / 02 and the 01 series) and V2 for MiniMax-H3.

Protocol: /work/shared/reference/providers-2026.md §0 and §3 (hosts and auth §3.2, V1 §3.3, V2 §3.4, codes §3.5,
prices §3.6). Auth is `Authorization: Bearer <API key>` on both.

V1: `POST /v1/video_generation` answers `{task_id, base_resp}`; every answer is read for `base_resp.status_code`
(business errors come inside HTTP 200). `GET /v1/query/video_generation?task_id=` walks Preparing → Queueing →
Processing → Success | Fail; Success carries a `file_id`, and `GET /v1/files/retrieve?file_id=` gives a
`download_url` that lives about an hour, so it is fetched on every poll that sees Success (a download retried
later polls again and gets a fresh one). V1 has no list and no cancel: `find` is NotSupported.
V2 (MiniMax-H3): `POST /v2/video_generation` with a `content` array, real HTTP errors, `GET
/v2/query/video_generation/{id}` → `{"task": …}`, the list (`find` after a lost reply) and `DELETE` (cancel).
The upstream ids we keep say which API made them: "v1:<task_id>" or "v2:<task_id>".

Decisions where the reference leaves room:
  - Resolutions ride vidgate's tiers: 512P is the 480P tier, 720P and 768P the 720P tier, 1080P the 1080P tier;
    H3's 2K is its 1080P tier (its sizes are 2K sizes, e.g. 2560x1440). A WxH picks the tier (and, on H3 text
    input, the ratio); the vendor makes its own pixel size (768P is 1366x768) and the stored video is probed.
  - V1 text-to-video is 16:9 only (no ratio field); image input takes the image's aspect, so any listed size
    stands for its tier there. Hailuo-2.3 is declared t2v + i2v (its first+last frame is [U]); 2.3-Fast i2v
    only (several sources; the skills doc disagrees); S2V-01's one image (`input_reference` / `img_url`) is its
    subject reference, not a first frame. 10 s only below 1080P; the 01 series is 720P and 6 s.
  - H3: frames (first, first+last) only; its reference images/videos/audios have no vidgate role yet. Frame
    input sends ratio `adaptive`; text input the ratio nearest the size.
  - Camera commands (`camera_commands`, up to 3 of MiniMax's 15, comma-separated) go into the prompt as
    MiniMax wants them, `[Pan left,Zoom in]`, on the Director and Hailuo models.
  - A failed V1 task's reason is its `base_resp`; 1026/1027 (sensitive input/output) is a content-policy
    failure, anything else generation_failed with MiniMax's code and message. An unknown task (2013 / 404) on
    a poll is UPSTREAM_TASK_LOST, which the poller believes only when it repeats.
  - Submit errors: 1026/1027 and V2 422 moderation are UpstreamRejected(content_policy_violation); 2013 and V2
    400 are UpstreamRejected with MiniMax's code; rate limits (1002, 1039, 429), server errors (1000, 1001,
    1024, 1033, 5xx), auth (1004, 2049, 401/403) and balance/plan (1008, 1028, 1030, 2056, 2061, 402) are
    UpstreamTransient, since another channel (another key or region) may serve the request.
  - Callbacks: both APIs take `callback_url`. V1 first posts `{"challenge": …}` and expects it echoed within
    3 s: `callback_challenge()` is that answer, for vidgate's callback route.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx
import orjson

from vidgate.config import Settings
from vidgate.errors import InvalidRequest, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    UPSTREAM_CANCELLED,
    UPSTREAM_TASK_LOST,
    WATERMARK,
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

NAME = "minimax"
VENDOR = "MiniMax"
DEFAULT_BASE_URL = "https://api.minimax.io"
H3 = "MiniMax-H3"
HAILUO_23, HAILUO_23_FAST, HAILUO_02 = "MiniMax-Hailuo-2.3", "MiniMax-Hailuo-2.3-Fast", "MiniMax-Hailuo-02"
DIRECTOR_T2V, DIRECTOR_I2V, S2V = "T2V-01-Director", "I2V-01-Director", "S2V-01"
V1_MAX_PROMPT = 2000
V2_MAX_TEXT = 7000
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
MAX_CAMERA_COMMANDS = 3
# vidgate tier -> MiniMax resolution, per API family.
HAILUO_RESOLUTION = {"480P": "512P", "720P": "768P", "1080P": "1080P"}
SERIES01_RESOLUTION = {"720P": "720P"}
H3_RESOLUTION = {"720P": "768P", "1080P": "2K"}
H3_RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
# A lost create is looked for among tasks created from this long before vidgate's attempt (clock skew).
FIND_SKEW_S = 120
FIND_PAGE_SIZE = 50
FIND_MAX_PAGES = 10
# Bodies we read on the callback route: a challenge is a short token.
MAX_CHALLENGE_BODY = 4096

V1_STATES: dict[str, UpstreamState] = {"Preparing": "queued", "Queueing": "queued", "Processing": "in_progress"}
V2_STATES: dict[str, UpstreamState] = {"queued": "queued", "running": "in_progress"}
POLICY_CODES = frozenset({1026, 1027})
PARAM_CODES = frozenset({2013})
_POLICY_TEXT = re.compile(r"\b102[67]\b|sensitive", re.I)

PROMPT_OPTIMIZER = Param("bool", description="Let MiniMax rewrite the prompt for more detail (default true).")
FAST_PRETREATMENT = Param("bool", description="Shorten the prompt optimizer's pass (default false).")
CAMERA = Param(
    "string",
    high=80,
    description=f"Up to {MAX_CAMERA_COMMANDS} camera commands, comma-separated, from: {', '.join(CAMERA_COMMANDS)}.",
)


def _sizes(tiers: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(size for sizes in tiers.values() for size in sizes)


# Sizes per vidgate tier: V1 lists 16:9, 9:16 and 1:1 (text input makes 16:9; image input follows the image).
V1_SIZES = {
    "480P": ("848x480", "480x848", "480x480"),
    "720P": ("1280x720", "720x1280", "720x720"),
    "1080P": ("1920x1080", "1080x1920", "1080x1080"),
}
# H3: the six ratios at 768P (720P tier) and 2K (1080P tier), in H3_RATIOS order.
H3_SIZES = {
    "720P": ("1680x720", "1280x720", "960x720", "720x720", "720x960", "720x1280"),
    "1080P": ("3360x1440", "2560x1440", "1920x1440", "1440x1440", "1440x1920", "1440x2560"),
}

# Prices, USD per second of output (source, date; vidgate bills per second of the video it stored):
#   - V1 per video, providers-2026.md §3.6 (reseller pages, partly [U]), read 2026-12-05. A tier's per-second
#     price is that of its dearest clip per second, so no clip bills below its vendor price: Hailuo-2.3 768P
#     $0.28/6 s or $0.56/10 s → $0.056/s, 1080P $0.49/6 s → $0.0817/s; 2.3-Fast 768P $0.19/6 s or $0.32/10 s →
#     $0.032/s, 1080P $0.33/6 s → $0.055/s; Hailuo-02 512P $0.10/6 s or $0.15/10 s → $0.0167/s, 768P and 1080P
#     as Hailuo-2.3.
#   - 01 Director models: $0.28 per clip at 720P, which runware.ai/docs/models/minimax-01-director (read
#     2026-12-05; a reseller, MiniMax's own price not found) bills as $0.056/s. S2V-01: $0.65 per 6 s clip
#     (MiniMax's 2025 price list as remembered, [U]) → $0.1083/s. Operators should confirm these in [prices].
#   - H3: ¥0.50/s at 768P and ¥0.80/s at 2K (CN, new-api's comment, §3.6), converted at 7.10 CNY per USD
#     (2026-12-05) → $0.0704/s and $0.1127/s. No international USD price was found.
PRICES: dict[str, Price] = {
    H3: {"720P": Decimal("0.0704"), "1080P": Decimal("0.1127")},
    HAILUO_23: {"720P": Decimal("0.056"), "1080P": Decimal("0.0817")},
    HAILUO_23_FAST: {"720P": Decimal("0.032"), "1080P": Decimal("0.055")},
    HAILUO_02: per_tier("0.0167", "0.056", "0.0817"),
    DIRECTOR_T2V: Decimal("0.056"),
    DIRECTOR_I2V: Decimal("0.056"),
    S2V: Decimal("0.1083"),
}

_V1_COMMON = {"prompt_optimizer": PROMPT_OPTIMIZER, "watermark": WATERMARK}
_HAILUO_PARAMS = {**_V1_COMMON, "fast_pretreatment": FAST_PRETREATMENT, "camera_commands": CAMERA}


def _spec(
    name: str,
    modes: set[Mode],
    sizes: Mapping[str, tuple[str, ...]],
    seconds: tuple[int, ...],
    default_seconds: int,
    params: Mapping[str, Param],
    description: str,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider=NAME,
        modes=frozenset(modes),
        seconds=seconds,
        default_seconds=default_seconds,
        sizes=_sizes(sizes),
        # The tier's default is its landscape size (H3: 16:9, the second of its ratios).
        tiers={tier: listed[1] if name == H3 else listed[0] for tier, listed in sizes.items()},
        default_size="1280x720",
        params=params,
        deadline_s=2 * 3600,
        # MiniMax's CLI polls no faster than every 10 s.
        poll_hint_ms=10_000,
        price=PRICES[name],
        description=description,
    )


_720 = {"720P": V1_SIZES["720P"]}
_HAILUO_SIZES = {tier: V1_SIZES[tier] for tier in ("720P", "1080P")}
MODELS: tuple[ModelSpec, ...] = (
    _spec(
        H3,
        {"t2v", "i2v", "kf2v"},
        H3_SIZES,
        tuple(range(4, 16)),
        5,
        {"watermark": WATERMARK},
        "MiniMax H3 (V2 API): 4-15 s, 768P or 2K, stereo audio",
    ),
    _spec(HAILUO_23, {"t2v", "i2v"}, _HAILUO_SIZES, (6, 10), 6, _HAILUO_PARAMS, "MiniMax Hailuo 2.3"),
    _spec(HAILUO_23_FAST, {"i2v"}, _HAILUO_SIZES, (6, 10), 6, _HAILUO_PARAMS, "MiniMax Hailuo 2.3 Fast (image)"),
    _spec(HAILUO_02, {"t2v", "i2v", "kf2v"}, V1_SIZES, (6, 10), 6, _HAILUO_PARAMS, "MiniMax Hailuo 02"),
    _spec(
        DIRECTOR_T2V,
        {"t2v"},
        {"720P": ("1280x720",)},  # text input makes 16:9 only
        (6,),
        6,
        {**_V1_COMMON, "camera_commands": CAMERA},
        "MiniMax T2V-01-Director (camera commands)",
    ),
    _spec(
        DIRECTOR_I2V,
        {"i2v"},
        _720,
        (6,),
        6,
        {**_V1_COMMON, "camera_commands": CAMERA},
        "MiniMax I2V-01-Director (camera commands)",
    ),
    _spec(S2V, {"i2v"}, _720, (6,), 6, _V1_COMMON, "MiniMax S2V-01: the image is the subject reference"),
)


# -- pure: request → body ------------------------------------------------------------------------------------


_FRAMES: tuple[Role, ...] = ("first_frame", "last_frame")
_V2_MODEL = re.compile(r"^MiniMax-H\d")
# The 01 series (T2V-01, I2V-01-live, S2V-01, the Directors) is 720P; S2V takes a subject, not a frame.
_SERIES01 = re.compile(r"^[TIS]2V-01")


def is_v2(model: str) -> bool:
    """H3 (and later H-series ids a channel may map to) go through the V2 API; Hailuo and the 01 series V1."""
    return bool(_V2_MODEL.match(model))


def image_value(item: MediaInput) -> str:
    """An http(s) URL as given, else a data: URI of JPEG, PNG or WebP bytes (others re-encoded as PNG)."""
    if item.path is not None:
        data = item.path.read_bytes()
        mime = item.mime if item.mime in ("image/jpeg", "image/png", "image/webp") else None
        if mime is None:
            data = as_jpeg_or_png(data, item.mime)
            mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"
    if item.url and item.url.startswith(("http://", "https://", "data:image/")):
        return item.url
    raise UpstreamRejected(f"{item.field}: no image MiniMax can read", param=item.field)


def prompt_with_camera(prompt: str, commands: str | None) -> str:
    """The prompt with its camera commands in MiniMax's bracket form, `[Pan left,Zoom in] prompt`."""
    if not commands:
        return prompt
    listed = ",".join(part.strip() for part in commands.split(","))
    return f"[{listed}] {prompt}".strip()


def ratio_of(width: int, height: int) -> str:
    """H3's ratio nearest a size."""
    return min(H3_RATIOS, key=lambda name: abs(width / height - _ratio(name)))


def _ratio(name: str) -> float:
    wide, _, high = name.partition(":")
    return int(wide) / int(high)


def build_body(req: VideoRequest, *, upstream_model: str, callback_url: str | None = None) -> dict[str, Any]:
    """The create body: V2's content array for H3, else V1's flat body."""
    if is_v2(upstream_model):
        return _v2_body(req, upstream_model, callback_url)
    return _v1_body(req, upstream_model, callback_url)


def _v1_body(req: VideoRequest, model: str, callback_url: str | None) -> dict[str, Any]:
    table = SERIES01_RESOLUTION if _SERIES01.match(model) else HAILUO_RESOLUTION
    body: dict[str, Any] = {"model": model, "duration": req.seconds, "resolution": table.get(req.tier, "720P")}
    prompt = prompt_with_camera(req.prompt, req.extras.get("camera_commands"))
    if prompt:
        body["prompt"] = prompt
    first, last = req.input("first_frame"), req.input("last_frame")
    if first is not None and model.startswith("S2V-"):
        body["subject_reference"] = [{"type": "character", "image": [image_value(first)]}]
    elif first is not None:
        body["first_frame_image"] = image_value(first)
    if last is not None:
        body["last_frame_image"] = image_value(last)
    for name, key in (
        ("prompt_optimizer", "prompt_optimizer"),
        ("fast_pretreatment", "fast_pretreatment"),
        ("watermark", "aigc_watermark"),
    ):
        if name in req.extras:
            body[key] = req.extras[name]
    if callback_url:
        body["callback_url"] = callback_url
    return body


def _v2_body(req: VideoRequest, model: str, callback_url: str | None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if req.prompt:
        content.append({"type": "text", "text": req.prompt})
    frames = [(role, req.input(role)) for role in _FRAMES]
    for role, item in frames:
        if item is not None:
            content.append({"type": "image_url", "image_url": {"url": image_value(item)}, "role": role})
    framed = any(item is not None for _, item in frames)
    body: dict[str, Any] = {
        "model": model,
        "content": content,
        "resolution": H3_RESOLUTION.get(req.tier, "768P"),
        "duration": req.seconds,
        # Frame input follows its frames; text input needs a concrete ratio.
        "ratio": "adaptive" if framed else ratio_of(req.width, req.height),
    }
    if "watermark" in req.extras:
        body["aigc_watermark"] = req.extras["watermark"]
    if callback_url:
        body["callback_url"] = callback_url
    return body


# -- pure: answers → Progress / errors -----------------------------------------------------------------------


def base_resp_of(data: Any) -> tuple[int, str]:
    """(status_code, status_msg) of a V1 answer; a missing or malformed base_resp is UpstreamTransient."""
    resp = data.get("base_resp") if isinstance(data, Mapping) else None
    code = resp.get("status_code") if isinstance(resp, Mapping) else None
    if not isinstance(resp, Mapping) or not isinstance(code, int) or isinstance(code, bool):
        raise UpstreamTransient(f"MiniMax answer without a base_resp: {str(data)[:300]}")
    return code, str(resp.get("status_msg") or "")


def classify(
    code: int | str | None, message: str, *, status: int | None = None
) -> UpstreamRejected | UpstreamTransient:
    """A MiniMax refusal (a base_resp code, or V2's HTTP status + code/type) → the error that says what to do."""
    number = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
    shown = str(code) if code not in (None, "") else (str(status) if status else None)
    failure = UpstreamFailure(VENDOR, shown, message or None)
    if number in POLICY_CODES or (status == 422 and _POLICY_TEXT.search(message)):
        policy_code = str(number) if number in POLICY_CODES else _policy_number(message) or shown
        failure = UpstreamFailure(VENDOR, policy_code, message or None)
        return UpstreamRejected(failure.text(), code=CONTENT_POLICY_VIOLATION, upstream=failure)
    if (number in PARAM_CODES and status is None) or status in (400, 413, 422):
        return UpstreamRejected(failure.text(), param=param_of(message), upstream=failure)
    # Rate limits, server errors, auth, balance and plan limits: later, or another channel, may serve it.
    return UpstreamTransient(failure.text(), status=status)


def _policy_number(message: str) -> str | None:
    match = re.search(r"\b(102[67])\b", message)
    return match.group(1) if match else None


# Words in MiniMax's parameter messages -> the request part they are about (surfaces name it their own way).
_PARAM_WORDS = (
    ("first_frame_image", "first_frame"),
    ("last_frame_image", "last_frame"),
    ("subject_reference", "first_frame"),
    ("duration", "seconds"),
    ("resolution", "size"),
    ("ratio", "size"),
    ("prompt_optimizer", "prompt_optimizer"),
    ("fast_pretreatment", "fast_pretreatment"),
    ("aigc_watermark", "watermark"),
    ("camera command", "camera_commands"),
    ("prompt", "prompt"),
    ("text", "prompt"),
)


def content_part(message: str, body: Mapping[str, Any]) -> str | None:
    """What a V2 message naming `content[i]` is about: that item's role, or the prompt for its text."""
    match = re.search(r"\bcontent\[(\d+)\]", message)
    content = body.get("content")
    if match is None or not isinstance(content, list) or int(match.group(1)) >= len(content):
        return None
    item = content[int(match.group(1))]
    return "prompt" if item.get("type") == "text" else str(item.get("role") or "") or None


def param_of(message: str) -> str | None:
    """What a MiniMax parameter message is about: the first field it names, if any."""
    hits = [(match.start(), name) for word, name in _PARAM_WORDS if (match := re.search(rf"\b{word}", message))]
    return min(hits)[1] if hits else None


def error_from(status: int, body: Any) -> UpstreamRejected | UpstreamTransient:
    """An HTTP error answer (V2, or V1's 401/403/429/5xx) → our error."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        code = error.get("code") or error.get("type")
        return classify(code if isinstance(code, int | str) else None, str(error.get("message") or ""), status=status)
    if isinstance(body, Mapping) and isinstance(body.get("base_resp"), Mapping):
        number, message = base_resp_of(body)
        return classify(number, message, status=status)
    return classify(None, str(body)[:300], status=status if status != 400 else 500)


def parse_v1_task(data: Mapping[str, Any]) -> tuple[Progress | None, str | None]:
    """A V1 query answer → (Progress, None) for an unfinished or failed task, or (None, file_id) on Success."""
    code, message = base_resp_of(data)
    status = data.get("status")
    if status in ("Fail", "Failed"):
        said = UpstreamFailure(VENDOR, str(code) if code else None, message if code else "Fail")
        policy = code in POLICY_CODES or bool(_POLICY_TEXT.search(message))
        return Progress.failed(CONTENT_POLICY_VIOLATION if policy else GENERATION_FAILED, said), None
    if code != 0:
        if code in PARAM_CODES:
            # Our own task id refused: the task is gone (or never was); the poller believes it when it repeats.
            said = UpstreamFailure(VENDOR, str(code), message or None)
            return Progress.failed(UPSTREAM_TASK_LOST, said), None
        error = classify(code, message)
        # A refusal to read a task MiniMax itself named is no verdict on the task.
        raise error if isinstance(error, UpstreamTransient) else UpstreamTransient(error.message)
    if status in V1_STATES:
        return Progress(state=V1_STATES[str(status)]), None
    if status == "Success":
        file_id = data.get("file_id")
        if isinstance(file_id, int | str) and not isinstance(file_id, bool) and str(file_id):
            return None, str(file_id)
        raise UpstreamTransient("MiniMax task succeeded without a file_id")
    raise UpstreamTransient(f"unknown MiniMax task status {status!r}")


def parse_file(data: Mapping[str, Any]) -> str:
    """The download_url of a files/retrieve answer."""
    code, message = base_resp_of(data)
    if code != 0:
        raise UpstreamTransient(f"MiniMax files/retrieve: {code}: {message}")
    file = data.get("file")
    url = file.get("download_url") if isinstance(file, Mapping) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise UpstreamTransient("MiniMax files/retrieve answered without a download_url")
    return url


def parse_v2_task(task: Any) -> Progress:
    """A V2 task object → Progress; anything unexpected raises UpstreamTransient."""
    if not isinstance(task, Mapping):
        raise UpstreamTransient(f"MiniMax V2 answer without a task: {str(task)[:300]}")
    status = task.get("status")
    if status in V2_STATES:
        return Progress(state=V2_STATES[str(status)])
    if status == "succeeded":
        content = task.get("content")
        url = content.get("url") if isinstance(content, Mapping) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise UpstreamTransient("MiniMax V2 task succeeded without content.url")
        return Progress(state="completed", progress=100, video_url=url)
    if status in ("failed", "expired"):
        error = task.get("error")
        code = error.get("code") if isinstance(error, Mapping) else None
        message = str(error.get("message") or "") if isinstance(error, Mapping) else ""
        shown = str(code) if code not in (None, "") else ("expired" if status == "expired" else None)
        said = UpstreamFailure(VENDOR, shown, message or None)
        policy = str(code) in {str(c) for c in POLICY_CODES} or bool(_POLICY_TEXT.search(message))
        return Progress.failed(CONTENT_POLICY_VIOLATION if policy else GENERATION_FAILED, said)
    if status == "cancelled":
        return Progress.failed(UPSTREAM_CANCELLED, UpstreamFailure(VENDOR, "cancelled"), state="cancelled")
    raise UpstreamTransient(f"unknown MiniMax V2 task status {status!r}")


def parse_task(data: Mapping[str, Any]) -> Progress:
    """A V2 `{"task": …}` answer → Progress (V1 answers need a second call: see parse_v1_task)."""
    return parse_v2_task(data.get("task"))


def matches(task: Mapping[str, Any], body: Mapping[str, Any], *, since: float) -> bool:
    """Whether a listed V2 task may be the one an unanswered create of `body` made."""
    created = task.get("created_at")
    if not isinstance(created, int | float) or isinstance(created, bool) or created < since - FIND_SKEW_S:
        return False
    framed = any(item.get("type") == "image_url" for item in body["content"])
    return (
        task.get("model") == body["model"]
        and task.get("duration") == body["duration"]
        and task.get("resolution") == body["resolution"]
        and (framed or task.get("ratio") == body["ratio"])
        and (task.get("task_type") == "t2v") != framed
    )


def callback_challenge(body: bytes) -> dict[str, str] | None:
    """The answer to MiniMax's V1 callback handshake (`{"challenge": …}` echoed), or None for any other body.

    Only a JSON object whose only key is a short string `challenge` is a challenge; status updates and
    anything else return None."""
    if len(body) > MAX_CHALLENGE_BODY:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or set(data) != {"challenge"}:
        return None
    challenge = data["challenge"]
    if not isinstance(challenge, str) or not challenge or len(challenge) > 1024:
        return None
    return {"challenge": challenge}


# -- the provider --------------------------------------------------------------------------------------------


def from_settings(settings: Settings, http: httpx.AsyncClient) -> MiniMaxProvider:
    """The registered factory (pyproject.toml, entry point `minimax`)."""
    return MiniMaxProvider(http)


class MiniMaxProvider(Provider):
    """MiniMax video models on one MiniMax account (a pay-as-you-go API key; keys are region-bound)."""

    name = NAME
    default_base_url = DEFAULT_BASE_URL
    accepts_callback = True

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def callback_answer(self, body: bytes) -> dict[str, Any] | None:
        """V1's handshake: a callback URL is used only once it echoed the challenge MiniMax posted to it."""
        return callback_challenge(body)

    def check(self, req: VideoRequest) -> None:
        """What MiniMax refuses that the ModelSpec cannot say."""
        v2 = is_v2(req.model)
        limit = V2_MAX_TEXT if v2 else V1_MAX_PROMPT
        prompt, seconds, size = req.field_of("prompt"), req.field_of("seconds"), req.field_of("size")
        if len(req.prompt) > limit:
            raise InvalidRequest(f"'{prompt}' is longer than {limit} characters ({req.model}'s limit).", param=prompt)
        if v2:
            return
        if req.mode == "t2v" and not req.prompt:
            raise InvalidRequest(f"'{prompt}' is required: {req.model} needs a prompt without an image.", param=prompt)
        if req.seconds == 10 and req.tier == "1080P":
            raise InvalidRequest(
                f"Invalid value for '{seconds}': 10 at 1080P. {req.model} makes 10 s videos below 1080P only: "
                "use 6 seconds, or a 720P size (MiniMax's 768P).",
                param=seconds,
            )
        if req.mode == "t2v" and req.width <= req.height:
            raise InvalidRequest(
                f"Invalid value for '{size}': '{req.size}'. {req.model} makes text-to-video in 16:9 only: "
                "use a landscape size (e.g. 1280x720).",
                param=size,
            )
        if req.tier == "480P" and req.mode != "i2v":
            raise InvalidRequest(
                f"Invalid value for '{size}': '{req.size}'. {req.model} takes 512P (the 480P tier) for "
                "image-to-video only: use a 720P or 1080P size.",
                param=size,
            )
        commands = req.extras.get("camera_commands")
        if isinstance(commands, str):
            check_camera(commands, req.field_of("camera_commands"))

    def _headers(self, creds: Credentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {creds.api_key}", "Content-Type": "application/json"}

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        upstream_model = req.model
        v2 = is_v2(upstream_model)
        # Stored images are read and base64-encoded here: blocking work, off the event loop.
        body = await asyncio.to_thread(build_body, req, upstream_model=upstream_model, callback_url=callback_url)
        path = "/v2/video_generation" if v2 else "/v1/video_generation"
        try:
            answer = await send(
                self.http,
                "POST",
                self.base_url(creds) + path,
                headers=self._headers(creds),
                json=body,
                error=error_from,
            )
            # V1 refuses inside HTTP 200; the CLI reads a base_resp on V2 answers too.
            if (not v2 or (isinstance(answer, Mapping) and "base_resp" in answer)) and base_resp_of(answer)[0] != 0:
                raise classify(*base_resp_of(answer))
        except UpstreamRejected as exc:
            about = content_part(exc.message, body) or exc.param
            raise UpstreamRejected(
                exc.message, code=exc.code, param=_client_param(about, req), upstream=exc.upstream
            ) from None
        upstream = answer.get("task_id") if isinstance(answer, Mapping) else None
        if not isinstance(upstream, str | int) or isinstance(upstream, bool) or not str(upstream):
            raise UpstreamTransient("MiniMax answered the create without a task_id")
        return Submitted(upstream_id=f"{'v2' if v2 else 'v1'}:{upstream}")

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        api, _, task = upstream_id.partition(":")
        if api not in ("v1", "v2") or not task:
            message = f"{upstream_id!r} is not a MiniMax task id of vidgate's making."
            return Progress(state="failed", error_code="bad_upstream_id", error_message=message)
        if api == "v2":
            return await self._poll_v2(task, creds)
        answer = await self._get("/v1/query/video_generation", creds, params={"task_id": task})
        progress, file_id = parse_v1_task(answer)
        if progress is not None:
            return progress
        # A fresh download_url on every look: it lives about an hour.
        file = await self._get("/v1/files/retrieve", creds, params={"file_id": str(file_id)})
        return Progress(state="completed", progress=100, video_url=parse_file(file))

    async def _poll_v2(self, task: str, creds: Credentials) -> Progress:
        try:
            answer = await self._get(f"/v2/query/video_generation/{task}", creds)
        except UpstreamRejected as exc:
            failure = exc.upstream or UpstreamFailure(VENDOR, message=exc.message)
            if "not found" in (failure.message or "").lower() or "404" in (failure.code or ""):
                return Progress.failed(UPSTREAM_TASK_LOST, failure)
            raise UpstreamTransient(f"MiniMax query refused: {exc}") from exc
        return parse_task(answer)

    async def _get(self, path: str, creds: Credentials, *, params: Mapping[str, str] | None = None) -> Any:
        answer = await send(
            self.http,
            "GET",
            self.base_url(creds) + path,
            headers=self._headers(creds),
            params=params,
            error=_poll_error,
        )
        if not isinstance(answer, Mapping):
            raise UpstreamTransient(f"MiniMax {path} answer is not an object")
        return answer

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        """V2: the listed tasks created since the attempt that match the request (newest last seen first).
        V1 has no list (§3.3), so a lost V1 create cannot be looked up."""
        if not is_v2(req.model):
            return await super().find(req, creds, task_id=task_id, since=since, remix_of=remix_of)
        body = _shape_only(req)
        found: list[Mapping[str, Any]] = []
        # Newest first [U]: page on until a page reaches back before the attempt, or runs out.
        for page in range(1, FIND_MAX_PAGES + 1):
            params = {"page_num": str(page), "page_size": str(FIND_PAGE_SIZE), "filter.model": req.model}
            try:
                answer = await self._get("/v2/query/video_generation", creds, params=params)
            except UpstreamRejected as exc:
                raise UpstreamTransient(f"MiniMax list refused: {exc}") from exc
            items = answer.get("items")
            if not isinstance(items, list):
                raise UpstreamTransient("MiniMax list answer without items")
            tasks = [item for item in items if isinstance(item, Mapping) and item.get("id")]
            found += [item for item in tasks if matches(item, body, since=since)]
            times = [t["created_at"] for t in tasks if isinstance(t.get("created_at"), int | float)]
            if len(items) < FIND_PAGE_SIZE or (times and min(times) < since - FIND_SKEW_S):
                break
        # Closest to the attempt first.
        found.sort(key=lambda item: abs(float(item["created_at"]) - since))
        return [f"v2:{item['id']}" for item in found]

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        api, _, task = upstream_id.partition(":")
        if api != "v2":
            await super().cancel(upstream_id, creds)
            return
        # ASSUMPTION (reference §3.4, one third-party spec): DELETE /v2/video_generation/{task_id}.
        await send(
            self.http,
            "DELETE",
            f"{self.base_url(creds)}/v2/video_generation/{task}",
            headers=self._headers(creds),
            error=_cancel_error,
        )


def _shape_only(req: VideoRequest) -> dict[str, Any]:
    """The fields `matches` compares, without reading (or encoding) the request's images."""
    framed = bool(req.input("first_frame") or req.input("last_frame"))
    return {
        "model": req.model,
        "content": [{"type": "image_url"}] if framed else [],
        "resolution": H3_RESOLUTION.get(req.tier, "768P"),
        "duration": req.seconds,
        "ratio": "adaptive" if framed else ratio_of(req.width, req.height),
    }


def _poll_error(status: int, body: Any) -> UpstreamRejected | UpstreamTransient:
    if status == 404:
        message = _message_of(body) or "task not found"
        return UpstreamRejected(f"MiniMax 404: {message}", upstream=UpstreamFailure(VENDOR, "404", message))
    error = error_from(status, body)
    # Any other refusal of a read is no verdict on the task.
    return error if isinstance(error, UpstreamTransient) else UpstreamTransient(error.message, status=status)


def _cancel_error(status: int, body: Any) -> UpstreamRejected | UpstreamTransient:
    if status == 409:
        # A running task cannot be cancelled.
        message = _message_of(body) or "the task is running"
        return UpstreamRejected(f"MiniMax: {message}", upstream=UpstreamFailure(VENDOR, "409", message))
    return error_from(status, body)


def _message_of(body: Any) -> str:
    error = body.get("error") if isinstance(body, Mapping) else None
    return str(error.get("message") or "") if isinstance(error, Mapping) else ""


def check_camera(commands: str, field: str) -> None:
    """Up to three of MiniMax's camera commands, comma-separated."""
    listed = [part.strip() for part in commands.split(",")]
    wrong = [part for part in listed if part not in CAMERA_COMMANDS]
    if wrong or not listed or len(listed) > MAX_CAMERA_COMMANDS:
        raise InvalidRequest(
            f"Invalid value for '{field}': '{commands}'. Give 1 to {MAX_CAMERA_COMMANDS} camera commands, "
            f"comma-separated, from: {', '.join(CAMERA_COMMANDS)}.",
            param=field,
        )


def _client_param(name: str | None, req: VideoRequest) -> str | None:
    """The client's own field for what a refusal is about."""
    for role in _FRAMES:
        if name == role:
            item = req.input(role)
            return item.field if item else None
    return req.field_of(name) if name else None
