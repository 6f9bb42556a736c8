"""The Ark (Seedance) emulator behaves like the documented API: key auth, per-model validation, lifecycle, list,
cancel, callbacks, expiring result URLs, faults."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.ark import (
    INPUT_POLICY_CODE,
    INPUT_POLICY_TRIGGER,
    OUTPUT_POLICY_CODE,
    OUTPUT_POLICY_TRIGGER,
    TASKS_PATH,
    FakeArk,
)
from tests.fakes.base import FakeUpstream

KEY = "ark-test-key"
PRO = "doubao-seedance-1-0-pro-250528"
FAST = "doubao-seedance-1-0-pro-fast-251015"
LITE_T2V = "doubao-seedance-1-0-lite-t2v-250428"
V15 = "doubao-seedance-1-5-pro-251215"
V2 = "doubao-seedance-2-0-260128"
V2_FAST = "doubao-seedance-2-0-fast-260128"


def png_url(width: int = 400, height: int = 300) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def body(model: str = PRO, prompt: str = "a kitten yawns", **fields: Any) -> dict[str, Any]:
    return {"model": model, "content": [{"type": "text", "text": prompt}], **fields}


class Receiver(FakeUpstream):
    """A callback receiver: answers with `status` and keeps what it got."""

    name = "receiver"

    def __init__(self) -> None:
        self.status = 200
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [Route("/cb", self._cb, methods=["POST"])]

    async def _cb(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({}, status_code=self.status)


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeArk]:
    emulator = FakeArk(KEY)
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeArk) -> FakeArk:
    running_fake.reset()
    return running_fake


@pytest.fixture
def client(fake: FakeArk) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=fake.base_url + "/api/v3", headers=headers, timeout=10) as http:
        yield http


def create(client: httpx.Client, payload: dict[str, Any]) -> str:
    answer = client.post("/contents/generations/tasks", json=payload)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["id"]
    assert isinstance(task_id, str) and task_id.startswith("cgt-")
    return task_id


def wait(client: httpx.Client, task_id: str, until: tuple[str, ...] = ("succeeded", "failed", "expired")) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = client.get(f"/contents/generations/tasks/{task_id}").json()
        if data["status"] in until:
            return data
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not reach {until}")


def test_key_is_checked_as_ark_does(fake: FakeArk) -> None:
    url = fake.base_url + TASKS_PATH
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        answer = httpx.post(url, json=body(), headers=headers)
        assert answer.status_code == 401
        error = answer.json()["error"]
        assert error["code"] == "AuthenticationError" and error["type"] == "Unauthorized"
        assert "Request id:" in error["message"]
    assert fake.tasks == {}


def test_t2v_lifecycle_and_a_real_mp4(client: httpx.Client, fake: FakeArk) -> None:
    task_id = create(client, body(PRO, resolution="720p", ratio="16:9", duration=5, seed=11, watermark=False))
    first = client.get(f"/contents/generations/tasks/{task_id}").json()
    assert first["status"] in ("queued", "running") and "content" not in first and first["error"] is None
    done = wait(client, task_id)
    assert done["status"] == "succeeded"
    assert done["model"] == PRO and done["seed"] == 11 and done["duration"] == 5
    assert done["resolution"] == "720p" and done["ratio"] == "16:9" and done["framespersecond"] == 24
    # 1.0 family 720p 16:9 is 1248x704: tokens = w*h*fps*s/1024
    assert done["usage"] == {
        "completion_tokens": 1248 * 704 * 24 * 5 // 1024,
        "total_tokens": 1248 * 704 * 24 * 5 // 1024,
    }
    video = httpx.get(done["content"]["video_url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert "generate_audio" not in done and "last_frame_url" not in done["content"]


def test_defaults_per_model(client: httpx.Client) -> None:
    pro = wait(client, create(client, body(PRO)))
    assert (pro["resolution"], pro["ratio"], pro["duration"]) == ("1080p", "16:9", 5)
    v15 = wait(client, create(client, body(V15)))
    assert (v15["resolution"], v15["ratio"], v15["generate_audio"]) == ("720p", "16:9", True)  # adaptive → 16:9
    assert v15["seed"] >= 0  # -1 became a real seed


def test_result_urls_expire_and_last_frame(client: httpx.Client, fake: FakeArk) -> None:
    fake.file_ttl_s = -1
    done = wait(client, create(client, body(V2, return_last_frame=True, generate_audio=False)))
    assert done["generate_audio"] is False
    assert done["content"]["last_frame_url"].split("?")[0].endswith(".png")
    assert httpx.get(done["content"]["video_url"]).status_code == 403
    fake.file_ttl_s = 86400
    done = wait(client, create(client, body(V2, return_last_frame=True)))
    frame = httpx.get(done["content"]["last_frame_url"])
    assert frame.status_code == 200 and frame.content[:4] == b"\x89PNG"


def test_first_and_last_frame_modes(client: httpx.Client, fake: FakeArk) -> None:
    first = {"type": "image_url", "image_url": {"url": png_url()}, "role": "first_frame"}
    last = {"type": "image_url", "image_url": {"url": png_url()}, "role": "last_frame"}
    payload = {"model": V15, "content": [{"type": "text", "text": "turn"}, first, last], "ratio": "adaptive"}
    done = wait(client, create(client, payload))
    assert done["status"] == "succeeded" and done["ratio"] == "4:3"  # adaptive follows the 400x300 image
    # A single image needs no role; a URL is not fetched.
    bare = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert create(client, {"model": FAST, "content": [bare]})


BAD_BODIES: list[tuple[dict[str, Any], str, str]] = [
    (body(PRO, duration=13), "InvalidParameter", "duration"),
    (body(PRO, duration=-1), "InvalidParameter", "duration"),
    (body(V15, duration=3), "InvalidParameter", "duration"),
    (body(V2, duration=16), "InvalidParameter", "duration"),
    (body(PRO, duration="5"), "InvalidParameter", "duration"),
    (body(V2_FAST, resolution="1080p"), "InvalidParameter", "resolution"),
    (body(PRO, resolution="720P"), "InvalidParameter", "resolution"),
    (body(PRO, ratio="adaptive"), "InvalidParameter", "ratio"),
    (body(PRO, ratio="2:1"), "InvalidParameter", "ratio"),
    (body(PRO, generate_audio=True), "InvalidParameter", "generate_audio"),
    (body(V2, camera_fixed=True), "InvalidParameter", "camera_fixed"),
    (body(V2, service_tier="flex"), "InvalidParameter", "service_tier"),
    (body(V15, frames=121), "InvalidParameter", "frames"),
    (body(PRO, frames=30), "InvalidParameter", "frames"),
    (body(PRO, seed=2**32), "InvalidParameter", "seed"),
    (body(PRO, watermark="yes"), "InvalidParameter", "watermark"),
    (body(PRO, execution_expires_after=60), "InvalidParameter", "execution_expires_after"),
    (body(PRO, draft=True), "InvalidParameter", "draft"),
    (body(PRO, size="1280x720"), "InvalidParameter", "size"),
    (body(PRO, tools=[{"type": "web_search"}]), "InvalidParameter", "tools"),
    ({"model": PRO, "content": []}, "MissingParameter", "content"),
    ({"model": PRO}, "MissingParameter", "content"),
    ({"content": [{"type": "text", "text": "x"}]}, "MissingParameter", "model"),
]


@pytest.mark.parametrize(("payload", "code", "param"), BAD_BODIES)
def test_bad_bodies_are_400_with_the_param(
    client: httpx.Client, payload: dict[str, Any], code: str, param: str
) -> None:
    answer = client.post("/contents/generations/tasks", json=payload)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "BadRequest")


def test_content_rules_per_model(client: httpx.Client, fake: FakeArk) -> None:
    image = {"type": "image_url", "image_url": {"url": png_url()}, "role": "first_frame"}
    last = {"type": "image_url", "image_url": {"url": png_url()}, "role": "last_frame"}
    text = {"type": "text", "text": "go"}
    refused = [
        {"model": LITE_T2V, "content": [text, image]},  # t2v only
        {"model": FAST, "content": [text, image, last]},  # no first+last
        {"model": PRO, "content": [text, last]},  # a last frame alone
        {"model": PRO, "content": [text, {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}]},
        {"model": V2, "content": [text, image, {**image, "role": "reference_image"}]},  # modes exclusive
        {
            "model": V2,
            "content": [
                text,
                {"type": "audio_url", "audio_url": {"url": "https://x/a.wav"}, "role": "reference_audio"},
            ],
        },
        {"model": PRO, "content": [text, {"type": "image_url", "image_url": {"url": "data:image/PNG;base64,AAAA"}}]},
        {"model": PRO, "content": [text, {"type": "image_url", "image_url": {"url": png_url(200, 200)}}]},
        {"model": PRO, "content": [text, {"type": "image_url", "image_url": {"url": png_url(1000, 300)}}]},
        {"model": PRO, "content": [text, {"type": "image_url", "image_url": {"url": "asset://abc"}}]},
    ]
    for payload in refused:
        answer = client.post("/contents/generations/tasks", json=payload)
        assert answer.status_code == 400, payload
        assert answer.json()["error"]["code"] == "InvalidParameter"
    assert fake.tasks == {}
    reference = {"type": "image_url", "image_url": {"url": "asset://asset-1"}, "role": "reference_image"}
    assert create(client, {"model": V2, "content": [text, reference]})


def test_unknown_model_and_region_ids(client: httpx.Client, fake: FakeArk) -> None:
    answer = client.post("/contents/generations/tasks", json=body("dreamina-seedance-2-0-260128"))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "InvalidEndpointOrModel.NotFound"
    task_id = create(client, body("ep-20260101-seedance-1-5-pro-251215"))
    assert wait(client, task_id)["model"] == V15
    fake.region = "intl"
    assert create(client, body("dreamina-seedance-2-0-260128"))
    assert client.post("/contents/generations/tasks", json=body(V2)).status_code == 404


def test_text_commands_are_read_loosely_and_body_fields_win(client: httpx.Client) -> None:
    done = wait(client, create(client, body(PRO, "a cat --rs 480p --rt 9:16 --dur 3 --seed 7 --cf true --wm maybe")))
    assert (done["resolution"], done["ratio"], done["duration"], done["seed"]) == ("480p", "9:16", 3, 7)
    done = wait(client, create(client, body(PRO, "a cat --rs 480p --dur 3", duration=6)))
    assert (done["resolution"], done["duration"]) == ("480p", 6)


def test_content_policy_at_submit_and_on_output(client: httpx.Client, fake: FakeArk) -> None:
    answer = client.post("/contents/generations/tasks", json=body(PRO, f"{INPUT_POLICY_TRIGGER} now"))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == INPUT_POLICY_CODE
    failed = wait(client, create(client, body(PRO, f"{OUTPUT_POLICY_TRIGGER} now")))
    assert failed["status"] == "failed" and failed["error"]["code"] == OUTPUT_POLICY_CODE
    assert "content" not in failed and failed["usage"]["total_tokens"] == 0
    fake.fail_next("InternalServiceError", "boom")
    assert wait(client, create(client, body(PRO)))["error"] == {"code": "InternalServiceError", "message": "boom"}


def test_cancel_only_while_queued(client: httpx.Client, fake: FakeArk) -> None:
    fake.step_s = 3600
    queued = create(client, body(PRO))
    assert client.delete(f"/contents/generations/tasks/{queued}").json() == {}
    assert client.get(f"/contents/generations/tasks/{queued}").json()["status"] == "cancelled"
    running = create(client, body(PRO))
    fake.advance(running)
    answer = client.delete(f"/contents/generations/tasks/{running}")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidParameter"
    fake.advance(running)
    assert client.delete(f"/contents/generations/tasks/{running}").status_code == 200
    gone = client.get(f"/contents/generations/tasks/{running}")
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "NotFound"


def test_tasks_expire_after_their_execution_window(client: httpx.Client, fake: FakeArk) -> None:
    fake.step_s = 3600 * 10
    task_id = create(client, body(PRO, execution_expires_after=3600))
    fake.offset = 3601
    assert client.get(f"/contents/generations/tasks/{task_id}").json()["status"] == "expired"


def test_list_filters_pages_and_window(client: httpx.Client, fake: FakeArk) -> None:
    fake.step_s = 3600
    ids = [create(client, body(PRO)) for _ in range(3)] + [create(client, body(V15))]
    page = client.get("/contents/generations/tasks", params={"page_size": 2}).json()
    assert page["total"] == 4 and [t["id"] for t in page["items"]] == ids[::-1][:2]  # newest first
    page2 = client.get("/contents/generations/tasks", params={"page_size": 2, "page_num": 2}).json()
    assert [t["id"] for t in page2["items"]] == ids[::-1][2:]
    assert client.get("/contents/generations/tasks", params={"filter.model": V15}).json()["total"] == 1
    picked = client.get(
        "/contents/generations/tasks", params=[("filter.task_ids", ids[0]), ("filter.task_ids", ids[2])]
    )
    assert sorted(t["id"] for t in picked.json()["items"]) == sorted([ids[0], ids[2]])
    client.delete(f"/contents/generations/tasks/{ids[1]}")
    assert client.get("/contents/generations/tasks", params={"filter.status": "cancelled"}).json()["total"] == 1
    answer = client.get("/contents/generations/tasks", params={"page_size": 501})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "page_size"
    fake.offset = 7 * 86400 + 5
    assert client.get("/contents/generations/tasks").json()["total"] == 0


def test_callbacks_on_each_change_with_retries() -> None:
    receiver = Receiver()
    fake = FakeArk(KEY, step_s=0.2)
    with receiver.running(), fake.running():
        receiver.status = 500
        headers = {"Authorization": f"Bearer {KEY}"}
        answer = httpx.post(
            fake.base_url + TASKS_PATH, json=body(PRO, callback_url=receiver.base_url + "/cb"), headers=headers
        )
        task_id = answer.json()["id"]
        deadline = time.monotonic() + 10
        while len(receiver.calls("/cb")) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        got = [call.json for call in receiver.calls("/cb")]
        assert [item["status"] for item in got] == ["queued", "running"] + ["succeeded"] * 4  # 1 + 3 retries
        assert all(item["id"] == task_id for item in got)
        assert got[-1] == httpx.get(fake.base_url + TASKS_PATH + f"/{task_id}", headers=headers).json()
        assert [c.status for c in fake.callbacks][-1] == 500


def test_faults_on_every_call(client: httpx.Client, fake: FakeArk) -> None:
    fake.faults.queue("submit", "429")
    answer = client.post("/contents/generations/tasks", json=body())
    assert answer.status_code == 429 and answer.json()["error"]["code"] == "ServerOverloaded"
    assert fake.tasks == {}
    fake.faults.queue("submit", "cut")
    with pytest.raises(httpx.HTTPError):
        client.post("/contents/generations/tasks", json=body())
    assert len(fake.tasks) == 1  # the task exists; its reply was lost
    fake.faults.queue("submit", "lost_reply")  # type: ignore[arg-type]
    with pytest.raises(httpx.HTTPError):
        client.post("/contents/generations/tasks", json=body())
    assert len(fake.tasks) == 2
    task_id = create(client, body())
    fake.faults.queue("poll", "500", "garbage", "not_found")
    assert client.get(f"/contents/generations/tasks/{task_id}").status_code == 500
    assert client.get(f"/contents/generations/tasks/{task_id}").headers["content-type"].startswith("text/plain")
    assert client.get(f"/contents/generations/tasks/{task_id}").status_code == 404
    fake.faults.queue("list", "503")
    assert client.get("/contents/generations/tasks").status_code == 503
    done = wait(client, task_id)
    fake.faults.queue("download", "500")
    assert httpx.get(done["content"]["video_url"]).status_code == 500
    assert httpx.get(done["content"]["video_url"]).status_code == 200
