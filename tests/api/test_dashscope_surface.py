"""The DashScope-native surface with the real `dashscope` package, on vidgate-local and on Wan models
through the DashScope emulator (tests/fakes/dashscope.py)."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dashscope
import httpx
import openai
import pytest
from dashscope import VideoSynthesis
from dashscope.aigc.video_synthesis import AioVideoSynthesis

from tests.fakes.dashscope import FAIL_MESSAGES, FakeDashScope
from tests.helpers import Server, assert_mp4, mp4_facts, png_bytes, running_gateway, wait_video

# The 1.x SDK opens a requests.Session per call and never closes it; its sockets are reclaimed by GC.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeDashScope]:
    fake = FakeDashScope()
    with fake.running():
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeDashScope) -> Iterator[Server]:
    channels = f"""
[[channels]]
name = "wan-main"
provider = "dashscope"
base_url = "{upstream.base_url}"
api_key = "sk-ds-test"
"""
    with running_gateway(
        tmp_path_factory.mktemp("dsgw"), channels, settings="local_workers = 1\npoll_interval_s = 0.2\n"
    ) as server:
        yield server


@pytest.fixture
def sdk(gw: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the SDK's module-global base URL at vidgate (fetch/wait/uploads ignore per-call bases)."""
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{gw.url}/api/v1")
    return gw.key("ds")


@pytest.fixture(autouse=True)
def _clean_upstream(upstream: FakeDashScope) -> Iterator[None]:
    upstream.reset()
    yield
    # Reclaim the SDK's abandoned sockets now, while this module's warning filters apply.
    gc.collect()


def image_file(tmp_path: Path, name: str, color: tuple[int, int, int]) -> str:
    path = tmp_path / name
    path.write_bytes(png_bytes(320, 200, color))
    return str(path)


def fetch_bytes(url: str) -> bytes:
    response = httpx.get(url, timeout=30)  # no Authorization: the URL itself is the credential
    assert response.status_code == 200, response.text
    return response.content


# -- vidgate-local through the DashScope surface ----------------------------------------------------------


def test_call_t2v_local(sdk: str) -> None:
    result = VideoSynthesis.call(api_key=sdk, model="vidgate-local", prompt="a paper boat", size="320*192", duration=2)
    assert result.status_code == 200, result
    assert result.output.task_status == "SUCCEEDED"
    assert result.output.video_url.startswith("http://127.0.0.1:")
    assert result.usage.video_duration == 2 and result.usage.video_ratio == "320*192"
    assert_mp4(fetch_bytes(result.output.video_url), width=320, height=192, seconds=2)


def test_async_call_wait_fetch_i2v_with_local_file(sdk: str, tmp_path: Path) -> None:
    submitted = VideoSynthesis.async_call(
        api_key=sdk,
        model="vidgate-local",
        prompt="a slow pan",
        img_url=image_file(tmp_path, "ref.png", (220, 90, 20)),
        size="256*160",
        duration=1,
    )
    assert submitted.status_code == 200 and submitted.output.task_status == "PENDING"
    assert submitted.output.task_id.startswith("video_")
    done = VideoSynthesis.wait(submitted, api_key=sdk)
    assert done.output.task_status == "SUCCEEDED"
    fetched = VideoSynthesis.fetch(submitted, api_key=sdk)
    assert fetched.output.task_status == "SUCCEEDED" and fetched.output.video_url
    assert_mp4(fetch_bytes(fetched.output.video_url), width=256, height=160, seconds=1)


def test_kf2v_with_two_local_files(sdk: str, tmp_path: Path) -> None:
    result = VideoSynthesis.call(
        api_key=sdk,
        model="vidgate-local",
        prompt="red to blue",
        size="192*192",
        duration=1,
        first_frame_url=image_file(tmp_path, "first.png", (200, 10, 10)),
        last_frame_url=image_file(tmp_path, "last.png", (10, 10, 200)),
    )
    assert result.output.task_status == "SUCCEEDED", result
    assert_mp4(fetch_bytes(result.output.video_url), width=192, height=192, seconds=1)


