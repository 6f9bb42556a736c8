"""Retention: a video past its expires_at loses its stored files, and its content answers 404."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from tests.helpers import running_gateway


def test_expired_videos_are_deleted(tmp_path: Path) -> None:
    with running_gateway(tmp_path, settings="sweep_interval_s = 0.5\n") as server:
        headers = {"Authorization": f"Bearer {server.key()}"}
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=30) as client:
            old, fresh = (
                client.post("/videos", json={"prompt": p, "seconds": 1, "size": "64x64"}).json()["id"] for p in "ab"
            )
            deadline = time.monotonic() + 30
            while any(client.get(f"/videos/{v}").json()["status"] != "completed" for v in (old, fresh)):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            video = client.get(f"/videos/{old}").json()
            assert video["expires_at"] - video["completed_at"] == 7 * 86400  # retention_days defaults to 7
            folder = tmp_path / "media" / "tasks" / old
            assert (folder / "video.mp4").is_file()
            db = sqlite3.connect(tmp_path / "vidgate.db")
            with db:
                db.execute("update tasks set expires_at = ? where id = ?", (time.time() - 1, old))
            db.close()
            while folder.exists():
                assert time.monotonic() < deadline + 30
                time.sleep(0.2)
            gone = client.get(f"/videos/{old}/content")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "video_expired"
            assert client.get(f"/videos/{old}").json()["status"] == "completed"  # the record stays
            assert client.get(f"/videos/{fresh}/content").status_code == 200
