"""ByteDance Seedance on Volcengine Ark (CN) and BytePlus ModelArk (intl): models, bodies, task states, Bearer key.

Protocol: /work/shared/reference/providers-2026.md §1 (hosts §1.2, endpoints §1.3, models §1.4, body §1.5-1.6,
task object §1.8, errors §1.9, prices §1.10). Submit `POST {base}/contents/generations/tasks` → `{"id"}`; poll
`GET …/tasks/{id}`; the finished video is `content.video_url` (a signed TOS URL, 24 h), downloaded at once.

Decisions where the reference leaves room:
  - `base_url` is the API root with or without `/api/v3` (appended when absent). A BytePlus host
    (`*.bytepluses.com`) gets BytePlus model ids (`seedance-…`, `dreamina-seedance-2-…`) for the public
    Volcengine names (SPEC §8: "mapping to its ids itself"); a channel's `model_map` (e.g. to an `ep-…`
    endpoint) is applied before and wins.
  - Sizes are the vendor's output sizes (§1.6, both the 1.0-family and the 1.5/2.x tables, for every model),
    each standing for one (resolution, ratio); the tier sets `resolution`. `aspect_ratio` (metadata) overrides the
    ratio, `adaptive` included (the video follows the image; for text-to-video only 1.5 pro and 2.x).
  - Only body fields are sent, never the old `--rs …` text commands (§1.5: "Send body fields").
  - `generate_audio` is always sent on the models that have it (the vendor's default is true; vidgate's is a
    silent video unless `audio` is asked for). Through a `model_map` to an `ep-…` endpoint the family is not
    known here, and `generate_audio` goes only when audio is asked for.
  - Not offered: `duration` -1, `frames`, `draft`, `tools`, reference mode (2.0's reference images, videos and
    audios: vidgate's inputs are first/last frames) and `service_tier: flex`; each either has no price in seconds
    or would change the price behind the tier's back (SPEC §3).
  - `execution_expires_after` is the model's deadline less EXPIRY_MARGIN_S, so Ark gives a task up (unbilled)
    before vidgate fails and refunds it.
  - A lost create reply is reconciled by listing (§1.3): the task object carries no prompt, so a task matches by
    model, creation time and the fields Ark echoes (resolution, ratio unless adaptive, duration, a seed we sent,
    generate_audio, safety_identifier); the nearest in time comes first, and the engine skips tasks another
    vidgate task holds.
  - Every refusal is classed by §1.9: moderation codes are a content-policy refusal, other 400s the client's
    (with Ark's `param` mapped back to the client's field), and auth, balance, unknown model/endpoint, rate and
    server errors are the channel's (transient: another channel may serve).
"""

from __future__ import annotations

import asyncio
import base64
import io
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from PIL import Image, UnidentifiedImageError

from vidgate.config import Settings
from vidgate.errors import InvalidRequest, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    AUDIO,
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    UPSTREAM_CANCELLED,
    WATERMARK,
    Credentials,
    MediaInput,
    Mode,
    ModelSpec,
    Param,
    Progress,
    Provider,
    Submitted,
    VideoRequest,
)
from vidgate.providers.http import send

NAME = "ark"
# Failures read "Ark: OutputVideoSensitiveContentDetected: <its message>".
VENDOR = "Ark"
DEFAULT_BASE_URL = "https://ark.cn-beijing.volces.com/api/v3"
API_PREFIX = "/api/v3"
TASKS = "/contents/generations/tasks"
BYTEPLUS_SUFFIX = ".bytepluses.com"
# Extra outputs on Progress.extras.
LAST_FRAME = "last_frame"
DEADLINE_S = 6 * 3600
EXPIRY_MARGIN_S = 600
LIST_PAGE_SIZE = 100
LIST_PAGES = 10
# Tolerance between our clock and Ark's when comparing creation times.
CLOCK_SKEW_S = 30.0
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")
# Output sizes per resolution and ratio (§1.6), as (1.0 family, 1.5 pro and 2.x).
OUTPUT_SIZES: dict[str, dict[str, tuple[str, str]]] = {
    "480P": {
        "16:9": ("864x480", "864x496"),
        "4:3": ("736x544", "752x560"),
        "1:1": ("640x640", "640x640"),
        "3:4": ("544x736", "560x752"),
        "9:16": ("480x864", "496x864"),
        "21:9": ("960x416", "992x432"),
    },
    "720P": {
        "16:9": ("1248x704", "1280x720"),
        "4:3": ("1120x832", "1112x834"),
        "1:1": ("960x960", "960x960"),
        "3:4": ("832x1120", "834x1112"),
        "9:16": ("704x1248", "720x1280"),
        "21:9": ("1504x640", "1470x630"),
    },
    "1080P": {
        "16:9": ("1920x1088", "1920x1080"),
        "4:3": ("1664x1248", "1664x1248"),
        "1:1": ("1440x1440", "1440x1440"),
        "3:4": ("1248x1664", "1248x1664"),
        "9:16": ("1088x1920", "1080x1920"),
        "21:9": ("2176x928", "2206x946"),
    },
}
# "WxH" -> (tier, ratio), from both tables.
SIZE_INDEX: dict[str, tuple[str, str]] = {
    size: (tier, ratio) for tier, row in OUTPUT_SIZES.items() for ratio, pair in row.items() for size in pair
}

