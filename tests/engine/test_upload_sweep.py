"""Uploads: one object per policy, the per-key allowance, and the sweep of old uploads and stray temp files
(times are injected: no test waits on the wall clock)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import SHARED_DB_SECRET
from vidgate.engine import uploads
from vidgate.store import uploads as upload_store
from vidgate.store.db import create_engine, migrate

HOUR = 3600.0


@pytest.fixture
def key_id() -> str:
    # The PostgreSQL database is shared by the session: each test uploads as its own key, under its own names.
    return "key_" + secrets.token_hex(8)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate, database_url, secret=SHARED_DB_SECRET)
    engine = create_engine(database_url, secret=SHARED_DB_SECRET)
    yield engine
    await engine.dispose()


async def store(
    db: AsyncEngine, media: Path, key_id: str, name: str, *, at: float, size: int = 10, **extra: object
) -> Path:
    path = media / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    outcome = await upload_store.insert_upload(
        db, key=f"{key_id}/{name}", key_id=key_id, path=f"uploads/{name}", size=size, content_type="image/png",
        now=at, **extra,  # type: ignore[arg-type]
    )  # fmt: skip
    assert outcome == "stored"
    return path


def aged(path: Path, *, now: float, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    os.utime(path, (now - age_s, now - age_s))
    return path


async def test_sweep_removes_old_uploads_and_stray_temp_files(db: AsyncEngine, tmp_path: Path, key_id: str) -> None:
    media = tmp_path / "media"
    now = time.time()
    old = await store(db, media, key_id, "old.png", at=now - 49 * HOUR)
    fresh = await store(db, media, key_id, "fresh.png", at=now - 47 * HOUR)
    stray_upload = aged(media / "tmp" / "upload-0123abcd.png", now=now, age_s=2 * HOUR)
    stray_part = aged(media / "uploads" / "abc.png.1234.part", now=now, age_s=2 * HOUR)
    live_upload = aged(media / "tmp" / "upload-live.png", now=now, age_s=10)
    live_part = aged(media / "uploads" / "def.png.5678.part", now=now, age_s=10)

    swept = await uploads.sweep(db, media, now=now)

    assert swept == 3
    assert not old.exists() and not stray_upload.exists() and not stray_part.exists()
    assert fresh.exists() and live_upload.exists() and live_part.exists()
    assert await upload_store.find_upload(db, key=f"{key_id}/old.png", key_id=key_id) is None
    assert await upload_store.find_upload(db, key=f"{key_id}/fresh.png", key_id=key_id) is not None
    assert await uploads.sweep(db, media, now=now) == 0


async def test_sweep_survives_a_file_already_gone(db: AsyncEngine, tmp_path: Path, key_id: str) -> None:
    media = tmp_path / "media"
    now = time.time()
    (await store(db, media, key_id, "gone.png", at=now - 100 * HOUR)).unlink()
    assert await uploads.sweep(db, media, now=now) == 1
    assert await upload_store.find_upload(db, key=f"{key_id}/gone.png", key_id=key_id) is None


async def test_one_object_per_policy(db: AsyncEngine, tmp_path: Path, key_id: str) -> None:
    media = tmp_path / "media"
    await store(db, media, key_id, "a.png", at=time.time(), policy_id=key_id[-16:])
    assert await upload_store.policy_used(db, policy_id=key_id[-16:])
    assert not await upload_store.policy_used(db, policy_id=key_id[-16:][::-1])
    again = await upload_store.insert_upload(
        db, key=f"{key_id}/b.png", key_id=key_id, path="uploads/b.png", size=1, content_type=None,
        policy_id=key_id[-16:],
    )  # fmt: skip
    assert again == "taken"


async def test_allowance_counts_the_trailing_window(db: AsyncEngine, tmp_path: Path, key_id: str) -> None:
    media = tmp_path / "media"
    now = time.time()
    await store(db, media, key_id, "yesterday.png", at=now - 25 * HOUR, size=600)
    await store(db, media, key_id, "today.png", at=now - HOUR, size=600)
    assert await uploads.remaining_allowance(db, key_id=key_id, allowance=1000, now=now) == 400
    assert await uploads.remaining_allowance(db, key_id=key_id + "-other", allowance=1000, now=now) == 1000
    since = now - uploads.ALLOWANCE_WINDOW_S
    over = await upload_store.insert_upload(
        db, key=f"{key_id}/c.png", key_id=key_id, path="uploads/c.png", size=401, content_type=None,
        allowance=1000, since=since, now=now,
    )  # fmt: skip
    assert over == "over_allowance"
    assert await upload_store.find_upload(db, key=f"{key_id}/c.png", key_id=key_id) is None
    fits = await upload_store.insert_upload(
        db, key=f"{key_id}/c.png", key_id=key_id, path="uploads/c.png", size=400, content_type=None,
        allowance=1000, since=since, now=now,
    )  # fmt: skip
    assert fits == "stored"
