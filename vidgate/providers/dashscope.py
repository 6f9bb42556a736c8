"""Alibaba Wan through DashScope (Model Studio): models, request bodies, task states, Bearer auth.

Submit `POST {base}/api/v1/services/aigc/{video-generation|image2video}/video-synthesis` with
`X-DashScope-Async: enable`; poll `GET {base}/api/v1/tasks/{id}`; the finished video is `output.video_url`
(an OSS URL valid 24 h), downloaded into storage at once. t2v models take `parameters.size` ("W*H"),
i2v/kf2v models `parameters.resolution` (a tier; the aspect follows the image). kf2v uses image2video.

A submit whose answer was lost is looked for with the task list, `GET {base}/api/v1/tasks` (start_time /
end_time as YYYYMMDDhhmmss, model_name, page_no, page_size): a task of the same model submitted since the
submit was sent (less CLOCK_SKEW_S), whose prompt, where the row shows one, is the one sent. The list's
shape is not documented (providers.md §2.2, §7 item 2); decisions: its times, like the task query's, are
Beijing time; rows are read from `tasks`, `data` or `output.tasks`, each with `task_id`, `model_name`,
`submit_time` and, when present, `orig_prompt`.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx

from vidgate.config import Settings
from vidgate.errors import NotSupported, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import (
    AUDIO,
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    NEGATIVE_PROMPT,
    PROMPT_EXTEND,
    SEED,
    TEMPLATE,
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
    Submitted,
    VideoRequest,
    per_tier,
)
from vidgate.providers.http import send

DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com"
# Failures read "DashScope: DataInspectionFailed: <its message>"; the DashScope surface gives code and message back.
VENDOR = "DashScope"
# Codes besides DataInspection* that mean the content was refused (Model Studio's error-code page).
_POLICY_CODES = frozenset({"IPInfringementSuspect"})
SUBMIT_PATH = "/api/v1/services/aigc/{task}/video-synthesis"

# Sizes per tier for text-to-video (providers.md §2.4), written W*H upstream and WxH here.
T2V_SIZES = {
    "480P": ("832x480", "480x832", "624x624"),
    "720P": ("1280x720", "720x1280", "960x960", "1088x832", "832x1088"),
    "1080P": ("1920x1080", "1080x1920", "1440x1440", "1632x1248", "1248x1632"),
}
TIER_SIZE = {"480P": "832x480", "720P": "1280x720", "1080P": "1920x1080"}
_T2V_PARAMS: dict[str, Param] = {
    "negative_prompt": NEGATIVE_PROMPT,
    "seed": SEED,
    "watermark": WATERMARK,
    "prompt_extend": PROMPT_EXTEND,
}
_I2V_PARAMS = {**_T2V_PARAMS, "template": TEMPLATE}


def _t2v(
    name: str, tiers: Sequence[str], seconds: tuple[int, ...], default: str, price: Price, *, audio: bool = False
) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider="dashscope",
        modes=frozenset({"t2v"}),
        seconds=seconds,
        default_seconds=5 if 5 in seconds else seconds[0],
        sizes=tuple(size for tier in tiers for size in T2V_SIZES[tier]),
        tiers={tier: TIER_SIZE[tier] for tier in tiers},
        default_size=default,
        audio=audio,
        params={**_T2V_PARAMS, "audio": AUDIO} if audio else _T2V_PARAMS,
        deadline_s=3 * 3600,
        poll_hint_ms=5000,
        price=price,
        description="Alibaba Wan text-to-video (DashScope)",
    )


def _i2v(
    name: str,
    tiers: Sequence[str],
    seconds: tuple[int, ...],
    default_tier: str,
    price: Price,
    *,
    mode: Mode = "i2v",
    audio: bool = False,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        provider="dashscope",
        modes=frozenset({mode}),
        seconds=seconds,
        default_seconds=5 if 5 in seconds else seconds[0],
        tiers={tier: TIER_SIZE[tier] for tier in tiers},
        default_size=TIER_SIZE[default_tier],
        audio=audio,
        params={**_I2V_PARAMS, "audio": AUDIO} if audio else _I2V_PARAMS,
        deadline_s=3 * 3600,
        poll_hint_ms=5000,
        price=price,
        description=f"Alibaba Wan {'first+last frame' if mode == 'kf2v' else 'image'}-to-video (DashScope)",
    )


ALL3 = ("480P", "720P", "1080P")
# Prices: Alibaba Cloud Model Studio (international) video generation price list, USD per second of output
# (alibabacloud.com/help/en/model-studio/models, read 2025-10).
_WAN25 = per_tier("0.05", "0.10", "0.15")
_WAN22_PLUS = per_tier("0.02", "0.10", "0.10")
_WAN22_FLASH = per_tier("0.015", "0.036", "0.07")
MODELS: tuple[ModelSpec, ...] = (
    _t2v("wan2.5-t2v-preview", ALL3, (5, 10), "1920x1080", _WAN25, audio=True),
    _t2v("wan2.2-t2v-plus", ("480P", "1080P"), (5,), "1920x1080", _WAN22_PLUS),
    _t2v("wanx2.1-t2v-turbo", ("480P", "720P"), (5,), "1280x720", Decimal("0.036")),
    _t2v("wanx2.1-t2v-plus", ("720P",), (5,), "1280x720", Decimal("0.10")),
    _i2v("wan2.5-i2v-preview", ALL3, (5, 10), "1080P", _WAN25, audio=True),
    _i2v("wan2.2-i2v-flash", ALL3, (5,), "720P", _WAN22_FLASH),
    _i2v("wan2.2-i2v-plus", ("480P", "1080P"), (5,), "1080P", _WAN22_PLUS),
    _i2v("wanx2.1-i2v-plus", ("720P",), (5,), "720P", Decimal("0.10")),
    _i2v("wanx2.1-i2v-turbo", ("480P", "720P"), (3, 4, 5), "720P", Decimal("0.036")),
    _i2v("wan2.2-kf2v-flash", ALL3, (5,), "720P", _WAN22_FLASH, mode="kf2v"),
    _i2v("wanx2.1-kf2v-plus", ("720P",), (5,), "720P", Decimal("0.10"), mode="kf2v"),
)
_BY_NAME = {spec.name: spec for spec in MODELS}
_STATES = {
    "PENDING": "queued",
    "RUNNING": "in_progress",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELED": "cancelled",
}
_INPUT_FIELD = {"first_frame": "img_url", "last_frame": "last_frame_url", "audio": "audio_url"}
_PASS_EXTRAS_INPUT = ("negative_prompt", "template")
_PASS_EXTRAS_PARAMS = ("prompt_extend", "watermark")
# DashScope states its times in Beijing time, without a zone.
BEIJING = timezone(timedelta(hours=8))
LIST_PAGE_SIZE = 100
# A lookup reads at most this many pages before it gives up telling (it then retries later).
LIST_PAGES = 10
# Tolerance between our clock and the upstream's when comparing submit times.
CLOCK_SKEW_S = 30.0


def is_wan_model(model: str) -> bool:
    return model in _BY_NAME


def submit_path(model: str, mode: str | None = None) -> str:
    """kf2v models live on the image2video path; everything else on video-generation."""
    task = "image2video" if "kf2v" in model or mode == "kf2v" else "video-generation"
    return SUBMIT_PATH.format(task=task)


def media_value(item: MediaInput) -> str:
    """A URL the upstream can read: the client's http(s) URL or data URI as given, else the stored bytes inline."""
    if item.url and item.url.startswith(("http://", "https://", "data:")):
        return item.url
    if item.path is None:
        raise UpstreamRejected(f"{item.field}: no bytes to send", param=item.field)
    mime = item.mime or mimetypes.guess_type(item.path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(item.path.read_bytes()).decode()}"


