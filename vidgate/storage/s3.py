"""`s3://bucket/prefix` storage on any S3-compatible service, through obstore.

obstore (the Rust `object_store` crate behind a thin Python layer) rather than aioboto3: it is async without a
thread pool, streams ranged reads in bounded chunks, signs URLs offline, and costs a few MiB of memory when
imported where boto3/aiobotocore cost tens (bench/content.py measures both); idle memory is a target (SPEC §7).
It is imported only when an s3:// storage is configured.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import obstore
from obstore.exceptions import BaseError, NotFoundError

from vidgate.errors import StorageUnavailable
from vidgate.storage.base import CHUNK, ObjectInfo, Opened, Storage, check_key

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import S3Store

# Large files go up in parts of this size, two at a time: an upload holds at most ~16 MiB in memory.
PART_SIZE = 8 * 1024 * 1024
PART_CONCURRENCY = 2
# /readyz looks this key up: any answer but an error means the bucket is reachable with these credentials.
_PROBE_KEY = "vidgate-readyz-probe"
# Presigned URLs kept for reuse (each a few hundred bytes).
_SIGNED_CACHE = 4096
_STATUS = re.compile(r"status code: (\d{3}[A-Za-z ]*)")


@dataclass(frozen=True)
class S3Location:
    """Where and how to reach the bucket; the keys are never in a repr."""

    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)


class S3Storage(Storage):
    """Objects in one bucket under one prefix."""

    scheme = "s3"

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self._store = _store(location)
        self._signed: dict[tuple[str, int], tuple[str, float]] = {}

    def describe(self) -> str:
        prefix = f"/{self.location.prefix}" if self.location.prefix else ""
        return f"s3://{self.location.bucket}{prefix}" + (
            f" at {self.location.endpoint_url}" if self.location.endpoint_url else ""
        )

    async def check(self) -> None:
        await self.stat(_PROBE_KEY)  # answered (found or not) means reachable and allowed

    async def put_file(self, key: str, source: Path, *, content_type: str | None = None) -> None:
        try:
            await obstore.put_async(
                self._store,
                check_key(key),
                source,
                attributes=_attributes(content_type),
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
        except (BaseError, OSError) as exc:
            _fail("store", key, exc)
        await asyncio.to_thread(source.unlink, missing_ok=True)

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        try:
            await obstore.put_async(self._store, check_key(key), data, attributes=_attributes(content_type))
        except (BaseError, OSError) as exc:
            _fail("store", key, exc)

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            meta = await obstore.head_async(self._store, check_key(key))
        except (FileNotFoundError, NotFoundError):
            return None
        except (BaseError, OSError) as exc:
            _fail("look up", key, exc)
        return _info(meta)

    async def open(self, key: str, byte_range: tuple[int, int] | None = None) -> Opened | None:
        options = {"range": byte_range} if byte_range is not None else None
        try:
            result = await obstore.get_async(self._store, check_key(key), options=options)  # type: ignore[arg-type]
        except (FileNotFoundError, NotFoundError):
            return None
        except (BaseError, OSError) as exc:
            _fail("read", key, exc)
        start, end = result.range
        return Opened(info=_info(result.meta), start=start, end=end, chunks=_chunks(result.stream(CHUNK), key))

    async def fetch(self, key: str, dest: Path) -> bool:
        opened = await self.open(key)
        if opened is None:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with dest.open("wb") as handle:
                async for chunk in opened.chunks:
                    await asyncio.to_thread(handle.write, chunk)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        finally:
            await opened.aclose()
        return True

    async def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            await obstore.delete_async(self._store, [check_key(key) for key in keys])
        except (FileNotFoundError, NotFoundError):
            return
        except (BaseError, OSError) as exc:
            _fail("delete", keys[0], exc)

    async def delete_tree(self, prefix: str) -> None:
        found: list[str] = []
        try:
            async for batch in obstore.list(self._store, prefix=check_key(prefix) + "/", chunk_size=1000):
                found += [meta["path"] for meta in batch]
        except (BaseError, OSError) as exc:
            _fail("list", prefix, exc)
        await self.delete(found)

    async def presign(self, key: str, *, ttl_s: int) -> str:
        # A URL made for the same object less than half its lifetime ago is handed out again: it still has at
        # least ttl_s / 2 to live, and a redirect then costs a dictionary lookup.
        now = time.monotonic()
        cached = self._signed.get((key, ttl_s))
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            if self.location.access_key:
                # With keys in the config, signing is a few HMACs on this thread: no I/O, no hop to a runtime.
                url = obstore.sign(self._store, "GET", check_key(key), timedelta(seconds=ttl_s))
            else:
                url = await obstore.sign_async(self._store, "GET", check_key(key), timedelta(seconds=ttl_s))
        except (BaseError, OSError) as exc:
            _fail("sign", key, exc)
        if len(self._signed) >= _SIGNED_CACHE:
            self._signed.clear()
        self._signed[(key, ttl_s)] = (url, now + ttl_s / 2)
        return url


def _store(location: S3Location) -> S3Store:
    from obstore.store import S3Store

    config: dict[str, object] = {}
    if location.endpoint_url:
        # Any S3-compatible service: path-style addressing (bucket in the path) is what they all speak.
        config.update(endpoint=location.endpoint_url, virtual_hosted_style_request=False)
    else:
        config.update(virtual_hosted_style_request=True)
    if location.region:
        config["region"] = location.region
    if location.access_key:
        config.update(access_key_id=location.access_key, secret_access_key=location.secret_key)
    return S3Store(
        location.bucket,
        prefix=location.prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options={
            "allow_http": location.endpoint_url.startswith("http://"),
            "connect_timeout": timedelta(seconds=5),
            "timeout": timedelta(seconds=120),
        },
        # A request is retried briefly; a storage that stays down is the caller's error to report, not a hang.
        retry_config={"max_retries": 2, "retry_timeout": timedelta(seconds=15)},
    )


def _attributes(content_type: str | None) -> dict[str, str] | None:
    return {"Content-Type": content_type} if content_type else None


def _info(meta: ObjectMeta) -> ObjectInfo:
    etag = meta.get("e_tag") or f'"{int(meta["last_modified"].timestamp() * 1e6):x}-{meta["size"]:x}"'
    if not etag.startswith(('"', "W/")):
        etag = f'"{etag}"'
    return ObjectInfo(size=meta["size"], modified=meta["last_modified"].timestamp(), etag=etag)


async def _chunks(stream: AsyncIterator[object], key: str) -> AsyncIterator[bytes | memoryview]:
    try:
        async for chunk in stream:
            yield memoryview(chunk)  # type: ignore[arg-type]  # obstore Bytes: a buffer, no copy
    except (BaseError, OSError) as exc:
        _fail("read", key, exc)


def _fail(action: str, key: str, exc: Exception) -> NoReturn:
    # obstore's text names the URL and may quote the service's answer; keep the status line only.
    status = _STATUS.search(str(exc))
    said = f": {status.group(1).strip()}" if status else ""
    raise StorageUnavailable(f"S3 storage: could not {action} {key} ({type(exc).__name__}{said})") from exc
