"""The Ark (Seedance) adapter: its pure functions on recorded-shaped JSON, then the adapter in-process against
the Ark emulator (tests/fakes/ark.py). The run through a running vidgate is the conformance case
(tests/conformance/case_ark.py)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dashscope
import httpx
import pytest
from dashscope import VideoSynthesis

from tests.fakes.ark import INPUT_POLICY_CODE, INPUT_POLICY_TRIGGER, OUTPUT_POLICY_CODE, OUTPUT_POLICY_TRIGGER, FakeArk
from tests.helpers import Server, png_bytes, running_gateway
from vidgate.errors import InvalidRequest, UpstreamRejected, UpstreamTransient
from vidgate.providers import ark
from vidgate.providers.base import CONTENT_POLICY_VIOLATION, GENERATION_FAILED, Credentials, MediaInput, VideoRequest

KEY = "ark-key-for-tests"
PRO = "doubao-seedance-1-0-pro-250528"
V15 = "doubao-seedance-1-5-pro-251215"
V2 = "doubao-seedance-2-0-260128"
V2_FAST = "doubao-seedance-2-0-fast-260128"


def request(**changes: Any) -> VideoRequest:
    fields: dict[str, Any] = {
        "model": PRO,
        "prompt": "A kitten yawns at the camera",
        "seconds": 5,
        "width": 1248,
        "height": 704,
        "tier": "720P",
        "mode": "t2v",
    }
    return VideoRequest(**{**fields, **changes})


# -- models and prices ----------------------------------------------------------------------------------------


def test_the_seven_public_models_with_their_capabilities() -> None:
    specs = {spec.name: spec for spec in ark.MODELS}
    assert sorted(specs) == sorted(
        [
            "doubao-seedance-2-0-260128",
            "doubao-seedance-2-0-fast-260128",
            "doubao-seedance-1-5-pro-251215",
            "doubao-seedance-1-0-pro-250528",
            "doubao-seedance-1-0-pro-fast-251015",
            "doubao-seedance-1-0-lite-t2v-250428",
            "doubao-seedance-1-0-lite-i2v-250428",
        ]
    )
    assert specs[V2].seconds == tuple(range(4, 16)) and specs[V15].seconds == tuple(range(4, 13))
    assert specs[PRO].seconds == tuple(range(2, 13))
    assert specs["doubao-seedance-1-0-lite-t2v-250428"].modes == {"t2v"}
    assert specs["doubao-seedance-1-0-lite-i2v-250428"].modes == {"i2v", "kf2v"}
    assert specs["doubao-seedance-1-0-pro-fast-251015"].modes == {"t2v", "i2v"}
    assert "1080P" not in specs[V2_FAST].tiers and "1920x1080" not in specs[V2_FAST].sizes
    assert specs[PRO].default_size == "1920x1088" and specs[V15].default_size == "1280x720"
    assert [name for name, spec in specs.items() if spec.audio] == [V2, V2_FAST, V15]
    assert all(spec.deadline_s == ark.DEADLINE_S for spec in specs.values())


def test_prices_are_tokens_converted_to_usd_per_second() -> None:
    # 1080p 16:9 5 s on 1.0 pro is 244,800 tokens (the price page's example), 15 CNY per million.
    assert ark.tokens_per_second("1920x1088") * 5 == 244_800
    expected = (Decimal(244_800) / 5 * 15 / 1_000_000 / Decimal("7.10")).quantize(Decimal("0.000001"))
    specs = {spec.name: spec for spec in ark.MODELS}
    assert isinstance(specs[PRO].price, dict)
    assert specs[PRO].price["1080P"] == expected
    # 2.0 at 720p: 1280x720x24/1024 tokens a second at 46 CNY per million.
    assert specs[V2].price["720P"] == (Decimal(21_600) * 46 / 1_000_000 / Decimal("7.10")).quantize(Decimal("0.000001"))
    assert specs[V2].price["1080P"] > specs[V2].price["720P"] > specs[V2].price["480P"] > 0


# -- bodies ---------------------------------------------------------------------------------------------------


def test_build_body_text_to_video_sends_body_fields_only() -> None:
    req = request(seed=11, extras={"watermark": True, "camera_fixed": False})
    assert ark.build_body(req, upstream_model=PRO, callback_url="https://me/cb") == {
        "model": PRO,
        "content": [{"type": "text", "text": "A kitten yawns at the camera"}],
        "resolution": "720p",
        "ratio": "16:9",
        "duration": 5,
        "execution_expires_after": ark.DEADLINE_S - ark.EXPIRY_MARGIN_S,
        "seed": 11,
        "watermark": True,
        "camera_fixed": False,
        "callback_url": "https://me/cb",
    }


@pytest.mark.parametrize(
    ("size", "resolution", "ratio"),
    [
        ((1280, 720), "720p", "16:9"),
        ((1248, 704), "720p", "16:9"),
        ((720, 1280), "720p", "9:16"),
        ((864, 496), "480p", "16:9"),
        ((640, 640), "480p", "1:1"),
        ((2206, 946), "1080p", "21:9"),
        ((1664, 1248), "1080p", "4:3"),
    ],
)
def test_sizes_give_resolution_and_ratio(size: tuple[int, int], resolution: str, ratio: str) -> None:
    tier = "480P" if resolution == "480p" else "720P" if resolution == "720p" else "1080P"
    req = request(width=size[0], height=size[1], tier=tier)
    assert ark.resolution_and_ratio(req) == (resolution, ratio)
    assert ark.resolution_and_ratio(replace_extras(req, aspect_ratio="adaptive")) == (resolution, "adaptive")


def replace_extras(req: VideoRequest, **extras: Any) -> VideoRequest:
    from dataclasses import replace

    return replace(req, extras={**req.extras, **extras})


def test_audio_models_always_say_whether_to_make_sound() -> None:
    silent = ark.build_body(request(model=V15, width=1280, height=720), upstream_model=V15)
    assert silent["generate_audio"] is False
    loud = ark.build_body(request(model=V2, width=1280, height=720, audio=True), upstream_model=V2)
    assert loud["generate_audio"] is True
    assert "generate_audio" not in ark.build_body(request(), upstream_model=PRO)


def test_first_and_last_frames_as_content_items(tmp_path: Path) -> None:
    image = tmp_path / "first.png"
    image.write_bytes(png_bytes(400, 300))
    first = MediaInput(role="first_frame", field="input_reference", path=image, mime="image/PNG")
    last = MediaInput(role="last_frame", field="metadata.last_frame_url", url="https://x/last.png")
    body = ark.build_body(request(model=V15, mode="kf2v", inputs=(first, last)), upstream_model=V15)
    text, one, two = body["content"]
    assert text == {"type": "text", "text": "A kitten yawns at the camera"}
    assert one["role"] == "first_frame" and one["type"] == "image_url"
    assert one["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png_bytes(400, 300)).decode()
    assert two == {"type": "image_url", "image_url": {"url": "https://x/last.png"}, "role": "last_frame"}
    # A data URI keeps its data; its format part is lowercased (§1.6).
    data = MediaInput(role="first_frame", field="metadata.img_url", url="data:image/JPEG;base64,AAAA")
    assert ark.image_url(data) == "data:image/jpeg;base64,AAAA"
    # Without a type, the bytes say what they are.
    untyped = MediaInput(role="first_frame", field="input_reference", path=image, mime="application/octet-stream")
    assert ark.image_url(untyped).startswith("data:image/png;base64,")


def test_byteplus_hosts_get_byteplus_ids() -> None:
    intl = "https://ark.ap-southeast.bytepluses.com/api/v3"
    assert ark.upstream_model(V2, intl) == "dreamina-seedance-2-0-260128"
    assert ark.upstream_model(PRO, intl) == "seedance-1-0-pro-250528"
    assert ark.upstream_model(PRO, "https://ark.cn-beijing.volces.com/api/v3") == PRO
    assert ark.upstream_model("ep-20260101-abc", intl) == "ep-20260101-abc"
    assert ark.api_base(Credentials(channel="c", base_url="http://127.0.0.1:9/")) == "http://127.0.0.1:9/api/v3"
    assert ark.api_base(Credentials(channel="c", base_url=intl)) == intl
    assert ark.api_base(Credentials(channel="c")) == ark.DEFAULT_BASE_URL


def test_check_refuses_adaptive_text_to_video_before_1_5_and_driving_audio() -> None:
    provider = ark.ArkProvider(httpx.AsyncClient())
    with pytest.raises(InvalidRequest) as caught:
        provider.check(request(extras={"aspect_ratio": "adaptive"}))
    assert caught.value.param == "metadata.aspect_ratio"
    # The DashScope surface's own name reaches its client.
    native = request(extras={"aspect_ratio": "adaptive"}, fields={"aspect_ratio": "parameters.aspect_ratio"})
    with pytest.raises(InvalidRequest) as caught:
        provider.check(native)
    assert caught.value.param == "parameters.aspect_ratio" and "parameters.aspect_ratio" in caught.value.message
    provider.check(request(model=V15, extras={"aspect_ratio": "adaptive"}))
    sound = MediaInput(role="audio", field="metadata.audio_url", url="https://x/a.wav")
    with pytest.raises(InvalidRequest) as caught:
        provider.check(request(model=V2, inputs=(sound,)))
    assert caught.value.param == "metadata.audio_url"


def test_params_are_typed_per_model() -> None:
    specs = {spec.name: spec for spec in ark.MODELS}
    assert set(specs[PRO].params) == {
        "seed", "watermark", "return_last_frame", "safety_identifier", "aspect_ratio", "camera_fixed"
    }  # fmt: skip
    assert "camera_fixed" not in specs[V2].params and specs[V2].params["audio"].kind == "bool"
    assert "adaptive" not in specs["doubao-seedance-1-0-lite-t2v-250428"].params["aspect_ratio"].choices
    assert specs[PRO].params["seed"].check(2**32 - 1, "metadata.seed", PRO) == 2**32 - 1
    with pytest.raises(InvalidRequest) as caught:
        specs[PRO].params["safety_identifier"].check("x" * 65, "metadata.safety_identifier", PRO)
    assert caught.value.param == "metadata.safety_identifier"
    assert all(spec.price is not None for spec in specs.values())


# -- task objects ---------------------------------------------------------------------------------------------

SUCCEEDED = {
    "id": "cgt-20250331175019-68d9t",
    "model": PRO,
    "status": "succeeded",
    "content": {
        "video_url": "https://ark-content-generation-cn-beijing.tos-cn-beijing.volces.com/a.mp4?X-Tos-Expires=86400",
        "last_frame_url": "https://ark-content-generation-cn-beijing.tos-cn-beijing.volces.com/a.png",
    },
    "seed": 10,
    "resolution": "720p",
    "ratio": "16:9",
    "duration": 5,
    "framespersecond": 24,
    "usage": {"completion_tokens": 108900, "total_tokens": 108900},
    "created_at": 1743414619,
    "updated_at": 1743414673,
}


def test_parse_task_states() -> None:
    base = {"id": "cgt-1", "model": PRO}
    assert ark.parse_task({**base, "status": "queued"}).state == "queued"
    assert ark.parse_task({**base, "status": "running"}).state == "in_progress"
    done = ark.parse_task(SUCCEEDED)
    assert done.state == "completed" and done.video_url == SUCCEEDED["content"]["video_url"]  # type: ignore[index]
    assert done.extras == {ark.LAST_FRAME: SUCCEEDED["content"]["last_frame_url"]}  # type: ignore[index]
    assert ark.parse_task({**SUCCEEDED, "content": {"video_url": "https://x/v.mp4"}}).extras == {}
    policy = ark.parse_task(
        {**base, "status": "failed", "error": {"code": "OutputVideoSensitiveContentDetected", "message": "risky"}}
    )
    assert policy.state == "failed" and policy.error_code == CONTENT_POLICY_VIOLATION
    assert policy.error_message == "Ark: OutputVideoSensitiveContentDetected: risky"
    broken = ark.parse_task({**base, "status": "failed", "error": {"code": "InternalServiceError", "message": "x"}})
    assert broken.error_code == GENERATION_FAILED
    assert ark.parse_task({**base, "status": "cancelled"}).state == "cancelled"
    expired = ark.parse_task({**base, "status": "expired"})
    assert expired.state == "failed" and "expired" in (expired.error_message or "")


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "cgt-1", "status": "pending_review"},
        {"id": "cgt-1", "status": "succeeded", "content": {}},
        {"status": "queued"},
        ["not", "an", "object"],
    ],
)
def test_untrustworthy_task_answers_are_transient(payload: Any) -> None:
    with pytest.raises(UpstreamTransient):
        ark.parse_task(payload)


def error(code: str, param: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": f"{code} happened. Request id: 0217", "type": "BadRequest"}
    if param:
        body["param"] = param
    return {"error": body}


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "param"),
    [
        (400, error("InvalidParameter", "duration"), UpstreamRejected, None, "seconds"),
        (400, error("InvalidParameter", "ratio"), UpstreamRejected, None, "aspect_ratio"),
        (400, error("MissingParameter", "content"), UpstreamRejected, None, None),
        (400, error("InputTextSensitiveContentDetected"), UpstreamRejected, CONTENT_POLICY_VIOLATION, None),
        (
            400,
            error("InputImageSensitiveContentDetected.PrivacyInformation"),
            UpstreamRejected,
            CONTENT_POLICY_VIOLATION,
            None,
        ),
        (400, error("InputTextRiskDetection"), UpstreamRejected, CONTENT_POLICY_VIOLATION, None),
        (400, error("InvalidEndpoint.ClosedEndpoint"), UpstreamTransient, None, None),
        (401, error("AuthenticationError"), UpstreamTransient, None, None),
        (403, error("AccountOverdueError"), UpstreamTransient, None, None),
        (404, error("InvalidEndpointOrModel.NotFound"), UpstreamTransient, None, None),
        (429, error("ModelAccountRpmRateLimitExceeded"), UpstreamTransient, None, None),
        (429, error("SetLimitExceeded"), UpstreamTransient, None, None),
        (500, error("InternalServiceError"), UpstreamTransient, None, None),
        (502, "<html>502 Bad Gateway</html>", UpstreamTransient, None, None),
        (400, "not json", UpstreamTransient, None, None),
    ],
)
def test_errors_are_classed_as_the_reference_says(
    status: int, body: Any, kind: type[Exception], code: str | None, param: str | None
) -> None:
    mapped = ark.parse_error(status, body)
    assert isinstance(mapped, kind)
    if isinstance(mapped, UpstreamRejected):
        assert mapped.code == code and mapped.param == param
        assert mapped.upstream is not None and mapped.upstream.code == body["error"]["code"]
        assert mapped.message.startswith(f"Ark: {body['error']['code']}: ")


def test_list_matching_uses_what_ark_echoes() -> None:
    body = ark.build_body(request(seed=11), upstream_model=PRO)
    item = {
        "id": "cgt-1",
        "model": PRO,
        "created_at": 1000,
        "resolution": "720p",
        "ratio": "16:9",
        "duration": 5,
        "seed": 11,
    }
    assert ark.matches(item, body, since=1000)
    assert ark.matches({**item, "created_at": 975}, body, since=1000)  # clock skew
    assert not ark.matches({**item, "created_at": 900}, body, since=1000)
    assert not ark.matches({**item, "seed": 12}, body, since=1000)
    assert not ark.matches({**item, "duration": 6}, body, since=1000)
    assert not ark.matches({**item, "model": V15}, body, since=1000)
    adaptive = ark.build_body(replace_extras(request(), aspect_ratio="adaptive"), upstream_model=PRO)
    assert ark.matches({**item, "ratio": "4:3"}, adaptive, since=1000)


# -- in-process against the emulator ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeArk]:
    emulator = FakeArk(KEY, step_s=0.1)
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeArk) -> FakeArk:
    running_fake.reset()
    running_fake.step_s = 0.1
    return running_fake


def run(fake: FakeArk, work: Any) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(timeout=10) as http:
            provider = ark.ArkProvider(http)
            creds = Credentials(channel="ark-test", base_url=fake.base_url, api_key=KEY)
            return await work(provider, creds)

    return asyncio.run(main())


async def finish(provider: ark.ArkProvider, creds: Credentials, upstream_id: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        progress = await provider.poll(upstream_id, creds)
        if progress.state not in ("queued", "in_progress"):
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError("the task did not finish")


def test_submit_poll_download_with_last_frame(fake: FakeArk, tmp_path: Path) -> None:
    req = request(model=V15, width=720, height=1280, seed=3, extras={"return_last_frame": True, "watermark": False})

    async def work(provider: ark.ArkProvider, creds: Credentials) -> Any:
        submitted = await provider.submit(req, creds, task_id="video_abc", callback_url=None)
        done = await finish(provider, creds, submitted.upstream_id)
        await provider.download(done, creds, tmp_path / "out.mp4")
        return done

    done = run(fake, work)
    assert done.state == "completed" and done.extras[ark.LAST_FRAME].startswith(fake.base_url)
    assert (tmp_path / "out.mp4").read_bytes()[4:8] == b"ftyp"
    (sent,) = fake.submits()
    assert sent.headers["authorization"] == f"Bearer {KEY}" and sent.headers["x-client-request-id"] == "video_abc"
    assert sent.json["ratio"] == "9:16" and sent.json["generate_audio"] is False and sent.json["seed"] == 3


def test_refusals_carry_the_vendor_code_and_the_client_field(fake: FakeArk) -> None:
    async def work(provider: ark.ArkProvider, creds: Credentials) -> list[Exception]:
        caught: list[Exception] = []
        for req in (
            request(prompt=f"{INPUT_POLICY_TRIGGER} a cat"),
            request(seconds=13),
        ):
            try:
                await provider.submit(req, creds, task_id="video_x")
            except UpstreamRejected as exc:
                caught.append(exc)
        return caught

    policy, bad = run(fake, work)
    assert policy.code == CONTENT_POLICY_VIOLATION and policy.upstream.code == INPUT_POLICY_CODE
    assert bad.code is None and bad.param == "seconds" and bad.upstream.code == "InvalidParameter"


def test_output_policy_failure(fake: FakeArk) -> None:
    async def work(provider: ark.ArkProvider, creds: Credentials) -> Any:
        submitted = await provider.submit(request(prompt=f"{OUTPUT_POLICY_TRIGGER} x"), creds, task_id="video_p")
        return await finish(provider, creds, submitted.upstream_id)

    failed = run(fake, work)
    assert failed.error_code == CONTENT_POLICY_VIOLATION and failed.error_message.startswith(
        f"Ark: {OUTPUT_POLICY_CODE}: "
    )


def test_a_lost_reply_is_found_by_listing_and_only_ours(fake: FakeArk) -> None:
    fake.step_s = 3600
    req = request(seed=42)

    async def work(provider: ark.ArkProvider, creds: Credentials) -> tuple[list[str], list[str]]:
        other = await provider.submit(request(seed=7), creds, task_id="video_other")
        since = time.time()
        fake.faults.queue("submit", "lost_reply")  # type: ignore[arg-type]
        with pytest.raises(UpstreamTransient):
            await provider.submit(req, creds, task_id="video_lost")
        found = await provider.find(req, creds, task_id="video_lost", since=since)
        absent = await provider.find(request(seed=43), creds, task_id="video_none", since=since)
        assert other.upstream_id not in found
        return found, absent

    found, absent = run(fake, work)
    assert len(fake.tasks) == 2 and absent == []
    assert len(found) == 1 and fake.tasks[found[0]].seed == 42


def test_find_pages_through_and_a_list_fault_is_transient(fake: FakeArk) -> None:
    fake.step_s = 3600

    async def work(provider: ark.ArkProvider, creds: Credentials) -> list[str]:
        since = time.time()
        for index in range(3):
            await provider.submit(request(seed=index), creds, task_id=f"video_{index}")
        fake.faults.queue("list", "500")
        with pytest.raises(UpstreamTransient):
            await provider.find(request(seed=0), creds, task_id="video_0", since=since)
        return await provider.find(request(seed=0), creds, task_id="video_0", since=since)

    original = ark.LIST_PAGE_SIZE
    ark.LIST_PAGE_SIZE = 1
    try:
        found = run(fake, work)
    finally:
        ark.LIST_PAGE_SIZE = original
    assert len(found) == 1 and fake.tasks[found[0]].seed == 0
    assert len(fake.calls(method="GET")) >= 4  # 1 failed + 3 pages


def test_cancel_queued_then_running_refused(fake: FakeArk) -> None:
    fake.step_s = 3600

    async def work(provider: ark.ArkProvider, creds: Credentials) -> tuple[Any, Exception | None]:
        queued = await provider.submit(request(), creds, task_id="video_q")
        await provider.cancel(queued.upstream_id, creds)
        cancelled = await provider.poll(queued.upstream_id, creds)
        running = await provider.submit(request(), creds, task_id="video_r")
        fake.advance(running.upstream_id)
        refused: Exception | None = None
        try:
            await provider.cancel(running.upstream_id, creds)
        except UpstreamRejected as exc:
            refused = exc
        await provider.cancel("cgt-unknown", creds)  # gone already: nothing to do
        return cancelled, refused

    cancelled, refused = run(fake, work)
    assert cancelled.state == "cancelled"
    assert refused is not None


def test_poll_faults_and_bad_keys_are_transient(fake: FakeArk) -> None:
    async def work(provider: ark.ArkProvider, creds: Credentials) -> None:
        submitted = await provider.submit(request(), creds, task_id="video_t")
        fake.faults.queue("poll", "500", "429", "garbage", "not_found", "unknown_status", "cut")
        for _ in range(6):
            with pytest.raises(UpstreamTransient):
                await provider.poll(submitted.upstream_id, creds)
        assert (await finish(provider, creds, submitted.upstream_id)).state == "completed"
        wrong = Credentials(channel="c", base_url=creds.base_url, api_key="nope")
        with pytest.raises(UpstreamTransient):
            await provider.submit(request(), wrong, task_id="video_w")

    run(fake, work)


def test_callback_url_goes_in_the_body(fake: FakeArk) -> None:
    fake.callbacks_enabled = False  # nothing listens: only the body is checked here

    async def work(provider: ark.ArkProvider, creds: Credentials) -> None:
        await provider.submit(
            request(), creds, task_id="video_c", callback_url="https://gw.example/callbacks/ark/video_c?sig=x"
        )

    run(fake, work)
    assert fake.submits()[0].json["callback_url"] == "https://gw.example/callbacks/ark/video_c?sig=x"


# -- through a running vidgate: what the shared conformance suite does not look at ------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeArk, Server]]:
    emulator = FakeArk(KEY, step_s=0.2)
    channel = f'[[channels]]\nname = "ark-cn"\nprovider = "ark"\nbase_url = "{emulator.base_url}"\napi_key = "{KEY}"\n'
    with emulator.running(), running_gateway(tmp_path_factory.mktemp("arkgw"), channel) as server:
        yield emulator, server


def test_the_last_frame_is_stored_and_served_as_an_extra_output(
    gateway: tuple[FakeArk, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream, server = gateway
    upstream.reset()
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.url}/api/v1")
    result = VideoSynthesis.call(
        api_key=server.key("ark"), model=V15, prompt="a kite", size="720*1280", duration=4, return_last_frame=True
    )
    assert result.output.task_status == "SUCCEEDED", result
    (sent,) = upstream.submits()
    assert (sent.json["return_last_frame"], sent.json["ratio"], sent.json["duration"]) == (True, "9:16", 4)
    frame = httpx.get(result.output.last_frame_url, timeout=10)
    assert frame.status_code == 200 and frame.content[:4] == b"\x89PNG"
    assert frame.content in upstream.files.values()  # the very bytes Ark served, kept by vidgate


def test_a_queued_task_is_cancelled_upstream_with_delete(
    gateway: tuple[FakeArk, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream, server = gateway
    upstream.reset()
    upstream.step_s = 3600  # stays queued
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{server.url}/api/v1")
    key = server.key("ark")
    submitted = VideoSynthesis.async_call(api_key=key, model=PRO, prompt="never mind", size="1920*1088", duration=2)
    assert submitted.status_code == 200, submitted
    (task,) = upstream.tasks.values()
    answer = VideoSynthesis.cancel(submitted.output.task_id, api_key=key)
    assert answer.status_code == 200, answer
    assert task.status == "cancelled" and len(upstream.calls(f"/tasks/{task.id}", method="DELETE")) == 1
    fetched = VideoSynthesis.fetch(submitted.output.task_id, api_key=key)
    assert fetched.output.task_status == "CANCELED"