def build_body(req: VideoRequest) -> dict[str, Any]:
    """The DashScope body for a request: a native body verbatim (model rewritten), or a translation."""
    if req.native is not None:
        # Verbatim but for the model (a channel's map) and the media, which travel as inputs: each goes back
        # under the field it came in (input.img_url -> img_url), a stored file as a data URI made now.
        native_inputs = req.native.get("input")
        media = dict(native_inputs) if isinstance(native_inputs, Mapping) else {}
        for item in req.inputs:
            key = item.field.removeprefix("input.") if item.field.startswith("input.") else _INPUT_FIELD[item.role]
            media[key] = media_value(item)
        return {**req.native, "model": req.model, "input": media}
    spec = _BY_NAME.get(req.model)
    mode = req.mode
    inputs: dict[str, Any] = {"prompt": req.prompt}
    for item in req.inputs:
        field = "first_frame_url" if item.role == "first_frame" and mode == "kf2v" else _INPUT_FIELD[item.role]
        inputs[field] = media_value(item)
    params: dict[str, Any] = {"duration": req.seconds}
    if mode == "t2v":
        params["size"] = req.size.replace("x", "*")
    else:
        params["resolution"] = req.tier
    for key in _PASS_EXTRAS_INPUT:
        if key in req.extras:
            inputs[key] = req.extras[key]
    for key in _PASS_EXTRAS_PARAMS:
        if key in req.extras:
            params[key] = req.extras[key]
    if req.seed is not None:
        params["seed"] = req.seed
    if spec is not None and spec.audio and req.input("audio") is None:
        # Wan 2.5 dubs by default; a client that did not ask for audio gets a silent video.
        params["audio"] = req.audio
    return {"model": req.model, "input": inputs, "parameters": params}