def test_cancel_pending_and_refuse_running(gw: Server, sdk: str) -> None:
    # One render worker: the first long render occupies it, so the second waits as PENDING.
    first = VideoSynthesis.async_call(api_key=sdk, model="vidgate-local", prompt="long", size="1920*1080", duration=20)
    second = VideoSynthesis.async_call(api_key=sdk, model="vidgate-local", prompt="waiting", size="64*64", duration=1)
    cancelled = VideoSynthesis.cancel(second, api_key=sdk)
    assert cancelled.status_code == 200, cancelled
    assert VideoSynthesis.fetch(second, api_key=sdk).output.task_status == "CANCELED"
    deadline = time.monotonic() + 20
    while VideoSynthesis.fetch(first, api_key=sdk).output.task_status == "PENDING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    refused = VideoSynthesis.cancel(first, api_key=sdk)
    assert refused.status_code == 400 and refused.code == "UnsupportedOperation"
    # Tidy up through the other surface: every task is readable (and deletable) from both.
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=sdk, max_retries=0) as client:
        assert client.videos.retrieve(second.output.task_id).status == "failed"
        client.videos.delete(first.output.task_id)


def test_list_has_data_and_tasks(sdk: str) -> None:
    VideoSynthesis.call(api_key=sdk, model="vidgate-local", prompt="for the list", size="64*64", duration=1)
    listed = VideoSynthesis.list(api_key=sdk, page_no=1, page_size=5)
    assert listed.status_code == 200
    output: dict[str, Any] = listed.output
    assert output["data"] == output["tasks"] and 1 <= len(output["data"]) <= 5
    assert output["total"] >= 1 and output["page_no"] == 1 and output["page_size"] == 5
    assert {row["task_status"] for row in output["data"]} <= {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED"}
    succeeded = VideoSynthesis.list(api_key=sdk, status="SUCCEEDED", model_name="vidgate-local", page_size=100)
    assert succeeded.output["tasks"] and all(row["task_status"] == "SUCCEEDED" for row in succeeded.output["tasks"])


def test_client_v2_videos(gw: Server, sdk: str, tmp_path: Path) -> None:
    client = dashscope.Client(api_key=sdk, base_url=f"{gw.url}/api/v1")
    job = client.videos.generate(
        model="vidgate-local", prompt="v2 surface", size="128*128", duration=1, poll_interval=0.2
    )
    assert job.status == "SUCCEEDED" and job.output is not None
    assert_mp4(fetch_bytes(job.output["video_url"]), width=128, height=128, seconds=1)
    created = client.videos.jobs.create(
        model="vidgate-local",
        prompt="v2 i2v",
        image_url=image_file(tmp_path, "v2.png", (0, 200, 0)),
        size="128*96",
        duration=1,
    )
    finished = client.videos.jobs.wait(created, poll_interval=0.2)
    assert finished.status == "SUCCEEDED"
    listed = client.videos.jobs.list(page_size=3)
    assert listed.tasks if hasattr(listed, "tasks") else listed


def test_aio_video_synthesis_trailing_slash(sdk: str) -> None:
    async def run() -> Any:
        submitted = await AioVideoSynthesis.async_call(
            api_key=sdk, model="vidgate-local", prompt="aio", size="96*96", duration=1
        )
        assert submitted.status_code == 200
        return await AioVideoSynthesis.wait(submitted, api_key=sdk)

    done = asyncio.run(run())
    assert done.output.task_status == "SUCCEEDED"
    assert_mp4(fetch_bytes(done.output.video_url), width=96, height=96, seconds=1)


# -- errors and URLs --------------------------------------------------------------------------------------


def test_refusals_in_dashscope_shape(gw: Server, sdk: str) -> None:
    url = f"{gw.url}/api/v1/services/aigc/video-generation/video-synthesis"
    body = {"model": "vidgate-local", "input": {"prompt": "x"}, "parameters": {"duration": 2}}
    auth = {"Authorization": f"Bearer {sdk}", "Content-Type": "application/json"}
    sync = httpx.post(url, json=body, headers=auth)
    assert sync.status_code == 403 and sync.json()["code"] == "AccessDenied"
    assert sync.json()["message"] == "current user api does not support synchronous calls"
    bad_key = httpx.post(url, json=body, headers={"Authorization": "Bearer nope", "X-DashScope-Async": "enable"})
    assert bad_key.status_code == 401 and bad_key.json()["code"] == "InvalidApiKey"
    headers = {**auth, "X-DashScope-Async": "enable"}
    bad = httpx.post(url, json={**body, "parameters": {"duration": 30}}, headers=headers)
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidParameter"
    assert "parameters.duration" in bad.json()["message"] and "'20'" in bad.json()["message"]
    assert set(bad.json()) == {"request_id", "code", "message"}
    unknown = httpx.post(url, json={**body, "model": "nope"}, headers=headers)
    assert unknown.status_code == 400 and "vidgate-local" in unknown.json()["message"]
    garbage = httpx.post(url, content=b"{", headers=headers)
    assert garbage.status_code == 400 and garbage.json()["code"] == "InvalidParameter"
    missing = httpx.get(f"{gw.url}/api/v1/tasks/video_{'0' * 32}", headers=auth)
    assert missing.status_code == 200 and missing.json()["output"]["task_status"] == "UNKNOWN"
    oss = httpx.post(
        url,
        json={**body, "input": {"prompt": "x", "img_url": "oss://nope/x.png"}},
        headers={**headers, "X-DashScope-OssResourceResolve": "enable"},
    )
    assert oss.status_code == 400 and oss.json()["code"] == "InvalidURL"


def test_signed_url_tamper_and_expiry(gw: Server, sdk: str) -> None:
    result = VideoSynthesis.call(api_key=sdk, model="vidgate-local", prompt="signed", size="64*64", duration=1)
    good = result.output.video_url
    assert httpx.get(good).status_code == 200
    assert httpx.get(good.replace("signature=", "signature=0")).status_code == 403
    assert httpx.get(good.replace("expires=", "expires=1")).status_code == 403
    from vidgate import media

    secret = (gw.config.parent / "secret").read_text().strip()
    expired = media.signed_url(gw.url, secret, result.output.task_id, "video.mp4", expires=int(time.time()) - 5)
    assert httpx.get(expired).status_code == 403
    still = media.signed_url(gw.url, secret, result.output.task_id, "video.mp4", expires=int(time.time()) + 60)
    assert httpx.get(still).status_code == 200


def test_upload_limits(gw: Server, sdk: str) -> None:
    policy = httpx.get(
        f"{gw.url}/api/v1/uploads",
        params={"action": "getPolicy", "model": "vidgate-local"},
        headers={"Authorization": f"Bearer {sdk}"},
    ).json()["data"]
    fields = {
        "OSSAccessKeyId": policy["oss_access_key_id"],
        "Signature": policy["signature"],
        "policy": policy["policy"],
        "key": f"{policy['upload_dir']}/notes.txt",
        "x-oss-object-acl": "private",
        "x-oss-forbid-overwrite": "true",
        "success_action_status": "200",
        "x-oss-content-type": "text/plain",
    }
    text = httpx.post(policy["upload_host"], data=fields, files={"file": ("notes.txt", b"hello")})
    assert text.status_code == 400 and "image" in text.json()["message"]
    forged = httpx.post(
        policy["upload_host"], data={**fields, "Signature": "Zm9v"}, files={"file": ("a.png", png_bytes())}
    )
    assert forged.status_code == 403
    outside = httpx.post(
        policy["upload_host"],
        data={**fields, "key": "elsewhere/a.png", "x-oss-content-type": "image/png"},
        files={"file": ("a.png", png_bytes())},
    )
    assert outside.status_code == 403
    big = httpx.post(
        policy["upload_host"],
        data={**fields, "key": f"{policy['upload_dir']}/big.png", "x-oss-content-type": "image/png"},
        files={"file": ("big.png", b"\0" * (51 * 1024 * 1024))},
    )
    assert big.status_code == 413
    ok = httpx.post(
        policy["upload_host"],
        data={**fields, "key": f"{policy['upload_dir']}/a.png", "x-oss-content-type": "image/png"},
        files={"file": ("a.png", png_bytes())},
    )
    assert ok.status_code == 200
    again = httpx.post(
        policy["upload_host"],
        data={**fields, "key": f"{policy['upload_dir']}/a.png", "x-oss-content-type": "image/png"},
        files={"file": ("a.png", png_bytes())},
    )
    assert again.status_code == 403 and "one object per policy" in again.json()["message"]


# -- Wan models through the DashScope emulator -------------------------------------------------------------


def only_submit(upstream: FakeDashScope) -> Any:
    submits = upstream.submits()
    assert len(submits) == 1, [s.path for s in submits]
    return submits[0]


def test_wan25_t2v_passthrough(sdk: str, upstream: FakeDashScope) -> None:
    result = VideoSynthesis.call(
        api_key=sdk,
        model="wan2.5-t2v-preview",
        prompt="a kitten in moonlight",
        negative_prompt="flowers",
        size="832*480",
        duration=5,
        seed=42,
        prompt_extend=True,
        watermark=False,
        audio=True,
        custom_param="cp",
    )
    assert result.output.task_status == "SUCCEEDED", result
    sent = only_submit(upstream)
    assert sent.path == "/api/v1/services/aigc/video-generation/video-synthesis"
    assert sent.headers["x-dashscope-async"] == "enable" and sent.headers["authorization"] == "Bearer sk-ds-test"
    assert sent.json["input"] == {
        "prompt": "a kitten in moonlight",
        "negative_prompt": "flowers",
        "extend_prompt": True,
        "function": "video-synthesis",
    }
    assert sent.json["parameters"] == {
        "size": "832*480",
        "duration": 5,
        "seed": 42,
        "prompt_extend": True,
        "watermark": False,
        "audio": True,
        "custom_param": "cp",
    }
    facts = mp4_facts(fetch_bytes(result.output.video_url))
    assert facts.codec == "h264"


def test_wan25_i2v_with_audio_url(sdk: str, upstream: FakeDashScope) -> None:
    result = VideoSynthesis.call(
        api_key=sdk,
        model="wan2.5-i2v-preview",
        prompt="make it move",
        img_url="https://example.com/cat.png",
        audio_url="https://example.com/a.mp3",
        resolution="480P",
        duration=10,
    )
    assert result.output.task_status == "SUCCEEDED", result
    sent = only_submit(upstream)
    assert sent.json["input"]["img_url"] == "https://example.com/cat.png"
    assert sent.json["input"]["audio_url"] == "https://example.com/a.mp3"
    assert sent.json["parameters"] == {"resolution": "480P", "duration": 10}
    assert sent.json["model"] == "wan2.5-i2v-preview"


def test_wan22_kf2v_on_image2video_path(sdk: str, upstream: FakeDashScope) -> None:
    result = VideoSynthesis.call(
        api_key=sdk,
        model="wan2.2-kf2v-flash",
        prompt="open the door",
        first_frame_url="https://example.com/1.png",
        last_frame_url="https://example.com/2.png",
        resolution="720P",
    )
    assert result.output.task_status == "SUCCEEDED", result
    sent = only_submit(upstream)
    assert sent.path == "/api/v1/services/aigc/image2video/video-synthesis"
    assert sent.json["input"]["first_frame_url"] == "https://example.com/1.png"
    assert sent.json["input"]["last_frame_url"] == "https://example.com/2.png"


def test_v2_client_sends_kf2v_to_video_generation_and_we_route_it(
    gw: Server, sdk: str, upstream: FakeDashScope
) -> None:
    client = dashscope.Client(api_key=sdk, base_url=f"{gw.url}/api/v1")
    job = client.videos.generate(
        model="wan2.2-kf2v-flash",
        prompt="v2 kf2v",
        extra_input={"first_frame_url": "https://e.com/1.png", "last_frame_url": "https://e.com/2.png"},
        poll_interval=0.2,
    )
    assert job.status == "SUCCEEDED"
    assert only_submit(upstream).path.endswith("/image2video/video-synthesis")


def test_seed_curl_example_under_alibailian(gw: Server, sdk: str, upstream: FakeDashScope) -> None:
    body = {
        "model": "wan2.5-i2v-preview",
        "input": {
            "prompt": "Change the lighting.",
            "img_url": "https://brainrot-yt-shorts.oss-cn-beijing.aliyuncs.com/images/cached/55a955b7e41723417281051d7bebdb45.png",
        },
        "parameters": {"resolution": "480P", "prompt_extend": True, "audio": True},
    }
    response = httpx.post(
        f"{gw.url}/alibailian/api/v1/services/aigc/video-generation/video-synthesis",
        json=body,
        headers={"Authorization": f"Bearer {sdk}", "Content-Type": "application/json", "X-DashScope-Async": "enable"},
    )
    assert response.status_code == 200
    reply = response.json()
    assert set(reply) == {"request_id", "output"} and reply["output"]["task_status"] == "PENDING"
    task_id = reply["output"]["task_id"]
    deadline = time.monotonic() + 30
    while True:
        task = httpx.get(
            f"{gw.url}/alibailian/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {sdk}"}
        ).json()
        if task["output"]["task_status"] == "SUCCEEDED":
            break
        assert task["output"]["task_status"] in ("PENDING", "RUNNING") and time.monotonic() < deadline
        time.sleep(0.2)
    assert only_submit(upstream).json == body


