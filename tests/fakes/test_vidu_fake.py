"""The Vidu emulator behaves like the documented API: Token auth, per-endpoint validation, lifecycle, cancel,
faults."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.vidu import FakeVidu

BASE = "/ent/v2"
KEY = "vda_test"


def data_uri(width: int = 64, height: int = 64, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 160, 60)).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeVidu]:
    # One server per module (starting and stopping uvicorn costs ~0.3 s); each test gets it reset.
    emulator = FakeVidu()
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeVidu) -> FakeVidu:
    running_fake.reset()
    return running_fake


@pytest.fixture
def client(fake: FakeVidu) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Token {KEY}"}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=10, trust_env=False) as http:
        yield http


def create(client: httpx.Client, endpoint: str = "text2video", **body: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"model": "viduq1", "prompt": "a fox in the snow"}
    response = client.post(f"{BASE}/{endpoint}", json={**defaults, **body})
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def poll(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/tasks/{task_id}/creations")
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def poll_until_done(client: httpx.Client, task_id: str, limit: int = 10) -> dict[str, Any]:
    for _ in range(limit):
        data = poll(client, task_id)
        if data["state"] in ("success", "failed"):
            return data
    raise AssertionError(f"task {task_id} never finished")


def refusal(response: httpx.Response, status: int, reason: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and body["reason"] == reason
    assert re.fullmatch(r"[0-9a-f]{32}", body["metadata"]["trace_id"])
    message: str = body["message"]
    return message


# -- happy paths ----------------------------------------------------------------------------------------------


def test_text2video_lifecycle_and_download(fake: FakeVidu, client: httpx.Client) -> None:
    created = create(client, model="viduq2", duration=8, resolution="540p", aspect_ratio="4:3", seed=123)
    assert created["state"] == "created"
    assert created["task_id"].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", created["created_at"])
    echoed = {k: created[k] for k in ("model", "style", "prompt", "duration", "seed", "aspect_ratio", "resolution")}
    assert echoed == {
        "model": "viduq2",
        "style": "general",
        "prompt": "a fox in the snow",
        "duration": 8,
        "seed": 123,
        "aspect_ratio": "4:3",
        "resolution": "540p",
    }
    assert created["credits"] > 0 and created["bgm"] is False and created["movement_amplitude"] == "auto"
    task_id = created["task_id"]
    states = [poll(client, task_id)["state"] for _ in range(4)]
    assert states == ["queueing", "processing", "success", "success"]
    done = poll(client, task_id)
    assert done["id"] == task_id and done["err_code"] == "" and done["credits"] == created["credits"]
    creation = done["creations"][0]
    assert set(creation) == {"id", "url", "cover_url", "watermarked_url"}
    video = httpx.get(creation["url"], trust_env=False)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert httpx.get(creation["watermarked_url"], trust_env=False).content[4:8] == b"ftyp"
    cover = httpx.get(creation["cover_url"], trust_env=False)
    assert cover.headers["content-type"] == "image/jpeg" and cover.content[:2] == b"\xff\xd8"
    assert fake.tasks[task_id].state == "success"
    assert fake.calls("/text2video")[0].headers["authorization"] == f"Token {KEY}"


def test_img2video_with_data_uri(client: httpx.Client) -> None:
    created = create(client, "img2video", model="viduq2-turbo", images=[data_uri()], prompt="")
    assert "aspect_ratio" not in created  # img2video follows the image
    assert poll_until_done(client, created["task_id"])["state"] == "success"


def test_start_end2video(client: httpx.Client) -> None:
    images = [data_uri(fmt="JPEG"), "https://example.com/last.webp"]
    created = create(client, "start-end2video", model="vidu2.0", images=images, duration=8)
    assert created["resolution"] == "720p" and created["images"] == images
    assert poll_until_done(client, created["task_id"])["state"] == "success"


def test_reference2video(client: httpx.Client) -> None:
    created = create(client, "reference2video", model="viduq2", images=[data_uri()] * 7, aspect_ratio="9:16")
    assert created["aspect_ratio"] == "9:16"
    assert poll_until_done(client, created["task_id"])["state"] == "success"


def test_defaults_per_model(client: httpx.Client) -> None:
    assert {k: create(client)[k] for k in ("duration", "resolution")} == {"duration": 5, "resolution": "1080p"}
    legacy = create(client, model="vidu1.5")
    assert (legacy["duration"], legacy["resolution"]) == (4, "360p")
    assert create(client, images=None)["state"] == "created"  # new-api sends images: null on text2video


def test_polls_per_step_slows_progress() -> None:
    slow = FakeVidu(polls_per_step=2)
    headers = {"Authorization": f"Token {KEY}"}
    with slow.running(), httpx.Client(base_url=slow.base_url, headers=headers, trust_env=False) as http:
        task_id = create(http)["task_id"]
        states = [poll(http, task_id)["state"] for _ in range(6)]
    assert states == ["created", "queueing", "queueing", "processing", "processing", "success"]


# -- auth -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}", "Token vda_wrong", KEY, f"token {KEY}", None],
    ids=["bearer-scheme", "wrong-key", "no-scheme", "lowercase-scheme", "missing"],
)
def test_auth_refusals(fake: FakeVidu, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(
        f"{fake.base_url}{BASE}/text2video", json={"model": "viduq1", "prompt": "x"}, headers=headers, trust_env=False
    )
    assert refusal(response, 401, "Unauthorized") == "unauthorized"
    assert fake.tasks == {}
    query = httpx.get(f"{fake.base_url}{BASE}/tasks/1/creations", headers=headers, trust_env=False)
    refusal(query, 401, "Unauthorized")


# -- validation ---------------------------------------------------------------------------------------------------

RAW_BASE64 = data_uri().split(",", 1)[1]


@pytest.mark.parametrize(
    ("endpoint", "body", "reason", "message"),
    [
        ("text2video", {"images": [data_uri()]}, "FieldUnwanted", "unwanted field: images"),
        ("text2video", {"prompt": ""}, "FieldLacking", "field is missing or empty: prompt"),
        ("text2video", {"model": None}, "FieldLacking", "field is missing or empty: model"),
        ("text2video", {"model": "vidu2.0"}, "FieldInvalid", "invalid field: model"),
        ("reference2video", {"model": "viduq2-pro", "images": [data_uri()]}, "FieldInvalid", "invalid field: model"),
        ("text2video", {"duration": 4}, "FieldInvalid", "invalid field: duration"),
        ("text2video", {"duration": "5"}, "FieldInvalid", "invalid field: duration"),
        ("text2video", {"resolution": "720p"}, "FieldInvalid", "invalid field: resolution"),
        ("text2video", {"model": "vidu1.5", "duration": 5}, "FieldInvalid", "invalid field: duration"),
        (
            "text2video",
            {"model": "vidu1.5", "duration": 8, "resolution": "1080p"},
            "FieldInvalid",
            "invalid field: resolution",
        ),
        ("text2video", {"model": "viduq2", "duration": 11}, "FieldInvalid", "invalid field: duration"),
        (
            "start-end2video",
            {"model": "viduq2-pro", "duration": 9, "images": [data_uri(), data_uri()]},
            "FieldInvalid",
            "invalid field: duration",
        ),
        ("text2video", {"model": "viduq2", "resolution": "1280x720"}, "FieldInvalid", "invalid field: resolution"),
        (
            "img2video",
            {"model": "viduq2-pro-fast", "resolution": "540p", "images": [data_uri()]},
            "FieldInvalid",
            "invalid field: resolution",
        ),
        ("text2video", {"aspect_ratio": "21:9"}, "FieldInvalid", "invalid field: aspect_ratio"),
        ("text2video", {"aspect_ratio": "4:3"}, "FieldInvalid", "invalid field: aspect_ratio"),
        ("img2video", {}, "FieldLacking", "field is missing or empty: images"),
        ("img2video", {"images": [data_uri(), data_uri()]}, "FieldItemCountOutOfRange", "images"),
        ("start-end2video", {"images": [data_uri()]}, "FieldItemCountOutOfRange", "images"),
        ("reference2video", {"images": [data_uri()] * 8}, "FieldItemCountOutOfRange", "images"),
        (
            "reference2video",
            {"model": "vidu2.0", "duration": 4, "images": [data_uri()] * 4},
            "FieldItemCountOutOfRange",
            "images",
        ),
        ("img2video", {"images": [RAW_BASE64]}, "FieldInvalid", "invalid field: images"),
        ("img2video", {"images": ["data:image/png;base64,!!!"]}, "FieldInvalid", "invalid field: images"),
        (
            "img2video",
            {"images": ["data:image/png;base64," + base64.b64encode(b"nope").decode()]},
            "ImageFormatInvalid",
            "image format invalid",
        ),
        ("img2video", {"images": [data_uri(400, 64)]}, "PageSizeOutOfRange", "1:4"),
        ("text2video", {"style": "noir"}, "FieldInvalid", "invalid field: style"),
        ("text2video", {"movement_amplitude": "huge"}, "FieldInvalid", "invalid field: movement_amplitude"),
        ("text2video", {"prompt": "p" * 2001}, "FieldInvalid", "invalid field: prompt"),
    ],
)
def test_validation_refusals(
    fake: FakeVidu, client: httpx.Client, endpoint: str, body: dict[str, Any], reason: str, message: str
) -> None:
    defaults: dict[str, Any] = {"model": "viduq1", "prompt": "x"}
    response = client.post(f"{BASE}/{endpoint}", json={**defaults, **body})
    assert message in refusal(response, 400, reason)
    assert fake.tasks == {}


def test_null_images_can_be_refused(fake: FakeVidu, client: httpx.Client) -> None:
    fake.reject_null_images = True
    refusal(
        client.post(f"{BASE}/text2video", json={"model": "viduq1", "prompt": "x", "images": None}), 400, "FieldUnwanted"
    )


def test_q3_allows_longer_prompt_and_duration(client: httpx.Client) -> None:
    created = create(client, model="viduq3-pro", prompt="p" * 4000, duration=16)
    assert created["duration"] == 16


# -- failures and cancel --------------------------------------------------------------------------------------------


def test_prompt_with_fail_ends_failed(client: httpx.Client) -> None:
    done = poll_until_done(client, create(client, prompt="FAIL me")["task_id"])
    assert (done["state"], done["err_code"], done["creations"]) == ("failed", "CreationPolicyViolation", [])


def test_fail_next(fake: FakeVidu, client: httpx.Client) -> None:
    fake.fail_next("AuditSubmitIllegal")
    first, second = create(client)["task_id"], create(client)["task_id"]
    assert poll_until_done(client, first)["err_code"] == "AuditSubmitIllegal"
    assert poll_until_done(client, second)["state"] == "success"


@pytest.mark.parametrize("polls", [0, 1])
def test_cancel_while_created_or_queueing(fake: FakeVidu, client: httpx.Client, polls: int) -> None:
    task_id = create(client)["task_id"]
    for _ in range(polls):
        poll(client, task_id)
    response = client.post(f"{BASE}/tasks/{task_id}/cancel", json={"id": task_id})
    assert response.status_code == 200 and response.json() == {}
    done = poll(client, task_id)
    assert (done["state"], done["err_code"]) == ("failed", "UserCancelled")


def test_cancel_refused_once_processing(client: httpx.Client) -> None:
    task_id = create(client)["task_id"]
    poll(client, task_id)
    poll(client, task_id)
    response = client.post(f"{BASE}/tasks/{task_id}/cancel", json={"id": task_id})
    assert refusal(response, 400, "BadRequest") == "task state is processing, can not cancel"
    refusal(client.post(f"{BASE}/tasks/404404/cancel", json={"id": "404404"}), 404, "TaskNotFound")


@pytest.mark.parametrize(
    ("fault", "status", "reason"), [("429", 429, "TooManyRequests"), ("500", 500, "InternalServiceFailure")]
)
def test_injected_http_faults(fake: FakeVidu, client: httpx.Client, fault: Any, status: int, reason: str) -> None:
    fake.faults.queue("submit", fault)
    refusal(client.post(f"{BASE}/text2video", json={"model": "viduq1", "prompt": "x"}), status, reason)
    assert fake.tasks == {}
    task_id = create(client)["task_id"]
    fake.faults.queue("poll", fault)
    refusal(client.get(f"{BASE}/tasks/{task_id}/creations"), status, reason)


def test_drop_reply_creates_a_ghost_task(fake: FakeVidu, client: httpx.Client) -> None:
    fake.faults.queue("submit", "drop_reply")
    refusal(client.post(f"{BASE}/text2video", json={"model": "viduq1", "prompt": "x"}), 500, "InternalServiceFailure")
    assert len(fake.tasks) == 1


def test_unknown_status_and_not_found_on_poll(fake: FakeVidu, client: httpx.Client) -> None:
    task_id = create(client)["task_id"]
    fake.faults.queue("poll", "unknown_status", "not_found")
    assert poll(client, task_id)["state"] == "paused_x"
    refusal(client.get(f"{BASE}/tasks/{task_id}/creations"), 404, "TaskNotFound")
    assert poll(client, task_id)["state"] == "queueing"
    refusal(client.get(f"{BASE}/tasks/123/creations"), 404, "TaskNotFound")


def test_expired_file_url_is_403(fake: FakeVidu, client: httpx.Client) -> None:
    task_id = create(client)["task_id"]
    fake.file_ttl_s = -1
    creation = poll_until_done(client, task_id)["creations"][0]
    assert httpx.get(creation["url"], trust_env=False).status_code == 403
    assert httpx.get(creation["cover_url"], trust_env=False).status_code == 403
