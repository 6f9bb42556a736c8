"""The one boundary where httpx exceptions and upstream HTTP answers become provider errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from vidgate import netguard
from vidgate.errors import UpstreamTransient

# Video files are large and upstream storage is slow; reads may pause, but not forever.
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
MAX_DOWNLOAD_BYTES = 2 * 1024**3

ErrorMapper = Callable[[int, Any], Exception]


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    error: ErrorMapper,
    json: Any = None,
    content: bytes | None = None,
    data: Mapping[str, Any] | None = None,
    files: Any = None,
    params: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Any:
    """Send one request; return its JSON. Transport failures and garbage become UpstreamTransient,
    non-2xx answers go through the provider's `error(status, body)` mapper."""
    kwargs: dict[str, Any] = {"headers": dict(headers)}
    if json is not None:
        kwargs["content"] = orjson.dumps(json)
        kwargs["headers"].setdefault("Content-Type", "application/json")
    elif content is not None:
        kwargs["content"] = content
    if data is not None:
        kwargs["data"] = data
    if files is not None:
        kwargs["files"] = files
    if params is not None:
        kwargs["params"] = params
    if timeout is not None:
        kwargs["timeout"] = timeout
    try:
        response = await http.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # No connection, so nothing was sent: the upstream surely did not act on this request.
        raise UpstreamTransient(f"{method} {url}: {exc.__class__.__name__}: {exc}", nothing_created=True) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTransient(f"{method} {url}: timed out") from exc
    except httpx.HTTPError as exc:
        raise UpstreamTransient(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
    try:
        body: Any = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = response.text[:500]
    if response.status_code >= 400:
        raise error(response.status_code, body)
    if not isinstance(body, dict | list):
        raise UpstreamTransient(f"{method} {url}: answered {response.status_code} with a body that is not JSON")
    return body


async def download_to(
    http: httpx.AsyncClient, url: str, dest: Path, *, base_url: str, headers: Mapping[str, str] | None = None
) -> None:
    """Stream `url` into `dest` (via a .part file); any failure is UpstreamTransient, so it is retried.

    The URL came from the upstream, so it goes through the URL guard: public addresses only, except the
    channel's own `base_url` host; redirects are followed (at most netguard.MAX_REDIRECTS, each hop checked).
    """
    try:
        netguard.parse_url(url)
    except ValueError as exc:
        raise UpstreamTransient(f"download {url!r}: not a valid URL ({exc})") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    total = 0
    policy = netguard.Policy.of_channel(base_url)
    try:
        async with netguard.get(
            http, url, policy=policy, headers=dict(headers or {}), timeout=DOWNLOAD_TIMEOUT
        ) as response:
            if response.status_code != 200:
                raise UpstreamTransient(f"download {url}: HTTP {response.status_code}", status=response.status_code)
            with partial.open("wb") as handle:
                async for chunk in response.aiter_bytes(1024 * 1024):
                    total += len(chunk)
                    if total > MAX_DOWNLOAD_BYTES:
                        raise UpstreamTransient(f"download {url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
                    handle.write(chunk)
        if total == 0:
            raise UpstreamTransient(f"download {url}: empty body")
        os.replace(partial, dest)
    except httpx.HTTPError as exc:
        raise UpstreamTransient(f"download {url}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