def parse_progress(payload: Mapping[str, Any]) -> Progress:
    """A task query answer → Progress; anything unexpected raises UpstreamTransient (read again later)."""
    output = payload.get("output")
    if not isinstance(output, Mapping):
        raise UpstreamTransient("DashScope task answer has no output object")
    status = output.get("task_status")
    if status == "UNKNOWN":
        # The task does not exist (or is older than 24 h): nothing will ever come of it.
        lost = UpstreamFailure(VENDOR, note="task_status UNKNOWN (no such task, or older than 24 h)")
        return Progress.failed(UPSTREAM_TASK_LOST, lost)
    if status not in _STATES:
        raise UpstreamTransient(f"unknown DashScope task_status {status!r}")
    state = _STATES[status]
    if state == "completed":
        url = output.get("video_url")
        if not isinstance(url, str) or not url:
            raise UpstreamTransient("SUCCEEDED without video_url")
        return Progress(state="completed", progress=100, video_url=url)
    if state in ("failed", "cancelled"):
        failure = upstream_failure(output.get("code"), output.get("message"))
        if state == "cancelled":
            return Progress.failed(UPSTREAM_CANCELLED, failure, state="cancelled")
        return Progress.failed(our_code(failure.code) or GENERATION_FAILED, failure)
    return Progress(state=state, progress=None)  # type: ignore[arg-type]


def beijing_stamp(moment: float) -> str:
    """A UNIX time as the list's YYYYMMDDhhmmss, in Beijing time."""
    return datetime.fromtimestamp(moment, BEIJING).strftime("%Y%m%d%H%M%S")


def parse_time(value: Any) -> float | None:
    """A task time ("2025-10-11 18:55:56.952", Beijing time) as a UNIX time; None when unreadable."""
    if not isinstance(value, str):
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=BEIJING).timestamp()
        except ValueError:
            continue
    return None


def list_rows(payload: Any) -> list[Mapping[str, Any]] | None:
    """The rows of a task list answer, wherever this deployment puts them; None when there are none to read."""
    if not isinstance(payload, Mapping):
        return None
    output = payload.get("output")
    for holder in (payload, output if isinstance(output, Mapping) else {}):
        for name in ("tasks", "data"):
            rows = holder.get(name)
            if isinstance(rows, list):
                return [row for row in rows if isinstance(row, Mapping)]
    return None


def row_matches(row: Mapping[str, Any], *, model: str, prompt: Any, since: float) -> bool:
    """Whether a listed task could be what a submit of this model and prompt (sent at `since`) made."""
    if not isinstance(row.get("task_id"), str) or row.get("model_name", model) != model:
        return False
    submitted = parse_time(row.get("submit_time"))
    if submitted is None or submitted < since - CLOCK_SKEW_S:
        return False
    shown = row.get("orig_prompt")
    return shown is None or shown == (prompt or "")


def from_settings(settings: Settings, http: httpx.AsyncClient) -> DashScopeProvider:
    return DashScopeProvider(http)


