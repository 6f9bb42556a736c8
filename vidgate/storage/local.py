"""`file:` storage: objects are files under one folder (the default, media_dir)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import BinaryIO

from vidgate.errors import StorageUnavailable
from vidgate.storage.base import CHUNK, ObjectInfo, Opened, Storage, check_key, file_etag


class FileStorage(Storage):
    """Objects are files under `root`; served straight from disk (FileResponse) by the content routes."""

    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"file:{self.root}"

    async def check(self) -> None:
        def writable() -> bool:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.access(self.root, os.W_OK)

        try:
            usable = await asyncio.to_thread(writable)
        except OSError as exc:
            raise StorageUnavailable(f"the storage folder cannot be made: {exc.strerror or exc}") from exc
        if not usable:
            raise StorageUnavailable("the storage folder is not writable")

    def local_path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put_file(self, key: str, source: Path, *, content_type: str | None = None) -> None:
        await _guarded(asyncio.to_thread(_move, source, self.local_path(key)))

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        await _guarded(asyncio.to_thread(_write, self.local_path(key), data))

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            found = await asyncio.to_thread(os.stat, self.local_path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectInfo(size=found.st_size, modified=found.st_mtime, etag=file_etag(found))

    async def open(self, key: str, byte_range: tuple[int, int] | None = None) -> Opened | None:
        path = self.local_path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        found = os.fstat(handle.fileno())
        info = ObjectInfo(size=found.st_size, modified=found.st_mtime, etag=file_etag(found))
        start, end = byte_range or (0, found.st_size)
        return Opened(info=info, start=start, end=end, chunks=_read(handle, start, end), release=handle.close)

    async def fetch(self, key: str, dest: Path) -> bool:
        try:
            await asyncio.to_thread(_copy, self.local_path(key), dest)
        except FileNotFoundError:
            return False
        return True

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self.local_path(key) for key in keys]
        await asyncio.to_thread(_unlink_all, paths)

    async def delete_tree(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.local_path(prefix), ignore_errors=True)


async def _read(file: BinaryIO, start: int, end: int) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(file.seek, start)
        while start < end:
            chunk = await asyncio.to_thread(file.read, min(CHUNK, end - start))
            if not chunk:
                break
            start += len(chunk)
            yield chunk
    finally:
        file.close()


async def _guarded(work: Awaitable[None]) -> None:
    try:
        await work
    except OSError as exc:
        raise StorageUnavailable(f"the media folder refused a write: {exc.strerror or exc}") from exc


def _partial(path: Path) -> Path:
    return path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")


def _move(source: Path, dest: Path) -> None:
    if source.resolve() == dest.resolve():
        return  # staged in place (storage root = media_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, dest)
    except OSError:
        # Another file system: copy beside the target, rename into place, then drop the source.
        partial = _partial(dest)
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        source.unlink()


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(dest)
    try:
        partial.write_bytes(data)
        os.replace(partial, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _copy(source: Path, dest: Path) -> None:
    if source.resolve() == dest.resolve():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
