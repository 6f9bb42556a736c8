"""The OpenAI Videos surface driven by the real `openai` package against a running vidgate."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from tests.helpers import Server, assert_mp4, png_bytes


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{server.url}/v1", api_key=server.key("sdk"), max_retries=0) as sdk:
        yield sdk


def finished(client: OpenAI, video_id: str) -> openai.types.Video:
    video = client.videos.poll(video_id, poll_interval_ms=100)
    assert video.status == "completed", video
    return video


def test_create_and_poll_t2v(client: OpenAI) -> None:
    video = client.videos.create_and_poll(
        prompt="a red fox in snow", model="vidgate-local", seconds="2", size="320x192", poll_interval_ms=100
    )
    assert video.status == "completed" and video.progress == 100
    assert video.id.startswith("video_") and len(video.id) == 6 + 32
    assert (video.seconds, video.size, video.model, video.prompt) == (
        "2",
        "320x192",
        "vidgate-local",
        "a red fox in snow",
    )
    assert video.completed_at and video.expires_at and video.expires_at > video.completed_at
    data = client.videos.download_content(video.id).read()
    assert_mp4(data, width=320, height=192, seconds=2)


def test_create_i2v_with_file(client: OpenAI) -> None:
    video = client.videos.create(
        prompt="the flag waves",
        model="vidgate-local",
        seconds="1",
        size="256x144",
        input_reference=("frame.png", png_bytes(400, 300), "image/png"),
    )
    assert video.status in ("queued", "in_progress")
    video = finished(client, video.id)
    assert_mp4(client.videos.download_content(video.id).read(), width=256, height=144, seconds=1)


def test_kf2v_and_audio_through_metadata(client: OpenAI) -> None:
    first = "data:image/png;base64," + base64.b64encode(png_bytes(200, 200, (10, 200, 10))).decode()
    last = "data:image/png;base64," + base64.b64encode(png_bytes(200, 200, (10, 10, 200))).decode()
    video = client.videos.create(
        prompt="green to blue",
        model="vidgate-local",
        seconds="2",
        size="192x192",
        extra_body={
            "metadata": json.dumps({"first_frame_url": first, "last_frame_url": last, "audio": True, "seed": 3})
        },
    )
    video = finished(client, video.id)
    assert_mp4(client.videos.download_content(video.id).read(), width=192, height=192, seconds=2, audio=True)


def test_retrieve_sends_poll_hint_while_unfinished(server: Server, client: OpenAI) -> None:
    video = client.videos.create(prompt="slow clouds", model="vidgate-local", seconds="3", size="640x360")
    raw = client.videos.with_raw_response.retrieve(video.id)
    again = raw.parse()
    assert again.id == video.id and again.object == "video"
    if again.status in ("queued", "in_progress"):
        assert int(raw.headers["openai-poll-after-ms"]) > 0
    assert raw.headers["x-request-id"].startswith("req_")
    finished(client, video.id)


def test_list_auto_pagination_and_order(server: Server) -> None:
    with OpenAI(base_url=f"{server.url}/v1", api_key=server.key("lister"), max_retries=0) as lister:
        created = [
            lister.videos.create(prompt=f"clip {n}", model="vidgate-local", seconds="1", size="64x64").id
            for n in range(7)
        ]
        newest_first = [video.id for video in lister.videos.list(limit=3)]
        assert newest_first == created[::-1]
        oldest_first = [video.id for video in lister.videos.list(limit=2, order="asc")]
        assert oldest_first == created
        page = lister.videos.list(limit=3, order="asc", after=created[4])
        assert [video.id for video in page.data] == created[5:] and page.has_more is False
        for video_id in created:
            finished(lister, video_id)


def test_download_variants(client: OpenAI) -> None:
    video = client.videos.create_and_poll(
        prompt="a lighthouse at dusk", model="vidgate-local", seconds="2", size="320x240", poll_interval_ms=100
    )
    thumbnail = client.videos.download_content(video.id, variant="thumbnail").read()
    assert thumbnail[:4] == b"RIFF" and thumbnail[8:12] == b"WEBP"
    sprites = client.videos.download_content(video.id, variant="spritesheet").read()
    assert sprites[:2] == b"\xff\xd8"
    mp4 = client.videos.download_content(video.id, variant="video").read()
    assert mp4[4:8] == b"ftyp"


def test_remix(client: OpenAI) -> None:
    source = client.videos.create_and_poll(
        prompt="a calm lake", model="vidgate-local", seconds="1", size="160x96", poll_interval_ms=100
    )
    remix = client.videos.remix(source.id, prompt="a stormy lake")
    assert remix.remixed_from_video_id == source.id and remix.prompt == "a stormy lake"
    remix = finished(client, remix.id)
    assert (remix.size, remix.seconds) == ("160x96", "1")
    assert_mp4(client.videos.download_content(remix.id).read(), width=160, height=96, seconds=1)


def test_delete(client: OpenAI) -> None:
    video = client.videos.create_and_poll(
        prompt="to be deleted", model="vidgate-local", seconds="1", size="64x64", poll_interval_ms=100
    )
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)


def test_delete_unfinished_cancels_it(client: OpenAI) -> None:
    video = client.videos.create(prompt="long one", model="vidgate-local", seconds="20", size="1920x1080")
    assert client.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_bad_key(server: Server) -> None:
    with OpenAI(base_url=f"{server.url}/v1", api_key="sk-vg-not-a-key", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.videos.create(prompt="x")
        assert info.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.videos.list()


def test_not_found_for_unknown_and_foreign_ids(server: Server, client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.videos.retrieve("video_" + "0" * 32)
    assert info.value.code == "video_not_found"
    with OpenAI(base_url=f"{server.url}/v1", api_key=server.key("other"), max_retries=0) as other:
        theirs = other.videos.create(prompt="mine only", model="vidgate-local", seconds="1", size="64x64")
        for call in (client.videos.retrieve, client.videos.download_content, client.videos.delete):
            with pytest.raises(openai.NotFoundError):
                call(theirs.id)
        with pytest.raises(openai.NotFoundError):
            client.videos.remix(theirs.id, prompt="steal")
        assert theirs.id not in [video.id for video in client.videos.list(limit=100)]
        finished(other, theirs.id)


@pytest.mark.parametrize(
    ("kwargs", "param", "mentions"),
    [
        ({"seconds": "25"}, "seconds", "'20'"),
        ({"size": "1x1"}, "size", "1920"),
        ({"model": "no-such-model"}, "model", "vidgate-local"),
    ],
)
def test_bad_request_names_the_param(client: OpenAI, kwargs: dict[str, str], param: str, mentions: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", **kwargs)  # type: ignore[arg-type]
    assert info.value.param == param
    assert mentions in info.value.message
    assert info.value.request_id and info.value.request_id.startswith("req_")


def test_unreadable_image_is_refused(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", input_reference=("frame.png", b"not an image at all", "image/png"))
    assert info.value.param == "input_reference"


def test_models_list(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {server.key('sdk')}"})
    assert response.status_code == 200
    local = next(model for model in response.json()["data"] if model["id"] == "vidgate-local")
    assert local["owned_by"] == "local" and set(local["modes"]) == {"t2v", "i2v", "kf2v"}
    assert local["seconds"][0] == "1" and local["seconds"][-1] == "20" and local["audio"] is True
    assert local["default_size"] == "1280x720"
