"""The MiniMax emulator behaves like the documented API: V1 base_resp codes, per-model validation, the
Preparing→Success walk, file_id → files/retrieve → expiring download_url, the callback challenge; V2's content
array, HTTP errors, get, list, delete; and faults."""

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

from tests.fakes.base import FakeUpstream
from tests.fakes.minimax import CAMERA_COMMANDS, H3, FakeMiniMax

V1, V1_QUERY, FILES = "/v1/video_generation", "/v1/query/video_generation", "/v1/files/retrieve"
V2, V2_QUERY = "/v2/video_generation", "/v2/query/video_generation"


def data_uri(width: int = 320, height: int = 320, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format=fmt)
    mime = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


class Receiver(FakeUpstream):
    """A callback endpoint: answers challenges (rightly unless told otherwise) and keeps what it got."""

    name = "receiver"

    def __init__(self) -> None:
        self.echo_right = True
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [Route("/cb", self._cb, methods=["POST"])]

    async def _cb(self, request: Request) -> Response:
        entry = await self.record(request)
        body = entry.json if isinstance(entry.json, dict) else {}
        if "challenge" in body:
            return JSONResponse({"challenge": body["challenge"] if self.echo_right else "nope"})
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeMiniMax]:
    emulator = FakeMiniMax()
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeMiniMax) -> FakeMiniMax:
    running_fake.reset()
    return running_fake


@pytest.fixture
def client(fake: FakeMiniMax) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, headers={"Authorization": "Bearer sk-api-test"}, timeout=10) as c:
        yield c


def v1(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post(V1, json=body)
    assert answer.status_code == 200  # V1 answers business errors inside HTTP 200
    data: dict[str, Any] = answer.json()
    return data


def v1_refusal(client: httpx.Client, **body: Any) -> tuple[int, str]:
    resp = v1(client, **body)["base_resp"]
    return resp["status_code"], resp["status_msg"]


def poll_v1(client: httpx.Client, task_id: str, polls: int = 10) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _ in range(polls):
        data = client.get(V1_QUERY, params={"task_id": task_id}).json()
        if data["status"] in ("Success", "Fail"):
            break
    return data


# -- auth ------------------------------------------------------------------------------------------------------


def test_v1_auth_errors_are_base_resp_in_200(fake: FakeMiniMax) -> None:
    with httpx.Client(base_url=fake.base_url) as anonymous:
        answer = anonymous.post(V1, json={"model": "T2V-01", "prompt": "a cat"})
        assert answer.status_code == 200
        assert answer.json()["base_resp"]["status_code"] == 1004
        wrong = anonymous.post(
            V1, json={"model": "T2V-01", "prompt": "a cat"}, headers={"Authorization": "Bearer sk-api-other"}
        )
        assert wrong.json()["base_resp"] == {"status_code": 2049, "status_msg": "invalid api key"}
    assert not fake.tasks


def test_v2_auth_errors_are_http_401(fake: FakeMiniMax) -> None:
    with httpx.Client(base_url=fake.base_url) as anonymous:
        answer = anonymous.post(V2, json={"model": H3, "content": [{"type": "text", "text": "x"}], "ratio": "16:9"})
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"
    assert answer.json()["type"] == "error"


# -- V1 validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "Hailuo-9", "prompt": "x"}, "model"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "duration": 8}, "duration"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "duration": 10, "resolution": "1080P"}, "1080P"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "resolution": "720P"}, "resolution"),
        ({"model": "MiniMax-Hailuo-02", "prompt": "x", "resolution": "512P"}, "512P"),
        ({"model": "T2V-01-Director", "prompt": "x", "duration": 10}, "duration"),
        ({"model": "T2V-01-Director", "prompt": "x", "resolution": "1080P"}, "resolution"),
        ({"model": "MiniMax-Hailuo-2.3-Fast", "prompt": "x"}, "first_frame_image is required"),
        ({"model": "I2V-01-Director", "prompt": "x"}, "first_frame_image is required"),
        ({"model": "T2V-01-Director", "prompt": "x", "first_frame_image": "https://x/y.png"}, "not supported"),
        ({"model": "MiniMax-Hailuo-2.3"}, "prompt is required"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x" * 2001}, "2000"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "prompt_optimizer": "yes"}, "prompt_optimizer"),
        ({"model": "T2V-01-Director", "prompt": "x", "fast_pretreatment": True}, "fast_pretreatment"),
        ({"model": "T2V-01-Director", "prompt": "[Pan left,Spin around] a cat"}, "Spin around"),
        ({"model": "T2V-01-Director", "prompt": "[Pan left,Push in,Zoom in,Shake] a cat"}, "at most 3"),
        ({"model": "S2V-01", "prompt": "x"}, "subject_reference"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "subject_reference": []}, "subject_reference"),
        ({"model": "I2V-01", "prompt": "x", "first_frame_image": "https://x/a.png", "last_frame_image": "x"}, "last"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "last_frame_image": "https://x/a.png"}, "needs first"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "callback_url": "ftp://x"}, "callback_url"),
        ({"model": "MiniMax-Hailuo-2.3", "prompt": "x", "aspect_ratio": "16:9"}, "unknown field"),
    ],
)
def test_v1_refuses_what_the_model_does_not_take(client: httpx.Client, body: dict[str, Any], words: str) -> None:
    code, message = v1_refusal(client, **body)
    assert code == 2013
    assert words in message


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (data_uri(200, 200), "short side"),
        (data_uri(1200, 320), "aspect ratio"),
        (data_uri(320, 320, "GIF"), "format GIF"),
        ("data:image/png;base64,!!!", "base64"),
        ("file:///etc/passwd", "URL"),
    ],
)
def test_v1_checks_inline_images(client: httpx.Client, image: str, words: str) -> None:
    code, message = v1_refusal(client, model="I2V-01", prompt="x", first_frame_image=image)
    assert code == 2013 and words in message