def test_openai_form_for_a_wan_model(gw: Server, sdk: str, upstream: FakeDashScope) -> None:
    image = png_bytes(400, 240)
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=sdk, max_retries=0) as client:
        video = client.videos.create(
            prompt="the cat opens its eyes",
            model="wan2.5-i2v-preview",
            seconds="5",
            size="480P",
            input_reference=("cat.png", image, "image/png"),
            extra_body={"metadata": '{"audio": true, "seed": 7}'},
        )
        done = client.videos.poll(video.id, poll_interval_ms=100)
        assert done.status == "completed", done
        assert mp4_facts(client.videos.download_content(video.id).read()).codec == "h264"
    sent = only_submit(upstream).json
    assert sent["model"] == "wan2.5-i2v-preview"
    assert sent["input"]["prompt"] == "the cat opens its eyes"
    assert sent["input"]["img_url"] == "data:image/png;base64," + base64.b64encode(image).decode()
    assert sent["parameters"] == {"resolution": "480P", "duration": 5, "audio": True, "seed": 7}


def test_openai_form_validation_for_wan(gw: Server, sdk: str, upstream: FakeDashScope) -> None:
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=sdk, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.videos.create(prompt="no image", model="wan2.5-i2v-preview", seconds="5")
        assert info.value.param == "input_reference"
        with pytest.raises(openai.BadRequestError) as info:
            client.videos.create(
                prompt="seed example",
                model="wan2.5-i2v-preview",
                seconds="5",
                size="1280P",
                extra_body={"metadata": '{"img_url": "https://example.com/image.jpg"}'},
            )
        assert info.value.param == "size" and "480P" in info.value.message
        with pytest.raises(openai.BadRequestError) as info:
            client.videos.create(
                prompt="x",
                model="wan2.2-kf2v-flash",
                seconds="4",
                extra_body={
                    "metadata": json.dumps(
                        {
                            "first_frame_url": "https://e.com/a.jpg",
                            "last_frame_url": "https://e.com/b.jpg",
                            "resolution": "720P",
                        }
                    )
                },
            )
        assert info.value.param == "seconds" and "'5'" in info.value.message
    assert upstream.submits() == []


