"""The OpenAI surface with raw HTTP: JSON bodies (older SDKs), Range, limits, and malformed input."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import Server, assert_mp4, png_bytes


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {server.key('raw')}"}, timeout=60
    ) as client:
        yield client


def wait_done(http: httpx.Client, video_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = http.get(f"/videos/{video_id}").json()
        if video["status"] not in ("queued", "in_progress"):
            return video  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"{video_id} did not finish")


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_json_create_with_int_seconds_and_data_uri(http: httpx.Client) -> None:
    image = "data:image/png;base64," + base64.b64encode(png_bytes(300, 300)).decode()
    response = http.post(
        "/videos",
        json={
            "prompt": "json body",
            "model": "vidgate-local",
            "seconds": 2,
            "size": "240x240",
            "input_reference": {"image_url": image},
            "metadata": {"seed": 5},
        },
    )
    assert response.status_code == 200, response.text
    video = response.json()
    assert video["seconds"] == "2" and video["size"] == "240x240"
    assert wait_done(http, video["id"])["status"] == "completed"
    assert_mp4(http.get(f"/videos/{video['id']}/content").content, width=240, height=240, seconds=2)


def test_json_create_with_string_reference_and_tier(http: httpx.Client) -> None:
    image = "data:image/png;base64," + base64.b64encode(png_bytes(64, 64)).decode()
    video = http.post(
        "/videos",
        json={
            "prompt": "tier",
            "seconds": "1",
            "size": "480p",
            "input_reference": image,
            "metadata": '{"audio": true}',
        },
    ).json()
    assert video["size"] == "832x480" and video["model"] == "vidgate-local"
    assert wait_done(http, video["id"])["status"] == "completed"
    assert_mp4(http.get(f"/videos/{video['id']}/content").content, width=832, height=480, seconds=1, audio=True)


def test_json_errors(http: httpx.Client) -> None:
    assert error_of(http.post("/videos", json={"seconds": "4"}), 400)["param"] == "prompt"
    assert error_of(http.post("/videos", json={"prompt": "x", "seconds": "0"}), 400)["param"] == "seconds"
    assert error_of(http.post("/videos", json={"prompt": "x", "size": "1280x721"}), 400)["param"] == "size"
    assert error_of(http.post("/videos", json={"prompt": "x", "resolution": "4K"}), 400)["param"] == "resolution"
    assert error_of(http.post("/videos", json={"prompt": "x", "metadata": "{bad"}), 400)["param"] == "metadata"
    assert (
        error_of(http.post("/videos", json={"prompt": "x", "metadata": {"cfg_scale": 0.5}}), 400)["param"]
        == "metadata.cfg_scale"
    )
    bad_image = "data:image/png;base64," + base64.b64encode(b"garbage").decode()
    assert (
        error_of(http.post("/videos", json={"prompt": "x", "input_reference": bad_image}), 400)["param"]
        == "input_reference"
    )
    assert (
        error_of(http.post("/videos", json={"prompt": "x", "input_reference": "ftp://x/y.png"}), 400)["param"]
        == "input_reference"
    )
    # vidgate fetches URLs for the local renderer, but never from loopback unless configured to.
    error = error_of(http.post("/videos", json={"prompt": "x", "input_reference": "http://127.0.0.1:1/a.png"}), 400)
    assert error["param"] == "input_reference" and "loopback" in error["message"]


def test_malformed_bodies(http: httpx.Client) -> None:
    error_of(http.post("/videos", content=b"{not json", headers={"content-type": "application/json"}), 400)
    error_of(http.post("/videos", content=b"[1,2]", headers={"content-type": "application/json"}), 400)
    error_of(
        http.post("/videos", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}), 400
    )
    assert error_of(http.get("/videos", params={"limit": 0}), 400)["param"] == "limit"
    assert error_of(http.get("/videos", params={"limit": 101}), 400)["param"] == "limit"
    assert error_of(http.get("/videos", params={"after": "video_nope"}), 400)["param"] == "after"
    error_of(http.get("/videos", params={"order": "sideways"}), 400)
    error_of(http.get("/nothing-here"), 404)


def test_huge_upload_is_413(server: Server, http: httpx.Client) -> None:
    big = b"\x89PNG" + b"\0" * (51 * 1024 * 1024)
    response = http.post("/videos", data={"prompt": "big"}, files={"input_reference": ("big.png", big, "image/png")})
    assert error_of(response, 413)["param"] == "input_reference"
    assert not list((server.config.parent / "media" / "tmp").glob("upload-*"))


def test_missing_and_malformed_auth(server: Server) -> None:
    with httpx.Client(base_url=f"{server.url}/v1") as anon:
        assert error_of(anon.get("/videos"), 401)["code"] == "missing_api_key"
        assert error_of(anon.get("/videos", headers={"Authorization": "Basic abc"}), 401)["code"] == "invalid_api_key"
        assert error_of(anon.get("/models", headers={"Authorization": "Bearer sk-vg-wrong"}), 401)


def test_model_not_allowed_for_key_is_403(server: Server) -> None:
    key = server.key("restricted", "--models", "some-other-model")
    with httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}"}) as client:
        error = error_of(client.post("/videos", json={"prompt": "x", "model": "vidgate-local"}), 403)
        assert error["param"] == "model"
        assert client.get("/models").json()["data"] == []


def test_requests_per_minute_limit(server: Server) -> None:
    key = server.key("slow", "--rpm", "3")
    with httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(3):
            assert client.get("/videos").status_code == 200
        response = client.get("/videos")
        assert error_of(response, 429)["code"] == "rate_limit_exceeded"
        assert 1 <= int(response.headers["retry-after"]) <= 61


def test_delete_with_json_content_type_and_no_body(http: httpx.Client) -> None:
    video = http.post("/videos", json={"prompt": "delete me", "seconds": 1, "size": "64x64"}).json()
    wait_done(http, video["id"])
    response = http.request("DELETE", f"/videos/{video['id']}", headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json() == {
        "id": video["id"],
        "object": "video.deleted",
        "deleted": True,
    }
    error_of(http.delete(f"/videos/{video['id']}"), 404)


def test_content_not_ready_is_409_and_bad_variant_400(http: httpx.Client) -> None:
    video = http.post("/videos", json={"prompt": "not yet", "seconds": 20, "size": "1920x1080"}).json()
    assert error_of(http.get(f"/videos/{video['id']}/content"), 409)["code"] == "video_not_ready"
    assert error_of(http.get(f"/videos/{video['id']}/content", params={"variant": "gif"}), 400)["param"] == "variant"
    http.delete(f"/videos/{video['id']}")


def test_range_requests(http: httpx.Client) -> None:
    video = http.post("/videos", json={"prompt": "ranges", "seconds": 1, "size": "128x128"}).json()
    wait_done(http, video["id"])
    full = http.get(f"/videos/{video['id']}/content")
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "video/mp4"
    part = http.get(f"/videos/{video['id']}/content", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == full.content[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(full.content)}"
    tail = http.get(f"/videos/{video['id']}/content", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == full.content[-16:]
    bad = http.get(f"/videos/{video['id']}/content", headers={"Range": f"bytes={len(full.content) + 10}-"})
    assert bad.status_code == 416


def test_remix_needs_a_prompt_and_a_completed_source(http: httpx.Client) -> None:
    video = http.post("/videos", json={"prompt": "source", "seconds": 20, "size": "1920x1080"}).json()
    assert error_of(http.post(f"/videos/{video['id']}/remix", json={}), 400)["param"] == "prompt"
    error_of(http.post(f"/videos/{video['id']}/remix", json={"prompt": "too early"}), 409)
    http.delete(f"/videos/{video['id']}")
    error_of(http.post("/videos/video_nope/remix", json={"prompt": "x"}), 404)


def test_every_response_has_a_request_id(server: Server, http: httpx.Client) -> None:
    for response in (httpx.get(f"{server.url}/healthz"), http.get("/models"), httpx.get(f"{server.url}/v1/videos")):
        assert response.headers["x-request-id"].startswith("req_")