# -- prices ------------------------------------------------------------------------------------------------------
# Ark bills output tokens: tokens = width x height x 24 fps x seconds / 1024 (§1.8; the price page's example,
# 1080p 16:9 5 s = 244,800 tokens, checks out). USD per second = tokens per second of the tier's 16:9 output
# size x CNY per million tokens / 1e6 / CNY_PER_USD. Source: Volcengine online (non-flex) prices, CNY per million
# output tokens, as providers-2026.md §1.10 gives them (price page copy 2025-H2 for 1.0; third-party figures for
# 1.5 pro, 2026-03-04 for 2.0, 2026-04 for 2.0 at 1080p), read 2026-12-05. 1.5 pro is priced with audio (16; 8
# silent): one price per tier, so a silent video pays the audio rate. 2.0 is priced without video input (the only
# input vidgate sends it). Operators override any of it in [prices].
CNY_PER_USD = Decimal("7.10")  # assumed exchange rate, 2026-12
FPS = 24


def tokens_per_second(size: str) -> Decimal:
    width, _, height = size.partition("x")
    return Decimal(int(width) * int(height) * FPS) / 1024


def usd_per_second(size: str, cny_per_million: str) -> Decimal:
    """The USD price of one second of output of `size` at a CNY price per million tokens."""
    cny = tokens_per_second(size) * Decimal(cny_per_million) / 1_000_000
    return (cny / CNY_PER_USD).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Family:
    """What one Seedance model takes (§1.4, §1.5)."""

    name: str
    byteplus: str
    modes: frozenset[Mode]
    tiers: tuple[str, ...]
    default_tier: str
    seconds: tuple[int, ...]
    audio: bool
    camera_fixed: bool  # not on 2.x
    modern: bool  # 1.5 pro and 2.x: their output sizes, adaptive ratio for text-to-video
    cny_per_million: Mapping[str, str]  # by tier

    def size_of(self, tier: str, ratio: str = "16:9") -> str:
        return OUTPUT_SIZES[tier][ratio][1 if self.modern else 0]

    def price(self) -> dict[str, Decimal]:
        return {tier: usd_per_second(self.size_of(tier), self.cny_per_million[tier]) for tier in self.tiers}


_ALL = ("480P", "720P", "1080P")
_T2V_I2V_KF2V: frozenset[Mode] = frozenset({"t2v", "i2v", "kf2v"})


def _flat(cny: str) -> dict[str, str]:
    return dict.fromkeys(_ALL, cny)


