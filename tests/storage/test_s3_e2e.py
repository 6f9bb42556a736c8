"""vidgate with `storage_url = "s3://…"` on moto's S3 server: videos, previews and uploads land in the bucket,
content streams with Range (or redirects to a presigned URL), signed DashScope URLs work, retention and delete
remove the objects, and no local copy is left behind."""

from __future__ import annotations

import gc
import io
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dashscope
import httpx
import pytest
from dashscope import VideoSynthesis
from PIL import Image

from tests.helpers import Server, assert_mp4, cli, free_port, png_bytes, running_gateway
from tests.s3 import SECRET_KEY, MotoS3

# The 1.x SDK opens a requests.Session per call and never closes it; its sockets are reclaimed by GC.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]
PREVIEWS = ("spritesheet.jpg", "thumbnail.webp", "video.mp4")


def gateway(folder: Path, s3: MotoS3, bucket: str, prefix: str, *, redirect: bool) -> Any:
    settings = "poll_interval_s = 0.2\nsweep_interval_s = 0.5\nlocal_workers = 1\n" + s3.settings(
        bucket, prefix, redirect=redirect
    )
    return running_gateway(folder, settings=settings)


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory, s3: MotoS3, bucket: str) -> Iterator[tuple[Server, str]]:
    prefix = f"stream-{secrets.token_hex(4)}"
    with gateway(tmp_path_factory.mktemp("s3gw"), s3, bucket, prefix, redirect=False) as server:
        yield server, prefix


@pytest.fixture(scope="module")
def redirecting(tmp_path_factory: pytest.TempPathFactory, s3: MotoS3, bucket: str) -> Iterator[tuple[Server, str]]:
    prefix = f"redirect-{secrets.token_hex(4)}"
    with gateway(tmp_path_factory.mktemp("s3gw-redirect"), s3, bucket, prefix, redirect=True) as server:
        yield server, prefix


@pytest.fixture(autouse=True)
def _reclaim_sdk_sockets() -> Iterator[None]:
    yield
    gc.collect()  # while this module's warning filters apply


