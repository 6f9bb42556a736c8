"""Uploaded inputs over time: each key's upload allowance, and the sweep of old uploads and stray temp files.

An object uploaded through the DashScope flow (`oss://…`) is meant for a submit within minutes (its policy lives
5 minutes); vidgate keeps it UPLOAD_LIFETIME_S (48 h, as DashScope keeps its own temporary uploads), then deletes
the stored object and its row. Temp files of interrupted requests (media_dir/tmp/upload-*, *.part beside uploads)
are deleted once they are an hour old: no request lives that long.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.storage import FileStorage, Storage
from vidgate.store import uploads as upload_store

log = logging.getLogger("vidgate.uploads")

UPLOAD_LIFETIME_S = 48 * 3600
TEMP_LIFETIME_S = 3600
# The allowance counts what a key uploaded in this trailing window.
ALLOWANCE_WINDOW_S = 86400
_SWEEP_BATCH = 500


async def remaining_allowance(db: AsyncEngine, *, key_id: str, allowance: int, now: float) -> int:
    """Bytes the key may still upload now (0 or less: none)."""
    return allowance - await upload_store.used_since(db, key_id=key_id, since=now - ALLOWANCE_WINDOW_S)


async def sweep(db: AsyncEngine, media_dir: Path, *, now: float, storage: Storage | None = None) -> int:
    """Delete uploads older than UPLOAD_LIFETIME_S (from `storage`, by default the files under media_dir) and
    temp files older than TEMP_LIFETIME_S; how many went."""
    old = await upload_store.uploads_before(db, before=now - UPLOAD_LIFETIME_S, limit=_SWEEP_BATCH)
    await (storage or FileStorage(media_dir)).delete([upload.path for upload in old])
    await upload_store.forget_uploads(db, keys=[upload.key for upload in old])
    strays = await asyncio.to_thread(stray_temp_files, media_dir, now=now)
    await asyncio.to_thread(_unlink_all, strays)
    if old or strays:
        log.info("swept %d old uploads and %d stray temp files", len(old), len(strays))
    return len(old) + len(strays)


def stray_temp_files(media_dir: Path, *, now: float) -> list[Path]:
    """Temp files left by requests that never finished (a crash, a cut connection), older than TEMP_LIFETIME_S."""
    found = []
    for folder, pattern in ((media_dir / "tmp", "upload-*"), (media_dir / "uploads", "*.part")):
        for path in folder.glob(pattern):
            try:
                if now - path.stat().st_mtime > TEMP_LIFETIME_S and path.is_file():
                    found.append(path)
            except FileNotFoundError:
                continue
    return found


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
