"""The DashScope emulator checked against the real `dashscope` SDK (2.0.2) and raw HTTP for every refusal.

If these pass, a gateway test that talks to FakeDashScope talks to something the vendor's own client accepts.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from typing import Any

import av
import dashscope
import httpx
import pytest
from dashscope import VideoSynthesis
from PIL import Image

from tests.fakes.base import Fault
from tests.fakes.dashscope import IMAGE2VIDEO_PATH, VIDEO_GENERATION_PATH, FakeDashScope

KEY = "sk-ds-test"
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEADERS = {"Authorization": f"Bearer {KEY}", "X-DashScope-Async": "enable", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeDashScope]:
    emulator = FakeDashScope()
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeDashScope) -> FakeDashScope:
    """One server for the module (stopping uvicorn costs ~0.15 s), with a clean state for each test."""
    running_fake.reset()
    return running_fake


@pytest.fixture
def http(fake: FakeDashScope) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not sit between the test and 127.0.0.1.
    with httpx.Client(base_url=fake.base_url, timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture
def sdk(fake: FakeDashScope, monkeypatch: pytest.MonkeyPatch) -> FakeDashScope:
    """Point the SDK's module-global base URL (used by fetch/wait) at the fake; monkeypatch restores it."""
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{fake.base_url}/api/v1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return fake


def t2v_body(**parameters: Any) -> dict[str, Any]:
    return {"model": "wan2.5-t2v-preview", "input": {"prompt": "a kitten in moonlight"}, "parameters": parameters}


def i2v_body(model: str = "wan2.2-i2v-flash", **parameters: Any) -> dict[str, Any]:
    return {"model": model, "input": {"img_url": "https://example.invalid/cat.png"}, "parameters": parameters}


def submit(
    http: httpx.Client, body: dict[str, Any], path: str = VIDEO_GENERATION_PATH, **headers: str
) -> httpx.Response:
    return http.post(path, json=body, headers={**HEADERS, **headers})


def submit_ok(http: httpx.Client, body: dict[str, Any], path: str = VIDEO_GENERATION_PATH) -> str:
    reply = submit(http, body, path)
    assert reply.status_code == 200, reply.text
    task_id: str = reply.json()["output"]["task_id"]
    return task_id


def poll(http: httpx.Client, task_id: str, key: str = KEY, slash: str = "") -> httpx.Response:
    return http.get(f"/api/v1/tasks/{task_id}{slash}", headers={"Authorization": f"Bearer {key}"})


def status(http: httpx.Client, task_id: str) -> str:
    reply = poll(http, task_id)
    assert reply.status_code == 200, reply.text
    value: str = reply.json()["output"]["task_status"]
    return value


def assert_error(reply: httpx.Response, http_status: int, code: str, message: str = "") -> None:
    assert reply.status_code == http_status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"request_id", "code", "message"}
    assert UUID.match(body["request_id"])
    assert body["code"] == code
    assert message in body["message"]


def mp4_size(data: bytes) -> tuple[int, int]:
    assert data[4:8] == b"ftyp", "not an MP4"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def png_data_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# -- the real SDK -----------------------------------------------------------------------------------------------


def test_sdk_t2v_async_call_then_wait(sdk: FakeDashScope) -> None:
    submitted = VideoSynthesis.async_call(
        model="wan2.5-t2v-preview",
        prompt="A kitten running in moonlight",
        size="832*480",
        duration=10,
        audio=True,
        seed=42,
        api_key=KEY,
    )
    assert submitted.status_code == 200, submitted
    assert submitted.output.task_status == "PENDING"
    done = VideoSynthesis.wait(submitted, api_key=KEY)
    assert done.status_code == 200, done
    assert done.output.task_status == "SUCCEEDED"
    assert done.usage.video_duration == 10 and done.usage.video_count == 1 and done.usage.video_ratio == "832*480"
    assert done.output.orig_prompt == "A kitten running in moonlight"
    assert done.output.actual_prompt.startswith("A kitten running in moonlight")
    for name in ("submit_time", "scheduled_time", "end_time"):
        assert TIME.match(done.output[name]), done.output

    # The body reached the upstream unchanged, on the right path, with the async header.
    task = sdk.tasks[done.output.task_id]
    (sent,) = sdk.submits()
    assert task.path == sent.path == VIDEO_GENERATION_PATH
    assert task.body == sent.json and sent.json["input"]["function"] == "video-synthesis"
    assert task.headers["x-dashscope-async"] == "enable"
    assert task.polls == 3 and task.status == "SUCCEEDED"

    video = httpx.get(done.output.video_url, trust_env=False)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content == task.video
    assert mp4_size(video.content) == (320, 184)  # 832*480 scaled to 320 wide, even sides