def create(server: Server, key: str, **body: Any) -> str:
    response = httpx.post(
        f"{server.url}/v1/videos",
        json={"prompt": "a lighthouse", "seconds": 1, "size": "96x64", **body},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    video_id: str = response.json()["id"]
    deadline = time.monotonic() + 60
    while (status := video(server, key, video_id)["status"]) != "completed":
        assert status in ("queued", "in_progress") and time.monotonic() < deadline, status
        time.sleep(0.1)
    return video_id


def video(server: Server, key: str, video_id: str) -> dict[str, Any]:
    got = httpx.get(f"{server.url}/v1/videos/{video_id}", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def content(server: Server, key: str, video_id: str, variant: str = "video", **headers: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/v1/videos/{video_id}/content",
        params={"variant": variant},
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def test_local_video_is_stored_in_s3_and_streamed_with_range(
    streaming: tuple[Server, str], s3: MotoS3, bucket: str
) -> None:
    server, prefix = streaming
    key = server.key()
    video_id = create(server, key)
    assert s3.keys(bucket, f"{prefix}/tasks/{video_id}/") == [f"{prefix}/tasks/{video_id}/{name}" for name in PREVIEWS]
    stored = s3.get(bucket, f"{prefix}/tasks/{video_id}/video.mp4")
    # The local working copies (download, previews) are gone: the bucket holds the only one.
    staged = server.config.parent / "media" / "tasks" / video_id
    assert not any(path.is_file() for path in staged.rglob("*")) if staged.exists() else True
    assert not (server.config.parent / "media" / "local" / "out" / f"{video_id}.mp4").exists()

    whole = content(server, key, video_id)
    assert whole.status_code == 200 and whole.content == stored
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(len(stored)) and whole.headers["etag"]
    assert_mp4(whole.content, width=96, height=64, seconds=1)

    part = content(server, key, video_id, range="bytes=100-1099")
    assert part.status_code == 206 and part.content == stored[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(stored)}"
    suffix = content(server, key, video_id, range="bytes=-10")
    assert suffix.status_code == 206 and suffix.content == stored[-10:]
    tail = content(server, key, video_id, range=f"bytes={len(stored) - 5}-")
    assert tail.status_code == 206 and tail.content == stored[-5:]
    beyond = content(server, key, video_id, range=f"bytes={len(stored)}-")
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(stored)}"
    malformed = content(server, key, video_id, range="bytes=oops")
    assert malformed.status_code == 200 and malformed.content == stored  # ignored, as for file: storage
    several = content(server, key, video_id, range="bytes=0-9,20-29")
    assert several.status_code == 206 and several.headers["content-type"].startswith("multipart/byteranges")
    assert stored[0:10] in several.content and stored[20:30] in several.content
    assert f"Content-Range: bytes 20-29/{len(stored)}".encode() in several.content
    assert len(several.content) == int(several.headers["content-length"])
    stale = content(server, key, video_id, range="bytes=0-9", **{"if-range": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.content == stored
    fresh = content(server, key, video_id, range="bytes=0-9", **{"if-range": whole.headers["etag"]})
    assert fresh.status_code == 206 and fresh.content == stored[:10]

    thumbnail = content(server, key, video_id, "thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumbnail.content)).format == "WEBP"
    sheet = content(server, key, video_id, "spritesheet")
    assert sheet.status_code == 200 and Image.open(io.BytesIO(sheet.content)).format == "JPEG"


def test_dashscope_signed_url_and_upload_go_through_s3(
    streaming: tuple[Server, str], s3: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, prefix = streaming
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.url}/api/v1")
    key = server.key("ds")
    image = tmp_path / "first.png"
    image.write_bytes(png_bytes(160, 96, (10, 120, 200)))
    before = set(s3.keys(bucket, f"{prefix}/uploads/"))
    # A local file: the SDK asks vidgate for an upload policy, posts the file, and sends oss://… with the task.
    result = VideoSynthesis.call(
        api_key=key, model="vidgate-local", prompt="a pan", img_url=str(image), size="96*64", duration=1
    )
    assert result.status_code == 200 and result.output.task_status == "SUCCEEDED", result
    uploaded = sorted(set(s3.keys(bucket, f"{prefix}/uploads/")) - before)
    assert len(uploaded) == 1 and uploaded[0].endswith(".png")
    assert s3.get(bucket, uploaded[0]) == image.read_bytes()
    assert not list((server.config.parent / "media" / "uploads").glob("*"))  # nothing kept locally
    task_id = result.output.task_id
    assert f"{prefix}/tasks/{task_id}/video.mp4" in s3.keys(bucket, f"{prefix}/tasks/{task_id}/")
    signed = httpx.get(result.output.video_url, timeout=30)  # no Authorization: the URL is the credential
    assert signed.status_code == 200 and signed.content == s3.get(bucket, f"{prefix}/tasks/{task_id}/video.mp4")
    assert_mp4(signed.content, width=96, height=64, seconds=1)
    ranged = httpx.get(result.output.video_url, headers={"range": "bytes=0-15"})
    assert ranged.status_code == 206 and ranged.content == signed.content[:16]
    forged = httpx.get(result.output.video_url.replace("signature=", "signature=0"))
    assert forged.status_code == 403


def test_redirect_mode_sends_clients_to_a_presigned_url(
    redirecting: tuple[Server, str], s3: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, prefix = redirecting
    key = server.key()
    video_id = create(server, key)
    stored = s3.get(bucket, f"{prefix}/tasks/{video_id}/video.mp4")
    moved = content(server, key, video_id)
    assert moved.status_code == 302 and moved.headers["location"].startswith(f"{s3.endpoint}/{bucket}/{prefix}/")
    assert "X-Amz-Signature=" in moved.headers["location"] and SECRET_KEY not in moved.headers["location"]
    followed = httpx.get(moved.headers["location"])
    assert followed.status_code == 200 and followed.content == stored
    assert followed.headers["content-type"] == "video/mp4"
    ranged = httpx.get(moved.headers["location"], headers={"range": "bytes=4-11"})
    assert ranged.status_code == 206 and ranged.content == stored[4:12]
    thumbnail = content(server, key, video_id, "thumbnail")
    assert thumbnail.status_code == 302
    assert httpx.get(thumbnail.headers["location"]).headers["content-type"] == "image/webp"
    # Errors are still vidgate's own, not a redirect.
    assert content(server, key, "video_" + "0" * 32).status_code == 404
    # The DashScope SDK's signed video_url: a redirect it follows to the same bytes.
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.url}/api/v1")
    result = VideoSynthesis.call(api_key=key, model="vidgate-local", prompt="signed", size="64*64", duration=1)
    assert result.output.task_status == "SUCCEEDED", result
    signed = httpx.get(result.output.video_url, follow_redirects=True)
    assert signed.status_code == 200
    assert signed.content == s3.get(bucket, f"{prefix}/tasks/{result.output.task_id}/video.mp4")


def test_retention_and_delete_remove_the_objects(streaming: tuple[Server, str], s3: MotoS3, bucket: str) -> None:
    server, prefix = streaming
    key = server.key()
    old, gone, kept = (create(server, key, prompt=prompt) for prompt in ("old", "deleted", "kept"))
    for video_id in (old, gone, kept):
        assert len(s3.keys(bucket, f"{prefix}/tasks/{video_id}/")) == 3
    db = sqlite3.connect(server.config.parent / "vidgate.db")
    with db:
        db.execute("update tasks set expires_at = ? where id = ?", (time.time() - 1, old))
    db.close()
    deadline = time.monotonic() + 30
    while s3.keys(bucket, f"{prefix}/tasks/{old}/"):
        assert time.monotonic() < deadline, "the retention sweep did not delete the objects"
        time.sleep(0.2)
    expired = content(server, key, old)
    assert expired.status_code == 404 and expired.json()["error"]["code"] == "video_expired"
    deleted = httpx.delete(f"{server.url}/v1/videos/{gone}", headers={"Authorization": f"Bearer {key}"})
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert s3.keys(bucket, f"{prefix}/tasks/{gone}/") == []
    assert len(s3.keys(bucket, f"{prefix}/tasks/{kept}/")) == 3
    assert content(server, key, kept).status_code == 200


def test_no_secret_in_the_log(streaming: tuple[Server, str]) -> None:
    server, _ = streaming
    log = server.log.read_text()
    assert SECRET_KEY not in log


@pytest.mark.parametrize(("mode", "answer"), [("streaming", 200), ("redirecting", 302)])
def test_content_counts_once_against_the_rate_limit(
    mode: str, answer: int, request: pytest.FixtureRequest, s3: MotoS3, bucket: str
) -> None:
    """The content fast path applies the key's rpm limit once per request, and its refusals are the route's."""
    server, prefix = request.getfixturevalue(mode)
    key = server.key("rpm5", "--rpm", "5")
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "rpm", "seconds": 1, "size": "64x64"}
    created = httpx.post(f"{server.url}/v1/videos", json=body, headers=headers)
    assert created.status_code == 200  # request 1 of 5
    video_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while len(s3.keys(bucket, f"{prefix}/tasks/{video_id}/")) < 3:  # watched in the bucket: no request counted
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)  # the row is marked completed right after the objects are stored
    for _ in range(4):  # requests 2 to 5
        assert content(server, key, video_id).status_code == answer
    refused = content(server, key, video_id)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_cli_generate_follows_the_redirect(redirecting: tuple[Server, str], tmp_path: Path) -> None:
    server, _ = redirecting
    out = tmp_path / "fox.mp4"
    key = server.key("gen")
    args = ["--seconds", "1", "--size", "96x64", "--out", str(out), "--base-url", server.url, "--api-key", key]
    result = cli("generate", "a fox", *args)
    assert result.stdout.strip() == str(out)
    assert_mp4(out, width=96, height=64, seconds=1)


def test_readyz_names_the_storage(streaming: tuple[Server, str], s3: MotoS3, tmp_path: Path) -> None:
    server, _ = streaming
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["storage"] == "ok"
    nowhere = MotoS3(endpoint=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with running_gateway(tmp_path, settings=nowhere.settings("vidgate-gone")) as down:
        answer = httpx.get(f"{down.url}/readyz", timeout=30)
        assert answer.status_code == 503 and answer.json()["failing"] == ["storage"]
        assert answer.json()["checks"]["storage"] == "The storage does not answer."
        assert SECRET_KEY not in down.log.read_text()


def test_a_file_storage_apart_from_media_dir(tmp_path: Path) -> None:
    """storage_url = "file:OTHER": media_dir stays the working folder; finished files move to OTHER."""
    store = tmp_path / "store"
    settings = f'poll_interval_s = 0.2\nlocal_workers = 1\nstorage_url = "file:{store}"\n'
    with running_gateway(tmp_path / "gw", settings=settings) as server:
        key = server.key()
        video_id = create(server, key)
        stored = store / "tasks" / video_id / "video.mp4"
        assert sorted(path.name for path in stored.parent.iterdir()) == sorted(PREVIEWS)
        assert not (tmp_path / "gw" / "media" / "tasks" / video_id / "video.mp4").exists()
        whole = content(server, key, video_id)
        assert whole.status_code == 200 and whole.content == stored.read_bytes()
        part = content(server, key, video_id, range="bytes=0-9")
        assert part.status_code == 206 and part.content == stored.read_bytes()[:10]
        deleted = httpx.delete(f"{server.url}/v1/videos/{video_id}", headers={"Authorization": f"Bearer {key}"})
        assert deleted.status_code == 200 and not stored.parent.exists()
