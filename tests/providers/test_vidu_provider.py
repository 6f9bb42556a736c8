"""The Vidu adapter: pure body building, parsing and mapping on recorded-shaped JSON, the adapter against
httpx.MockTransport, and end to end — the real `openai` package → a vidgate subprocess → the Vidu emulator
(tests/fakes/vidu.py)."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.fakes.base import Recorded
from tests.fakes.vidu import FakeVidu
from tests.helpers import Server, assert_mp4, png_bytes, running_gateway
from tests.helpers import wait_video as wait
from vidgate.errors import InvalidRequest, NotSupported, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import Credentials, MediaInput, Progress, VideoRequest
from vidgate.providers.vidu import (
    MODELS,
    ViduProvider,
    aspect_of,
    build_body,
    check_request,
    endpoint,
    map_error,
    parse_progress,
    resolution_of,
    size_for,
)

KEY = "vda_test"
CREDS = Credentials(channel="vidu-main", base_url="https://api.vidu.com", api_key="vda_secret")
# The query answer as §5.6 shows it.
RECORDED_SUCCESS: dict[str, Any] = {
    "id": "916205061116293120",
    "state": "success",
    "err_code": "",
    "credits": 20,
    "payload": "",
    "bgm": False,
    "off_peak": False,
    "creations": [
        {
            "id": "91620506111629312001",
            "url": "https://cdn.vidu.com/creations/a.mp4?sig=1",
            "cover_url": "https://cdn.vidu.com/creations/a.jpg?sig=1",
            "watermarked_url": "https://cdn.vidu.com/creations/a-wm.mp4?sig=1",
        }
    ],
}


def request(**changes: Any) -> VideoRequest:
    base: dict[str, Any] = {
        "model": "viduq1",
        "prompt": "a fox in the snow",
        "seconds": 5,
        "width": 1920,
        "height": 1080,
        "tier": "1080P",
        "mode": "t2v",
    }
    return VideoRequest(**{**base, **changes})


def stored(
    tmp_path: Path, name: str, data: bytes, mime: str, field: str = "input_reference", role: Any = "first_frame"
) -> MediaInput:
    path = tmp_path / name
    path.write_bytes(data)
    return MediaInput(role=role, field=field, path=path, mime=mime)


def vidu_error(status: int, reason: str, message: str) -> dict[str, Any]:
    return {"code": status, "reason": reason, "message": message, "metadata": {"trace_id": "04e5c2fe159ff7c5"}}


# -- pure functions ----------------------------------------------------------------------------------------


def test_models_declare_the_documented_rules() -> None:
    specs = {spec.name: spec for spec in MODELS}
    q1 = specs["viduq1"]
    assert q1.modes == {"t2v", "i2v", "kf2v"} and q1.seconds == (5,) and q1.default_size == "1920x1080"
    assert q1.sizes == ("1920x1080", "1080x1920", "1080x1080") and q1.tiers == {"1080P": "1920x1080"}
    assert set(q1.params) == {"seed", "movement_amplitude", "bgm"}
    assert q1.media_keys() == ["img_url", "first_frame_url", "last_frame_url"] and q1.price == Decimal("0.08")
    assert specs["viduq2"].modes == {"t2v"} and specs["viduq2"].seconds == tuple(range(1, 11))
    assert "1440x1080" in specs["viduq2"].sizes
    assert set(specs["viduq2"].params) == {"seed", "movement_amplitude", "bgm"} and not specs["viduq2"].media_keys()
    assert specs["viduq2"].params["movement_amplitude"].choices == ("auto", "small", "medium", "large")
    assert specs["vidu2.0"].modes == {"i2v", "kf2v"} and specs["vidu2.0"].seconds == (4, 8)
    assert "640x360" in specs["vidu2.0"].sizes and "960x540" not in specs["viduq2-pro-fast"].sizes
    assert all(not spec.audio and spec.provider == "vidu" for spec in MODELS)


@pytest.mark.parametrize(
    ("size", "resolution", "aspect"),
    [("1920x1080", "1080p", "16:9"), ("1080x1920", "1080p", "9:16"), ("1080x1080", "1080p", "1:1"),
     ("960x540", "540p", "16:9"), ("720x960", "720p", "3:4"), ("640x360", "360p", "16:9")],
)  # fmt: skip
def test_sizes_map_to_resolution_and_aspect(size: str, resolution: str, aspect: str) -> None:
    width, height = (int(part) for part in size.split("x"))
    assert (resolution_of(width, height), aspect_of(width, height)) == (resolution, aspect)
    assert size_for(resolution, aspect) == size


def test_text2video_body_has_aspect_and_no_images() -> None:
    req = request(width=1080, height=1920, seed=42, extras={"movement_amplitude": "large", "bgm": True})
    assert endpoint(req) == "/ent/v2/text2video"
    assert build_body(req) == {
        "model": "viduq1",
        "prompt": "a fox in the snow",
        "duration": 5,
        "resolution": "1080p",
        "aspect_ratio": "9:16",
        "seed": 42,
        "movement_amplitude": "large",
        "bgm": True,
    }


def test_img2video_passes_urls_and_sends_bytes_with_the_data_prefix(tmp_path: Path) -> None:
    by_url = request(
        mode="i2v",
        inputs=(MediaInput(role="first_frame", field="metadata.img_url", url="https://example.com/cat.png"),),
    )
    assert endpoint(by_url) == "/ent/v2/img2video"
    assert build_body(by_url) == {
        "model": "viduq1",
        "prompt": "a fox in the snow",
        "images": ["https://example.com/cat.png"],
        "duration": 5,
        "resolution": "1080p",
    }
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(jpeg, format="JPEG")
    upload = stored(tmp_path, "up.jpg", jpeg.getvalue(), "image/jpeg")
    body = build_body(request(mode="i2v", inputs=(upload,)))
    assert body["images"] == ["data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode()]


def test_start_end_orders_frames_and_reencodes_bmp(tmp_path: Path) -> None:
    bmp = io.BytesIO()
    Image.new("RGB", (64, 48), (9, 9, 9)).save(bmp, format="BMP")
    last = stored(tmp_path, "last.bmp", bmp.getvalue(), "image/bmp", "metadata.last_frame_url", "last_frame")
    first = MediaInput(role="first_frame", field="metadata.first_frame_url", url="https://example.com/1.png")
    req = request(mode="kf2v", inputs=(last, first))
    assert endpoint(req) == "/ent/v2/start-end2video"
    images = build_body(req)["images"]
    assert images[0] == "https://example.com/1.png" and images[1].startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(images[1].split(",", 1)[1]))) as decoded:
        assert decoded.format == "PNG" and decoded.size == (64, 48)
    assert "aspect_ratio" not in build_body(req)


def test_check_request_enforces_length_dependent_rules() -> None:
    check_request(request(model="vidu2.0", mode="i2v", seconds=8, width=1280, height=720))
    check_request(request(model="viduq2-pro", mode="i2v", seconds=10, width=1280, height=720))
    with pytest.raises(InvalidRequest) as info:
        check_request(request(model="vidu2.0", mode="i2v", seconds=8, width=1920, height=1080))
    assert info.value.param == "size" and "1280x720" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        check_request(request(model="viduq2-pro", mode="kf2v", seconds=10, width=1280, height=720))
    assert info.value.param == "seconds" and "'8'" in info.value.message and "'9'" not in info.value.message
    # The client's own names, as the surface recorded them (here the DashScope surface's).
    with pytest.raises(InvalidRequest) as info:
        check_request(
            replace(
                request(model="viduq2-pro", mode="kf2v", seconds=10, width=1280, height=720),
                fields={"seconds": "parameters.duration"},
            )
        )
    assert info.value.param == "parameters.duration" and "'parameters.duration'" in info.value.message


def test_parse_progress_on_recorded_answers() -> None:
    for state, ours in (("created", "queued"), ("queueing", "queued"), ("processing", "in_progress")):
        assert parse_progress({**RECORDED_SUCCESS, "state": state, "creations": []}).state == ours
    done = parse_progress(RECORDED_SUCCESS)
    assert done == Progress(
        state="completed",
        progress=100,
        video_url="https://cdn.vidu.com/creations/a.mp4?sig=1",
        thumbnail_url="https://cdn.vidu.com/creations/a.jpg?sig=1",
    )
    failed = parse_progress(
        {**RECORDED_SUCCESS, "state": "failed", "err_code": "CreationPolicyViolation", "creations": []}
    )
    # Vidu's own code is kept (a user can look it up); its table's meaning follows, since Vidu sends no text.
    assert (failed.state, failed.error_code) == ("failed", "content_policy_violation")
    assert failed.error_message == (
        "Vidu: CreationPolicyViolation - The generated video was blocked by Vidu's content policy."
    )
    odd = parse_progress({**RECORDED_SUCCESS, "state": "failed", "err_code": "SomethingNew", "creations": []})
    assert (odd.error_code, odd.error_message) == ("generation_failed", "Vidu: SomethingNew")
    bare = parse_progress({**RECORDED_SUCCESS, "state": "failed", "err_code": "", "creations": []})
    assert (bare.error_code, bare.error_message) == ("generation_failed", "Vidu: no reason given")
    cancelled = parse_progress({**RECORDED_SUCCESS, "state": "failed", "err_code": "UserCancelled", "creations": []})
    assert (cancelled.state, cancelled.error_code) == ("cancelled", "cancelled")
    assert (cancelled.error_message or "").startswith("Vidu: UserCancelled")


@pytest.mark.parametrize(
    "payload",
    [
        {**RECORDED_SUCCESS, "state": "paused_x"},
        {**RECORDED_SUCCESS, "state": ""},
        {"id": "1", "err_code": ""},
        {**RECORDED_SUCCESS, "creations": []},
        {**RECORDED_SUCCESS, "creations": [{"id": "x", "url": ""}]},
    ],
)
def test_parse_progress_untrustworthy_answers_are_transient(payload: dict[str, Any]) -> None:
    with pytest.raises(UpstreamTransient):
        parse_progress(payload)


def test_map_error_client_faults_name_our_fields() -> None:
    cases = [
        (vidu_error(400, "FieldInvalid", "invalid field: duration"), "seconds", None),
        (vidu_error(400, "FieldInvalid", "invalid field: resolution"), "size", None),
        (vidu_error(400, "FieldInvalid", "invalid field: movement_amplitude"), "movement_amplitude", None),
        (vidu_error(400, "FieldLacking", "field is missing or empty: images"), "metadata.img_url", "metadata.img_url"),
        (vidu_error(400, "PageSizeOutOfRange", "image aspect ratio must be within 1:4 and 4:1"), "input_reference",
         "input_reference"),
        (vidu_error(400, "TaskPromptPolicyViolation", "prompt violates policy"), "prompt", None),
        (vidu_error(400, "BadRequest", "request body must be a JSON object"), None, None),
    ]  # fmt: skip
    for body, param, images in cases:
        mapped = map_error(400, body, images_param=images)
        assert isinstance(mapped, UpstreamRejected), body
        assert mapped.param == param and mapped.upstream == UpstreamFailure("Vidu", body["reason"], body["message"])
        assert mapped.message == f"Vidu: {body['reason']}: {body['message']}"
        assert mapped.code == ("content_policy_violation" if "Policy" in body["reason"] else None)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, vidu_error(429, "TooManyRequests", "too many requests, please retry later")),
        (429, vidu_error(429, "QuotaExceeded", "concurrency limit")),
        (500, vidu_error(500, "InternalServiceFailure", "internal service failure")),
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        (503, vidu_error(503, "ServiceUnavailable", "service unavailable")),
        (401, vidu_error(401, "Unauthorized", "unauthorized")),
        (403, vidu_error(403, "Forbidden", "forbidden")),
        (404, vidu_error(404, "TaskNotFound", "task not found")),
        (400, vidu_error(400, "CreditInsufficient", "credit insufficient")),
        (400, vidu_error(400, "FieldInvalid", "invalid field: model")),
    ],
)
def test_map_error_channel_faults_are_transient(status: int, body: Any) -> None:
    mapped = map_error(status, body)
    assert isinstance(mapped, UpstreamTransient) and mapped.status == status


# -- the adapter against a mock transport ---------------------------------------------------------------------


def provider_with(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[ViduProvider, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ViduProvider(client), client


async def test_submit_signs_with_token_and_handles_a_base_with_prefix() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"task_id": 916205061116293120, "state": "created", "credits": 20})

    provider, client = provider_with(handler)
    creds = Credentials(channel="c", base_url="https://api.vidu.cn/ent/v2", api_key="vda_secret")
    async with client:
        submitted = await provider.submit(request(), creds, task_id="video_ours")
    assert submitted.upstream_id == "916205061116293120"
    assert str(seen[0].url) == "https://api.vidu.cn/ent/v2/text2video"
    assert seen[0].headers["authorization"] == "Token vda_secret"
    assert json.loads(seen[0].read()) == build_body(request())


async def test_submit_maps_the_image_field_of_a_rejection() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=vidu_error(400, "ImageFormatInvalid", "image format invalid"))

    first = MediaInput(role="first_frame", field="metadata.first_frame_url", url="https://e.com/1.png")
    last = MediaInput(role="last_frame", field="metadata.last_frame_url", url="https://e.com/2.png")
    provider, client = provider_with(handler)
    async with client:
        with pytest.raises(UpstreamRejected) as info:
            await provider.submit(request(mode="kf2v", inputs=(first, last)), CREDS, task_id="video_ours")
    assert info.value.param == "metadata.first_frame_url" and info.value.message.startswith("Vidu: ImageFormatInvalid:")


async def test_cancel_sends_the_id_and_a_refusal_is_not_supported() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if "busy" in req.url.path:
            return httpx.Response(400, json=vidu_error(400, "BadRequest", "task state is processing, can not cancel"))
        return httpx.Response(200, json={})

    provider, client = provider_with(handler)
    async with client:
        await provider.cancel("123", CREDS)
        with pytest.raises(NotSupported, match="can not cancel"):
            await provider.cancel("busy", CREDS)
    assert seen[0].url.path == "/ent/v2/tasks/123/cancel" and json.loads(seen[0].read()) == {"id": "123"}


async def test_timeouts_are_transient() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=req)

    provider, client = provider_with(handler)
    async with client:
        with pytest.raises(UpstreamTransient):
            await provider.poll("123", CREDS)


async def test_cover_becomes_a_webp_thumbnail(tmp_path: Path) -> None:
    cover = io.BytesIO()
    Image.new("RGB", (90, 160), (40, 90, 160)).save(cover, format="JPEG")

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/creations"):
            return httpx.Response(200, json=RECORDED_SUCCESS)
        return httpx.Response(200, content=cover.getvalue())

    provider, client = provider_with(handler)
    async with client:
        stored_previews = await provider.download_previews(parse_progress(RECORDED_SUCCESS), "123", CREDS, tmp_path)
    assert stored_previews == {"thumbnail": tmp_path / "thumbnail.webp"}
    with Image.open(tmp_path / "thumbnail.webp") as thumb:
        assert thumb.format == "WEBP" and thumb.size == (90, 160)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thumbnail.webp"]


# -- end to end: openai SDK → vidgate → FakeVidu -------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeVidu]:
    fake = FakeVidu(api_key=KEY)
    with fake.running():
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeVidu) -> Iterator[Server]:
    channels = f"""
