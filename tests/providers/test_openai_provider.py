"""The Sora adapter: pure parsing and mapping on recorded-shaped JSON, the adapter against httpx.MockTransport,
and end to end — the real `openai` package → a vidgate subprocess → the Sora emulator (tests/fakes/sora.py)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.fakes.base import Recorded
from tests.fakes.sora import FakeSora
from tests.helpers import Server, assert_mp4, png_bytes, running_gateway
from tests.helpers import wait_video as wait
from vidgate.errors import NotSupported, UpstreamRejected, UpstreamTransient
from vidgate.providers.base import Credentials, MediaInput, Progress, VideoRequest
from vidgate.providers.openai import (
    MODELS,
    OpenAIProvider,
    api_base,
    build_body,
    fit_image,
    map_error,
    parse_progress,
)

KEY = "sk-openai-test"
CREDS = Credentials(channel="sora-main", base_url="https://api.openai.com", api_key="sk-test")
# A Video object as §1.5 shows it (id shortened), the shape every read returns.
RECORDED_VIDEO: dict[str, Any] = {
    "id": "video_68d7512d07848190b3e45da0ecbebcde",
    "object": "video",
    "model": "sora-2",
    "status": "in_progress",
    "progress": 37,
    "created_at": 1712697600,
    "completed_at": None,
    "expires_at": None,
    "prompt": "A calico cat playing a piano on stage",
    "size": "720x1280",
    "seconds": "8",
    "remixed_from_video_id": None,
    "error": None,
    "quality": "standard",
}


def request(**changes: Any) -> VideoRequest:
    base: dict[str, Any] = {
        "model": "sora-2",
        "prompt": "a calico cat",
        "seconds": 8,
        "width": 1280,
        "height": 720,
        "tier": "720P",
        "mode": "t2v",
    }
    return VideoRequest(**{**base, **changes})


def image(width: int, height: int, fmt: str = "PNG", mode: str = "RGB", exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    picture = Image.new(mode, (width, height), (200, 40, 90) if mode == "RGB" else (200, 40, 90, 128))
    if exif is not None:
        picture.save(buffer, format=fmt, exif=exif)
    else:
        picture.save(buffer, format=fmt)
    return buffer.getvalue()


def dims(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.format or "", picture.size


# -- pure functions ----------------------------------------------------------------------------------------


def test_models_declare_sora_rules() -> None:
    specs = {spec.name: spec for spec in MODELS}
    assert set(specs) == {"sora-2", "sora-2-pro"}
    assert specs["sora-2"].sizes == ("720x1280", "1280x720")
    assert set(specs["sora-2-pro"].sizes) == {"720x1280", "1280x720", "1024x1792", "1792x1024"}
    for spec in specs.values():
        assert spec.seconds == (4, 8, 12) and spec.default_seconds == 4 and spec.default_size == "720x1280"
        assert spec.modes == {"t2v", "i2v"} and spec.remix and not spec.audio and not spec.params
        assert spec.tiers == {"720P": "720x1280"}


def test_build_body_is_the_multipart_text_fields() -> None:
    assert build_body(request()) == {"prompt": "a calico cat", "model": "sora-2", "seconds": "8", "size": "1280x720"}
    mapped = build_body(request(model="sora-2-2025-10-06", seconds=12, width=1792, height=1024))
    assert mapped == {"prompt": "a calico cat", "model": "sora-2-2025-10-06", "seconds": "12", "size": "1792x1024"}


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.openai.com", "https://api.openai.com/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://proxy.example/openai/v1/", "https://proxy.example/openai/v1"),
        ("", "https://api.openai.com/v1"),
    ],
)
def test_api_base_with_or_without_v1(base_url: str, expected: str) -> None:
    assert api_base(Credentials(channel="c", base_url=base_url)) == expected


def test_fit_image_cover_fits_to_the_exact_size() -> None:
    data, mime = fit_image(image(400, 300), 720, 1280)
    assert mime == "image/jpeg" and dims(data) == ("JPEG", (720, 1280))
    # With transparency the fitted image stays a PNG.
    data, mime = fit_image(image(300, 300, mode="RGBA"), 1280, 720)
    assert mime == "image/png" and dims(data) == ("PNG", (1280, 720))
    # BMP is not a Sora format, even at the right size.
    data, mime = fit_image(image(1280, 720, fmt="BMP"), 1280, 720)
    assert mime == "image/jpeg" and dims(data) == ("JPEG", (1280, 720))


def test_fit_image_keeps_an_exact_image_byte_for_byte() -> None:
    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        original = image(1280, 720, fmt=fmt)
        assert fit_image(original, 1280, 720) == (original, mime)


def test_fit_image_honours_exif_rotation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    original = image(1280, 720, fmt="JPEG", exif=exif.tobytes())
    data, _ = fit_image(original, 720, 1280)
    assert data != original and dims(data) == ("JPEG", (720, 1280))


def test_parse_progress_on_recorded_videos() -> None:
    assert parse_progress(RECORDED_VIDEO) == Progress(state="in_progress", progress=37)
    assert parse_progress({**RECORDED_VIDEO, "status": "queued", "progress": 0}) == Progress(state="queued", progress=0)
    done = parse_progress({**RECORDED_VIDEO, "status": "completed", "progress": 100, "completed_at": 1712697900})
    assert done == Progress(state="completed", progress=100)
    failed = parse_progress(
        {
            **RECORDED_VIDEO,
            "status": "failed",
            "error": {"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."},
        }
    )
    assert (failed.state, failed.error_code) == ("failed", "content_policy_violation")
    assert failed.error_message == "Upstream: moderation_blocked: Your request was blocked by our moderation system."
    other = parse_progress(
        {**RECORDED_VIDEO, "status": "failed", "error": {"code": "render_error", "message": "Boom."}}
    )
    assert (other.error_code, other.error_message) == ("generation_failed", "Upstream: render_error: Boom.")
    # Another vidgate as the upstream: its codes are ours already, and its message keeps the vendor's words.
    peer = parse_progress(
        {
            **RECORDED_VIDEO,
            "status": "failed",
            "error": {"code": "content_policy_violation", "message": "Vidu: CreationPolicyViolation - Blocked."},
        }
    )
    assert peer.error_code == "content_policy_violation"
    assert peer.error_message == "Upstream: content_policy_violation: Vidu: CreationPolicyViolation - Blocked."
    bare = parse_progress({**RECORDED_VIDEO, "status": "failed", "error": None})
    assert (bare.state, bare.error_code, bare.error_message) == (
        "failed",
        "generation_failed",
        "Upstream: no reason given",
    )


@pytest.mark.parametrize("status", ["weird", "", None, "cancelled", 3])
def test_parse_progress_unknown_status_is_transient(status: Any) -> None:
    with pytest.raises(UpstreamTransient):
        parse_progress({**RECORDED_VIDEO, "status": status})
    with pytest.raises(UpstreamTransient):
        parse_progress({"object": "video"})


def openai_error(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def test_map_error_client_faults_are_rejected_with_our_param() -> None:
    seconds = map_error(
        400,
        openai_error(
            "Invalid value: '10'. Supported values are: '4', '8', and '12'.", param="seconds", code="invalid_value"
        ),
    )
    assert isinstance(seconds, UpstreamRejected)
    assert (seconds.param, seconds.code) == ("seconds", None)
    assert seconds.message.startswith("Upstream: invalid_value: Invalid value: '10'") and "'12'" in seconds.message
    assert seconds.upstream is not None and seconds.upstream.code == "invalid_value"
    image_error = map_error(
        400,
        openai_error("Inpaint image must match the requested width and height", param="input_reference.image_url"),
    )
    assert isinstance(image_error, UpstreamRejected) and image_error.param == "input_reference"
    moderation = map_error(400, openai_error("Your request was blocked.", code="moderation_blocked"))
    assert isinstance(moderation, UpstreamRejected) and moderation.param is None
    assert moderation.code == "content_policy_violation"
    assert moderation.message == "Upstream: moderation_blocked: Your request was blocked."
    unknown = map_error(400, openai_error("Unknown parameter: 'quality'.", param="quality", code="unknown_parameter"))
    assert isinstance(unknown, UpstreamRejected) and unknown.param is None


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, openai_error("Rate limit reached", type_="requests", code="rate_limit_exceeded")),
        (500, openai_error("The server had an error", type_="server_error")),
        (503, openai_error("The engine is currently overloaded", type_="server_error")),
        (502, "<html>502 Bad Gateway</html>"),
        (401, openai_error("Incorrect API key provided: sk-xx****abcd.", code="invalid_api_key")),
        (403, openai_error("Project does not have access to model sora-2-pro")),
        (404, openai_error("Video with id 'video_x' not found.")),
        (400, openai_error("Invalid value: 'sora-9'.", param="model", code="invalid_value")),
        (400, openai_error("Billing hard limit has been reached", code="billing_hard_limit_reached")),
    ],
)
def test_map_error_channel_faults_are_transient(status: int, body: Any) -> None:
    mapped = map_error(status, body)
    assert isinstance(mapped, UpstreamTransient) and mapped.status == status


# -- the adapter against a mock transport ---------------------------------------------------------------------


def provider_with(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[OpenAIProvider, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OpenAIProvider(client), client


async def test_submit_sends_multipart_even_without_an_image() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={**RECORDED_VIDEO, "status": "queued", "progress": 0})

    provider, client = provider_with(handler)
    async with client:
        submitted = await provider.submit(request(), CREDS, task_id="video_ours")
    assert submitted.upstream_id == RECORDED_VIDEO["id"]
    sent = seen[0]
    assert str(sent.url) == "https://api.openai.com/v1/videos" and sent.method == "POST"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"].startswith("multipart/form-data")
    body = sent.read()
    for name, value in build_body(request()).items():
        assert f'name="{name}"\r\n\r\n{value}\r\n'.encode() in body


async def test_submit_fits_a_data_uri_reference(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.read())
        return httpx.Response(200, json=RECORDED_VIDEO)

    uri = "data:image/png;base64," + base64.b64encode(image(300, 500)).decode()
    reference = MediaInput(role="first_frame", field="input_reference", url=uri)
    provider, client = provider_with(handler)
    async with client:
        await provider.submit(request(mode="i2v", inputs=(reference,)), CREDS, task_id="video_ours")
    assert b'name="input_reference"; filename="reference.jpg"' in seen[0]
    assert b"Content-Type: image/jpeg" in seen[0]


async def test_transport_failures_are_transient() -> None:
    def timeout(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    provider, client = provider_with(timeout)
    async with client:
        with pytest.raises(UpstreamTransient, match="timed out"):
            await provider.poll("video_x", CREDS)
        with pytest.raises(UpstreamTransient):
            await provider.submit(request(), CREDS, task_id="video_ours")


async def test_poll_completed_points_at_the_content_url() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**RECORDED_VIDEO, "status": "completed", "progress": 100})

    provider, client = provider_with(handler)
    async with client:
        progress = await provider.poll("video_abc", CREDS)
    assert progress.video_url == "https://api.openai.com/v1/videos/video_abc/content"


async def test_remix_uses_the_upstream_id_and_a_gone_source_is_the_clients_problem() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if "gone" in req.url.path:
            return httpx.Response(404, json=openai_error("Video with id 'video_gone' not found."))
        return httpx.Response(200, json={**RECORDED_VIDEO, "id": "video_new", "remixed_from_video_id": "video_up"})

    provider, client = provider_with(handler)
    async with client:
        submitted = await provider.remix("video_up", request(prompt="now at night"), CREDS, task_id="video_ours")
        with pytest.raises(UpstreamRejected) as info:
            await provider.remix("video_gone", request(), CREDS, task_id="video_ours2")
    assert submitted.upstream_id == "video_new"
    assert seen[0].url.path == "/v1/videos/video_up/remix" and seen[0].read() == b'{"prompt":"now at night"}'
    assert info.value.param == "video_id"


async def test_cancel_is_not_supported() -> None:
    provider, client = provider_with(lambda req: httpx.Response(500))
    async with client:
        with pytest.raises(NotSupported):
            await provider.cancel("video_x", CREDS)


async def test_previews_keep_only_the_promised_formats(tmp_path: Path) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.params["variant"] == "thumbnail":
            return httpx.Response(200, content=image(32, 18, fmt="WEBP"))
        return httpx.Response(200, content=image(32, 18, fmt="PNG"))  # not the JPEG we serve it as

    provider, client = provider_with(handler)
    async with client:
        stored = await provider.download_previews(Progress(state="completed"), "video_x", CREDS, tmp_path)
    assert stored == {"thumbnail": tmp_path / "thumbnail.webp"}
    assert not (tmp_path / "spritesheet.jpg").exists()


# -- end to end: openai SDK → vidgate → FakeSora ------------------------------------------------------------


# What the emulator serves besides Sora, as a self-hosted OpenAI-format model server would.
MY_MODEL = ("my-model", (("5", "10"), ("1280x720", "960x960")))


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeSora]:
    fake = FakeSora(api_keys=frozenset({KEY}), other_models=dict([MY_MODEL]))
    with fake.running():
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeSora) -> Iterator[Server]:
    # sora-main serves the models the provider knows; "peer" names its own model and lets the upstream judge
    # it; "peer-declared" names one under another name, with the seconds and sizes it takes.
    channels = f"""
