"""Veo on Vertex AI (reference/providers-2026.md §2.3, §2.4, §2.5; shared parts in providers/veo.py).

Channel keys (SPEC §2): `service_account_file` (a service-account JSON key), `project`, `location`. The key
signs an RS256 JWT (iss = client_email, scope = cloud-platform, aud = the key's token_uri, iat, exp = iat+1h),
traded at the token_uri for an access token, kept per key file and refreshed REFRESH_MARGIN_S before it ends.
Submit `POST {base}/v1/projects/{P}/locations/{L}/publishers/google/models/{M}:predictLongRunning` → the full
operation name (the upstream id); poll `POST …/models/{M}:fetchPredictOperation {"operationName"}`, M taken from
the name as the SDK does. `base` is `https://{L}-aiplatform.googleapis.com` unless the channel sets base_url.

Decisions where §2.3 leaves room:
  - No `storageUri`: the video comes back inline (`bytesBase64Encoded`). The answer is read with a size cap
    (MAX_OPERATION_BYTES), decoded straight into a file under `<media_dir>/vertex/` and dropped; poll hands
    the file over as `video_path`, download moves it into place, release removes what is left.
  - Veo 3 is sent `generateAudio: true` (as the Gemini API always does): one public model, one output.
  - A 401 from the API drops the cached token, so the next call fetches a new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from vidgate.config import Settings
from vidgate.errors import ConfigError, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers import veo
from vidgate.providers.base import (
    GENERATION_FAILED,
    NEGATIVE_PROMPT,
    PROMPT_EXTEND,
    Credentials,
    Mode,
    ModelSpec,
    Param,
    Progress,
    Provider,
    Submitted,
    VideoRequest,
)
from vidgate.providers.http import send

NAME = "vertex"
VENDOR = "Vertex AI"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TTL_S = 3600  # Google's maximum
REFRESH_MARGIN_S = 300
MAX_KEY_FILE_BYTES = 64 * 1024
# An 8 s 1080p sample is tens of MB; base64 adds a third. Past this the answer is refused, not read.
MAX_OPERATION_BYTES = 256 * 1024**2
TIMEOUT_S = 60.0
CHANNEL_KEYS = frozenset({"service_account_file", "project", "location"})
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[a-z0-9.-]+:[a-z][a-z0-9-]{4,28}[a-z0-9]")
_LOCATION = re.compile(r"[a-z]+(-[a-z0-9]+)+|global")

SEED = Param("int", low=0, high=2**32 - 1, description="Random seed (uint32); not reproducible with prompt_extend.")
_PARAMS_3 = {
    "negative_prompt": NEGATIVE_PROMPT,
    "person_generation": veo.person_generation("dont_allow", "allow_adult", "allow_all"),
    "seed": SEED,
    "prompt_extend": PROMPT_EXTEND,
}


def _model(name: str, modes: frozenset[Mode], full_hd: tuple[str, ...], price: Decimal, description: str) -> ModelSpec:
    return veo.spec(
        name,
        NAME,
        modes=modes,
        seconds=(4, 6, 8),
        full_hd=full_hd,
        # Veo 3.0 is served by the Gemini API too: it takes only what both take (veo.SHARED_PARAMS).
        params=veo.SHARED_PARAMS if name.startswith("veo-3.0") else _PARAMS_3,
        price=price,
        description=description,
    )


# Prices, USD per second: Vertex AI pricing as a third party reported it (reference §2.5, [3P, U]; read
# 2026-10-04): Veo 3 / 3.1 $0.40 with audio (audio is always asked for here, so the with-audio price);
# Veo 3 Fast / 3.1 Fast $0.15 with audio (the figure before the April 2026 cut; no later Vertex figure is known);
# Veo 2 $0.50 (no audio). 4k is not offered. Filtered outputs are not charged upstream; vidgate refunds failures.
MODELS: tuple[ModelSpec, ...] = (
    _model("veo-3.1-generate-001", veo.ALL_MODES, veo.SIZES_1080, Decimal("0.40"), "Veo 3.1 (Vertex AI)"),
    _model("veo-3.1-fast-generate-001", veo.ALL_MODES, veo.SIZES_1080, Decimal("0.15"), "Veo 3.1 Fast (Vertex AI)"),
    _model("veo-3.0-generate-001", veo.T2V_I2V, ("1920x1080",), Decimal("0.40"), "Veo 3 (Vertex AI)"),
    _model("veo-3.0-fast-generate-001", veo.T2V_I2V, ("1920x1080",), Decimal("0.15"), "Veo 3 Fast (Vertex AI)"),
    veo.spec(
        "veo-2.0-generate-001",
        NAME,
        modes=veo.ALL_MODES,
        seconds=(5, 6, 7, 8),
        full_hd=(),
        audio=False,
        params=_PARAMS_3,
        price=Decimal("0.50"),
        description="Veo 2 (Vertex AI)",
    ),
)
error_from = veo.error_from(VENDOR)


# -- the service account and its tokens ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccount:
    """The parts of a service-account JSON key that sign a token request."""

    client_email: str
    private_key_id: str
    token_uri: str
    private_key: str = field(repr=False)

    @classmethod
    def parse(cls, text: str | bytes) -> ServiceAccount:
        """ValueError naming what is wrong (never echoing the key)."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("is not JSON") from None
        if not isinstance(data, dict) or data.get("type", "service_account") != "service_account":
            raise ValueError('is not a service-account key (type must be "service_account")')
        values = {}
        for key in ("client_email", "private_key", "private_key_id"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"has no {key}")
            values[key] = value
        token_uri = data.get("token_uri") or GOOGLE_TOKEN_URI
        if not isinstance(token_uri, str) or not token_uri.startswith(("https://", "http://")):
            raise ValueError("has a token_uri that is not an http(s) URL")
        if "PRIVATE KEY" not in values["private_key"]:
            raise ValueError("has a private_key that is not a PEM key")
        return cls(token_uri=token_uri, **values)

    @classmethod
    def load(cls, path: str | Path) -> ServiceAccount:
        file = Path(path)
        try:
            if file.stat().st_size > MAX_KEY_FILE_BYTES:
                raise ValueError(f"is larger than {MAX_KEY_FILE_BYTES} bytes")
            text = file.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot be read ({exc.strerror})") from None
        return cls.parse(text)