def test_poll_faults_never_fail_the_task(gw: Server, sdk: str, upstream: FakeDashScope) -> None:
    upstream.faults.queue("poll", "500", "429", "garbage", "empty", "unknown_status", "503")
    result = VideoSynthesis.call(
        api_key=sdk, model="wan2.5-t2v-preview", prompt="stormy sea", size="1280*720", duration=5
    )
    assert result.output.task_status == "SUCCEEDED", result


def test_upstream_failure_surfaces_on_both_surfaces(gw: Server, sdk: str, upstream: FakeDashScope) -> None:
    result = VideoSynthesis.call(
        api_key=sdk, model="wan2.5-t2v-preview", prompt="FAIL:DataInspectionFailed please", size="1280*720"
    )
    # DashScope's own code and message, as the upstream gave them (FAIL_MESSAGES is the emulator's wording) ...
    assert result.output.task_status == "FAILED"
    said = FAIL_MESSAGES["DataInspectionFailed"]
    assert (result.output.code, result.output.message) == ("DataInspectionFailed", said)
    # ... and on the OpenAI surface our code, with DashScope's code and words in the message.
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=sdk, max_retries=0) as client:
        video = client.videos.retrieve(result.output.task_id)
        assert video.status == "failed" and video.error is not None
        assert video.error.code == "content_policy_violation"
        assert video.error.message == f"DashScope: DataInspectionFailed: {said}"
        upstream.fail_next("InternalError.Algo")
        other = client.videos.create(model="wan2.5-t2v-preview", prompt="an ordinary scene", size="1280x720")
        failed = wait_video(client, other.id)
        assert failed.error is not None
        assert (failed.error.code, failed.error.message) == (
            "generation_failed",
            f"DashScope: InternalError.Algo: {FAIL_MESSAGES['InternalError.Algo']}",
        )
    native = VideoSynthesis.fetch(other.id, api_key=sdk)
    assert (native.output.code, native.output.message) == ("InternalError.Algo", FAIL_MESSAGES["InternalError.Algo"])