def test_sdk_i2v_with_url_is_not_fetched(sdk: FakeDashScope) -> None:
    submitted = VideoSynthesis.async_call(
        model="wan2.2-i2v-flash",
        img_url="https://example.invalid/cat.png",
        resolution="720P",
        api_key=KEY,
    )
    assert submitted.status_code == 200, submitted
    done = VideoSynthesis.wait(submitted, api_key=KEY)
    assert done.output.task_status == "SUCCEEDED", done
    assert done.usage.video_ratio == "1280*720" and done.usage.video_duration == 5
    (sent,) = sdk.submits()
    assert sent.json["input"]["prompt"] is None  # the SDK's null prompt is tolerated for i2v
    assert mp4_size(httpx.get(done.output.video_url, trust_env=False).content) == (320, 180)


def test_sdk_kf2v_call_uses_image2video_path(sdk: FakeDashScope) -> None:
    done = VideoSynthesis.call(
        model="wan2.2-kf2v-flash",
        prompt="a flower opens",
        first_frame_url="https://example.invalid/1.png",
        last_frame_url="https://example.invalid/2.png",
        resolution="480P",
        api_key=KEY,
    )
    assert done.status_code == 200 and done.output.task_status == "SUCCEEDED", done
    (sent,) = sdk.submits()
    assert sent.path == IMAGE2VIDEO_PATH
    assert sdk.tasks[done.output.task_id].kind == "kf2v"


def test_sdk_reports_refusals_as_responses(sdk: FakeDashScope) -> None:
    bad_key = VideoSynthesis.async_call(model="wan2.5-t2v-preview", prompt="x", api_key="sk-wrong")
    assert (bad_key.status_code, bad_key.code) == (401, "InvalidApiKey")
    bad_size = VideoSynthesis.async_call(
        model="wan2.2-i2v-plus", img_url="https://e.invalid/a.png", size="832*480", api_key=KEY
    )
    assert (bad_size.status_code, bad_size.code) == (400, "InvalidParameter")
    assert "size is not supported" in bad_size.message


# -- auth and headers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong", f"Token {KEY}", "Bearer", f"bearer{KEY}"])
def test_bad_key_is_401(http: httpx.Client, authorization: str | None) -> None:
    headers = {"X-DashScope-Async": "enable"} | ({"Authorization": authorization} if authorization else {})
    reply = http.post(VIDEO_GENERATION_PATH, json=t2v_body(), headers=headers)
    assert_error(reply, 401, "InvalidApiKey", "Invalid API-key provided.")
    assert_error(poll(http, "x", key="sk-wrong"), 401, "InvalidApiKey")


def test_other_keys_are_configurable(fake: FakeDashScope, http: httpx.Client) -> None:
    fake.api_keys = {"sk-other"}
    reply = http.post(VIDEO_GENERATION_PATH, json=t2v_body(), headers={**HEADERS, "Authorization": "Bearer sk-other"})
    assert reply.status_code == 200
    assert_error(submit(http, t2v_body()), 401, "InvalidApiKey")


@pytest.mark.parametrize("value", [None, "disable"])
def test_submit_without_async_header_is_403(fake: FakeDashScope, http: httpx.Client, value: str | None) -> None:
    headers = {"Authorization": f"Bearer {KEY}"} | ({"X-DashScope-Async": value} if value else {})
    reply = http.post(VIDEO_GENERATION_PATH, json=t2v_body(), headers=headers)
    assert_error(reply, 403, "AccessDenied", "current user api does not support synchronous calls")
    assert fake.tasks == {}