def make_assertion(account: ServiceAccount, now: float) -> str:
    """The RS256 JWT traded for an access token (google-auth's service_account.Credentials does the same)."""
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_TTL_S,
    }
    try:
        return jwt.encode(claims, account.private_key, algorithm="RS256", headers={"kid": account.private_key_id})
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise UpstreamTransient(
            f"{VENDOR}: the service account's private_key cannot sign ({type(exc).__name__})"
        ) from None


def _token_error(status: int, body: Any) -> UpstreamTransient:
    # A refused grant is about this channel's key (another channel may work): transient, never the client's fault.
    if isinstance(body, Mapping) and "error" in body:
        said = f"{body.get('error')}: {str(body.get('error_description') or '')[:300]}"
    else:
        said = str(body)[:300]
    return UpstreamTransient(f"{VENDOR} token endpoint {status}: {said}", status=status)


class AccessTokens:
    """Access tokens per service-account key file, fetched once and refreshed REFRESH_MARGIN_S before expiry."""

    def __init__(self, http: httpx.AsyncClient, clock: Callable[[], float] = time.time) -> None:
        self._http = http
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, key_file: str) -> str:
        cached = self._tokens.get(key_file)
        if cached and self._clock() < cached[1] - REFRESH_MARGIN_S:
            return cached[0]
        async with self._locks.setdefault(key_file, asyncio.Lock()):
            cached = self._tokens.get(key_file)  # another call may have refreshed it meanwhile
            if cached and self._clock() < cached[1] - REFRESH_MARGIN_S:
                return cached[0]
            token, expires = await self._fetch(key_file)
            self._tokens[key_file] = (token, expires)
            return token

    def forget(self, key_file: str) -> None:
        self._tokens.pop(key_file, None)

    async def _fetch(self, key_file: str) -> tuple[str, float]:
        try:
            account = await asyncio.to_thread(ServiceAccount.load, key_file)
        except ValueError as exc:
            raise UpstreamTransient(f"{VENDOR}: the service_account_file {exc}") from None
        now = self._clock()
        form = {"grant_type": JWT_BEARER, "assertion": make_assertion(account, now)}
        answer = await send(
            self._http, "POST", account.token_uri, headers={}, data=form, error=_token_error, timeout=30.0
        )
        token = answer.get("access_token") if isinstance(answer, Mapping) else None
        lifetime = answer.get("expires_in") if isinstance(answer, Mapping) else None
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float) or lifetime <= 0:
            raise UpstreamTransient(f"{VENDOR}: the token endpoint answered without access_token/expires_in")
        return token, now + float(lifetime)