def test_upstream_param_error_is_a_400(gw: Server, sdk: str, upstream: FakeDashScope) -> None:
    # A parameter only the upstream knows is wrong: forwarded, refused there, mapped to a client 400.
    result = VideoSynthesis.async_call(api_key=sdk, model="wan2.5-t2v-preview", prompt="x", size="1280*720", seed=-5)
    assert result.status_code == 400 and result.code == "InvalidParameter", result


def test_upstream_refusal_keeps_dashscopes_words(gw: Server, sdk: str, upstream: FakeDashScope) -> None:
    del upstream.models["wan2.5-t2v-preview"]  # this account's DashScope no longer serves it (reset() restores it)
    result = VideoSynthesis.async_call(api_key=sdk, model="wan2.5-t2v-preview", prompt="x", size="1280*720")
    # The DashScope surface: DashScope's own code and message, as it gave them.
    assert (result.status_code, result.code, result.message) == (400, "InvalidParameter", "Model not exist."), result
    # The OpenAI surface: our code; DashScope's code and words in the message.
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=sdk, max_retries=0)
    with client, pytest.raises(openai.BadRequestError) as info:
        client.videos.create(model="wan2.5-t2v-preview", prompt="x", size="1280x720")
    assert info.value.code == "upstream_rejected"
    assert info.value.message.endswith("DashScope: InvalidParameter: Model not exist."), info.value.message
    assert len(upstream.submits()) == 2