# -- validation ------------------------------------------------------------------------------------------------------

REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown model", {"model": "wan9-t2v", "input": {"prompt": "x"}}, "InvalidParameter", "Model not exist"),
    ("no model", {"input": {"prompt": "x"}}, "BadRequest.EmptyModel", "model"),
    ("no input", {"model": "wan2.5-t2v-preview"}, "BadRequest.EmptyInput", "input"),
    (
        "t2v without prompt",
        {"model": "wan2.5-t2v-preview", "input": {"prompt": None}},
        "InvalidParameter",
        "input.prompt",
    ),
    ("size on i2v", i2v_body(size="1280*720"), "InvalidParameter", "size is not supported for i2v models"),
    ("resolution on t2v", t2v_body(resolution="720P"), "InvalidParameter", "resolution is not supported"),
    (
        "size outside the model's tiers",
        {**t2v_body(size="832*480"), "model": "wanx2.1-t2v-plus"},
        "InvalidParameter",
        "832*480",
    ),
    ("size not a tier size", t2v_body(size="1000*1000"), "InvalidParameter", "1000*1000"),
    ("tier outside the model's", i2v_body("wan2.2-i2v-plus", resolution="720P"), "InvalidParameter", "720P"),
    ("lowercase tier", i2v_body(resolution="720p"), "InvalidParameter", "720p"),
    (
        "i2v without img_url",
        {"model": "wan2.2-i2v-flash", "input": {"prompt": "x"}},
        "InvalidParameter",
        "input.img_url",
    ),
    (
        "kf2v without first frame",
        {"model": "wan2.2-kf2v-flash", "input": {"last_frame_url": "https://e/2.png"}},
        "InvalidParameter",
        "input.first_frame_url",
    ),
    ("duration 10 on wan2.2", {**t2v_body(duration=10), "model": "wan2.2-t2v-plus"}, "InvalidParameter", "10"),
    ("duration 3 on wan2.5", t2v_body(duration=3), "InvalidParameter", "duration"),
    ("duration as string", t2v_body(duration="5"), "InvalidParameter", "duration"),
    ("audio on wan2.2", {**i2v_body("wan2.2-i2v-flash"), "parameters": {"audio": True}}, "InvalidParameter", "audio"),
    (
        "audio_url on wanx2.1",
        {"model": "wanx2.1-t2v-turbo", "input": {"prompt": "x", "audio_url": "https://e/a.mp3"}},
        "InvalidParameter",
        "audio_url",
    ),
    ("seed out of range", t2v_body(seed=-1), "InvalidParameter", "seed"),
    ("local path image", {"model": "wan2.2-i2v-flash", "input": {"img_url": "/tmp/cat.png"}}, "InvalidURL", "URL"),
    (
        "oss:// without resolve header",
        {"model": "wan2.2-i2v-flash", "input": {"img_url": "oss://d/cat.png"}},
        "InvalidURL",
        "URL",
    ),
    (
        "data: URI that is not an image",
        {"model": "wan2.2-i2v-flash", "input": {"img_url": "data:image/png;base64,aGVsbG8="}},
        "InvalidParameter.DataInspection",
        "media format",
    ),
    (
        "data: URI with bad base64",
        {"model": "wan2.2-i2v-flash", "input": {"img_url": "data:image/png;base64,%%%"}},
        "InvalidParameter",
        "base64",
    ),
]


@pytest.mark.parametrize(("case", "body", "code", "message"), REFUSED, ids=[case[0] for case in REFUSED])
def test_invalid_submits_are_400(
    fake: FakeDashScope, http: httpx.Client, case: str, body: dict[str, Any], code: str, message: str
) -> None:
    # Post where the 1.x SDK would: kf2v models go to the image2video path.
    path = IMAGE2VIDEO_PATH if "kf2v" in str(body.get("model")) else VIDEO_GENERATION_PATH
    assert_error(submit(http, body, path), 400, code, message)
    assert fake.tasks == {}, case


def test_body_that_is_not_json_is_400(http: httpx.Client) -> None:
    reply = http.post(VIDEO_GENERATION_PATH, content=b"{nope", headers=HEADERS)
    assert_error(reply, 400, "InvalidParameter", "JSON")