def test_v1_accepts_each_documented_shape(client: httpx.Client) -> None:
    image = data_uri(320, 400, "JPEG")
    shapes = [
        {"model": "MiniMax-Hailuo-2.3", "prompt": "a cat", "duration": 10, "resolution": "768P"},
        {
            "model": "MiniMax-Hailuo-2.3",
            "prompt": "a cat",
            "duration": 6,
            "resolution": "1080P",
            "fast_pretreatment": True,
        },
        {"model": "MiniMax-Hailuo-2.3-Fast", "first_frame_image": image},
        {"model": "MiniMax-Hailuo-02", "first_frame_image": data_uri(fmt="WEBP"), "resolution": "512P", "duration": 10},
        {"model": "MiniMax-Hailuo-02", "prompt": "x", "first_frame_image": image, "last_frame_image": image},
        {"model": "T2V-01-Director", "prompt": f"[{', '.join(CAMERA_COMMANDS[:3])}] a cat [Static shot]"},
        {"model": "MiniMax-Hailuo-2.3", "prompt": "[Pan left] a cat, [warm light]"},
        {"model": "I2V-01-live", "first_frame_image": "https://example.com/a.png", "prompt_optimizer": False},
        {"model": "S2V-01", "prompt": "she waves", "subject_reference": [{"type": "character", "image": [image]}]},
    ]
    for shape in shapes:
        data = v1(client, **shape)
        assert data["base_resp"] == {"status_code": 0, "status_msg": "success"}, shape
        assert data["task_id"].isdigit() and 15 <= len(data["task_id"]) <= 18


# -- V1 lifecycle ---------------------------------------------------------------------------------------------