[[channels]]
name = "vidu-main"
provider = "vidu"
base_url = "{upstream.base_url}"
api_key = "{KEY}"

[prices]
# Not in vidgate's references: an operator routing these states them (startup refuses them otherwise).
viduq2 = 0.05
viduq2-pro = 0.08
viduq2-turbo = 0.05
viduq2-pro-fast = 0.04
"vidu2.0" = 0.04
"""
    with running_gateway(
        tmp_path_factory.mktemp("vidugw"), channels, settings="local_workers = 1\npoll_interval_s = 0.2\n"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client(gw: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key("vidu"), max_retries=0) as sdk:
        yield sdk


@pytest.fixture(autouse=True)
def _clean_upstream(request: pytest.FixtureRequest) -> Iterator[None]:
    if "upstream" not in request.fixturenames:
        yield
        return
    fake: FakeVidu = request.getfixturevalue("upstream")
    fake.reset()
    fake.polls_per_step = 1
    yield
    fake.faults.clear()
    fake.faults.hang_s = 40.0
    fake.polls_per_step = 1


def creates(upstream: FakeVidu) -> list[Recorded]:
    return [r for r in upstream.history if r.method == "POST" and "/tasks/" not in r.path]


def without_callback(body: dict[str, Any], video_id: str) -> dict[str, Any]:
    """The create body less its callback_url, once that is checked to be vidgate's signed URL for the task."""
    rest = dict(body)
    signed = rf"http://127\.0\.0\.1:\d+/callbacks/vidu/{video_id}\?sig=[0-9a-f]{{64}}"
    assert re.fullmatch(signed, rest.pop("callback_url"))
    return rest