# -- pure parts ------------------------------------------------------------------------------------------------


def build_body(req: VideoRequest, *, upstream_model: str = "", callback_url: str | None = None) -> dict[str, Any]:
    """The predictLongRunning body; Veo 3 asks for its soundtrack (see the module docstring)."""
    # req.model is the upstream id (a channel's model_map may name one MODELS does not list): Veo 2 has no audio.
    return veo.build_body(replace(req, audio=not req.model.startswith("veo-2")), vertex=True)


def model_path(project: str, location: str, model: str) -> str:
    return f"projects/{project}/locations/{location}/publishers/google/models/{model}"


def model_of(operation: str) -> str | None:
    """`projects/P/locations/L/publishers/google/models/M/operations/OP` -> its model path (up to M)."""
    head, sep, op = operation.partition("/operations/")
    parts = head.split("/")
    ok = (
        sep
        and op
        and "/" not in op
        and len(parts) == 8
        and parts[0::2] == ["projects", "locations", "publishers", "models"]
        and all(parts)
        and ".." not in operation
    )
    return head if ok else None


def parse_task(data: Any) -> Progress | bytes:
    """An Operation -> Progress, or the finished video's bytes (decoded from the first sample's base64)."""
    parsed = veo.parse_operation(data, VENDOR, nested=False)
    if isinstance(parsed, Progress):
        return parsed
    video = parsed["videos"][0]
    encoded = video.get("bytesBase64Encoded")
    if not isinstance(encoded, str) or not encoded:
        where = video.get("gcsUri")
        note = f"the video is at {where}, which vidgate does not read" if where else "no video bytes"
        return Progress.failed(GENERATION_FAILED, UpstreamFailure(VENDOR, note=note))
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamTransient(f"{VENDOR}: the video bytes are not valid base64") from exc


def from_settings(settings: Settings, http: httpx.AsyncClient) -> VertexProvider:
    """The entry point's factory; every vertex channel's keys are checked here, at startup."""
    for channel in settings.channels:
        if channel.provider != NAME:
            continue
        extra = channel.extra
        missing = sorted(key for key in CHANNEL_KEYS if not extra.get(key))
        if missing:
            raise ConfigError(f"channel {channel.name}: vertex needs {', '.join(missing)}")
        # Both go into the URL (the location into the host name): Google's own spellings only.
        for key, pattern in (("project", _PROJECT), ("location", _LOCATION)):
            if not pattern.fullmatch(extra[key]):
                raise ConfigError(f"channel {channel.name}: {key} {extra[key]!r} is not a Google Cloud {key} id")
        try:
            ServiceAccount.load(extra["service_account_file"])
        except ValueError as exc:
            raise ConfigError(
                f"channel {channel.name}: service_account_file {extra['service_account_file']} {exc}"
            ) from None
    return VertexProvider(http, settings.media_dir / NAME)