def test_v1_walks_to_success_and_serves_an_expiring_mp4(fake: FakeMiniMax, client: httpx.Client) -> None:
    task_id = v1(client, model="MiniMax-Hailuo-2.3", prompt="a cat")["task_id"]
    seen = [client.get(V1_QUERY, params={"task_id": task_id}).json()["status"] for _ in range(4)]
    assert seen == ["Queueing", "Processing", "Success", "Success"]
    done = client.get(V1_QUERY, params={"task_id": task_id}).json()
    assert done["base_resp"]["status_code"] == 0
    assert done["video_width"] == 1366 and done["video_height"] == 768
    file = client.get(FILES, params={"file_id": done["file_id"]}).json()["file"]
    assert isinstance(file["file_id"], int) and str(file["file_id"]) == done["file_id"]
    assert file["purpose"] == "video_generation" and file["filename"] == "output.mp4"
    video = httpx.get(file["download_url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp" and file["bytes"] == len(video.content)
    # Downloads need no auth (a CDN), and a URL dies with its lifetime.
    fake.file_ttl_s = -1
    stale = client.get(FILES, params={"file_id": done["file_id"]}).json()["file"]["download_url"]
    assert httpx.get(stale).status_code == 403


def test_v1_unknown_task_and_file_are_2013(client: httpx.Client) -> None:
    answer = client.get(V1_QUERY, params={"task_id": "123"}).json()
    assert answer["base_resp"]["status_code"] == 2013
    assert client.get(FILES, params={"file_id": "99"}).json()["base_resp"]["status_code"] == 2013


def test_v1_content_policy(fake: FakeMiniMax, client: httpx.Client) -> None:
    assert v1_refusal(client, model="T2V-01", prompt="FORBIDDEN scene") == (1026, "input new_sensitive")
    task_id = v1(client, model="T2V-01", prompt="BLOCKED_OUTPUT scene")["task_id"]
    failed = poll_v1(client, task_id)
    assert failed["status"] == "Fail"
    assert failed["base_resp"] == {"status_code": 1027, "status_msg": "output new_sensitive"}
    assert "file_id" not in failed
    fake.fail_next(1000, "unknown error")
    other = poll_v1(client, v1(client, model="T2V-01", prompt="fine")["task_id"])
    assert other["status"] == "Fail" and other["base_resp"]["status_code"] == 1000


def test_v1_callback_challenge_then_status_updates(fake: FakeMiniMax, client: httpx.Client) -> None:
    receiver = Receiver()
    with receiver.running():
        task_id = v1(client, model="T2V-01", prompt="a cat", callback_url=f"{receiver.base_url}/cb")["task_id"]
        wait_for(lambda: fake.tasks[task_id].callback_verified)
        challenge = receiver.history[0].json
        assert set(challenge) == {"challenge"} and challenge["challenge"]
        assert fake.callbacks[0].answer == challenge
        poll_v1(client, task_id)
        wait_for(lambda: len(receiver.history) >= 4)
        updates = [entry.json for entry in receiver.history[1:]]
        assert [u["status"] for u in updates] == ["processing", "processing", "success"]
        assert updates[-1]["file_id"] == str(fake.tasks[task_id].file_id)
        assert updates[-1]["base_resp"]["status_code"] == 0 and updates[-1]["task_id"] == task_id


def test_v1_callback_without_the_right_echo_gets_no_updates(fake: FakeMiniMax, client: httpx.Client) -> None:
    receiver = Receiver()
    receiver.echo_right = False
    with receiver.running():
        task_id = v1(client, model="T2V-01", prompt="a cat", callback_url=f"{receiver.base_url}/cb")["task_id"]
        wait_for(lambda: len(fake.callbacks) == 1 and fake.callbacks[0].status is not None)
        assert poll_v1(client, task_id)["status"] == "Success"
        time.sleep(0.2)
        assert len(receiver.history) == 1 and not fake.tasks[task_id].callback_verified


def wait_for(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- V2 -------------------------------------------------------------------------------------------------------


def h3(text: str = "a cat", ratio: str | None = "16:9", **body: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    out: dict[str, Any] = {"model": H3, "content": content + body.pop("media", []), **body}
    if ratio is not None:
        out["ratio"] = ratio
    return out


def frame(role: str, url: str = "https://example.com/a.png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, "role": role}


def test_v2_create_get_to_succeeded(client: httpx.Client) -> None:
    answer = client.post(V2, json=h3(duration=8, resolution="2K"))
    assert answer.status_code == 200 and set(answer.json()) == {"task_id"}
    task_id = answer.json()["task_id"]
    states = [client.get(f"{V2_QUERY}/{task_id}").json()["task"]["status"] for _ in range(3)]
    assert states == ["running", "succeeded", "succeeded"]
    task = client.get(f"{V2_QUERY}/{task_id}").json()["task"]
    assert task["id"] == task_id and task["model"] == H3 and task["duration"] == 8 and task["resolution"] == "2K"
    assert task["task_type"] == "t2v" and task["usage"]["output_seconds"] == 8
    video = httpx.get(task["content"]["url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (h3(ratio=None), "concrete ratio"),
        (h3(ratio="adaptive"), "concrete ratio"),
        (h3(ratio="2:1"), "ratio"),
        (h3(duration=3), "duration"),
        (h3(duration=16), "duration"),
        (h3(resolution="1080P"), "resolution"),
        (h3(ratio="16:9", media=[frame("first_frame")]), "adaptive"),
        (h3(ratio=None, media=[frame("first_frame"), frame("first_frame")]), "at most 1"),
        (h3(ratio=None, media=[frame("first_frame"), frame("reference_image")]), "cannot be mixed"),
        (
            h3(
                ratio=None,
                media=[{"type": "audio_url", "audio_url": {"url": "https://x/a.mp3"}, "role": "reference_audio"}],
            ),
            "audio",
        ),
        (h3(ratio=None, media=[frame("reference_image")] * 10), "at most 9"),
        (h3(ratio=None, media=[frame("cover")]), "role"),
        (h3(ratio=None, media=[frame("first_frame", data_uri(200, 200))]), "short side"),
        (h3(text="x" * 7001), "7000"),
        ({"model": "MiniMax-Hailuo-2.3", "content": [{"type": "text", "text": "x"}]}, "model"),
        ({**h3(), "prompt_optimizer": True}, "unknown field"),
        ({"model": H3, "content": []}, "content"),
    ],
)
def test_v2_refusals_are_http_400(client: httpx.Client, body: dict[str, Any], words: str) -> None:
    answer = client.post(V2, json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["http_code"] == "400" and words in error["message"]


def test_v2_frames_and_references(client: httpx.Client) -> None:
    fl2v = client.post(V2, json=h3(ratio=None, media=[frame("first_frame", data_uri()), frame("last_frame")]))
    assert fl2v.status_code == 200
    last_only = client.post(V2, json=h3(ratio="adaptive", media=[frame("last_frame")]))
    assert last_only.status_code == 200
    refs = [frame("reference_image")] * 2 + [
        {"type": "video_url", "video_url": {"url": "mm_file://123"}, "role": "reference_video"},
        {"type": "audio_url", "audio_url": {"url": "https://x/a.mp3"}, "role": "reference_audio"},
    ]
    r2v = client.post(V2, json=h3(ratio="9:16", media=refs))
    assert r2v.status_code == 200
    types = {
        task_id: client.get(f"{V2_QUERY}/{task_id}").json()["task"]["task_type"]
        for task_id in (fl2v.json()["task_id"], last_only.json()["task_id"], r2v.json()["task_id"])
    }
    assert sorted(types.values()) == ["fl2v", "i2v", "r2v"]


def test_v2_moderation(fake: FakeMiniMax, client: httpx.Client) -> None:
    refused = client.post(V2, json=h3(text="FORBIDDEN"))
    assert refused.status_code == 422
    assert refused.json()["error"]["type"] == "unprocessable_entity_error"
    assert "new_sensitive" in refused.json()["error"]["message"] and refused.json()["error"]["code"] == 1026
    task_id = client.post(V2, json=h3(text="BLOCKED_OUTPUT")).json()["task_id"]
    for _ in range(3):
        task = client.get(f"{V2_QUERY}/{task_id}").json()["task"]
    assert task["status"] == "failed" and task["error"] == {"code": "1027", "message": "output new_sensitive"}
    assert "content" not in task


def test_v2_list_filters_and_pages(client: httpx.Client) -> None:
    ids = [client.post(V2, json=h3(text=f"cat {n}")).json()["task_id"] for n in range(5)]
    client.get(f"{V2_QUERY}/{ids[0]}")  # running
    page = client.get(V2_QUERY, params={"page_num": 1, "page_size": 2}).json()
    assert page["total"] == 5 and [t["id"] for t in page["items"]] == ids[::-1][:2]
    last = client.get(V2_QUERY, params={"page_num": 3, "page_size": 2}).json()
    assert [t["id"] for t in last["items"]] == [ids[0]]
    queued = client.get(V2_QUERY, params={"filter.status": "queued"}).json()
    assert queued["total"] == 4
    picked = client.get(V2_QUERY, params={"filter.task_ids": f"{ids[1]},{ids[3]}", "filter.model": H3}).json()
    assert sorted(t["id"] for t in picked["items"]) == sorted([ids[1], ids[3]])
    assert client.get(V2_QUERY, params={"filter.task_type": "fl2v"}).json()["total"] == 0
    assert client.get(V2_QUERY, params={"page_size": 0}).status_code == 400
    assert client.get(V2_QUERY, params={"filter.status": "done"}).status_code == 400


def test_v2_delete_cancels_queued_refuses_running_deletes_finished(client: httpx.Client) -> None:
    queued, running = (client.post(V2, json=h3()).json()["task_id"] for _ in range(2))
    cancel = client.delete(f"{V2}/{queued}")
    assert cancel.status_code == 200 and cancel.json() == {"task_id": queued, "action": "cancel", "status": "cancelled"}
    assert client.get(f"{V2_QUERY}/{queued}").json()["task"]["status"] == "cancelled"
    client.get(f"{V2_QUERY}/{running}")
    assert client.delete(f"{V2}/{running}").status_code == 409
    client.get(f"{V2_QUERY}/{running}")
    deleted = client.delete(f"{V2}/{running}")
    assert deleted.json()["action"] == "delete"
    assert client.get(f"{V2_QUERY}/{running}").status_code == 404
    assert client.delete(f"{V2}/{running}").status_code == 404


def test_v1_and_v2_ids_do_not_cross(client: httpx.Client) -> None:
    v2_id = client.post(V2, json=h3()).json()["task_id"]
    assert client.get(V1_QUERY, params={"task_id": v2_id}).json()["base_resp"]["status_code"] == 2013
    v1_id = v1(client, model="T2V-01", prompt="x")["task_id"]
    assert client.get(f"{V2_QUERY}/{v1_id}").status_code == 404


# -- faults ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [V1, V2])
def test_cut_submit_creates_the_task_but_loses_the_reply(fake: FakeMiniMax, client: httpx.Client, path: str) -> None:
    fake.faults.queue("submit", "cut")
    body = h3() if path == V2 else {"model": "T2V-01", "prompt": "x"}
    with pytest.raises(httpx.HTTPError):
        client.post(path, json=body)
    assert len(fake.tasks) == 1
    if path == V2:
        listed = client.get(V2_QUERY).json()
        assert [t["id"] for t in listed["items"]] == list(fake.tasks)


def test_drop_reply_creates_the_task_and_answers_an_error(fake: FakeMiniMax, client: httpx.Client) -> None:
    fake.faults.queue("submit", "drop_reply", "drop_reply")
    assert v1_refusal(client, model="T2V-01", prompt="x")[0] == 1000
    assert client.post(V2, json=h3()).status_code == 500
    assert len(fake.tasks) == 2


def test_http_faults_on_each_kind_of_call(fake: FakeMiniMax, client: httpx.Client) -> None:
    task_id = client.post(V2, json=h3()).json()["task_id"]
    fake.faults.queue("poll", "503", "garbage")
    assert client.get(f"{V2_QUERY}/{task_id}").status_code == 503
    assert client.get(f"{V2_QUERY}/{task_id}").text.startswith("<html>")
    fake.faults.queue("list", "429")
    assert client.get(V2_QUERY).status_code == 429
    fake.faults.queue("submit", "500")
    assert client.post(V1, json={"model": "T2V-01", "prompt": "x"}).status_code == 500
    for _ in range(3):
        task = client.get(f"{V2_QUERY}/{task_id}").json()["task"]
    fake.faults.queue("download", "502")
    assert httpx.get(task["content"]["url"]).status_code == 502
    assert httpx.get(task["content"]["url"]).status_code == 200


def test_poll_unknown_status_and_not_found(fake: FakeMiniMax, client: httpx.Client) -> None:
    task_id = v1(client, model="T2V-01", prompt="x")["task_id"]
    fake.faults.queue("poll", "unknown_status", "not_found")
    assert client.get(V1_QUERY, params={"task_id": task_id}).json()["status"] == "Weird"
    assert client.get(V1_QUERY, params={"task_id": task_id}).json()["base_resp"]["status_code"] == 2013
    assert fake.tasks[task_id].status in ("Queueing", "Processing")
