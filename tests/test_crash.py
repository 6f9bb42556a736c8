"""kill -9 while 20 local tasks are in flight; after a restart every one completes, none twice."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, assert_mp4, free_port, write_config


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_and_restart_finishes_every_task(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    database_url = request.getfixturevalue("pg_database") if backend == "postgres" else None
    port = free_port()
    server = Server(
        config=write_config(tmp_path, port=port, database_url=database_url), port=port, log=tmp_path / "server.log"
    )
    server.start()
    key = server.key("crash")
    headers = {"Authorization": f"Bearer {key}"}
    ids = []
    try:
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=30) as client:
            for n in range(20):
                response = client.post("/videos", data={"prompt": f"crash test {n}", "seconds": "8", "size": "640x360"})
                assert response.status_code == 200, response.text
                ids.append(response.json()["id"])
            states = [client.get(f"/videos/{video_id}").json()["status"] for video_id in ids]
        assert sum(state != "completed" for state in states) >= 10, "the kill must land while most tasks are unfinished"
        server.kill()

        server.start()
        deadline = time.monotonic() + 180
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=30) as client:
            while time.monotonic() < deadline:
                videos = {video_id: client.get(f"/videos/{video_id}").json() for video_id in ids}
                if all(video["status"] == "completed" for video in videos.values()):
                    break
                assert not [v for v in videos.values() if v["status"] == "failed"], videos
                time.sleep(0.5)
            else:
                raise AssertionError(f"not all finished: {[v['status'] for v in videos.values()]}")
            listed = client.get("/videos", params={"limit": 100}).json()["data"]
            assert sorted(video["id"] for video in listed) == sorted(ids)
            for video_id in ids[:3] + ids[-3:]:
                assert_mp4(client.get(f"/videos/{video_id}/content").content, width=640, height=360, seconds=8)
    finally:
        server.stop()