class VertexProvider(Provider):
    """Veo models on one Google Cloud project, through a service account."""

    name = NAME
    needs_bytes = True
    channel_keys = CHANNEL_KEYS

    def __init__(self, http: httpx.AsyncClient, inline_dir: Path, clock: Callable[[], float] = time.time) -> None:
        super().__init__(http)
        self.tokens = AccessTokens(http, clock)
        self._inline_dir = inline_dir

    def models(self) -> Sequence[ModelSpec]:
        return MODELS

    def check(self, req: VideoRequest) -> None:
        veo.check(req, eight_only_1080=False)

    def base_url(self, creds: Credentials) -> str:
        if creds.base_url:
            return creds.base_url.rstrip("/").removesuffix("/v1")
        location = creds.extra.get("location", "us-central1")
        return (
            "https://aiplatform.googleapis.com"
            if location == "global"
            else f"https://{location}-aiplatform.googleapis.com"
        )

    async def _headers(self, creds: Credentials) -> dict[str, str]:
        key_file = creds.extra.get("service_account_file", "")
        if not key_file:
            raise UpstreamTransient(f"{VENDOR}: channel {creds.channel} has no service_account_file")
        return {"Authorization": f"Bearer {await self.tokens.get(key_file)}"}

    def _on_auth_failure(self, creds: Credentials, exc: UpstreamTransient) -> None:
        if exc.status == 401:
            self.tokens.forget(creds.extra.get("service_account_file", ""))

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        body = await asyncio.to_thread(build_body, req)
        project, location = creds.extra.get("project", ""), creds.extra.get("location", "")
        path = model_path(project, location, req.model)
        url = f"{self.base_url(creds)}/v1/{path}:predictLongRunning"
        headers = await self._headers(creds)
        try:
            answer = await send(self.http, "POST", url, headers=headers, json=body, error=error_from, timeout=TIMEOUT_S)
        except UpstreamRejected as exc:
            exc.param = req.field_of(exc.param) if exc.param else None
            raise
        except UpstreamTransient as exc:
            self._on_auth_failure(creds, exc)
            raise
        name = answer.get("name") if isinstance(answer, Mapping) else None
        if not isinstance(name, str) or model_of(name) != path:
            raise UpstreamTransient(f"{VENDOR}: predictLongRunning answered without an operation name of {path}")
        return Submitted(upstream_id=name)

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        path = model_of(upstream_id)
        if path is None:
            message = f"{upstream_id!r} is not a Vertex operation name of vidgate's making."
            return Progress(state="failed", error_code="bad_upstream_id", error_message=message)
        url = f"{self.base_url(creds)}/v1/{path}:fetchPredictOperation"
        headers = {**await self._headers(creds), "Content-Type": "application/json"}
        try:
            answer = await self._fetch(url, headers, {"operationName": upstream_id})
        except UpstreamRejected as exc:
            raise UpstreamTransient(f"{VENDOR}: reading the operation was refused: {exc}") from exc
        except UpstreamTransient as exc:
            self._on_auth_failure(creds, exc)
            raise
        result = parse_task(answer)
        del answer  # the base64 text goes as soon as it is decoded
        if isinstance(result, Progress):
            return result
        dest = self._inline_path(upstream_id)
        await asyncio.to_thread(_write, dest, result)
        return Progress(state="completed", progress=100, video_path=dest)

    async def _fetch(self, url: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> Any:
        """POST and read the answer with a size cap (it may carry the video inline)."""
        chunks: list[bytes] = []
        total = 0
        try:
            async with self.http.stream(
                "POST", url, headers=dict(headers), content=orjson.dumps(body), timeout=TIMEOUT_S
            ) as response:
                async for chunk in response.aiter_bytes(1024 * 1024):
                    total += len(chunk)
                    if total > MAX_OPERATION_BYTES:
                        raise UpstreamTransient(
                            f"{VENDOR}: the operation answer is larger than {MAX_OPERATION_BYTES} bytes"
                        )
                    chunks.append(chunk)
                status = response.status_code
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UpstreamTransient(f"POST {url}: {exc.__class__.__name__}", nothing_created=True) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTransient(f"POST {url}: timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamTransient(f"POST {url}: {exc.__class__.__name__}: {exc}") from exc
        raw = b"".join(chunks)
        chunks.clear()
        try:
            data: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = raw[:500].decode(errors="replace")
        if status >= 400:
            raise error_from(status, data)
        if not isinstance(data, dict):
            raise UpstreamTransient(f"POST {url}: answered {status} with a body that is not a JSON object")
        return data

    def _inline_path(self, upstream_id: str) -> Path:
        return self._inline_dir / f"{hashlib.sha256(upstream_id.encode()).hexdigest()[:32]}.mp4"

    async def download(self, result: Progress, creds: Credentials, dest: Path) -> None:
        """Move the file poll wrote into place (copy when it lies on another file system)."""
        if result.video_path is None or not result.video_path.exists():
            raise UpstreamTransient(f"{VENDOR}: the video poll decoded is gone; it is read again")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(os.replace, result.video_path, dest)
        except OSError:
            await asyncio.to_thread(shutil.copyfile, result.video_path, dest)

    async def release(self, upstream_id: str, creds: Credentials) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._inline_path(upstream_id).unlink()


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, dest)
