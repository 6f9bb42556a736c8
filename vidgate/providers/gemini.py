"""Veo on the Gemini API (reference/providers-2026.md §2.2, §2.4, §2.5; shared parts in providers/veo.py).

Submit `POST {base}/v1beta/models/{m}:predictLongRunning` → `{"name": "models/{m}/operations/{id}"}` (the name
is the upstream id); poll `GET {base}/v1beta/{name}`; the video is `generatedSamples[0].video.uri`, fetched
with the key (`x-goog-api-key`) at once, since Google keeps it 2 days. Auth is the channel's `api_key`.

Decisions where §2.2 leaves room:
  - `seed` is not sent: the SDK refuses it on this API while the doc says Veo 3 takes it (sources disagree).
  - `person_generation`: `allow_all` (text-to-video) or `allow_adult` (with an image) per the doc's table; the
    upstream judges the combination (regional rules differ: EU/UK/CH/MENA take `allow_adult` only).
  - The key travels only to the channel's own host: a video uri on another host is fetched without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from vidgate import netguard
from vidgate.config import Settings
from vidgate.errors import UpstreamRejected, UpstreamTransient
from vidgate.providers import veo
from vidgate.providers.base import (
    Credentials,
    Mode,
    ModelSpec,
    Price,
    Progress,
    Provider,
    Submitted,
    VideoRequest,
)
from vidgate.providers.http import download_to, send

NAME = "gemini"
VENDOR = "Gemini API"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# Every Gemini model takes what both surfaces take (seed is not sent here: see the docstring).
_PARAMS = veo.SHARED_PARAMS


def _tiers(p720: str, p1080: str) -> dict[str, Decimal]:
    return {"720P": Decimal(p720), "1080P": Decimal(p1080)}


def _model(name: str, modes: frozenset[Mode], full_hd: tuple[str, ...], price: Price, description: str) -> ModelSpec:
    return veo.spec(
        name,
        NAME,
        modes=modes,
        seconds=(4, 6, 8),
        full_hd=full_hd,
        params=_PARAMS,
        price=price,
        description=description,
    )


# Prices, USD per second with audio (always on here): ai.google.dev/gemini-api/docs/pricing as read on
# 2026-10-04 (page updated 2026-04-09, via a third party; reference §2.5). 4k ($0.60 on 3.1) is not offered.
# The page lists no Veo 3.0 line; 3.0 takes Veo 3's $0.40 (as 3.1) and 3.0 Fast the Fast price before the
# 2026-04-07 cut, $0.15 (the cut was announced for 3.1 Fast) - both inferences, marked [U] in §2.5.
MODELS: tuple[ModelSpec, ...] = (
    _model("veo-3.1-generate-preview", veo.ALL_MODES, veo.SIZES_1080, _tiers("0.40", "0.40"), "Veo 3.1 (Gemini API)"),
    _model(
        "veo-3.1-fast-generate-preview",
        veo.ALL_MODES,
        veo.SIZES_1080,
        _tiers("0.10", "0.12"),
        "Veo 3.1 Fast (Gemini API)",
    ),
    _model(
        "veo-3.1-lite-generate-preview",
        veo.ALL_MODES,
        veo.SIZES_1080,
        _tiers("0.05", "0.08"),
        "Veo 3.1 Lite (Gemini API)",
    ),
    _model("veo-3.0-generate-001", veo.T2V_I2V, ("1920x1080",), Decimal("0.40"), "Veo 3 (Gemini API)"),
    _model("veo-3.0-fast-generate-001", veo.T2V_I2V, ("1920x1080",), Decimal("0.15"), "Veo 3 Fast (Gemini API)"),
)
# 3.1, 3.1 Fast and 3.1 Lite make 1080p at 8 s only on this API.
_EIGHT_ONLY_1080 = frozenset(
    {"veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "veo-3.1-lite-generate-preview"}
)
error_from = veo.error_from(VENDOR)


def build_body(req: VideoRequest, *, upstream_model: str = "", callback_url: str | None = None) -> dict[str, Any]:
    """The predictLongRunning body (the model goes in the path, not the body)."""
    return veo.build_body(req, vertex=False)


def parse_task(data: Any) -> Progress:
    """An Operation -> Progress; a finished one carries the first sample's uri as video_url."""
    parsed = veo.parse_operation(data, VENDOR, nested=True)
    if isinstance(parsed, Progress):
        return parsed
    video = parsed["generatedSamples"][0].get("video")
    uri = video.get("uri") if isinstance(video, Mapping) else None
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
        raise UpstreamTransient(f"{VENDOR}: a finished operation without a video uri")
    return Progress(state="completed", progress=100, video_url=uri)


def operation_name(answer: Any, model: str) -> str:
    name = answer.get("name") if isinstance(answer, Mapping) else None
    if not isinstance(name, str) or not name.startswith(f"models/{model}/operations/") or ".." in name:
        raise UpstreamTransient(f"{VENDOR}: predictLongRunning answered without an operation name")
    return name


def from_settings(settings: Settings, http: httpx.AsyncClient) -> GeminiProvider:
    """The entry point's factory."""
    return GeminiProvider(http)


class GeminiProvider(Provider):
    """Veo models on one Gemini API key."""

    name = NAME
    needs_bytes = True
    default_base_url = DEFAULT_BASE_URL

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def check(self, req: VideoRequest) -> None:
        veo.check(req, eight_only_1080=req.model in _EIGHT_ONLY_1080)

    def _root(self, creds: Credentials) -> str:
        return self.base_url(creds).removesuffix("/v1beta")

    def _headers(self, creds: Credentials) -> dict[str, str]:
        return {"x-goog-api-key": creds.api_key}

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        body = await asyncio.to_thread(build_body, req)
        url = f"{self._root(creds)}/v1beta/models/{req.model}:predictLongRunning"
        try:
            answer = await send(self.http, "POST", url, headers=self._headers(creds), json=body, error=error_from)
        except UpstreamRejected as exc:
            exc.param = req.field_of(exc.param) if exc.param else None
            raise
        return Submitted(upstream_id=operation_name(answer, req.model))

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        if not upstream_id.startswith("models/") or "/operations/" not in upstream_id or ".." in upstream_id:
            message = f"{upstream_id!r} is not a Gemini operation name of vidgate's making."
            return Progress(state="failed", error_code="bad_upstream_id", error_message=message)
        url = f"{self._root(creds)}/v1beta/{upstream_id}"
        try:
            answer = await send(self.http, "GET", url, headers=self._headers(creds), error=error_from)
        except UpstreamRejected as exc:
            # A refusal to read an operation Google itself named is no verdict on the task; the deadline is.
            raise UpstreamTransient(f"{VENDOR}: reading the operation was refused: {exc}") from exc
        return parse_task(answer)

    async def download(self, result: Progress, creds: Credentials, dest: Path) -> None:
        """The video uri needs the key; it is sent only to the channel's own host."""
        if not result.video_url:
            raise UpstreamTransient(f"{VENDOR}: the finished task has no video uri")
        base = self.base_url(creds)
        try:
            same_host = netguard.host_of(result.video_url) == netguard.host_of(base)
        except ValueError as exc:
            raise UpstreamTransient(f"{VENDOR}: the video uri is not a URL") from exc
        headers = self._headers(creds) if same_host else {}
        await download_to(self.http, result.video_url, dest, base_url=base, headers=headers)
