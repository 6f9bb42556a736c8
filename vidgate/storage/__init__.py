"""Where stored media lives: `file:` (a folder, the default) or `s3://bucket/prefix` (SPEC §2, §9)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidgate.storage.base import ObjectInfo, Opened, Storage
from vidgate.storage.local import FileStorage

if TYPE_CHECKING:
    from vidgate.config import Settings

__all__ = ["FileStorage", "ObjectInfo", "Opened", "Storage", "StorageTarget", "from_settings", "parse_storage_url"]

# S3's bucket naming rules (3-63 characters, lower case letters, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class StorageTarget:
    """A parsed storage_url: a folder, or a bucket and a key prefix."""

    scheme: str  # "file" | "s3"
    path: Path | None = None
    bucket: str = ""
    prefix: str = ""


def parse_storage_url(url: str) -> StorageTarget:
    """`file:PATH` or `s3://BUCKET[/PREFIX]`; ValueError naming what is wrong."""
    if url.startswith("file:"):
        path = url.removeprefix("file:").removeprefix("//")
        if not path:
            raise ValueError('storage_url "file:" needs a folder, as in "file:var/media"')
        return StorageTarget("file", path=Path(path))
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"storage_url: {bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
        prefix = prefix.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError("storage_url: the prefix after the bucket must be plain path parts")
        return StorageTarget("s3", bucket=bucket, prefix=prefix)
    raise ValueError('storage_url must be "file:PATH" or "s3://bucket/prefix"')


def from_settings(settings: Settings) -> Storage:
    """The storage the settings name (an S3 client is only built, and obstore only imported, for s3://)."""
    target = parse_storage_url(settings.storage_url or f"file:{settings.media_dir}")
    if target.scheme == "file":
        assert target.path is not None
        return FileStorage(target.path)
    from vidgate.storage.s3 import S3Location, S3Storage

    options = settings.storage
    return S3Storage(
        S3Location(
            bucket=target.bucket,
            prefix=target.prefix,
            endpoint_url=options.endpoint_url,
            region=options.region,
            access_key=options.access_key,
            secret_key=options.secret_key,
        )
    )