def test_sdk_artefacts_and_extras_are_tolerated(fake: FakeDashScope, http: httpx.Client) -> None:
    body = {
        "model": "wanx2.1-i2v-turbo",
        "parameters": {"resolution": "480P", "duration": 3, "custom_param": "cp", "prompt_extend": False},
        "input": {
            "prompt": None,
            "extend_prompt": True,
            "function": "video-synthesis",
            "img_url": "https://example.invalid/cat.png",
        },
    }
    task_id = submit_ok(http, body)
    task = fake.tasks[task_id]
    assert (task.duration, task.ratio, task.body) == (3, "832*480", body)


def test_defaults_per_model(fake: FakeDashScope, http: httpx.Client) -> None:
    t2v = fake.tasks[submit_ok(http, {"model": "wanx2.1-t2v-turbo", "input": {"prompt": "x"}})]
    i2v = fake.tasks[submit_ok(http, {"model": "wan2.5-i2v-preview", "input": {"img_url": "https://e/a.png"}})]
    assert (t2v.ratio, t2v.duration) == ("1280*720", 5)
    assert (i2v.ratio, i2v.duration) == ("1920*1080", 5)


def test_data_uri_image_sets_output_aspect(fake: FakeDashScope, http: httpx.Client) -> None:
    body = {
        "model": "wan2.2-i2v-flash",
        "input": {"img_url": png_data_uri(90, 160)},
        "parameters": {"resolution": "720P"},
    }
    assert fake.tasks[submit_ok(http, body)].ratio == "720*1280"


def test_oss_key_is_accepted_with_resolve_header(fake: FakeDashScope, http: httpx.Client) -> None:
    body = {"model": "wan2.5-i2v-preview", "input": {"img_url": "oss://dashscope-instant/x/cat.png"}}
    reply = submit(http, body, **{"X-DashScope-OssResourceResolve": "enable"})
    assert reply.status_code == 200, reply.text


def test_wan25_takes_audio(fake: FakeDashScope, http: httpx.Client) -> None:
    body = t2v_body(audio=False, duration=10)
    body["input"]["audio_url"] = "https://example.invalid/a.mp3"
    assert fake.tasks[submit_ok(http, body)].duration == 10


def test_kf2v_path_rules(http: httpx.Client) -> None:
    body = {"model": "wanx2.1-kf2v-plus", "input": {"first_frame_url": "https://e/1.png"}}
    assert_error(submit(http, body), 400, "InvalidParameter", IMAGE2VIDEO_PATH)
    assert_error(submit(http, t2v_body(), IMAGE2VIDEO_PATH), 400, "InvalidParameter", VIDEO_GENERATION_PATH)
    submit_ok(http, body, IMAGE2VIDEO_PATH)
    submit_ok(http, {**body, "model": "wan2.1-kf2v-plus"}, IMAGE2VIDEO_PATH)


def test_kf2v_any_path_flag() -> None:
    emulator = FakeDashScope(kf2v_any_path=True)
    body = {"model": "wan2.2-kf2v-flash", "input": {"first_frame_url": "https://e/1.png"}}
    with emulator.running(), httpx.Client(base_url=emulator.base_url, trust_env=False) as client:
        submit_ok(client, body, VIDEO_GENERATION_PATH)
        submit_ok(client, body, IMAGE2VIDEO_PATH)


# -- lifecycle --------------------------------------------------------------------------------------------------------


def test_submit_reply_shape(http: httpx.Client) -> None:
    reply = submit(http, t2v_body())
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"request_id", "output"} and set(body["output"]) == {"task_id", "task_status"}
    assert UUID.match(body["request_id"]) and UUID.match(body["output"]["task_id"])
    assert body["output"]["task_status"] == "PENDING"