FAMILIES: tuple[Family, ...] = (
    Family(
        "doubao-seedance-2-0-260128",
        "dreamina-seedance-2-0-260128",
        _T2V_I2V_KF2V,
        _ALL,
        "720P",
        tuple(range(4, 16)),
        audio=True,
        camera_fixed=False,
        modern=True,
        cny_per_million={"480P": "46", "720P": "46", "1080P": "51"},
    ),
    Family(
        "doubao-seedance-2-0-fast-260128",
        "dreamina-seedance-2-0-fast-260128",
        _T2V_I2V_KF2V,
        ("480P", "720P"),
        "720P",
        tuple(range(4, 16)),
        audio=True,
        camera_fixed=False,
        modern=True,
        cny_per_million={"480P": "37", "720P": "37"},
    ),
    Family(
        "doubao-seedance-1-5-pro-251215",
        "seedance-1-5-pro-251215",
        _T2V_I2V_KF2V,
        _ALL,
        "720P",
        tuple(range(4, 13)),
        audio=True,
        camera_fixed=True,
        modern=True,
        cny_per_million=_flat("16"),
    ),
    Family(
        "doubao-seedance-1-0-pro-250528",
        "seedance-1-0-pro-250528",
        _T2V_I2V_KF2V,
        _ALL,
        "1080P",
        tuple(range(2, 13)),
        audio=False,
        camera_fixed=True,
        modern=False,
        cny_per_million=_flat("15"),
    ),
    Family(
        "doubao-seedance-1-0-pro-fast-251015",
        "seedance-1-0-pro-fast-251015",
        frozenset({"t2v", "i2v"}),
        _ALL,
        "1080P",
        tuple(range(2, 13)),
        audio=False,
        camera_fixed=True,
        modern=False,
        cny_per_million=_flat("4.2"),
    ),
    Family(
        "doubao-seedance-1-0-lite-t2v-250428",
        "seedance-1-0-lite-t2v-250428",
        frozenset({"t2v"}),
        _ALL,
        "720P",
        tuple(range(2, 13)),
        audio=False,
        camera_fixed=True,
        modern=False,
        cny_per_million=_flat("10"),
    ),
    Family(
        "doubao-seedance-1-0-lite-i2v-250428",
        "seedance-1-0-lite-i2v-250428",
        frozenset({"i2v", "kf2v"}),
        _ALL,
        "720P",
        tuple(range(2, 13)),
        audio=False,
        camera_fixed=True,
        modern=False,
        cny_per_million=_flat("10"),
    ),
)
_BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES} | {f.byteplus: f for f in FAMILIES}


def family_of(model: str) -> Family | None:
    """The family of a public or BytePlus model id (None for an endpoint id or a model we do not know)."""
    return _BY_NAME.get(model)


# Typed params (metadata.<name> on the OpenAI surface, parameters.<name> on the DashScope one).
SEED = Param("int", low=-1, high=2**32 - 1, description="Random seed; -1 lets Ark pick one.")
CAMERA_FIXED = Param("bool", description="Keep the camera still.")
RETURN_LAST_FRAME = Param("bool", description="Also return the video's last frame (PNG) as an extra output.")
SAFETY_IDENTIFIER = Param("string", high=64, description="A hash of your end user's id, for Ark's abuse checks.")


def _params(family: Family) -> dict[str, Param]:
    ratios = RATIOS if family.modes == {"t2v"} else (*RATIOS, "adaptive")
    params = {
        "seed": SEED,
        "watermark": WATERMARK,
        "return_last_frame": RETURN_LAST_FRAME,
        "safety_identifier": SAFETY_IDENTIFIER,
        "aspect_ratio": Param(
            "string", choices=ratios, description="Overrides the size's ratio; adaptive follows the input image."
        ),
    }
    if family.camera_fixed:
        params["camera_fixed"] = CAMERA_FIXED
    if family.audio:
        params["audio"] = AUDIO
    return params


def _spec(family: Family) -> ModelSpec:
    sizes = tuple(dict.fromkeys(size for tier in family.tiers for pair in OUTPUT_SIZES[tier].values() for size in pair))
    return ModelSpec(
        name=family.name,
        provider=NAME,
        modes=family.modes,
        seconds=family.seconds,
        default_seconds=5,
        sizes=sizes,
        tiers={tier: family.size_of(tier) for tier in family.tiers},
        default_size=family.size_of(family.default_tier),
        audio=family.audio,
        params=_params(family),
        deadline_s=DEADLINE_S,
        poll_hint_ms=5000,
        price=family.price(),
        description="ByteDance Seedance (Volcengine Ark / BytePlus ModelArk)",
    )


MODELS: tuple[ModelSpec, ...] = tuple(_spec(family) for family in FAMILIES)

_STATES = {"queued": "queued", "running": "in_progress"}
# Ark's `param` in a refusal -> our name for the request part (the client's field comes from the request).
_PARAMS = {
    "duration": "seconds",
    "frames": "seconds",
    "resolution": "size",
    "ratio": "aspect_ratio",
    "generate_audio": "audio",
    "seed": "seed",
    "watermark": "watermark",
    "camera_fixed": "camera_fixed",
    "return_last_frame": "return_last_frame",
    "safety_identifier": "safety_identifier",
    "model": "model",
}