def create(client: OpenAI, **fields: Any) -> openai.types.Video:
    """videos.create with Vidu's sizes and lengths (the SDK's types only list Sora's)."""
    return client.videos.create(**fields)


def metadata(**values: Any) -> dict[str, Any]:
    return {"metadata": json.dumps(values)}


def test_t2v_end_to_end(client: OpenAI, upstream: FakeVidu) -> None:
    video = create(
        client,
        prompt="a fox in the snow",
        model="viduq1",
        seconds="5",
        size="1080x1920",
        extra_body=metadata(seed=42, movement_amplitude="small", bgm=True),
    )
    done = wait(client, video.id)
    assert done.status == "completed" and (done.seconds, done.size) == ("5", "1080x1920"), done
    # The emulator renders 1 s at 24 fps, 90x160 for 9:16.
    assert_mp4(client.videos.download_content(video.id).read(), width=90, height=160, seconds=1)
    (sent,) = creates(upstream)
    assert sent.path == "/ent/v2/text2video" and sent.headers["authorization"] == f"Token {KEY}"
    assert without_callback(sent.json, video.id) == {
        "model": "viduq1",
        "prompt": "a fox in the snow",
        "duration": 5,
        "resolution": "1080p",
        "aspect_ratio": "9:16",
        "seed": 42,
        "movement_amplitude": "small",
        "bgm": True,
    }
    (task_id,) = upstream.tasks
    assert task_id != video.id
    polls = upstream.calls(f"/ent/v2/tasks/{task_id}/creations", "GET")
    assert polls and all(r.headers["authorization"] == f"Token {KEY}" for r in polls)
    # The cover (a solid-colour JPEG) is the thumbnail, as WebP.
    thumbnail = client.videos.download_content(video.id, variant="thumbnail").read()
    with Image.open(io.BytesIO(thumbnail)) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (90, 160)
        red, green, blue = thumb.convert("RGB").getpixel((45, 80))  # type: ignore[misc]
        assert abs(red - 40) < 12 and abs(green - 90) < 12 and abs(blue - 160) < 12
    sprites = client.videos.download_content(video.id, variant="spritesheet").read()
    assert sprites[:2] == b"\xff\xd8"  # made by vidgate from the video


