"""One client request is at most one upstream task, end to end: a slow upstream submit, kill -9 with creates
in flight, and Idempotency-Key through the real `openai` SDK, against running vidgates and the emulators."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.fakes.dashscope import FakeDashScope
from tests.fakes.sora import FakeSora
from tests.helpers import Server, free_port, png_bytes, running_gateway, write_config

PRICES = """
[prices]
"sora-2" = 0.1
"wan2.5-t2v-preview" = { "480P" = 0.05, "720P" = 0.1, "1080P" = 0.15 }
"""


def sora_channel(fake: FakeSora) -> str:
    return f"""
[[channels]]
name = "sora-main"
provider = "openai"
base_url = "{fake.base_url}"
api_key = "sk-openai-test"
"""


def wan_channel(fake: FakeDashScope) -> str:
    return f"""
[[channels]]
name = "wan-main"
provider = "dashscope"
base_url = "{fake.base_url}"
api_key = "sk-ds-test"
"""


def rows(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(server.config.parent / "vidgate.db")
    try:
        return list(db.execute(sql, args))
    finally:
        db.close()


def charges(server: Server) -> dict[str, list[str]]:
    """Ledger kinds per task."""
    found: dict[str, list[str]] = {}
    for task_id, kind in rows(server, "select task_id, kind from ledger order by id"):
        found.setdefault(task_id, []).append(kind)
    return found


def wait_all_completed(client: httpx.Client, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        videos: list[dict[str, Any]] = client.get("/videos", params={"limit": 100}).json()["data"]
        assert not [v for v in videos if v["status"] == "failed"], videos
        if len(videos) == count and all(v["status"] == "completed" for v in videos):
            return videos
        assert time.monotonic() < deadline, [v["status"] for v in videos]
        time.sleep(0.3)


def test_a_slow_dashscope_submit_becomes_one_upstream_task(tmp_path: Path) -> None:
    wan = FakeDashScope()
    wan.faults.slow_s = 45.0
    wan.faults.queue("submit", "slow_reply")  # the task exists at once; its answer comes 45 s later
    with wan.running(), running_gateway(tmp_path, wan_channel(wan), settings="poll_interval_s = 0.2\n" + PRICES) as gw:
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {gw.key()}"}
        with httpx.Client(base_url=f"{gw.url}/v1", headers=headers, timeout=120) as client:
            body = {"prompt": "a slow harbour", "model": "wan2.5-t2v-preview", "seconds": 5, "size": "1280x720"}
            response = client.post("/videos", json=body)
            assert response.status_code == 200, response.text
            video_id = response.json()["id"]
            (done,) = wait_all_completed(client, 1, timeout=60)
            assert done["id"] == video_id
            # Past the moment the upstream answers the first submit: still one task, nothing sent twice.
            time.sleep(max(0.0, 46 - (time.monotonic() - started)))
            assert client.get(f"/videos/{video_id}").json()["status"] == "completed"
        assert len(wan.tasks) == 1 and len(wan.submits()) == 1
        assert charges(gw) == {video_id: ["reserve", "settle"]}
        ((raw,),) = rows(gw, "select attempts from tasks where id = ?", video_id)
        (attempt,) = json.loads(raw)
        # The read timed out (30 s) with the outcome unknown; the task list showed the task, and it was adopted.
        assert attempt["state"] == "unknown" and attempt["lookup"] == "found"
        assert attempt["upstream_id"] == next(iter(wan.tasks))


@pytest.mark.parametrize("kind", ["sora", "dashscope"])
def test_kill_9_with_ten_creates_in_flight_gives_ten_upstream_tasks(kind: str, tmp_path: Path) -> None:
    sora, wan = FakeSora(), FakeDashScope()
    fake: FakeSora | FakeDashScope = sora if kind == "sora" else wan
    if kind == "sora":
        channel, body = sora_channel(sora), {"model": "sora-2", "seconds": "4", "size": "720x1280"}
    else:
        channel, body = wan_channel(wan), {"model": "wan2.5-t2v-preview", "seconds": 5, "size": "1280x720"}

    def upstream_creates() -> int:
        return len([r for r in sora.history if r.method == "POST" and r.path == "/v1/videos"] + wan.submits())

    fake.faults.slow_s = 20.0
    fake.faults.random("submit", 1.0, "slow_reply")  # every create stays in flight 20 s after its task exists
    port = free_port()
    # A submit deadline of 8 s, so a lease of 16 s: the dead process's rows come back soon after the restart.
    settings = "poll_interval_s = 0.2\nsubmit_timeout_s = 8\n"
    config = write_config(tmp_path, port=port, extra=settings + channel + PRICES)
    server = Server(config=config, port=port, log=tmp_path / "server.log")
    with fake.running():
        server.start()
        try:
            headers = {"Authorization": f"Bearer {server.key('crash', '--quota', '100')}"}

            def create(n: int) -> int | str:
                try:
                    with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=60) as client:
                        return client.post("/videos", json={**body, "prompt": f"in flight {n}"}).status_code
                except httpx.HTTPError as exc:
                    return type(exc).__name__

            with ThreadPoolExecutor(10) as pool:
                outcomes = [pool.submit(create, n) for n in range(10)]
                deadline = time.monotonic() + 30
                while upstream_creates() < 10:
                    assert time.monotonic() < deadline, "the 10 creates did not reach the upstream"
                    time.sleep(0.05)
                server.kill()
                # Every client's request was cut: none got an answer, so none knows its task's id.
                assert [outcome.result() for outcome in outcomes if isinstance(outcome.result(), int)] == []
            fake.faults.clear()
            server.start()
            with httpx.Client(base_url=f"{server.url}/v1", headers=headers, timeout=30) as client:
                # They are the key's tasks all the same: listed, carried to the end, charged once.
                videos = wait_all_completed(client, 10, timeout=90)
            assert sorted(v["prompt"] for v in videos) == sorted(f"in flight {n}" for n in range(10))
            assert upstream_creates() == 10 and len(fake.tasks) == 10
            ledger = charges(server)
            assert sorted(ledger) == sorted(v["id"] for v in videos)
            assert all(kinds == ["reserve", "settle"] for kinds in ledger.values()), ledger
            # Each row adopted, through the upstream's task list, the task its own lost call made.
            adopted = rows(server, "select prompt, upstream_id from tasks where deleted_at is null")
            made = {task.prompt: upstream_id for upstream_id, task in fake.tasks.items()}
            assert dict(adopted) == made
        finally:
            server.stop()


def test_idempotency_key_gives_one_task_one_upstream_task_one_charge(tmp_path: Path) -> None:
    sora = FakeSora()
    with (
        sora.running(),
        running_gateway(tmp_path, sora_channel(sora), settings="poll_interval_s = 0.2\n" + PRICES) as gw,
    ):
        key = gw.key()
        image = png_bytes(360, 640)

        def create(sdk: OpenAI, idem: str, prompt: str = "a red kite", picture: bytes = image) -> Any:
            return sdk.videos.create(
                model="sora-2",
                prompt=prompt,
                seconds="4",
                size="720x1280",
                input_reference=("kite.png", picture, "image/png"),
                extra_headers={"Idempotency-Key": idem},
            )

        with OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0) as sdk:
            first = [create(sdk, "retry-1") for _ in range(3)]
            assert len({video.id for video in first}) == 1
            with ThreadPoolExecutor(3) as pool:
                together = list(pool.map(lambda _: create(sdk, "retry-2").id, range(3)))
            assert len(set(together)) == 1 and together[0] != first[0].id
            for changed in ({"prompt": "a blue kite"}, {"picture": png_bytes(360, 640, color=(0, 90, 200))}):
                with pytest.raises(openai.ConflictError) as info:
                    create(sdk, "retry-1", **changed)
                assert info.value.status_code == 409
                assert info.value.response.json()["error"]["code"] == "idempotency_key_reused"
            assert len(sdk.videos.list(limit=100).data) == 2
        # Raw HTTP: another key's namespace, and a malformed key is a 400 naming the header.
        other = gw.key("other")
        with httpx.Client(base_url=f"{gw.url}/v1", headers={"Authorization": f"Bearer {other}"}) as client:
            form = {"model": "sora-2", "prompt": "a red kite", "seconds": "4", "size": "720x1280"}
            answer = client.post("/videos", data=form, headers={"Idempotency-Key": "retry-1"})
            assert answer.status_code == 200 and answer.json()["id"] not in (first[0].id, together[0])
            bad = client.post("/videos", data=form, headers={"Idempotency-Key": "x" * 300})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "Idempotency-Key"
        creates = [r for r in sora.calls("/v1/videos", "POST") if r.path == "/v1/videos"]
        assert len(creates) == 3 and len(sora.tasks) == 3
        reserves = [task for task, kinds in charges(gw).items() if "reserve" in kinds]
        assert len(reserves) == 3