class DashScopeProvider(Provider):
    """Wan video models on a DashScope account (Bearer key)."""

    name = "dashscope"
    default_base_url = DEFAULT_BASE_URL

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def base_url(self, creds: Credentials) -> str:
        # base_url may or may not carry the /api/v1 prefix; the documented paths are appended either way.
        return super().base_url(creds).removesuffix("/api/v1")

    def _headers(self, creds: Credentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {creds.api_key}", "Content-Type": "application/json"}

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        # Reading and base64-encoding stored inputs is blocking work: off the event loop.
        body = await asyncio.to_thread(build_body, req)
        headers = {**self._headers(creds), "X-DashScope-Async": "enable"}
        if req.native is not None and any(str(v).startswith("oss://") for v in _walk(body)):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        url = self.base_url(creds) + submit_path(req.model, req.mode)
        data = await send(self.http, "POST", url, headers=headers, json=body, error=_error)
        output = data.get("output") if isinstance(data, Mapping) else None
        task = output.get("task_id") if isinstance(output, Mapping) else None
        if not isinstance(task, str) or not task:
            raise UpstreamTransient("DashScope accepted the task but returned no task_id")
        return Submitted(upstream_id=task)

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        body = build_body(req)
        inputs = body.get("input")
        prompt = inputs.get("prompt") if isinstance(inputs, Mapping) else None
        model = str(body.get("model") or req.model)
        params = {
            "start_time": beijing_stamp(since - CLOCK_SKEW_S),
            "end_time": beijing_stamp(time.time() + CLOCK_SKEW_S),
            "model_name": model,
            "page_size": str(LIST_PAGE_SIZE),
        }
        url = f"{self.base_url(creds)}/api/v1/tasks"
        found: list[tuple[float, str]] = []
        for page_no in range(1, LIST_PAGES + 1):
            data = await send(
                self.http,
                "GET",
                url,
                headers=self._headers(creds),
                params={**params, "page_no": str(page_no)},
                error=_list_error,
            )
            rows = list_rows(data)
            if rows is None:
                raise UpstreamTransient("DashScope answered a task list without rows")
            found += [
                (parse_time(row.get("submit_time")) or 0.0, str(row["task_id"]))
                for row in rows
                if row_matches(row, model=model, prompt=prompt, since=since)
            ]
            pages = data.get("total_page") if isinstance(data, Mapping) else None
            last = page_no >= pages if isinstance(pages, int) else len(rows) < LIST_PAGE_SIZE
            if last or not rows:
                return [task for _, task in sorted(found)]
        raise UpstreamTransient(f"DashScope lists more than {LIST_PAGES * LIST_PAGE_SIZE} tasks since the submit")

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        url = f"{self.base_url(creds)}/api/v1/tasks/{upstream_id}"
        data = await send(self.http, "GET", url, headers=self._headers(creds), error=_error)
        if not isinstance(data, Mapping):
            raise UpstreamTransient("DashScope task answer is not an object")
        return parse_progress(data)

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        url = f"{self.base_url(creds)}/api/v1/tasks/{upstream_id}/cancel"
        try:
            await send(self.http, "POST", url, headers=self._headers(creds), error=_error)
        except UpstreamRejected as exc:
            raise NotSupported(f"DashScope would not cancel: {exc}") from exc


def upstream_failure(code: Any, message: Any) -> UpstreamFailure:
    """What DashScope said (`code`, `message` of an error body or a FAILED task), verbatim."""
    return UpstreamFailure(VENDOR, str(code) if code else None, str(message)[:1000] if message else None)


def our_code(code: str | None) -> str | None:
    """Our code for a DashScope code: its content inspection blocks are a policy violation."""
    if code and (code.startswith("DataInspection") or code in _POLICY_CODES):
        return CONTENT_POLICY_VIOLATION
    return None


def _error(status: int, body: Any) -> Exception:
    code = str(body.get("code", "")) if isinstance(body, Mapping) else ""
    message = str(body.get("message", "")) if isinstance(body, Mapping) else str(body)[:300]
    text = f"DashScope {status} {code}: {message}".strip()
    if status == 429 or status >= 500 or code.startswith(("Throttling", "InternalError")):
        return UpstreamTransient(text, status=status)
    if status in (401, 403) or code in ("InvalidApiKey", "AccessDenied", "Arrearage"):
        # Our account's problem, not the client's: another channel may still serve the request.
        return UpstreamTransient(text, status=status)
    if status in (404, 405):
        # "url error": this channel's endpoint is wrong or gone, which says nothing about the request.
        return UpstreamTransient(text, status=status)
    failure = upstream_failure(code, message or (None if code else text))
    return UpstreamRejected(failure.text(), code=our_code(failure.code), upstream=failure)


def _list_error(status: int, body: Any) -> Exception:
    if status in (404, 405):
        return NotSupported(f"this DashScope endpoint has no task list (HTTP {status})")
    mapped = _error(status, body)
    # A refused lookup is no verdict on the task: ask again later.
    return UpstreamTransient(str(mapped), status=status) if isinstance(mapped, UpstreamRejected) else mapped


def _walk(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in _walk(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _walk(item)]
    return [value]
