"""Upstream callbacks end to end (SPEC §4): a running vidgate, the Kling emulator on the clock calling back.

A real callback makes the completion visible within 1 s of the emulator finishing, though the task's next
scheduled poll is far off; forged signatures, another task's id, unknown tasks and replays change nothing.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.fakes.kling import FakeKling, KlingTask
from tests.fakes.minimax import FakeMiniMax
from tests.helpers import Server, running_gateway
from vidgate.engine.callbacks import CallbackSigner

AK = "ak-callbacks"
SK = "sk-callbacks-0123456789abcdef0123456789"
SECRET = "callback-tests-secret-" + "x" * 20
# Scheduled polls are 30 s and more apart (after the first at +0.2 s): within a test, any other read of a
# task is one a callback made.
SETTINGS = f'secret = "{SECRET}"\npoll_interval_s = 30\n'


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeKling]:
    fake = FakeKling(access_key=AK, secret_key=SK)
    with fake.running():
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeKling) -> Iterator[Server]:
    channel = f"""
[[channels]]
name = "kling-cb"
provider = "kling"
base_url = "{upstream.base_url}"
access_key = "{AK}"
secret_key = "{SK}"
"""
    with running_gateway(tmp_path_factory.mktemp("callbacks"), channel, settings=SETTINGS) as server:
        yield server


@pytest.fixture(scope="module")
def client(gw: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key("callbacks"), max_retries=0) as sdk:
        yield sdk


def create(client: OpenAI, upstream: FakeKling, finish_after_s: float) -> tuple[str, KlingTask]:
    upstream.finish_after_s = finish_after_s
    video = client.videos.create(model="kling-v1", prompt="a lighthouse in fog", seconds="5")  # type: ignore[arg-type]
    (task,) = [t for t in upstream.tasks.values() if t.external_task_id == video.id]
    return video.id, task


def polls_of(upstream: FakeKling, task: KlingTask) -> int:
    return len(upstream.calls(f"/v1/videos/text2video/{task.task_id}", method="GET"))


def wait_polled(upstream: FakeKling, task: KlingTask, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while polls_of(upstream, task) < count:
        assert time.monotonic() < deadline, f"the task was polled {polls_of(upstream, task)} times, not {count}"
        time.sleep(0.02)


@pytest.mark.serial  # a timing bound: measured alone, not beside the parallel suite
def test_a_callback_makes_completion_visible_within_a_second(client: OpenAI, upstream: FakeKling) -> None:
    video_id, task = create(client, upstream, finish_after_s=3.0)
    assert task.callback_url is not None and f"/callbacks/kling/{video_id}?sig=" in task.callback_url
    deadline = time.monotonic() + 15
    while True:
        video = client.videos.retrieve(video_id)
        seen = time.time()
        if video.status == "completed":
            break
        assert video.status in ("queued", "in_progress") and time.monotonic() < deadline, video
        time.sleep(0.01)
    assert task.finished_at is not None
    lag = seen - task.finished_at
    assert lag <= 1.0, f"completion seen {lag:.3f} s after the emulator finished"
    # The emulator called back (on processing and on the finish) and vidgate answered it.
    assert [status for url, status, _at in upstream.callbacks_sent if url == task.callback_url] == [200, 200]
    # Without the callback the next scheduled read would have been ~37 s after creation.
    assert polls_of(upstream, task) <= 4


def test_forged_wrong_unknown_and_replayed_callbacks_change_nothing(
    gw: Server, client: OpenAI, upstream: FakeKling
) -> None:
    target_id, target = create(client, upstream, finish_after_s=120.0)
    other_id, other = create(client, upstream, finish_after_s=120.0)
    # Each is read once right after its submit (and maybe once more for the "processing" callback); then
    # nothing is scheduled for ~37 s.
    wait_polled(upstream, target, 1)
    wait_polled(upstream, other, 1)
    time.sleep(1.2)
    before = {vid: client.videos.retrieve(vid).model_dump() for vid in (target_id, other_id)}
    reads = (polls_of(upstream, target), polls_of(upstream, other))
    assert target.callback_url is not None
    real_sig = target.callback_url.rsplit("sig=", 1)[1]
    signer = CallbackSigner(SECRET)
    lie: dict[str, Any] = {
        "task_id": target.task_id,
        "task_status": "succeed",
        "task_result": {"videos": [{"id": "x", "url": f"{upstream.base_url}/_files/evil.mp4", "duration": "5"}]},
    }
    base = f"{gw.url}/callbacks"
    forged = [
        f"{base}/kling/{target_id}?sig={'0' * 64}",  # a made-up signature
        f"{base}/kling/{target_id}",  # none at all
        f"{base}/kling/{target_id}?sig={real_sig.upper()}",
        f"{base}/kling/{target_id}?sig=%C2%B2{real_sig[2:]}",
        f"{base}/kling/{other_id}?sig={real_sig}",  # the target's signature on another task's id
        f"{base}/vidu/{target_id}?sig={signer.sign('vidu', target_id)}",  # a provider the task is not on
        f"{base}/nosuch/{target_id}?sig={real_sig}",
        f"{base}/kling/video_{secrets.token_hex(16)}?sig={'a' * 64}",  # an unknown task
    ]
    unknown = f"video_{secrets.token_hex(16)}"
    valid_for_unknown = f"{base}/kling/{unknown}?sig={signer.sign('kling', unknown)}"
    answers = set()
    with httpx.Client(trust_env=False, timeout=5) as http:
        for url in [*forged, valid_for_unknown]:
            answer = http.post(url, json=lie)
            answers.add((answer.status_code, answer.content, answer.headers["content-type"]))
        time.sleep(1.5)
        assert (polls_of(upstream, target), polls_of(upstream, other)) == reads  # nothing was read
        # A replay storm of the real URL (with a body that lies): one read now, one merged read at the gap's end.
        for _ in range(40):
            answer = http.post(target.callback_url, json=lie)
            answers.add((answer.status_code, answer.content, answer.headers["content-type"]))
        big = http.post(target.callback_url, content=b"{" + b" " * 200_000 + b"}")
        answers.add((big.status_code, big.content, big.headers["content-type"]))
        time.sleep(2.5)
    assert answers == {(200, b'{"ok":true}', "application/json")}  # one answer for everything
    extra = polls_of(upstream, target) - reads[0]
    assert 1 <= extra <= 3, f"{extra} reads after the replays"
    assert polls_of(upstream, other) == reads[1]
    after = {vid: client.videos.retrieve(vid).model_dump() for vid in (target_id, other_id)}
    assert after == before  # the body's "succeed" was never believed: the upstream still says processing
    assert after[target_id]["status"] == "in_progress"


def test_minimax_v1_handshake_is_answered_and_its_updates_wake_the_task(tmp_path: Path) -> None:
    """MiniMax V1 uses a callback URL only once it echoed the challenge posted to it; then its status posts
    are wake-ups like any other (the task completes, its body never believed)."""
    key = "sk-api-callbacks-minimax"
    fake = FakeMiniMax(api_key=key)
    with fake.running():
        channel = (
            f'[[channels]]\nname = "hailuo"\nprovider = "minimax"\napi_key = "{key}"\nbase_url = "{fake.base_url}"\n'
            'models = ["MiniMax-Hailuo-02"]\n'
        )
        with (
            running_gateway(tmp_path, channel, settings=SETTINGS) as server,
            OpenAI(base_url=f"{server.url}/v1", api_key=server.key("mm"), max_retries=0) as sdk,
        ):
            video = sdk.videos.create(model="MiniMax-Hailuo-02", prompt="a kite over dunes", seconds="6")  # type: ignore[arg-type]
            (task,) = fake.tasks.values()
            assert task.callback_url is not None and f"/callbacks/minimax/{video.id}?sig=" in task.callback_url
            deadline = time.monotonic() + 10
            while not task.callback_verified:
                assert time.monotonic() < deadline, "vidgate did not echo MiniMax's challenge"
                time.sleep(0.02)
            for _ in range(6):  # the emulator moves on when polled; its status posts follow
                fake.advance(task.task_id)
            while sdk.videos.retrieve(video.id).status != "completed":
                assert time.monotonic() < deadline, "the task did not complete"
                time.sleep(0.05)