[[channels]]
name = "sora-main"
provider = "openai"
base_url = "{upstream.base_url}"
api_key = "{KEY}"

[[channels]]
name = "peer"
provider = "openai"
base_url = "{upstream.base_url}"
api_key = "{KEY}"
models = ["my-model"]

[[channels]]
name = "peer-declared"
provider = "openai"
base_url = "{upstream.base_url}/v1"
api_key = "{KEY}"
models = ["my-declared"]
model_map = {{ "my-declared" = "my-model" }}
seconds = [10]
sizes = ["960x960"]

[prices]
"my-declared" = 0.02
"my-model" = 0
"""
    with running_gateway(
        tmp_path_factory.mktemp("soragw"), channels, settings="local_workers = 1\npoll_interval_s = 0.2\n"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client(gw: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key("sora"), max_retries=0) as sdk:
        yield sdk


@pytest.fixture(autouse=True)
def _clean_upstream(request: pytest.FixtureRequest) -> Iterator[None]:
    if "upstream" not in request.fixturenames:
        yield
        return
    fake: FakeSora = request.getfixturevalue("upstream")
    fake.faults.clear()
    fake.history.clear()
    yield
    fake.faults.clear()
    fake.faults.hang_s = 40.0


def creates(upstream: FakeSora) -> list[Recorded]:
    return [r for r in upstream.calls("/v1/videos", "POST") if r.path == "/v1/videos"]


def upstream_task_id(upstream: FakeSora, prompt: str) -> str:
    (found,) = [task.id for task in upstream.tasks.values() if task.prompt == prompt]
    return found


def test_t2v_end_to_end(client: OpenAI, upstream: FakeSora) -> None:
    video = client.videos.create(prompt="a lighthouse in a storm", model="sora-2", seconds="8", size="1280x720")
    assert video.status == "queued" and video.model == "sora-2"
    done = wait(client, video.id)
    assert done.status == "completed" and done.progress == 100, done
    assert (done.seconds, done.size) == ("8", "1280x720")
    # The emulator renders at 1/8 scale: 1280x720 → 160x90, 8 s at 24 fps.
    assert_mp4(client.videos.download_content(video.id).read(), width=160, height=90, seconds=8)
    (sent,) = creates(upstream)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.form == {"prompt": "a lighthouse in a storm", "model": "sora-2", "seconds": "8", "size": "1280x720"}
    upstream_id = upstream_task_id(upstream, "a lighthouse in a storm")
    assert upstream_id != video.id  # our id is ours; the upstream's stays private
    reads = upstream.calls(f"/v1/videos/{upstream_id}")
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in reads)
    variants = sorted(r.query.get("variant", "video") for r in reads if r.path.endswith("/content"))
    assert variants == ["spritesheet", "thumbnail", "video"]
    # The previews served are Sora's own, not ones vidgate made from the video.
    assets = upstream.tasks[upstream_id].assets
    assert client.videos.download_content(video.id, variant="thumbnail").read() == assets["thumbnail"]
    assert client.videos.download_content(video.id, variant="spritesheet").read() == assets["spritesheet"]


def test_i2v_file_is_fitted_to_the_size(client: OpenAI, upstream: FakeSora) -> None:
    photo = png_bytes(400, 300)
    video = client.videos.create(
        prompt="the photo comes alive",
        model="sora-2",
        seconds="4",
        size="720x1280",
        input_reference=("photo.png", photo, "image/png"),
    )
    assert wait(client, video.id).status == "completed"
    exact = png_bytes(1280, 720)
    again = client.videos.create(
        prompt="already the right size",
        model="sora-2",
        size="1280x720",
        input_reference=("frame.png", exact, "image/png"),
    )
    assert wait(client, again.id).status == "completed"
    fitted, untouched = (sent.form["input_reference"] for sent in creates(upstream))
    assert fitted["content_type"] == "image/jpeg" and dims(fitted["data"]) == ("JPEG", (720, 1280))
    assert untouched["content_type"] == "image/png" and untouched["data"] == exact
    assert creates(upstream)[1].form["seconds"] == "4"  # the model's default


def test_i2v_from_a_json_data_uri(gw: Server, client: OpenAI, upstream: FakeSora) -> None:
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(300, 300)).decode()
    response = httpx.post(
        f"{gw.url}/v1/videos",
        json={
            "prompt": "a square photo",
            "model": "sora-2-pro",
            "size": "1792x1024",
            "input_reference": {"image_url": uri},
        },
        headers={"Authorization": f"Bearer {gw.key('sora')}"},
    )
    assert response.status_code == 200, response.text
    assert wait(client, response.json()["id"]).status == "completed"
    (sent,) = creates(upstream)
    assert sent.form["model"] == "sora-2-pro" and sent.form["size"] == "1792x1024"
    assert dims(sent.form["input_reference"]["data"])[1] == (1792, 1024)


def test_a_url_reference_is_fetched_by_vidgate_not_forwarded(gw: Server, upstream: FakeSora) -> None:
    # Sora needs the exact size, so vidgate fetches URL inputs to fit them, with its private-address guard.
    url = upstream.publish(png_bytes(64, 64), suffix="png")
    response = httpx.post(
        f"{gw.url}/v1/videos",
        json={"prompt": "from a URL", "model": "sora-2", "input_reference": {"image_url": url}},
        headers={"Authorization": f"Bearer {gw.key('sora')}"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "input_reference" and "loopback" in error["message"]
    assert creates(upstream) == []


def test_remix_reaches_the_upstream_video(client: OpenAI, upstream: FakeSora) -> None:
    source = client.videos.create(prompt="a quiet harbour", model="sora-2", seconds="4")
    assert wait(client, source.id).status == "completed"
    source_upstream = upstream_task_id(upstream, "a quiet harbour")
    remix = client.videos.remix(source.id, prompt="the harbour at night")
    assert remix.remixed_from_video_id == source.id
    done = wait(client, remix.id)
    assert done.status == "completed" and (done.size, done.seconds) == ("720x1280", "4")
    (sent,) = upstream.calls("/remix", "POST")
    assert sent.path == f"/v1/videos/{source_upstream}/remix" and sent.json == {"prompt": "the harbour at night"}
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    remixed = upstream.tasks[upstream_task_id(upstream, "the harbour at night")]
    assert remixed.remixed_from_video_id == source_upstream
    assert_mp4(client.videos.download_content(remix.id).read(), width=90, height=160, seconds=4)


def test_seed_model_names_are_listed(client: OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}
    assert {"sora-2", "sora-2-pro"} <= set(listed)
    assert listed["sora-2"].owned_by == "openai"
    extra = listed["sora-2-pro"].model_extra or {}
    assert "1792x1024" in extra["sizes"] and extra["remix"] is True


@pytest.mark.parametrize(
    ("fields", "param", "named"),
    [
        ({"model": "sora-2", "seconds": "5"}, "seconds", ("'4'", "'8'", "'12'")),
        ({"model": "sora-2", "seconds": "3"}, "seconds", ("'4'", "'8'", "'12'")),
        ({"model": "sora-2", "size": "1920x1080"}, "size", ("720x1280", "1280x720")),
        ({"model": "sora-2", "size": "1792x1024"}, "size", ("720x1280", "1280x720")),
        ({"model": "sora-2", "seconds": "5", "size": "1920x1080"}, "seconds", ("'4'", "'8'", "'12'")),
        ({"model": "sora-2-pro", "seconds": "20"}, "seconds", ("'12'",)),
        ({"model": "sora-2", "extra_body": {"metadata": '{"seed": 3}'}}, "metadata.seed", ("parameters are: none",)),
    ],
)
def test_validation_400s_before_any_upstream_call(
    client: OpenAI, upstream: FakeSora, fields: dict[str, Any], param: str, named: tuple[str, ...]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="a seed doc example", **fields)
    assert info.value.param == param
    assert all(text in info.value.message for text in named), info.value.message
    assert creates(upstream) == []


def test_poll_faults_never_fail_a_task(client: OpenAI, upstream: FakeSora) -> None:
    # A "timeout" hangs for hang_s, then answers 5xx: kept well under vidgate's 30 s client timeout.
    upstream.faults.hang_s = 0.3
    upstream.faults.random("poll", 0.3, "500", "429", "garbage", "empty", "unknown_status", "not_found", "timeout")
    upstream.faults.queue("download", "500")
    ids = [client.videos.create(prompt=f"stormy sea {n}", model="sora-2").id for n in range(6)]
    finished = [wait(client, video_id, timeout=45) for video_id in ids]
    assert [video.status for video in finished] == ["completed"] * 6, finished
    polls = [r for r in upstream.calls("/v1/videos/", "GET") if not r.path.endswith("/content")]
    assert len(polls) > 12  # faults were met and read past


def test_upstream_failure_surfaces_its_message(client: OpenAI, upstream: FakeSora) -> None:
    blocked = wait(client, client.videos.create(prompt="FAIL this one", model="sora-2").id)
    assert blocked.status == "failed" and blocked.error is not None
    assert blocked.error.code == "content_policy_violation"
    assert blocked.error.message == "Upstream: moderation_blocked: Your request was blocked by our moderation system."
    upstream.fail_next("video_generation_failed", "Sora could not render this scene.")
    failed = wait(client, client.videos.create(prompt="an ordinary scene", model="sora-2").id)
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == (
        "generation_failed",
        "Upstream: video_generation_failed: Sora could not render this scene.",
    )
    with pytest.raises(openai.APIStatusError) as info:
        client.videos.download_content(failed.id)
    assert 400 <= info.value.status_code < 500


@pytest.mark.parametrize("fault", ["429", "503"])
def test_submit_refused_upstream_is_a_503_and_leaves_nothing(client: OpenAI, upstream: FakeSora, fault: Any) -> None:
    before = [video.id for video in client.videos.list(limit=100).data]
    # Refused in every round the submit makes over the model's channels (submit_rounds, default 3).
    upstream.faults.queue("submit", fault, fault, fault)
    with pytest.raises(openai.APIStatusError) as info:
        client.videos.create(prompt="will not be taken", model="sora-2")
    assert info.value.status_code in (502, 503)
    body = info.value.response.json()
    assert body["error"]["type"] == "server_error" and "Traceback" not in info.value.response.text
    assert len(creates(upstream)) == 3
    assert [video.id for video in client.videos.list(limit=100).data] == before


# -- models the channel names: any OpenAI-format upstream (SPEC §8) ---------------------------------------------


def test_a_model_the_channel_names_is_passed_on_and_the_upstream_judges_it(client: OpenAI, upstream: FakeSora) -> None:
    listed = {model.id: model.model_dump() for model in client.models.list().data}
    mine = listed["my-model"]
    assert mine["owned_by"] == "openai" and mine["seconds"][0] == "1" and mine["seconds"][-1] == "60"
    video = client.videos.create(prompt="a heron at dawn", model="my-model", seconds="5", size="960x960")
    done = wait(client, video.id)
    assert (done.status, done.model, done.seconds, done.size) == ("completed", "my-model", "5", "960x960"), done
    assert_mp4(client.videos.download_content(video.id).read(), width=120, height=120, seconds=5)  # 1/8 scale
    (sent,) = creates(upstream)
    assert sent.form == {"prompt": "a heron at dawn", "model": "my-model", "seconds": "5", "size": "960x960"}
    assert sent.headers["authorization"] == f"Bearer {KEY}"

    # vidgate does not know what my-model takes: the upstream refuses 7 s, and the client hears its words.
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="a heron at dusk", model="my-model", seconds="7", size="960x960")
    assert (info.value.param, info.value.code) == ("seconds", "upstream_rejected")
    assert "Upstream: invalid_value: Invalid value: '7'. Supported values are: '5' and '10'." in info.value.message
    assert len(creates(upstream)) == 2
    # Sora's own models keep Sora's rules, checked by vidgate before any upstream call.
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", model="sora-2", seconds="5")
    assert info.value.param == "seconds" and len(creates(upstream)) == 2


def test_declared_seconds_and_sizes_are_checked_here_and_the_model_map_applies(
    gw: Server, client: OpenAI, upstream: FakeSora
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", model="my-declared", seconds="5", size="960x960")
    assert info.value.param == "seconds" and "'10'" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", model="my-declared", seconds="10", size="1280x720")
    assert info.value.param == "size" and "960x960" in info.value.message
    assert creates(upstream) == []
    done = wait(client, client.videos.create(prompt="a kite", model="my-declared").id)  # the declared defaults
    assert (done.status, done.model, done.seconds, done.size) == ("completed", "my-declared", "10", "960x960")
    (sent,) = creates(upstream)
    assert sent.form["model"] == "my-model" and sent.path == "/v1/videos"
    # Price: [prices] names it (0.02 USD/s x 10 s); my-model has none, so it costs nothing.
    usage = httpx.get(f"{gw.url}/v1/usage", headers={"Authorization": f"Bearer {gw.key('sora')}"}).json()
    spent = {row["model"]: Decimal(row["amount_usd"]) for row in usage["data"]}
    assert spent["my-declared"] == Decimal("0.2") and spent.get("my-model", 0) == 0