# -- one draft, one validator; files by path ----------------------------------------------------------------


def stored_request(gw: Server, task_id: str) -> str:
    """The request JSON kept on the task row, as the database holds it."""
    import sqlite3

    with sqlite3.connect(gw.config.parent / "vidgate.db") as db:
        (request,) = db.execute("SELECT request FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return str(request)


def test_a_local_file_goes_to_wan_as_a_data_uri_made_at_submit_and_the_row_holds_a_path(
    gw: Server, sdk: str, upstream: FakeDashScope, tmp_path: Path
) -> None:
    image = png_bytes(320, 200, (30, 160, 90))
    path = tmp_path / "frame.png"
    path.write_bytes(image)
    result = VideoSynthesis.call(
        api_key=sdk, model="wan2.2-i2v-flash", prompt="a meadow", img_url=str(path), resolution="480P", seed=7
    )
    assert result.output.task_status == "SUCCEEDED", result
    sent = only_submit(upstream)
    # Verbatim passthrough, the uploaded file encoded from storage when it was sent.
    prefix, _, data = sent.json["input"]["img_url"].partition(",")
    assert prefix == "data:image/png;base64" and base64.b64decode(data) == image
    assert sent.json["parameters"] == {"resolution": "480P", "seed": 7}
    row = stored_request(gw, result.output.task_id)
    assert "base64" not in row and "oss://" not in row, row
    (kept,) = json.loads(row)["inputs"]
    assert kept["field"] == "input.img_url" and kept["url"] is None and kept["path"].endswith(".png")
    assert "img_url" not in json.loads(row)["native"]["input"]


def test_a_data_uri_from_a_client_is_decoded_once_and_never_kept(gw: Server, sdk: str) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes(64, 64)).decode()
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=sdk, max_retries=0) as client:
        video = client.videos.create(
            model="vidgate-local", prompt="a dot", seconds="1", size="64x64", extra_body={"input_reference": data_uri}
        )
        assert wait_video(client, video.id).status == "completed"
    row = stored_request(gw, video.id)
    assert "base64" not in row and json.loads(row)["inputs"][0]["path"].endswith(".png")


def test_a_non_wan_model_is_translated_and_its_errors_name_dashscopes_fields(gw: Server, sdk: str) -> None:
    url = f"{gw.url}/api/v1/services/aigc/video-generation/video-synthesis"
    headers = {"Authorization": f"Bearer {sdk}", "X-DashScope-Async": "enable"}
    base = {"model": "vidgate-local", "input": {"prompt": "x"}}

    def refused(inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        body = {**base, "input": {**base["input"], **inputs}, "parameters": params}
        answer = httpx.post(url, json=body, headers=headers)
        assert answer.status_code == 400 and answer.json()["code"] == "InvalidParameter", answer.text
        return dict(answer.json())

    assert "'parameters.seed'" in refused({}, {"seed": "seven"})["message"]
    assert "'parameters.size'" in refused({}, {"size": "7*7"})["message"]
    unknown = refused({}, {"cfg_scale": 0.5})["message"]
    assert unknown.startswith("parameters.cfg_scale is not supported by vidgate-local") and "seed" in unknown
    assert refused({"negative_prompt": "rain"}, {})["message"].startswith("input.negative_prompt is not supported")
    assert refused({"last_frame_url": "https://example.com/l.png"}, {})["message"].startswith(
        "input.last_frame_url needs a first frame (input.first_frame_url)"
    )
    # DashScope's quality hints are no error for a model that has no use for them; the translated task runs.
    fine = httpx.post(
        url,
        json={**base, "parameters": {"watermark": False, "seed": 3, "size": "64*64", "duration": 1}},
        headers=headers,
    )
    assert fine.status_code == 200, fine.text
