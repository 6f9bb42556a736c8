"""The shared conformance checks, run for every `tests/conformance/case_*.py` (see harness.py)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import dashscope
import httpx
import openai
import pytest
from dashscope import VideoSynthesis

from tests.conformance.harness import ProviderCase, Rig, finish, load_cases, rig
from tests.helpers import mp4_facts, png_bytes

CASES = load_cases()


@pytest.fixture(scope="module", params=CASES, ids=[case.provider for case in CASES])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    case: ProviderCase = request.param
    with rig(case, tmp_path_factory.mktemp(f"conformance-{case.provider}")) as running:
        yield running


@pytest.fixture
def client(env: Rig) -> Iterator[openai.OpenAI]:
    env.reset()
    with env.client() as sdk:
        yield sdk
    env.fake.faults.clear()
    gc.collect()  # reclaim the SDKs' sockets while this module's warning filters apply


def _stored(client: openai.OpenAI, video_id: str) -> None:
    data = client.videos.download_content(video_id).read()
    facts = mp4_facts(data)
    assert facts.codec == "h264" and facts.frames > 0, facts


def test_t2v_completes_and_the_vendor_got_its_body(env: Rig, client: openai.OpenAI) -> None:
    case = env.case
    video = client.videos.create(model=case.t2v_model, prompt="a lighthouse at dusk", **case.t2v_args)
    done = finish(client, video.id, case.timeout_s)
    assert done.status == "completed", done.error
    _stored(client, video.id)
    (sent,) = env.submits()
    case.check_submit(sent, "t2v")


def test_i2v_with_a_multipart_file(env: Rig, client: openai.OpenAI) -> None:
    case = env.case
    image = png_bytes(*case.image_size)
    video = client.videos.create(
        model=case.i2v_model,
        prompt="the waves roll in",
        input_reference=("frame.png", image, "image/png"),
        **case.i2v_args,
    )
    done = finish(client, video.id, case.timeout_s)
    assert done.status == "completed", done.error
    _stored(client, video.id)
    (sent,) = env.submits()
    case.check_submit(sent, "i2v")


def test_poll_faults_never_fail_a_task(env: Rig, client: openai.OpenAI) -> None:
    case = env.case
    env.fake.faults.random("poll", 0.3, *case.poll_faults)
    ids = [client.videos.create(model=case.t2v_model, prompt=f"fault run {n}", **case.t2v_args).id for n in range(3)]
    finished = [finish(client, video_id, case.timeout_s) for video_id in ids]
    assert [video.status for video in finished] == ["completed"] * 3, [video.error for video in finished]
    assert len(env.submits()) == 3


def _refusal(client: openai.OpenAI, case: ProviderCase, **args: Any) -> tuple[str | None, str]:
    """(code, message) of a refusal, whether the submit is refused (a 400) or the task fails later."""
    try:
        video = client.videos.create(**args)
    except openai.BadRequestError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return body.get("code"), str(body.get("message"))
    done = finish(client, video.id, case.timeout_s)
    assert done.status == "failed" and done.error is not None, done
    return done.error.code, done.error.message


def test_a_content_policy_refusal_reaches_the_client_with_the_vendors_words(env: Rig, client: openai.OpenAI) -> None:
    case = env.case
    code, message = _refusal(client, case, model=case.t2v_model, prompt=case.policy_prompt, **case.t2v_args)
    assert code == "content_policy_violation" and case.policy_code in message, (code, message)


def test_a_bad_parameter_reaches_the_client_with_the_vendors_words(env: Rig, client: openai.OpenAI) -> None:
    case = env.case
    args = case.bad_args or {
        "model": case.t2v_model,
        "prompt": "a bad parameter",
        **case.t2v_args,
        "extra_body": {"metadata": json.dumps(case.bad_metadata)},
    }
    code, message = _refusal(client, case, **args)
    assert case.bad_code in message and code != "content_policy_violation", (code, message)


def test_a_cut_submit_reply_is_reconciled_into_one_upstream_task(env: Rig, client: openai.OpenAI) -> None:
    case = env.case
    if not (case.lists or case.finds_by_id):
        pytest.skip(f"{case.provider} can neither list its tasks nor look one up by vidgate's id")
    env.fake.faults.queue("submit", "cut")
    video = client.videos.create(model=case.t2v_model, prompt="a reply that never arrives", **case.t2v_args)
    done = finish(client, video.id, case.timeout_s)
    assert done.status == "completed", done.error
    assert len(env.submits()) == 1  # looked up, adopted: never sent twice


def test_one_task_through_the_dashscope_surface(env: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    case = env.case
    env.reset()
    key = env.server.key("conformance")
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{env.server.url}/api/v1")
    result = VideoSynthesis.call(api_key=key, model=case.dashscope_model, prompt="a kite", **case.dashscope_args)
    assert result.output.task_status == "SUCCEEDED", result
    data = httpx.get(result.output.video_url, timeout=30).content
    assert mp4_facts(data).codec == "h264"
    # The same surface refuses a bad value naming DashScope's own field, never the OpenAI one.
    url = f"{env.server.url}/api/v1/services/aigc/video-generation/video-synthesis"
    body = {"model": case.dashscope_model, "input": {"prompt": "x"}, "parameters": {"duration": 99999}}
    answer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable"})
    said = answer.json()
    assert answer.status_code == 400 and said["code"] == "InvalidParameter", said
    assert "'parameters.duration'" in said["message"] and "'seconds'" not in said["message"], said
    gc.collect()