def is_byteplus(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host.endswith(BYTEPLUS_SUFFIX)


def upstream_model(model: str, base_url: str) -> str:
    """The id to send: BytePlus hosts know Seedance by their own ids; anything else goes as it is."""
    family = family_of(model)
    if family is not None and is_byteplus(base_url):
        return family.byteplus
    return model


def api_base(creds: Credentials) -> str:
    base = (creds.base_url or DEFAULT_BASE_URL).rstrip("/")
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


def resolution_and_ratio(req: VideoRequest) -> tuple[str, str]:
    """Ark's `resolution` and `ratio` for a request: the size's own pair, `aspect_ratio` overriding the ratio."""
    tier, ratio = SIZE_INDEX.get(req.size, (req.tier, nearest_ratio(req.width, req.height)))
    chosen = req.extras.get("aspect_ratio")
    return tier.lower(), str(chosen) if isinstance(chosen, str) else ratio


def nearest_ratio(width: int, height: int) -> str:
    value = width / height
    return min(RATIOS, key=lambda name: abs(value - int(name.split(":")[0]) / int(name.split(":")[1])))


def image_url(item: MediaInput) -> str:
    """What goes in `image_url.url`: an http(s) URL as given, else a data URL with a lowercase format (§1.6)."""
    if item.url and item.url.startswith(("http://", "https://")):
        return item.url
    if item.url and item.url.startswith("data:"):
        head, sep, data = item.url.partition(",")
        return head.lower() + sep + data
    if item.path is None:
        raise UpstreamRejected(f"{item.field}: Seedance needs an http(s) URL or the image itself", param=item.field)
    raw = item.path.read_bytes()
    mime = (item.mime or mimetypes.guess_type(item.path.name)[0] or "").lower()
    if not mime.startswith("image/"):
        mime = _sniff(raw, item.field)
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def _sniff(raw: bytes, field: str) -> str:
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt = (img.format or "").lower()
    except (UnidentifiedImageError, OSError) as exc:
        raise UpstreamRejected(f"{field}: not a readable image", param=field) from exc
    return f"image/{fmt}"


def build_body(req: VideoRequest, *, upstream_model: str, callback_url: str | None = None) -> dict[str, Any]:
    """The create body (§1.5): content items, then body fields only."""
    family = family_of(req.model) or family_of(upstream_model)
    content: list[dict[str, Any]] = []
    if req.prompt:
        content.append({"type": "text", "text": req.prompt})
    for role in ("first_frame", "last_frame"):
        item = req.input(role)
        if item is not None:
            content.append({"type": "image_url", "image_url": {"url": image_url(item)}, "role": role})
    resolution, ratio = resolution_and_ratio(req)
    body: dict[str, Any] = {
        "model": upstream_model,
        "content": content,
        "resolution": resolution,
        "ratio": ratio,
        "duration": req.seconds,
        "execution_expires_after": DEADLINE_S - EXPIRY_MARGIN_S,
    }
    if req.seed is not None:
        body["seed"] = req.seed
    for key in ("watermark", "camera_fixed", "return_last_frame", "safety_identifier"):
        if key in req.extras:
            body[key] = req.extras[key]
    if (family is not None and family.audio) or req.audio:
        body["generate_audio"] = req.audio
    if callback_url:
        body["callback_url"] = callback_url
    return body


def failure_of(error: Any) -> UpstreamFailure:
    """What Ark said (`{code, message}` of an error body or a failed task), verbatim."""
    code = error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    return UpstreamFailure(VENDOR, str(code) if code else None, str(message)[:1000] if message else None)


def is_policy(code: str | None) -> bool:
    """Moderation codes (§1.9): `*SensitiveContentDetected*` and `*RiskDetection`, input or output."""
    return bool(code) and ("SensitiveContentDetected" in str(code) or "RiskDetection" in str(code))


def parse_task(data: Any) -> Progress:
    """A task object (GET, list item, callback body) → Progress; anything unexpected raises UpstreamTransient."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
        raise UpstreamTransient("Ark task answer is not a task object")
    status = data.get("status")
    if status in _STATES:
        return Progress(state=_STATES[status])  # type: ignore[arg-type]
    if status == "succeeded":
        content = data.get("content")
        url = content.get("video_url") if isinstance(content, Mapping) else None
        if not isinstance(url, str) or not url:
            raise UpstreamTransient("Ark task succeeded without content.video_url")
        frame = content.get("last_frame_url") if isinstance(content, Mapping) else None
        extras = {LAST_FRAME: frame} if isinstance(frame, str) and frame else {}
        return Progress(state="completed", progress=100, video_url=url, extras=extras)
    if status == "failed":
        failure = failure_of(data.get("error"))
        return Progress.failed(CONTENT_POLICY_VIOLATION if is_policy(failure.code) else GENERATION_FAILED, failure)
    if status == "cancelled":
        return Progress.failed(UPSTREAM_CANCELLED, UpstreamFailure(VENDOR, note="cancelled"), state="cancelled")
    if status == "expired":
        note = "the task expired before it finished (execution_expires_after)"
        return Progress.failed(GENERATION_FAILED, UpstreamFailure(VENDOR, "expired", note=note))
    raise UpstreamTransient(f"unknown Ark task status {status!r}")


def parse_error(status: int, body: Any) -> UpstreamRejected | UpstreamTransient:
    """Ark's `{"error": {code, message, param, type}}` → the error that says what to do about it (§1.9)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    failure = failure_of(error)
    code = failure.code or ""
    text = f"Ark {status} {code}: {failure.message or str(body)[:300]}"
    if status == 400 and is_policy(code):
        return UpstreamRejected(failure.text(), code=CONTENT_POLICY_VIOLATION, upstream=failure)
    if status == 400 and code != "InvalidEndpoint.ClosedEndpoint" and error is not None:
        param = error.get("param") if isinstance(error, Mapping) else None
        ours = _PARAMS.get(str(param)) if param else None
        return UpstreamRejected(failure.text(), param=ours, upstream=failure)
    # 401/403 (our key, our balance), 404 (the model or endpoint is not open on this account), a closed endpoint,
    # 429 (rate or quota), 5xx, and anything unreadable: the channel's trouble, not the request's.
    return UpstreamTransient(text, status=status)


def matches(item: Mapping[str, Any], body: Mapping[str, Any], *, since: float) -> bool:
    """Whether a listed task could be what `body` (sent at `since`) created: the list carries no prompt (§1.8),
    so the model, the creation time and every field Ark echoes must agree."""
    if not isinstance(item.get("id"), str):
        return False
    model = str(body["model"])
    if not model.startswith("ep-") and item.get("model") != model:
        return False
    created = item.get("created_at")
    if not isinstance(created, int | float) or created < since - CLOCK_SKEW_S:
        return False
    echoed = ["resolution", "duration", "generate_audio", "safety_identifier"]
    if body.get("ratio") != "adaptive":
        echoed.append("ratio")
    if isinstance(body.get("seed"), int) and body["seed"] != -1:
        echoed.append("seed")
    return all(item.get(key) == body[key] for key in echoed if key in body and key in item)


def from_settings(settings: Settings, http: httpx.AsyncClient) -> ArkProvider:
    """The registry's factory."""
    return ArkProvider(http)


class ArkProvider(Provider):
    """Seedance models on one Ark / ModelArk account (an API key, bound to its region)."""

    name = NAME
    accepts_callback = True
    default_base_url = DEFAULT_BASE_URL

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def check(self, req: VideoRequest) -> None:
        """Refuse what the vendor refuses that the spec's generic checks cannot see."""
        family = family_of(req.model)
        audio = req.input("audio")
        if audio is not None:
            # Seedance 2.0 takes audio only as a reference beside reference images, which vidgate does not offer.
            raise InvalidRequest(f"{req.model} takes no driving audio on vidgate.", param=audio.field)
        if req.extras.get("aspect_ratio") == "adaptive" and req.mode == "t2v" and family and not family.modern:
            field = req.field_of("aspect_ratio")
            raise InvalidRequest(
                f"{field} 'adaptive' needs an input image on {req.model}; text-to-video takes one of: "
                f"{', '.join(RATIOS)}.",
                param=field,
            )

    @staticmethod
    def _headers(creds: Credentials, task_id: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {creds.api_key}"}
        if task_id:
            headers["X-Client-Request-Id"] = task_id  # a trace id for the vendor's support; no deduplication
        return headers

    def _body(self, req: VideoRequest, creds: Credentials, callback_url: str | None = None) -> dict[str, Any]:
        return build_body(req, upstream_model=upstream_model(req.model, creds.base_url), callback_url=callback_url)

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        # Stored inputs are read and base64-encoded here: blocking work, off the event loop.
        body = await asyncio.to_thread(self._body, req, creds, callback_url)
        url = api_base(creds) + TASKS
        try:
            answer = await send(
                self.http, "POST", url, headers=self._headers(creds, task_id), json=body, error=parse_error
            )
        except UpstreamRejected as exc:
            field = req.field_of(exc.param) if exc.param else None
            raise UpstreamRejected(exc.message, code=exc.code, param=field, upstream=exc.upstream) from exc
        upstream = answer.get("id") if isinstance(answer, Mapping) else None
        if not isinstance(upstream, str) or not upstream:
            raise UpstreamTransient("Ark accepted the task but returned no id")
        return Submitted(upstream_id=upstream)

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        """Tasks on this account created since `since` that match what a create of `req` sent (see docstring)."""
        # The images play no part in matching (the list does not show them): the body is built without them.
        body = self._body(replace(req, inputs=()), creds)
        params = {"page_size": str(LIST_PAGE_SIZE)}
        if str(body["model"]).startswith("ep-"):
            params["filter.model"] = str(body["model"])  # the filter takes endpoint ids (§1.3)
        found: list[tuple[float, str]] = []
        url = api_base(creds) + TASKS
        for page in range(1, LIST_PAGES + 1):
            data = await send(
                self.http,
                "GET",
                url,
                headers=self._headers(creds),
                params={**params, "page_num": str(page)},
                error=_lookup_error,
            )
            items = data.get("items") if isinstance(data, Mapping) else None
            total = data.get("total") if isinstance(data, Mapping) else None
            if not isinstance(items, list) or not isinstance(total, int):
                raise UpstreamTransient("Ark answered a task list without items and total")
            rows = [item for item in items if isinstance(item, Mapping)]
            found += [
                (abs(float(item["created_at"]) - since), str(item["id"]))
                for item in rows
                if matches(item, body, since=since)
            ]
            # The list comes newest first (the doc's example): a page reaching back past `since` is the last one.
            times = [float(t) if isinstance(t, int | float) else None for t in (i.get("created_at") for i in rows)]
            known = [t for t in times if t is not None]
            newest_first = len(known) == len(times) and known == sorted(known, reverse=True)
            past = bool(known) and newest_first and known[-1] < since - CLOCK_SKEW_S
            if page * LIST_PAGE_SIZE >= total or len(rows) < LIST_PAGE_SIZE or past:
                return [task for _, task in sorted(found)]
        raise UpstreamTransient(f"Ark lists more than {LIST_PAGES * LIST_PAGE_SIZE} tasks to look through")

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        url = f"{api_base(creds)}{TASKS}/{upstream_id}"
        try:
            data = await send(self.http, "GET", url, headers=self._headers(creds), error=parse_error)
        except UpstreamRejected as exc:
            # A refusal to read a task Ark itself named is no verdict on the task.
            raise UpstreamTransient(f"Ark task read refused: {exc}") from exc
        return parse_task(data)

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        """DELETE: a queued task becomes `cancelled`; a running one cannot be cancelled (UpstreamRejected)."""
        url = f"{api_base(creds)}{TASKS}/{upstream_id}"
        # The answer is `{}` or empty (§1.3), which send() would take for garbage: read here.
        try:
            response = await self.http.request("DELETE", url, headers=self._headers(creds))
        except httpx.HTTPError as exc:
            raise UpstreamTransient(f"Ark cancel: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code == 404:
            return  # gone already: nothing left to cancel
        if response.status_code >= 400:
            try:
                body: Any = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                body = response.text[:300]
            raise parse_error(response.status_code, body)

    # download(): the base's. TOS result URLs are pre-signed and get no Authorization header.


def _lookup_error(status: int, body: Any) -> Exception:
    mapped = parse_error(status, body)
    # A refused lookup is no verdict on the task: ask again later.
    return UpstreamTransient(str(mapped), status=status) if isinstance(mapped, UpstreamRejected) else mapped