def test_i2v_multipart_file_goes_as_a_data_uri(client: OpenAI, upstream: FakeVidu) -> None:
    photo = png_bytes(320, 200)
    video = create(
        client,
        prompt="the flag waves",
        model="viduq1",
        size="1920x1080",
        input_reference=("flag.png", photo, "image/png"),
    )
    assert wait(client, video.id).status == "completed"
    (sent,) = creates(upstream)
    assert sent.path == "/ent/v2/img2video"
    assert without_callback(sent.json, video.id) == {
        "model": "viduq1",
        "prompt": "the flag waves",
        "images": ["data:image/png;base64," + base64.b64encode(photo).decode()],
        "duration": 5,
        "resolution": "1080p",
    }


def test_start_end_from_metadata_frames(client: OpenAI, upstream: FakeVidu) -> None:
    first = "data:image/png;base64," + base64.b64encode(png_bytes(200, 200, (10, 200, 10))).decode()
    video = create(
        client,
        prompt="green to blue",
        model="viduq1",
        size="1080x1080",
        extra_body=metadata(first_frame_url=first, last_frame_url="https://example.com/last.png"),
    )
    assert wait(client, video.id).status == "completed"
    (sent,) = creates(upstream)
    assert sent.path == "/ent/v2/start-end2video"
    assert sent.json["images"] == [first, "https://example.com/last.png"]
    assert "aspect_ratio" not in sent.json and sent.json["resolution"] == "1080p"


