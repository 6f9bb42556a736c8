"""Replicas (SPEC §9): three `vidgate serve` on one PostgreSQL database, one media folder and one Redis, with local
renders and an emulated upstream mixed; one replica is killed with -9 in the middle. Every task completes once,
is charged once, is one upstream task, and its video is served by every replica left."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.dashscope import FakeDashScope
from tests.helpers import Server, free_port, write_config
from tests.test_shared_state import REDIS_URL, redis_reachable

WAN = "wan2.5-t2v-preview"
LOCAL_TASKS = 12
UPSTREAM_TASKS = 36
PRICES = '[prices]\n"vidgate-local" = 0.01\n"wan2.5-t2v-preview" = 0.05\n'

pytestmark = [
    pytest.mark.serial,  # three servers, renders and an upstream: alone, not beside the parallel suite
    pytest.mark.skipif(not redis_reachable(), reason="Redis is not reachable at 127.0.0.1:6379"),
]


@pytest.fixture
def fake() -> Iterator[FakeDashScope]:
    upstream = FakeDashScope(polls_per_step=8)  # a few seconds per task
    with upstream.running():
        yield upstream


def ledger(database_url: str) -> list[tuple[str, str]]:
    import asyncpg

    async def read() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [(row["task_id"], row["kind"]) for row in await conn.fetch("SELECT task_id, kind FROM ledger")]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_three_replicas_one_killed_every_task_once(tmp_path: Path, fake: FakeDashScope, pg_database: str) -> None:
    channel = (
        f'[[channels]]\nname = "wan"\nprovider = "dashscope"\nbase_url = "{fake.base_url}"\napi_key = "sk-ds-test"\n'
    )
    settings = f'poll_interval_s = 0.2\nlocal_workers = 1\nredis_url = "{REDIS_URL}"\n{PRICES}{channel}'
    config = write_config(tmp_path, port=free_port(), database_url=pg_database, extra=settings)
    replicas = [Server(config=config, port=free_port(), log=tmp_path / f"replica{i}.log") for i in range(3)]
    for replica in replicas:
        replica.start()
    try:
        key = replicas[0].key("replicas")
        headers = {"Authorization": f"Bearer {key}"}

        def create(index: int) -> str:
            replica = replicas[index % 3]
            if index < LOCAL_TASKS:
                body = {"prompt": f"local {index}", "seconds": 8, "size": "320x192"}
            else:
                body = {"prompt": f"upstream {index}", "model": WAN, "seconds": 5, "size": "1280x720"}
            response = httpx.post(f"{replica.url}/v1/videos", json=body, headers=headers, timeout=60)
            assert response.status_code == 200, response.text
            video_id: str = response.json()["id"]
            return video_id

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            ids = list(pool.map(create, range(LOCAL_TASKS + UPSTREAM_TASKS)))
        # The middle of the run: renders are running and upstream tasks are being polled. Kill one replica
        # (its render workers with it).
        replicas[0].kill()
        alive = replicas[1:]
        unfinished = [
            video_id
            for video_id in ids
            if httpx.get(f"{alive[0].url}/v1/videos/{video_id}", headers=headers).json()["status"] != "completed"
        ]
        print(f"{len(unfinished)} of {len(ids)} tasks unfinished when a replica was killed")
        assert len(unfinished) >= len(ids) // 2, "most tasks finished before the kill: it tested little"

        deadline = time.monotonic() + 240
        pending = set(ids)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} tasks unfinished"
            for video_id in list(pending):
                video = httpx.get(f"{alive[0].url}/v1/videos/{video_id}", headers=headers, timeout=30).json()
                assert video["status"] != "failed", video
                if video["status"] == "completed":
                    pending.discard(video_id)
            time.sleep(0.3)

        # One upstream task per upstream request, whichever replica submitted or polled it.
        assert len(fake.tasks) == UPSTREAM_TASKS
        # Charged once: one reservation and one settlement per task, no refund.
        entries = ledger(pg_database)
        for video_id in ids:
            kinds = sorted(kind for task_id, kind in entries if task_id == video_id)
            assert kinds == ["reserve", "settle"], (video_id, kinds)
        # Every video is served by every replica left.
        for video_id in ids[:: max(1, len(ids) // 8)] + ids[:2]:
            bodies = {
                httpx.get(f"{replica.url}/v1/videos/{video_id}/content", headers=headers, timeout=30).content
                for replica in alive
            }
            assert len(bodies) == 1 and next(iter(bodies))[4:8] == b"ftyp"
    finally:
        for replica in replicas:
            replica.stop()