def test_one_step_per_poll(fake: FakeDashScope, http: httpx.Client) -> None:
    task_id = submit_ok(http, t2v_body(size="624*624"))
    assert [status(http, task_id) for _ in range(4)] == ["PENDING", "RUNNING", "SUCCEEDED", "SUCCEEDED"]
    body = poll(http, task_id, slash="/").json()  # the aio SDK's trailing slash
    output = body["output"]
    assert output["video_url"].startswith(f"{fake.base_url}/_files/")
    assert body["usage"] == {"video_duration": 5, "video_count": 1, "video_ratio": "624*624"}
    assert "code" not in body  # a top-level code makes the 2.0 client raise
    assert TIME.match(output["submit_time"]) and TIME.match(output["end_time"])
    assert output["submit_time"] <= output["scheduled_time"] <= output["end_time"]


def test_polls_per_step_and_manual_advance() -> None:
    emulator = FakeDashScope(polls_per_step=2)
    with emulator.running(), httpx.Client(base_url=emulator.base_url, trust_env=False) as client:
        task_id = submit_ok(client, t2v_body())
        assert [status(client, task_id) for _ in range(5)] == ["PENDING", "PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
        emulator.polls_per_step = 0
        manual = submit_ok(client, t2v_body())
        assert [status(client, manual) for _ in range(3)] == ["PENDING"] * 3
        assert emulator.advance(manual) == "RUNNING"
        assert emulator.advance(manual) == "SUCCEEDED"
        assert status(client, manual) == "SUCCEEDED"


def test_unknown_id_and_other_keys_task_are_unknown(fake: FakeDashScope, http: httpx.Client) -> None:
    reply = poll(http, "0385dc79-5ff8-4d82-bcb6-000000000000")
    assert reply.status_code == 200
    assert reply.json()["output"] == {"task_id": "0385dc79-5ff8-4d82-bcb6-000000000000", "task_status": "UNKNOWN"}
    fake.api_keys.add("sk-other")
    task_id = submit_ok(http, t2v_body())
    assert poll(http, task_id, key="sk-other").json()["output"]["task_status"] == "UNKNOWN"


def test_fail_prompt_ends_failed(fake: FakeDashScope, http: httpx.Client) -> None:
    task_id = submit_ok(http, {"model": "wan2.2-t2v-plus", "input": {"prompt": "bad FAIL:DataInspectionFailed"}})
    assert [status(http, task_id) for _ in range(2)] == ["PENDING", "RUNNING"]
    output = poll(http, task_id).json()["output"]
    assert output["task_status"] == "FAILED" and output["code"] == "DataInspectionFailed"
    assert "inappropriate" in output["message"] and "video_url" not in output
    assert fake.tasks[task_id].video is None


def test_fail_next(fake: FakeDashScope, http: httpx.Client) -> None:
    fake.fail_next("InternalError.Algo", "algo broke")
    failing, fine = submit_ok(http, t2v_body()), submit_ok(http, t2v_body())
    for task_id in (failing, fine):
        fake.advance(task_id)
        fake.advance(task_id)
    assert poll(http, failing).json()["output"]["message"] == "algo broke"
    assert status(http, fine) == "SUCCEEDED"


def test_cancel_rules(fake: FakeDashScope, http: httpx.Client) -> None:
    pending = submit_ok(http, t2v_body())
    reply = http.post(f"/api/v1/tasks/{pending}/cancel", headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200 and set(reply.json()) == {"request_id"}
    assert status(http, pending) == "CANCELED"

    running = submit_ok(http, t2v_body())
    fake.advance(running)
    message = "Failed to cancel the task, please confirm if the task is in PENDING status."
    for task_id in (pending, running, "no-such-task"):
        reply = http.post(f"/api/v1/tasks/{task_id}/cancel", headers={"Authorization": f"Bearer {KEY}"})
        assert_error(reply, 400, "UnsupportedOperation", message)
    assert fake.tasks[running].status == "RUNNING"


def test_expired_file_url_is_403(fake: FakeDashScope, http: httpx.Client) -> None:
    fake.file_ttl_s = -1
    task_id = submit_ok(http, t2v_body())
    fake.advance(task_id)
    fake.advance(task_id)
    url = poll(http, task_id).json()["output"]["video_url"]
    reply = httpx.get(url, trust_env=False)
    assert reply.status_code == 403 and "expired" in reply.text


def test_unknown_route_is_json_404(http: httpx.Client) -> None:
    reply = http.post("/api/v1/services/aigc/text2video/video-synthesis", json=t2v_body(), headers=HEADERS)
    assert_error(reply, 404, "NotFound", "url error")


# -- faults ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "http_status", "code"),
    [("429", 429, "Throttling.RateQuota"), ("500", 500, "InternalError"), ("503", 503, "ServiceUnavailable")],
)
@pytest.mark.parametrize("call", ["submit", "poll", "cancel"])
def test_status_faults_use_dashscope_bodies(
    fake: FakeDashScope, http: httpx.Client, fault: Fault, http_status: int, code: str, call: str
) -> None:
    task_id = submit_ok(http, t2v_body())
    fake.faults.queue(call, fault)
    if call == "submit":
        reply = submit(http, t2v_body())
    elif call == "poll":
        reply = poll(http, task_id)
    else:
        reply = http.post(f"/api/v1/tasks/{task_id}/cancel", headers={"Authorization": f"Bearer {KEY}"})
    assert_error(reply, http_status, code)
    if fault == "429":
        assert reply.json()["message"] == "Requests rate limit exceeded, please try again later."
    assert len(fake.tasks) == 1 and fake.tasks[task_id].status == "PENDING"  # a refused call changes nothing


@pytest.mark.parametrize("call", ["submit", "poll"])
def test_garbage_and_empty_faults(fake: FakeDashScope, http: httpx.Client, call: str) -> None:
    task_id = submit_ok(http, t2v_body())
    fake.faults.queue(call, "garbage", "empty")
    replies = [submit(http, t2v_body()) if call == "submit" else poll(http, task_id) for _ in range(2)]
    assert replies[0].status_code == 200 and replies[0].text.startswith("<html>")
    assert replies[1].status_code == 200 and replies[1].content == b""
    assert (submit(http, t2v_body()) if call == "submit" else poll(http, task_id)).status_code == 200


def test_502_fault_is_html(fake: FakeDashScope, http: httpx.Client) -> None:
    fake.faults.queue("submit", "502")
    reply = submit(http, t2v_body())
    assert reply.status_code == 502 and reply.headers["content-type"].startswith("text/html")


def test_timeout_fault_hangs(fake: FakeDashScope) -> None:
    fake.faults.hang_s = 0.6
    fake.faults.queue("poll", "timeout")
    with httpx.Client(base_url=fake.base_url, timeout=0.2, trust_env=False) as client, pytest.raises(httpx.ReadTimeout):
        poll(client, "any")


def test_unknown_status_fault(fake: FakeDashScope, http: httpx.Client) -> None:
    task_id = submit_ok(http, t2v_body())
    fake.faults.queue("poll", "unknown_status")
    reply = poll(http, task_id)
    assert reply.status_code == 200 and reply.json()["output"]["task_status"] == "SUSPENDED_X"
    assert status(http, task_id) == "RUNNING"  # the odd reply still counted as a poll


def test_drop_reply_fault_creates_the_task(fake: FakeDashScope, http: httpx.Client) -> None:
    fake.faults.queue("submit", "drop_reply")
    assert_error(submit(http, t2v_body()), 500, "InternalError")
    (task,) = fake.tasks.values()
    assert task.status == "PENDING" and task.body == t2v_body()


def test_not_found_fault_on_poll_is_unknown(fake: FakeDashScope, http: httpx.Client) -> None:
    task_id = submit_ok(http, t2v_body())
    fake.faults.queue("poll", "not_found")
    assert status(http, task_id) == "UNKNOWN"
    assert status(http, task_id) == "PENDING"


def test_download_fault(fake: FakeDashScope, http: httpx.Client) -> None:
    task_id = submit_ok(http, t2v_body())
    fake.advance(task_id)
    fake.advance(task_id)
    url = poll(http, task_id).json()["output"]["video_url"]
    fake.faults.queue("download", "503")
    assert httpx.get(url, trust_env=False).status_code == 503
    assert httpx.get(url, trust_env=False).status_code == 200


def test_random_faults(fake: FakeDashScope, http: httpx.Client) -> None:
    fake.faults.random("submit", 1.0, "429")
    assert submit(http, t2v_body()).status_code == 429
    fake.faults.clear()
    assert submit(http, t2v_body()).status_code == 200