def test_seed_model_names_are_listed(client: OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}
    assert {"viduq1", "viduq2", "vidu2.0"} <= set(listed)
    assert listed["viduq1"].owned_by == "vidu"
    extra = listed["viduq1"].model_extra or {}
    assert extra["sizes"][:3] == ["1920x1080", "1080x1920", "1080x1080"] and extra["seconds"] == ["5"]


@pytest.mark.parametrize(
    ("fields", "param", "named"),
    [
        ({"model": "viduq1", "seconds": "4"}, "seconds", ("'5'",)),
        ({"model": "viduq1", "size": "1280x720"}, "size", ("1920x1080", "1080x1920")),
        (
            {"model": "viduq1", "extra_body": {"metadata": '{"movement_amplitude": "wild"}'}},
            "metadata.movement_amplitude",
            ("auto", "large"),
        ),
        ({"model": "viduq1", "extra_body": {"metadata": '{"audio": true}'}}, "metadata.audio", ("seed",)),
        (
            {
                "model": "vidu2.0",
                "seconds": "8",
                "size": "1920x1080",
                "extra_body": {"metadata": '{"img_url": "https://example.com/a.png"}'},
            },
            "size",
            ("720p", "1280x720"),
        ),
        (
            {
                "model": "viduq2-pro",
                "seconds": "10",
                "extra_body": {
                    "metadata": json.dumps(
                        {"first_frame_url": "https://example.com/a.png", "last_frame_url": "https://example.com/b.png"}
                    )
                },
            },
            "seconds",
            ("'8'",),
        ),
        ({"model": "vidu2.0", "seconds": "4"}, "input_reference", ("i2v",)),
    ],
)
def test_validation_400s_before_any_upstream_call(
    client: OpenAI, upstream: FakeVidu, fields: dict[str, Any], param: str, named: tuple[str, ...]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="a seed doc example", **fields)
    assert info.value.param == param
    assert all(text in info.value.message for text in named), info.value.message
    assert creates(upstream) == []


