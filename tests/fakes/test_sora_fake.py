"""The Sora emulator, checked with raw httpx and with the real `openai` package."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from typing import Any

import av
import httpx
import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.fakes.sora import FakeSora

KEY = "sk-openai-test"
VIDEO_KEYS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}


def image_bytes(width: int, height: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSora]:
    emulator = FakeSora()
    with emulator.running():
        yield emulator


@pytest.fixture(autouse=True)
def reset(fake: FakeSora) -> Iterator[None]:
    yield
    fake.faults.clear()
    fake.polls_per_step = 1
    fake.asset_ttl_s = 3600
    fake._fail_queue.clear()


@pytest.fixture(scope="module")
def http(fake: FakeSora) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{fake.base_url}/v1", headers={"Authorization": f"Bearer {KEY}"}, trust_env=False
    ) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(fake: FakeSora) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{fake.base_url}/v1", api_key=KEY, max_retries=0) as client:
        yield client


def form(fields: dict[str, str]) -> dict[str, tuple[None, str]]:
    """Plain fields sent as multipart parts (httpx would urlencode `data=` alone, which the API refuses)."""
    return {name: (None, value) for name, value in fields.items()}


def create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = http.post("/videos", files=form({"prompt": "a calico cat playing a piano", **fields}))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def poll_until_done(http: httpx.Client, video_id: str, limit: int = 10) -> dict[str, Any]:
    for _ in range(limit):
        body: dict[str, Any] = http.get(f"/videos/{video_id}").json()
        if body["status"] in ("completed", "failed"):
            return body
    raise AssertionError(f"{video_id} never finished")


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    return error


# -- create / lifecycle (httpx) -------------------------------------------------------------------------


def test_create_multipart_defaults(fake: FakeSora, http: httpx.Client) -> None:
    video = create(http)
    assert set(video) == VIDEO_KEYS
    assert re.fullmatch(r"video_[0-9a-f]{48}", video["id"])
    assert (video["object"], video["model"], video["status"], video["progress"]) == ("video", "sora-2", "queued", 0)
    assert (video["size"], video["seconds"]) == ("720x1280", "4")
    assert video["completed_at"] is None and video["expires_at"] is None and video["error"] is None
    recorded = fake.calls("/v1/videos", "POST")[-1]
    assert recorded.form["prompt"] == "a calico cat playing a piano"
    assert video["id"] in fake.tasks


def test_create_json_with_choices(http: httpx.Client) -> None:
    response = http.post(
        "/videos", json={"prompt": "waves", "model": "sora-2-pro", "seconds": "8", "size": "1792x1024"}
    )
    assert response.status_code == 200, response.text
    video = response.json()
    assert (video["model"], video["seconds"], video["size"]) == ("sora-2-pro", "8", "1792x1024")


def test_snapshot_model_names_accepted(http: httpx.Client) -> None:
    for model in ("sora-2-2025-10-06", "sora-2-2025-12-08", "sora-2-pro-2025-10-06"):
        assert create(http, model=model)["model"] == model


def test_lifecycle_one_step_per_poll(http: httpx.Client) -> None:
    video = create(http)
    first = http.get(f"/videos/{video['id']}")
    assert first.headers["openai-poll-after-ms"] == "20"
    assert (first.json()["status"], first.json()["progress"]) == ("in_progress", 50)
    done = http.get(f"/videos/{video['id']}").json()
    assert (done["status"], done["progress"]) == ("completed", 100)
    assert done["completed_at"] >= video["created_at"]
    assert done["expires_at"] == done["completed_at"] + 3600
    assert http.get(f"/videos/{video['id']}").json()["status"] == "completed"


def test_polls_per_step_shows_each_state_that_many_times(fake: FakeSora, http: httpx.Client) -> None:
    fake.polls_per_step = 2
    video = create(http)
    seen = [http.get(f"/videos/{video['id']}").json()["status"] for _ in range(5)]
    assert seen == ["queued", "in_progress", "in_progress", "completed", "completed"]


def test_fail_prompt_and_fail_next(fake: FakeSora, http: httpx.Client) -> None:
    failed = poll_until_done(http, create(http, prompt="please FAIL this")["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "moderation_blocked",
        "message": "Your request was blocked by our moderation system.",
    }
    fake.fail_next("internal_error", "Video generation failed.")
    failed = poll_until_done(http, create(http)["id"])
    assert failed["error"] == {"code": "internal_error", "message": "Video generation failed."}
    assert poll_until_done(http, create(http)["id"])["status"] == "completed"


# -- content ---------------------------------------------------------------------------------------------


def test_content_before_completion_is_400(http: httpx.Client) -> None:
    video = create(http)
    error = error_of(http.get(f"/videos/{video['id']}/content"), 400)
    assert error["type"] == "invalid_request_error" and "not ready" in error["message"]
    failed = poll_until_done(http, create(http, prompt="FAIL")["id"])
    assert "failed" in error_of(http.get(f"/videos/{failed['id']}/content"), 400)["message"]


def test_content_variants(http: httpx.Client) -> None:
    video = poll_until_done(http, create(http, size="1280x720")["id"])
    mp4 = http.get(f"/videos/{video['id']}/content", params={"variant": "video"})
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(mp4.content)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 90)
        assert stream.frames == 4 * 24
    thumb = http.get(f"/videos/{video['id']}/content", params={"variant": "thumbnail"})
    assert thumb.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).format == "WEBP"
    sprite = http.get(f"/videos/{video['id']}/content", params={"variant": "spritesheet"})
    assert sprite.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(sprite.content)).format == "JPEG"
    error = error_of(http.get(f"/videos/{video['id']}/content", params={"variant": "gif"}), 400)
    assert (error["param"], error["code"]) == ("variant", "invalid_value")


def test_content_after_expiry_is_404(fake: FakeSora, http: httpx.Client) -> None:
    fake.asset_ttl_s = -1
    video = poll_until_done(http, create(http)["id"])
    assert "expired" in error_of(http.get(f"/videos/{video['id']}/content"), 404)["message"]


# -- auth and validation ---------------------------------------------------------------------------------


def test_bad_or_missing_key(fake: FakeSora, http: httpx.Client) -> None:
    wrong = http.get("/videos", headers={"Authorization": "Bearer sk-wrong-key-123456"})
    error = error_of(wrong, 401)
    assert error["message"].startswith("Incorrect API key provided")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_api_key")
    anonymous = httpx.Request("GET", f"{fake.base_url}/v1/videos")  # built by hand: no default auth header
    assert error_of(http.send(anonymous), 401)["code"] == "invalid_api_key"


def test_seconds_integer_in_json_is_invalid_type(http: httpx.Client) -> None:
    error = error_of(http.post("/videos", json={"prompt": "x", "seconds": 8}), 400)
    assert error == {
        "message": "Invalid type for 'seconds': expected one of '4', '8', or '12', but got an integer instead.",
        "type": "invalid_request_error",
        "param": "seconds",
        "code": "invalid_type",
    }


def test_seconds_ten_is_invalid_value(http: httpx.Client) -> None:
    for send in ({"files": form({"prompt": "x", "seconds": "10"})}, {"json": {"prompt": "x", "seconds": "10"}}):
        error = error_of(http.post("/videos", **send), 400)
        assert error == {
            "message": "Invalid value: '10'. Supported values are: '4', '8', and '12'.",
            "type": "invalid_request_error",
            "param": "seconds",
            "code": "invalid_value",
        }


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"model": "sora-2", "size": "1792x1024"}, "size", "invalid_value"),
        ({"size": "640x480"}, "size", "invalid_value"),
        ({"model": "sora-3"}, "model", "invalid_value"),
        ({"prompt": ""}, "prompt", "string_below_min_length"),
        ({"prompt": "x" * 32001}, "prompt", "string_above_max_length"),
        ({"style": "noir"}, "style", "unknown_parameter"),
        ({"input_reference": "https://example.com/a.png"}, "input_reference", "invalid_type"),
    ],
)
def test_create_refusals_multipart(http: httpx.Client, fields: dict[str, str], param: str, code: str) -> None:
    error = error_of(http.post("/videos", files=form({"prompt": "x", **fields})), 400)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


def test_missing_prompt_and_bad_json(http: httpx.Client) -> None:
    error = error_of(http.post("/videos", json={"model": "sora-2"}), 400)
    assert (error["param"], error["code"]) == ("prompt", "missing_required_parameter")
    broken = http.post("/videos", content=b"{nope", headers={"Content-Type": "application/json"})
    assert "could not parse the JSON" in error_of(broken, 400)["message"]


def test_multipart_string_reference_message(http: httpx.Client) -> None:
    error = error_of(http.post("/videos", files=form({"prompt": "x", "input_reference": "abc"})), 400)
    assert error["message"] == "Invalid type for 'input_reference': expected a file, but got a string instead."


def test_multipart_reference_file(http: httpx.Client) -> None:
    good = http.post(
        "/videos",
        data={"prompt": "x", "size": "1280x720"},
        files={"input_reference": ("ref.jpg", image_bytes(1280, 720, "JPEG"), "image/jpeg")},
    )
    assert good.status_code == 200, good.text
    wrong_size = http.post(
        "/videos", data={"prompt": "x"}, files={"input_reference": ("ref.png", image_bytes(1280, 720), "image/png")}
    )
    assert error_of(wrong_size, 400)["message"] == "Inpaint image must match the requested width and height"
    not_image = http.post(
        "/videos", data={"prompt": "x"}, files={"input_reference": ("ref.png", b"not an image", "image/png")}
    )
    assert error_of(not_image, 400)["param"] == "input_reference"


def test_json_reference_forms(fake: FakeSora, http: httpx.Client) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(image_bytes(720, 1280)).decode()
    for ref in ({"image_url": data_url}, {"image_url": "https://example.com/ref.png"}, {"file_id": "file-abc123"}):
        response = http.post("/videos", json={"prompt": "x", "input_reference": ref})
        assert response.status_code == 200, (ref, response.text)
        assert fake.tasks[response.json()["id"]].input_reference is not None
    mismatched = "data:image/png;base64," + base64.b64encode(image_bytes(64, 64)).decode()
    response = http.post("/videos", json={"prompt": "x", "input_reference": {"image_url": mismatched}})
    assert error_of(response, 400)["message"] == "Inpaint image must match the requested width and height"
    both = {"image_url": "https://example.com/a.png", "file_id": "file-1"}
    assert error_of(http.post("/videos", json={"prompt": "x", "input_reference": both}), 400)["code"] == "invalid_value"
    as_string = http.post("/videos", json={"prompt": "x", "input_reference": "https://example.com/a.png"})
    assert error_of(as_string, 400)["code"] == "invalid_type"


# -- remix, delete, list ---------------------------------------------------------------------------------


def test_remix(http: httpx.Client) -> None:
    source = create(http, size="1280x720", seconds="8")
    early = http.post(f"/videos/{source['id']}/remix", json={"prompt": "now at night"})
    assert "only completed" in error_of(early, 400)["message"]
    poll_until_done(http, source["id"])
    remix = http.post(f"/videos/{source['id']}/remix", json={"prompt": "now at night"})
    assert remix.status_code == 200, remix.text
    body = remix.json()
    assert body["remixed_from_video_id"] == source["id"] and body["status"] == "queued"
    assert (body["size"], body["seconds"], body["prompt"]) == ("1280x720", "8", "now at night")
    multipart = http.post(f"/videos/{source['id']}/remix", files=form({"prompt": "in the rain"}))
    assert multipart.status_code == 200 and multipart.json()["prompt"] == "in the rain"
    assert error_of(http.post("/videos/video_nope/remix", json={"prompt": "x"}), 404)["type"] == "invalid_request_error"


def test_delete(fake: FakeSora, http: httpx.Client) -> None:
    video = create(http)
    assert "cannot be deleted" in error_of(http.delete(f"/videos/{video['id']}"), 400)["message"]
    poll_until_done(http, video["id"])
    deleted = http.delete(f"/videos/{video['id']}")
    assert deleted.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
    assert video["id"] not in fake.tasks and video["id"] in fake.deleted
    error_of(http.get(f"/videos/{video['id']}"), 404)
    error_of(http.delete(f"/videos/{video['id']}"), 404)


def test_list_pagination() -> None:
    emulator = FakeSora()
    with (
        emulator.running(),
        httpx.Client(
            base_url=f"{emulator.base_url}/v1", headers={"Authorization": f"Bearer {KEY}"}, trust_env=False
        ) as http,
    ):
        ids = [create(http, prompt=f"clip {n}")["id"] for n in range(5)]
        first = http.get("/videos", params={"limit": 2}).json()
        assert first["object"] == "list" and [v["id"] for v in first["data"]] == ids[::-1][:2]
        assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
        rest = http.get("/videos", params={"limit": 10, "after": first["last_id"]}).json()
        assert [v["id"] for v in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
        asc = http.get("/videos", params={"order": "asc", "limit": 3}).json()
        assert [v["id"] for v in asc["data"]] == ids[:3]
        assert set(asc["data"][0]) == VIDEO_KEYS
        assert error_of(http.get("/videos", params={"limit": 101}), 400)["code"] == "integer_above_max_value"
        assert error_of(http.get("/videos", params={"order": "up"}), 400)["param"] == "order"
        assert error_of(http.get("/videos", params={"after": "video_gone"}), 404)["param"] == "after"
        empty = http.get("/videos", params={"after": ids[0]}).json()
        assert empty["data"] == [] and empty["first_id"] is None and empty["has_more"] is False


# -- faults ----------------------------------------------------------------------------------------------


def test_fault_429_and_5xx(fake: FakeSora, http: httpx.Client) -> None:
    fake.faults.queue("submit", "429", "500", "503")
    limited = http.post("/videos", files=form({"prompt": "x"}))
    assert limited.headers["retry-after"] == "1"
    error = error_of(limited, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert error_of(http.post("/videos", files=form({"prompt": "x"})), 500)["type"] == "server_error"
    assert error_of(http.post("/videos", files=form({"prompt": "x"})), 503)["type"] == "server_error"
    assert http.post("/videos", files=form({"prompt": "x"})).status_code == 200


def test_fault_unknown_status_and_not_found_on_poll(fake: FakeSora, http: httpx.Client) -> None:
    video = create(http)
    fake.faults.queue("poll", "unknown_status", "not_found")
    assert http.get(f"/videos/{video['id']}").json()["status"] == "weird"
    error_of(http.get(f"/videos/{video['id']}"), 404)
    assert http.get(f"/videos/{video['id']}").json()["status"] in ("in_progress", "completed")


def test_fault_drop_reply_creates_then_500(fake: FakeSora, http: httpx.Client) -> None:
    before = set(fake.tasks)
    fake.faults.queue("submit", "drop_reply")
    error_of(http.post("/videos", files=form({"prompt": "lost reply"})), 500)
    (new_id,) = set(fake.tasks) - before
    assert fake.tasks[new_id].prompt == "lost reply"


def test_fault_random_ratio_one(fake: FakeSora, http: httpx.Client) -> None:
    video = create(http)
    fake.faults.random("download", 1.0, "502")
    poll_until_done(http, video["id"])
    assert error_of(http.get(f"/videos/{video['id']}/content"), 502)["type"] == "server_error"


# -- the real openai package -----------------------------------------------------------------------------


def test_sdk_create_poll_download(fake: FakeSora, sdk: OpenAI) -> None:
    video = sdk.videos.create(prompt="a lighthouse at dusk", seconds="8", size="1280x720")
    assert video.status == "queued" and video.seconds == "8"
    assert fake.calls("/v1/videos", "POST")[-1].headers["content-type"].startswith("multipart/form-data")
    done = sdk.videos.poll(video.id)
    assert done.status == "completed" and done.progress == 100
    content = sdk.videos.download_content(video.id, variant="video").read()
    with av.open(io.BytesIO(content)) as container:
        assert container.streams.video[0].frames == 8 * 24
    assert Image.open(io.BytesIO(sdk.videos.download_content(video.id, variant="thumbnail").read())).format == "WEBP"
    sprite = sdk.videos.download_content(video.id, variant="spritesheet").read()
    assert Image.open(io.BytesIO(sprite)).format == "JPEG"


def test_sdk_create_with_reference_file(fake: FakeSora, sdk: OpenAI) -> None:
    video = sdk.videos.create(
        prompt="animate this", size="720x1280", input_reference=("ref.png", image_bytes(720, 1280), "image/png")
    )
    assert fake.tasks[video.id].input_reference == {
        "kind": "file",
        "filename": "ref.png",
        "content_type": "image/png",
        "size": (720, 1280),
    }
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.create(
            prompt="animate this", size="1280x720", input_reference=("ref.png", image_bytes(720, 1280), "image/png")
        )
    assert "Inpaint image must match" in str(caught.value)


def test_sdk_remix_list_delete(sdk: OpenAI) -> None:
    source = sdk.videos.create_and_poll(prompt="a paper boat", poll_interval_ms=1)
    remix = sdk.videos.remix(source.id, prompt="a paper boat in a storm")
    assert remix.remixed_from_video_id == source.id
    page = sdk.videos.list(limit=1)
    assert len(page.data) == 1 and page.has_more is True and page.data[0].id == remix.id
    second = page.get_next_page()
    assert second.data[0].id == source.id
    assert remix.id in {v.id for v in sdk.videos.list(limit=100, order="asc")}
    sdk.videos.poll(remix.id, poll_interval_ms=1)
    assert sdk.videos.delete(remix.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(remix.id)


def test_sdk_refusals(fake: FakeSora, sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.create(prompt="x", seconds="10")  # type: ignore[arg-type]  # the point: an unsupported value
    assert caught.value.code == "invalid_value" and caught.value.param == "seconds"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.create(prompt="x", model="sora-2", size="1024x1792")
    assert caught.value.param == "size"
    with (
        OpenAI(base_url=f"{fake.base_url}/v1", api_key="sk-not-valid-000000", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as denied,
    ):
        bad.videos.create(prompt="x")
    assert denied.value.code == "invalid_api_key"
    fake.faults.queue("poll", "429")
    video = sdk.videos.create(prompt="x")
    with pytest.raises(openai.RateLimitError):
        sdk.videos.retrieve(video.id)
