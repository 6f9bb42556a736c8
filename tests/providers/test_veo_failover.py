"""One public Veo model on two providers: veo-3.0-generate-001 on a `gemini` channel (priority 0) that answers
503 and a `vertex` channel (priority 1); the task completes on Vertex, through a running vidgate driven by the
real `openai` SDK (SPEC §8: a model served by several providers routes and fails over across all of them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from tests.fakes.gemini import FakeGemini
from tests.fakes.vertex import FakeVertex, make_service_account
from tests.helpers import Server, mp4_facts, running_gateway
from tests.helpers import wait_video as finish

MODEL = "veo-3.0-generate-001"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeGemini, FakeVertex]]:
    google, cloud = FakeGemini(), FakeVertex()
    with google.running(), cloud.running():
        yield google, cloud


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fakes: tuple[FakeGemini, FakeVertex]) -> Iterator[Server]:
    google, cloud = fakes
    folder = tmp_path_factory.mktemp("veo-failover")
    key_file = folder / "sa.json"
    make_service_account(cloud, key_file)
    channels = f"""
[[channels]]
name = "veo-gemini"
provider = "gemini"
base_url = "{google.base_url}"
api_key = "{google.api_key}"
models = ["{MODEL}"]
priority = 0

[[channels]]
name = "veo-vertex"
provider = "vertex"
base_url = "{cloud.base_url}"
service_account_file = "{key_file}"
project = "proj-test"
location = "us-central1"
models = ["{MODEL}"]
priority = 1
"""
    with running_gateway(folder, channels) as server:
        yield server


def test_gemini_503_fails_over_to_vertex(gw: Server, fakes: tuple[FakeGemini, FakeVertex]) -> None:
    google, cloud = fakes
    google.faults.random("submit", 1.0, "503")
    with OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key("veo"), max_retries=0) as client:
        video = client.videos.create(model=MODEL, prompt="a lighthouse at dusk", seconds="8", size="1280x720")  # type: ignore[arg-type]
        video = finish(client, video.id)
        assert (video.status, video.model, video.size, video.seconds) == ("completed", MODEL, "1280x720", "8")
        data = client.videos.download_content(video.id).read()
    # Gemini was asked first and refused with 503; nothing was created there.
    assert google.calls(":predictLongRunning") and not google.store.ops
    (submit,) = cloud.calls(":predictLongRunning")
    assert submit.path.endswith(
        f"/projects/proj-test/locations/us-central1/publishers/google/models/{MODEL}:predictLongRunning"
    )
    assert submit.json["parameters"]["durationSeconds"] == 8 and submit.json["parameters"]["generateAudio"] is True
    assert submit.headers["authorization"].removeprefix("Bearer ") in cloud.tokens
    (op,) = cloud.store.ops.values()
    assert data == op.videos[0]  # the very bytes Vertex sent inline, stored and served back
    assert mp4_facts(data).width == 160


def test_cut_gemini_reply_is_a_possible_orphan_never_resent(gw: Server, fakes: tuple[FakeGemini, FakeVertex]) -> None:
    google, cloud = fakes
    google.faults.clear()
    google.faults.queue("submit", "cut")  # Gemini makes the operation, the reply is lost: it cannot be looked up
    before_google, before_cloud = len(google.calls(":predictLongRunning")), len(cloud.store.ops)
    with OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key("veo-cut"), max_retries=0) as client:
        video = client.videos.create(model=MODEL, prompt="a harbour at dawn", seconds="4", size="1280x720")  # type: ignore[arg-type]
        video = finish(client, video.id)
    assert video.status == "completed"
    # Asked once and never again (Gemini has no list: no blind resend); the task went to Vertex.
    assert len(google.calls(":predictLongRunning")) == before_google + 1
    assert len(google.store.ops) == 1  # the possible orphan, left upstream
    assert len(cloud.store.ops) == before_cloud + 1