def test_an_upstream_rejection_is_a_400_naming_our_field(client: OpenAI, upstream: FakeVidu) -> None:
    before = [video.id for video in client.videos.list(limit=100).data]
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(
            prompt="a very tall image", model="viduq1", input_reference=("tall.png", png_bytes(40, 400), "image/png")
        )
    assert info.value.param == "input_reference" and info.value.code == "upstream_rejected"
    assert "Vidu: PageSizeOutOfRange: " in info.value.message and "1:4" in info.value.message
    assert [video.id for video in client.videos.list(limit=100).data] == before


def test_poll_faults_never_fail_a_task(client: OpenAI, upstream: FakeVidu) -> None:
    # A "timeout" hangs for hang_s, then answers 5xx: kept well under vidgate's 30 s client timeout.
    upstream.faults.hang_s = 0.3
    upstream.faults.random("poll", 0.3, "500", "429", "garbage", "empty", "unknown_status", "not_found", "timeout")
    upstream.faults.queue("download", "502")
    ids = [client.videos.create(prompt=f"stormy sea {n}", model="viduq1").id for n in range(6)]
    finished = [wait(client, video_id, timeout=45) for video_id in ids]
    assert [video.status for video in finished] == ["completed"] * 6, finished
    assert len(upstream.calls("/creations", "GET")) > 6 * 4  # faults were met and read past


def test_upstream_failure_surfaces_its_message(client: OpenAI, upstream: FakeVidu) -> None:
    blocked = wait(client, client.videos.create(prompt="FAIL this one", model="viduq1").id)
    assert blocked.status == "failed" and blocked.error is not None
    assert blocked.error.code == "content_policy_violation"
    assert blocked.error.message == (
        "Vidu: CreationPolicyViolation - The generated video was blocked by Vidu's content policy."
    )
    upstream.fail_next("ImageDownloadFailure")
    failed = wait(client, client.videos.create(prompt="an ordinary scene", model="viduq1").id)
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == (
        "generation_failed",
        "Vidu: ImageDownloadFailure - Vidu could not download the input image.",
    )


def test_delete_of_a_waiting_task_cancels_it_upstream(client: OpenAI, upstream: FakeVidu) -> None:
    upstream.polls_per_step = 1000  # the task stays "created"/"queueing"
    video = client.videos.create(prompt="to be cancelled", model="viduq1")
    (task_id,) = upstream.tasks
    client.videos.delete(video.id)
    (sent,) = upstream.calls(f"/ent/v2/tasks/{task_id}/cancel", "POST")
    assert sent.json == {"id": task_id} and sent.headers["authorization"] == f"Token {KEY}"
    assert upstream.tasks[task_id].err_code == "UserCancelled"


@pytest.mark.parametrize("fault", ["429", "503"])
def test_submit_refused_upstream_is_a_503_and_leaves_nothing(client: OpenAI, upstream: FakeVidu, fault: Any) -> None:
    before = [video.id for video in client.videos.list(limit=100).data]
    # Refused in every round the submit makes over the model's channels (submit_rounds, default 3).
    upstream.faults.queue("submit", fault, fault, fault)
    with pytest.raises(openai.APIStatusError) as info:
        client.videos.create(prompt="will not be taken", model="viduq1")
    assert info.value.status_code in (502, 503)
    body = info.value.response.json()
    assert body["error"]["type"] == "server_error" and "Traceback" not in info.value.response.text
    assert len(creates(upstream)) == 3
    assert [video.id for video in client.videos.list(limit=100).data] == before
