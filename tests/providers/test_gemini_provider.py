"""The Gemini API Veo adapter: pure body building and Operation parsing on recorded-shaped JSON, then the
provider against the emulator (tests/fakes/gemini.py), in process."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.gemini import FakeGemini
from tests.fakes.veo import FILTER_REASON, FILTER_TRIGGER
from tests.helpers import mp4_facts, png_bytes
from vidgate.errors import InvalidRequest, NotSupported, UpstreamRejected, UpstreamTransient
from vidgate.providers import gemini, veo
from vidgate.providers.base import CONTENT_POLICY_VIOLATION, GENERATION_FAILED, Credentials, MediaInput, VideoRequest

OP = "models/veo-3.0-generate-001/operations/abc123"


def request(**changes: Any) -> VideoRequest:
    fields: dict[str, Any] = {
        "model": "veo-3.0-generate-001",
        "prompt": "a fox in snow",
        "seconds": 8,
        "width": 1280,
        "height": 720,
        "tier": "720P",
        "mode": "t2v",
    }
    return VideoRequest(**{**fields, **changes})


def image_input(tmp_path: Path, role: Any = "first_frame", name: str = "a.png") -> MediaInput:
    path = tmp_path / name
    path.write_bytes(png_bytes())
    return MediaInput(role=role, field="input_reference", path=path, mime="image/png")


# -- pure ---------------------------------------------------------------------------------------------------


def test_build_body_t2v() -> None:
    body = gemini.build_body(request(extras={"negative_prompt": "rain", "person_generation": "allow_all"}, seed=5))
    assert body == {
        "instances": [{"prompt": "a fox in snow"}],
        "parameters": {
            "aspectRatio": "16:9",
            "durationSeconds": 8,
            "resolution": "720p",
            "sampleCount": 1,
            "negativePrompt": "rain",
            "personGeneration": "allow_all",
        },
    }  # no seed, no generateAudio: the Gemini API refuses them (§2.2)


def test_build_body_frames_portrait_1080(tmp_path: Path) -> None:
    first, last = image_input(tmp_path), image_input(tmp_path, "last_frame", "b.png")
    req = request(
        model="veo-3.1-generate-preview", width=1080, height=1920, tier="1080P", mode="kf2v", inputs=(first, last)
    )
    body = gemini.build_body(req)
    params, instance = body["parameters"], body["instances"][0]
    assert params["aspectRatio"] == "9:16" and params["resolution"] == "1080p"
    assert instance["image"] == {"bytesBase64Encoded": base64.b64encode(png_bytes()).decode(), "mimeType": "image/png"}
    assert instance["lastFrame"]["mimeType"] == "image/png"


def test_image_from_data_uri_and_webp_becomes_png(tmp_path: Path) -> None:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(out, format="WEBP")
    item = MediaInput(
        role="first_frame",
        field="metadata.img_url",
        url="data:image/webp;base64," + base64.b64encode(out.getvalue()).decode(),
    )
    image = veo.image_of(item)
    assert image["mimeType"] == "image/png"
    assert base64.b64decode(image["bytesBase64Encoded"]).startswith(b"\x89PNG")
    with pytest.raises(UpstreamRejected) as caught:
        veo.image_of(MediaInput(role="first_frame", field="metadata.img_url", url="data:image/png;base64,@@"))
    assert caught.value.param == "metadata.img_url"


def test_parse_pending_done_filtered_failed() -> None:
    assert gemini.parse_task({"name": OP, "done": False}).state == "in_progress"
    assert gemini.parse_task({"name": OP}).state == "in_progress"
    uri = "https://generativelanguage.googleapis.com/v1beta/files/xyz:download?alt=media"
    done = {
        "name": OP,
        "done": True,
        "metadata": {"x": 1},
        "response": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
        },
    }
    result = gemini.parse_task(done)
    assert result.state == "completed" and result.video_url == uri
    filtered = gemini.parse_task(
        {
            "name": OP,
            "done": True,
            "response": {
                "generateVideoResponse": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTER_REASON]}
            },
        }
    )
    assert filtered.state == "failed" and filtered.error_code == CONTENT_POLICY_VIOLATION
    assert filtered.error_message == f"Gemini API: 58061214: {FILTER_REASON}"
    failed = gemini.parse_task({"name": OP, "done": True, "error": {"code": 13, "message": "boom"}})
    assert (failed.error_code, failed.error_message) == (GENERATION_FAILED, "Gemini API: INTERNAL: boom")


@pytest.mark.parametrize(
    "answer",
    [
        "<html>",
        {"done": True},
        {"name": OP, "done": "yes"},
        {"name": OP, "done": True},
        {"name": OP, "done": True, "response": {"generateVideoResponse": {"generatedSamples": []}}},
        {"name": OP, "done": True, "response": {"generateVideoResponse": {"generatedSamples": [{"video": {}}]}}},
    ],
)
def test_parse_garbage_is_transient(answer: Any) -> None:
    with pytest.raises(UpstreamTransient):
        gemini.parse_task(answer)


def test_error_mapping() -> None:
    bad = gemini.error_from(
        400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "durationSeconds 5 is not supported"}}
    )
    assert isinstance(bad, UpstreamRejected) and bad.param == "seconds"
    assert bad.message == "Gemini API: INVALID_ARGUMENT: durationSeconds 5 is not supported"
    key = gemini.error_from(
        400,
        {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "API key not valid",
                "details": [{"reason": "API_KEY_INVALID"}],
            }
        },
    )
    assert isinstance(key, UpstreamTransient)
    quota = gemini.error_from(
        429,
        {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "q", "details": [{"retryDelay": "37s"}]}},
    )
    assert isinstance(quota, UpstreamTransient) and quota.retry_after == 37.0
    assert isinstance(gemini.error_from(503, "<html>"), UpstreamTransient)
    retired = gemini.error_from(
        404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "models/x is not found"}}
    )
    assert isinstance(retired, UpstreamTransient) and retired.status == 404  # another channel may serve it
    assert isinstance(gemini.error_from(403, {"error": {"status": "PERMISSION_DENIED"}}), UpstreamTransient)


def test_models_and_checks(tmp_path: Path) -> None:
    names = [spec.name for spec in gemini.MODELS]
    assert names == [
        "veo-3.1-generate-preview",
        "veo-3.1-fast-generate-preview",
        "veo-3.1-lite-generate-preview",
        "veo-3.0-generate-001",
        "veo-3.0-fast-generate-001",
    ]
    for spec in gemini.MODELS:
        assert spec.audio and spec.price is not None and spec.seconds == (4, 6, 8)
    provider = gemini.GeminiProvider(httpx.AsyncClient())
    with pytest.raises(InvalidRequest) as caught:
        provider.check(request(model="veo-3.1-generate-preview", seconds=6, width=1920, height=1080, tier="1080P"))
    assert caught.value.param == "seconds"
    provider.check(request(model="veo-3.0-generate-001", seconds=6, width=1920, height=1080, tier="1080P"))
    audio = MediaInput(role="audio", field="metadata.audio_url", url="https://x/a.mp3")
    with pytest.raises(InvalidRequest) as caught:
        provider.check(request(inputs=(audio,)))
    assert caught.value.param == "metadata.audio_url"


# -- against the emulator ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeGemini]:
    emulator = FakeGemini()
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeGemini) -> FakeGemini:
    running_fake.reset()
    return running_fake


def creds(fake: FakeGemini, key: str | None = None) -> Credentials:
    return Credentials(channel="g", base_url=fake.base_url, api_key=key or fake.api_key)


async def _run(fake: FakeGemini, req: VideoRequest, dest: Path) -> Any:
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = gemini.GeminiProvider(http)
        submitted = await provider.submit(req, creds(fake), task_id="t1")
        for _ in range(5):
            progress = await provider.poll(submitted.upstream_id, creds(fake))
            if progress.state != "in_progress":
                break
        if progress.state == "completed":
            await provider.download(progress, creds(fake), dest)
        return submitted, progress


def test_t2v_end_to_end(fake: FakeGemini, tmp_path: Path) -> None:
    fake.store.polls_per_step = 2
    submitted, progress = asyncio.run(_run(fake, request(extras={"negative_prompt": "rain"}), tmp_path / "v.mp4"))
    assert submitted.upstream_id.startswith("models/veo-3.0-generate-001/operations/")
    assert progress.state == "completed"
    assert mp4_facts(tmp_path / "v.mp4").width == 160
    sent = fake.calls(":predictLongRunning")[0]
    assert sent.headers["x-goog-api-key"] == fake.api_key
    assert sent.json["parameters"]["negativePrompt"] == "rain"
    download = fake.calls(":download")[0]
    assert download.headers["x-goog-api-key"] == fake.api_key


def test_i2v_and_filtered(fake: FakeGemini, tmp_path: Path) -> None:
    req = request(mode="i2v", inputs=(image_input(tmp_path),), extras={"person_generation": "allow_adult"})
    _, progress = asyncio.run(_run(fake, req, tmp_path / "v.mp4"))
    assert progress.state == "completed"
    assert fake.calls(":predictLongRunning")[0].json["instances"][0]["image"]["mimeType"] == "image/png"
    _, filtered = asyncio.run(_run(fake, request(prompt=f"a {FILTER_TRIGGER}"), tmp_path / "w.mp4"))
    assert filtered.error_code == CONTENT_POLICY_VIOLATION and "58061214" in (filtered.error_message or "")


def test_refusal_names_the_clients_field(fake: FakeGemini, tmp_path: Path) -> None:
    req = request(
        extras={"person_generation": "allow_adult"}, fields={"person_generation": "parameters.person_generation"}
    )
    with pytest.raises(UpstreamRejected) as caught:
        asyncio.run(_run(fake, req, tmp_path / "v.mp4"))
    assert caught.value.param == "parameters.person_generation"
    assert "personGeneration 'allow_adult' is not supported for text-to-video" in caught.value.message


def test_transient_failures(fake: FakeGemini, tmp_path: Path) -> None:
    fake.faults.queue("submit", "503")
    with pytest.raises(UpstreamTransient) as caught:
        asyncio.run(_run(fake, request(), tmp_path / "v.mp4"))
    assert caught.value.status == 503
    with pytest.raises(UpstreamTransient):

        async def bad_key() -> None:
            async with httpx.AsyncClient(trust_env=False) as http:
                await gemini.GeminiProvider(http).submit(request(), creds(fake, "AIza-wrong"), task_id="t")

        asyncio.run(bad_key())
    fake.faults.queue("poll", "garbage", "unknown_status", "429")

    async def polls() -> list[str]:
        seen = []
        async with httpx.AsyncClient(trust_env=False) as http:
            provider = gemini.GeminiProvider(http)
            upstream = (await provider.submit(request(), creds(fake), task_id="t")).upstream_id
            for _ in range(3):
                with pytest.raises(UpstreamTransient) as caught:
                    await provider.poll(upstream, creds(fake))
                seen.append(str(caught.value))
            done = await provider.poll(upstream, creds(fake))
            fake.faults.queue("download", "503")
            with pytest.raises(UpstreamTransient):
                await provider.download(done, creds(fake), tmp_path / "x.mp4")
            await provider.download(done, creds(fake), tmp_path / "x.mp4")
            with pytest.raises(NotSupported):
                await provider.find(request(), creds(fake), task_id="t", since=0)
            with pytest.raises(NotSupported):
                await provider.cancel(upstream, creds(fake))
        return seen

    seen = asyncio.run(polls())
    assert "RESOURCE_EXHAUSTED" in seen[2]
    assert mp4_facts(tmp_path / "x.mp4").width == 160


def test_key_goes_only_to_the_channels_host(fake: FakeGemini, tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, content=b"\x00\x00\x00\x18ftypmp42")

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            provider = gemini.GeminiProvider(http)
            done = gemini.parse_task(
                {
                    "name": OP,
                    "done": True,
                    "response": {
                        "generateVideoResponse": {
                            "generatedSamples": [{"video": {"uri": "https://cdn.example.com/v.mp4"}}]
                        }
                    },
                }
            )
            await provider.download(done, Credentials(channel="g", api_key="AIza-secret"), tmp_path / "v.mp4")

    asyncio.run(go())
    assert "x-goog-api-key" not in seen[0].headers
