"""The storage contract: where finished videos, their previews and uploaded inputs live.

Objects are named by keys relative to the storage's root, as the task rows record them
("tasks/<id>/video.mp4", "uploads/<sha256>.png"). Processing (probing, making previews, rendering) always works
on local files; a backend only stores, serves and deletes whole objects.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import ClassVar

from vidgate.errors import StorageUnavailable

# Streams hand out chunks of about this size: memory stays flat however large the object is.
CHUNK = 256 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What a stored object is, without its bytes."""

    size: int
    modified: float  # UNIX seconds
    etag: str  # quoted, as an HTTP ETag

    @property
    def last_modified(self) -> str:
        return formatdate(self.modified, usegmt=True)


@dataclass
class Opened:
    """An object being read: its facts, the byte range being sent [start, end), and the chunks of that range."""

    info: ObjectInfo
    start: int
    end: int
    chunks: AsyncIterator[bytes | memoryview]
    # Frees what the read holds (an open file) even when the chunks were never iterated.
    release: Callable[[], None] | None = None

    async def aclose(self) -> None:
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            await close()
        if self.release is not None:
            self.release()


class Storage(ABC):
    """A place for whole objects; every method is safe to call from the event loop."""

    scheme: ClassVar[str]

    def local_path(self, key: str) -> Path | None:
        """The object's file when the storage is a local folder (served by FileResponse); None otherwise."""
        return None

    @abstractmethod
    async def put_file(self, key: str, source: Path, *, content_type: str | None = None) -> None:
        """Store the file at `source` as `key` (streamed, never whole in memory); `source` is gone afterwards."""

    @abstractmethod
    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store small bytes as `key`."""

    @abstractmethod
    async def stat(self, key: str) -> ObjectInfo | None:
        """The object's facts, or None when there is no such object."""

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    @abstractmethod
    async def open(self, key: str, byte_range: tuple[int, int] | None = None) -> Opened | None:
        """Read the object (or bytes [start, end) of it) as a stream of chunks; None when there is no such object.

        The range must lie within the object (the caller checked it against `stat`)."""

    async def read_bytes(self, key: str, *, limit: int) -> bytes | None:
        """The whole object when it holds at most `limit` bytes (None when missing); a larger one is an error."""
        opened = await self.open(key)
        if opened is None:
            return None
        try:
            if opened.info.size > limit:
                raise StorageUnavailable(f"{key} holds {opened.info.size} bytes, more than {limit}")
            return b"".join([bytes(chunk) async for chunk in opened.chunks])
        finally:
            await opened.aclose()

    @abstractmethod
    async def fetch(self, key: str, dest: Path) -> bool:
        """Copy the object to the local file `dest` for processing, chunk by chunk; False when it is missing."""

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Delete these objects; missing ones are no error."""

    @abstractmethod
    async def delete_tree(self, prefix: str) -> None:
        """Delete every object whose key starts with `prefix` + "/"."""

    async def presign(self, key: str, *, ttl_s: int) -> str | None:
        """A URL that fetches the object without credentials for `ttl_s` seconds; None where there is none."""
        return None

    @abstractmethod
    async def check(self) -> None:
        """Raise StorageUnavailable unless objects can be stored and read now (for /readyz)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once when the app stops."""

    @abstractmethod
    def describe(self) -> str:
        """Where objects go, for log lines (never a credential)."""


def check_key(key: str) -> str:
    """A key is a relative path of plain parts: no absolute path, no `..`, nothing empty."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


def file_etag(stat_result: os.stat_result) -> str:
    return f'"{stat_result.st_mtime_ns:x}-{stat_result.st_size:x}"'
