"""The MiniMax adapter: its pure functions on recorded-shaped JSON (V1 and V2), the callback challenge, then the
adapter against the emulator (tests/fakes/minimax.py) without vidgate around it. The run through a running
vidgate is the conformance case (tests/conformance/case_minimax*.py)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.base import FakeUpstream
from tests.fakes.minimax import FakeMiniMax
from tests.helpers import cli, png_bytes
from vidgate.errors import InvalidRequest, NotSupported, UpstreamRejected, UpstreamTransient
from vidgate.providers import minimax
from vidgate.providers.base import (
    CONTENT_POLICY_VIOLATION,
    GENERATION_FAILED,
    UPSTREAM_TASK_LOST,
    Credentials,
    MediaInput,
    Progress,
    VideoRequest,
)

KEY = "sk-api-vidgate-minimax-test"
SPEC_MODELS = (
    "MiniMax-H3",
    "MiniMax-Hailuo-2.3",
    "MiniMax-Hailuo-2.3-Fast",
    "MiniMax-Hailuo-02",
    "T2V-01-Director",
    "I2V-01-Director",
    "S2V-01",
)


def request(**changes: Any) -> VideoRequest:
    fields: dict[str, Any] = {
        "model": "MiniMax-Hailuo-2.3",
        "prompt": "a cat surfing",
        "seconds": 6,
        "width": 1280,
        "height": 720,
        "tier": "720P",
        "mode": "t2v",
    }
    return VideoRequest(**{**fields, **changes})


def stored_png(tmp_path: Path, name: str = "frame.png") -> MediaInput:
    path = tmp_path / name
    path.write_bytes(png_bytes(320, 320))
    return MediaInput(role="first_frame", field="input_reference", path=path, mime="image/png")


# -- the models ----------------------------------------------------------------------------------------------


def test_the_seven_models_with_prices_and_params() -> None:
    specs = {spec.name: spec for spec in minimax.MODELS}
    assert tuple(specs) == SPEC_MODELS
    for spec in specs.values():
        assert spec.provider == "minimax" and spec.price is not None and spec.poll_hint_ms >= 10_000
    h3 = specs["MiniMax-H3"]
    assert h3.seconds == tuple(range(4, 16)) and h3.default_seconds == 5
    assert h3.modes == {"t2v", "i2v", "kf2v"} and set(h3.tiers) == {"720P", "1080P"}
    assert h3.price == {"720P": Decimal("0.0704"), "1080P": Decimal("0.1127")}
    assert specs["MiniMax-Hailuo-2.3-Fast"].modes == {"i2v"}
    assert specs["MiniMax-Hailuo-02"].modes == {"t2v", "i2v", "kf2v"} and "480P" in specs["MiniMax-Hailuo-02"].tiers
    assert specs["T2V-01-Director"].seconds == (6,) and set(specs["T2V-01-Director"].tiers) == {"720P"}
    assert "camera_commands" in specs["T2V-01-Director"].params and "fast_pretreatment" not in specs["S2V-01"].params
    assert {"prompt_optimizer", "fast_pretreatment", "watermark"} <= set(specs["MiniMax-Hailuo-2.3"].params)


# -- V1 bodies -------------------------------------------------------------------------------------------------


def test_v1_text_body_with_camera_commands_and_params() -> None:
    req = request(
        extras={"camera_commands": "Pan left, Zoom in", "prompt_optimizer": False, "watermark": True},
        seconds=10,
    )
    body = minimax.build_body(req, upstream_model="MiniMax-Hailuo-2.3", callback_url="https://gw/cb/1?sig=x")
    assert body == {
        "model": "MiniMax-Hailuo-2.3",
        "prompt": "[Pan left,Zoom in] a cat surfing",
        "duration": 10,
        "resolution": "768P",
        "prompt_optimizer": False,
        "aigc_watermark": True,
        "callback_url": "https://gw/cb/1?sig=x",
    }


@pytest.mark.parametrize(
    ("model", "tier", "resolution"),
    [
        ("MiniMax-Hailuo-2.3", "1080P", "1080P"),
        ("MiniMax-Hailuo-02", "480P", "512P"),
        ("MiniMax-Hailuo-02", "720P", "768P"),
        ("T2V-01-Director", "720P", "720P"),
        ("S2V-01", "720P", "720P"),
        ("I2V-01-live", "720P", "720P"),  # a channel may map a public name onto another 01-series id
    ],
)
def test_v1_tier_gives_the_resolution(model: str, tier: str, resolution: str) -> None:
    assert minimax.build_body(request(model=model, tier=tier), upstream_model=model)["resolution"] == resolution


def test_v1_image_bodies(tmp_path: Path) -> None:
    first = stored_png(tmp_path)
    body = minimax.build_body(request(mode="i2v", inputs=(first,), prompt=""), upstream_model="MiniMax-Hailuo-2.3")
    assert "prompt" not in body
    head, _, data = body["first_frame_image"].partition(",")
    assert head == "data:image/png;base64" and base64.b64decode(data) == first.path.read_bytes()  # type: ignore[union-attr]
    url = MediaInput(role="first_frame", field="metadata.img_url", url="https://example.com/cat.jpg")
    assert minimax.build_body(request(mode="i2v", inputs=(url,)), upstream_model="I2V-01-Director")[
        "first_frame_image"
    ] == ("https://example.com/cat.jpg")
    last = MediaInput(role="last_frame", field="metadata.last_frame_url", url="https://example.com/end.png")
    kf2v = minimax.build_body(request(model="MiniMax-Hailuo-02", mode="kf2v", inputs=(url, last)), upstream_model="x")
    assert kf2v["last_frame_image"] == "https://example.com/end.png"
    subject = minimax.build_body(request(model="S2V-01", mode="i2v", inputs=(url,)), upstream_model="S2V-01")
    assert subject["subject_reference"] == [{"type": "character", "image": ["https://example.com/cat.jpg"]}]
    assert "first_frame_image" not in subject


def test_v1_gif_upload_is_re_encoded(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "a.gif"
    Image.new("RGB", (320, 320), (1, 2, 3)).save(path, format="GIF")
    item = MediaInput(role="first_frame", field="input_reference", path=path, mime="image/gif")
    assert minimax.image_value(item).startswith("data:image/png;base64,")
    with pytest.raises(UpstreamRejected, match="input_reference"):
        minimax.image_value(MediaInput(role="first_frame", field="input_reference", url="oss://bucket/a.png"))


# -- V2 bodies -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tier", "ratio", "resolution"),
    [
        ((1280, 720), "720P", "16:9", "768P"),
        ((720, 1280), "720P", "9:16", "768P"),
        ((1680, 720), "720P", "21:9", "768P"),
        ((960, 720), "720P", "4:3", "768P"),
        ((1440, 1440), "1080P", "1:1", "2K"),
        ((2560, 1440), "1080P", "16:9", "2K"),
    ],
)
def test_v2_text_body(size: tuple[int, int], tier: str, ratio: str, resolution: str) -> None:
    req = request(model="MiniMax-H3", width=size[0], height=size[1], tier=tier, seconds=8, extras={"watermark": False})
    body = minimax.build_body(req, upstream_model="MiniMax-H3", callback_url="https://gw/cb")
    assert body == {
        "model": "MiniMax-H3",
        "content": [{"type": "text", "text": "a cat surfing"}],
        "resolution": resolution,
        "duration": 8,
        "ratio": ratio,
        "aigc_watermark": False,
        "callback_url": "https://gw/cb",
    }


def test_v2_frame_body(tmp_path: Path) -> None:
    first = stored_png(tmp_path)
    last = MediaInput(role="last_frame", field="metadata.last_frame_url", url="https://example.com/end.png")
    body = minimax.build_body(
        request(model="MiniMax-H3", mode="kf2v", inputs=(first, last)), upstream_model="MiniMax-H3"
    )
    assert body["ratio"] == "adaptive"
    assert [(c["type"], c.get("role")) for c in body["content"]] == [
        ("text", None),
        ("image_url", "first_frame"),
        ("image_url", "last_frame"),
    ]
    assert body["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["content"][2]["image_url"] == {"url": "https://example.com/end.png"}


# -- V1 answers ------------------------------------------------------------------------------------------------

OK = {"status_code": 0, "status_msg": "success"}


@pytest.mark.parametrize(
    ("status", "state"), [("Preparing", "queued"), ("Queueing", "queued"), ("Processing", "in_progress")]
)
def test_v1_running_states(status: str, state: str) -> None:
    progress, file_id = minimax.parse_v1_task({"task_id": "106916112212032", "status": status, "base_resp": OK})
    assert progress == Progress(state=state) and file_id is None  # type: ignore[arg-type]


def test_v1_success_gives_the_file_id_then_the_download_url() -> None:
    answer = {
        "task_id": "106916112212032",
        "status": "Success",
        "file_id": "176844028768320",
        "video_width": 1920,
        "video_height": 1080,
        "base_resp": OK,
    }
    assert minimax.parse_v1_task(answer) == (None, "176844028768320")
    assert minimax.parse_v1_task({**answer, "file_id": 176844028768320}) == (None, "176844028768320")
    file = {
        "file": {
            "file_id": 176844028768320,
            "bytes": 0,
            "created_at": 1700469398,
            "filename": "output.mp4",
            "purpose": "video_generation",
            "download_url": "https://video-product.cdn.minimax.io/inference_output/video/x.mp4",
        },
        "base_resp": OK,
    }
    assert minimax.parse_file(file).startswith("https://video-product.cdn.minimax.io/")
    with pytest.raises(UpstreamTransient):
        minimax.parse_file({"file": {"download_url": None}, "base_resp": OK})
    with pytest.raises(UpstreamTransient, match="1024"):
        minimax.parse_file({"file": None, "base_resp": {"status_code": 1024, "status_msg": "internal error"}})


def test_v1_failures() -> None:
    policy, _ = minimax.parse_v1_task(
        {"task_id": "1", "status": "Fail", "base_resp": {"status_code": 1027, "status_msg": "output new_sensitive"}}
    )
    assert policy is not None and policy.state == "failed" and policy.error_code == CONTENT_POLICY_VIOLATION
    assert policy.error_message == "MiniMax: 1027: output new_sensitive"
    plain, _ = minimax.parse_v1_task({"task_id": "1", "status": "Failed", "base_resp": OK})
    assert plain is not None and plain.error_code == GENERATION_FAILED and plain.error_message == "MiniMax: Fail"
    lost, _ = minimax.parse_v1_task(
        {"task_id": "", "status": "", "base_resp": {"status_code": 2013, "status_msg": "x"}}
    )
    assert lost is not None and lost.error_code == UPSTREAM_TASK_LOST


@pytest.mark.parametrize(
    "answer",
    [
        {"task_id": "1", "status": "Unknown", "base_resp": OK},
        {"task_id": "1", "status": "Success", "base_resp": OK},  # no file_id
        {"task_id": "1", "status": "Processing"},  # no base_resp
        {"task_id": "1", "status": "", "base_resp": {"status_code": 1002, "status_msg": "rate limit"}},
        {"task_id": "1", "status": "", "base_resp": {"status_code": 1026, "status_msg": "odd"}},
        {"task_id": "1", "status": "", "base_resp": {"status_code": "0"}},
    ],
)
def test_v1_untrustworthy_answers_are_transient(answer: dict[str, Any]) -> None:
    with pytest.raises(UpstreamTransient):
        minimax.parse_v1_task(answer)


# -- V2 answers ------------------------------------------------------------------------------------------------


def v2_task(**changes: Any) -> dict[str, Any]:
    task = {
        "id": "330127733379152",
        "model": "MiniMax-H3",
        "status": "queued",
        "created_at": 1764900000,
        "updated_at": 1764900000,
        "resolution": "768P",
        "duration": 8,
        "ratio": "16:9",
        "task_type": "t2v",
        "modality": "video",
    }
    return {**task, **changes}


def test_v2_states() -> None:
    assert minimax.parse_task({"task": v2_task()}).state == "queued"
    assert minimax.parse_task({"task": v2_task(status="running")}).state == "in_progress"
    done = minimax.parse_task(
        {"task": v2_task(status="succeeded", content={"url": "https://cdn.minimax.io/v.mp4"}, usage={})}
    )
    assert done.state == "completed" and done.video_url == "https://cdn.minimax.io/v.mp4"
    failed = minimax.parse_task(
        {"task": v2_task(status="failed", error={"code": "1027", "message": "output sensitive"})}
    )
    assert failed.error_code == CONTENT_POLICY_VIOLATION and failed.error_message == "MiniMax: 1027: output sensitive"
    other = minimax.parse_task({"task": v2_task(status="failed", error={"code": "1000", "message": "unknown error"})})
    assert other.error_code == GENERATION_FAILED and "1000" in (other.error_message or "")
    expired = minimax.parse_task({"task": v2_task(status="expired")})
    assert expired.state == "failed" and expired.error_message == "MiniMax: expired"
    assert minimax.parse_task({"task": v2_task(status="cancelled")}).state == "cancelled"
    for bad in ({"task": v2_task(status="weird")}, {"task": v2_task(status="succeeded")}, {"items": []}):
        with pytest.raises(UpstreamTransient):
            minimax.parse_task(bad)


# -- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind", "ours"),
    [
        (1026, UpstreamRejected, CONTENT_POLICY_VIOLATION),
        (1027, UpstreamRejected, CONTENT_POLICY_VIOLATION),
        (2013, UpstreamRejected, None),
        (1000, UpstreamTransient, None),
        (1001, UpstreamTransient, None),
        (1002, UpstreamTransient, None),
        (1024, UpstreamTransient, None),
        (1033, UpstreamTransient, None),
        (1039, UpstreamTransient, None),
        (1004, UpstreamTransient, None),
        (2049, UpstreamTransient, None),
        (1008, UpstreamTransient, None),
        (2056, UpstreamTransient, None),
        (9999, UpstreamTransient, None),
    ],
)
def test_base_resp_codes(code: int, kind: type[Exception], ours: str | None) -> None:
    error = minimax.classify(code, "what MiniMax said")
    assert isinstance(error, kind)
    assert f"MiniMax: {code}: what MiniMax said" in error.message
    if isinstance(error, UpstreamRejected):
        assert error.code == ours and error.upstream is not None and error.upstream.code == str(code)


def test_v2_http_errors() -> None:
    def body(kind: str, message: str, status: int, code: Any = None) -> dict[str, Any]:
        error = {"type": kind, "message": message, "http_code": str(status)}
        if code is not None:
            error["code"] = code
        return {"type": "error", "error": error, "request_id": "r1"}

    moderation = minimax.error_from(422, body("unprocessable_entity_error", "input new_sensitive (1026)", 422))
    assert isinstance(moderation, UpstreamRejected) and moderation.code == CONTENT_POLICY_VIOLATION
    assert moderation.upstream is not None and moderation.upstream.code == "1026"
    bad = minimax.error_from(400, body("invalid_request_error", "invalid params, duration must be 4-15", 400, 2013))
    assert isinstance(bad, UpstreamRejected) and bad.code is None and bad.param == "seconds"
    assert bad.message == "MiniMax: 2013: invalid params, duration must be 4-15"
    typed = minimax.error_from(400, body("invalid_request_error", "ratio must be one of ...", 400))
    assert isinstance(typed, UpstreamRejected) and typed.upstream is not None
    assert typed.upstream.code == "invalid_request_error"
    for status, kind in ((402, "insufficient_balance_error"), (401, "authentication_error"), (429, "rate"), (503, "x")):
        assert isinstance(minimax.error_from(status, body(kind, "no", status)), UpstreamTransient)
    assert isinstance(minimax.error_from(502, "<html>bad gateway</html>"), UpstreamTransient)
    v1_style = minimax.error_from(429, {"base_resp": {"status_code": 1002, "status_msg": "rate limit exceeded"}})
    assert isinstance(v1_style, UpstreamTransient) and "1002" in v1_style.message


# -- callbacks -------------------------------------------------------------------------------------------------


def test_callback_challenge_echoes_only_a_challenge() -> None:
    assert minimax.callback_challenge(b'{"challenge":"abc-123"}') == {"challenge": "abc-123"}
    status_update = orjson.dumps({"task_id": "1", "status": "success", "file_id": "2", "base_resp": OK})
    for body in (
        status_update,
        b'{"challenge":"abc","task_id":"1"}',
        b'{"challenge":""}',
        b'{"challenge":123}',
        b'["challenge"]',
        b"challenge",
        b"",
        orjson.dumps({"challenge": "x" * 2000}),
        b'{"challenge":"' + b"x" * 5000 + b'"}',
    ):
        assert minimax.callback_challenge(body) is None, body[:40]


# -- find ------------------------------------------------------------------------------------------------------


def test_matches_compares_shape_and_time() -> None:
    req = request(model="MiniMax-H3", seconds=8)
    shape = minimax._shape_only(req)
    assert minimax.matches(v2_task(), shape, since=1764900000 + 30)
    assert not minimax.matches(v2_task(), shape, since=1764900000 + 500)  # made long before the attempt
    assert not minimax.matches(v2_task(duration=5), shape, since=1764900000)
    assert not minimax.matches(v2_task(ratio="9:16"), shape, since=1764900000)
    assert not minimax.matches(v2_task(task_type="i2v", ratio="adaptive"), shape, since=1764900000)
    framed = minimax._shape_only(
        request(
            model="MiniMax-H3", seconds=8, mode="i2v", inputs=(MediaInput("first_frame", "f", url="https://x/a.png"),)
        )
    )
    assert minimax.matches(v2_task(task_type="i2v", ratio="adaptive"), framed, since=1764900000)


# -- check -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seconds": 10, "width": 1920, "height": 1080, "tier": "1080P"}, "seconds"),
        ({"width": 720, "height": 1280}, "size"),
        ({"model": "MiniMax-Hailuo-02", "width": 848, "height": 480, "tier": "480P"}, "size"),
        ({"extras": {"camera_commands": "Pan left,Spin"}}, "metadata.camera_commands"),
        ({"extras": {"camera_commands": "Pan left,Pan right,Zoom in,Shake"}}, "metadata.camera_commands"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"model": "MiniMax-H3", "prompt": "x" * 7001, "seconds": 5}, "prompt"),
    ],
)
def test_check_refuses_what_minimax_would(changes: dict[str, Any], field: str) -> None:
    provider = minimax.MiniMaxProvider(httpx.AsyncClient())
    with pytest.raises(InvalidRequest) as caught:
        provider.check(request(**changes))
    assert caught.value.param == field


def test_check_passes_what_minimax_takes() -> None:
    provider = minimax.MiniMaxProvider(httpx.AsyncClient())
    provider.check(request(extras={"camera_commands": "Pan left, Push in"}))
    provider.check(request(model="MiniMax-H3", width=720, height=1280, seconds=15))
    provider.check(request(mode="i2v", width=720, height=1280, prompt=""))
    provider.check(request(model="MiniMax-Hailuo-02", mode="i2v", width=848, height=480, tier="480P", seconds=10))


# -- the adapter against the emulator --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeMiniMax]:
    fake = FakeMiniMax(api_key=KEY)
    with fake.running():
        yield fake


@pytest.fixture(autouse=True)
def _clean_upstream(upstream: FakeMiniMax) -> None:
    upstream.reset()


def creds(upstream: FakeMiniMax, key: str = KEY) -> Credentials:
    return Credentials(channel="minimax-test", base_url=upstream.base_url, api_key=key)


async def run_to_end(provider: minimax.MiniMaxProvider, upstream_id: str, c: Credentials) -> Progress:
    for _ in range(10):
        progress = await provider.poll(upstream_id, c)
        if progress.state in ("completed", "failed", "cancelled"):
            return progress
    raise AssertionError("the task did not finish")


@pytest.mark.parametrize("model", ["MiniMax-Hailuo-2.3", "MiniMax-H3"])
async def test_submit_poll_download(upstream: FakeMiniMax, model: str, tmp_path: Path) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = minimax.MiniMaxProvider(http)
        submitted = await provider.submit(request(model=model), creds(upstream), task_id="video_1")
        assert submitted.upstream_id.startswith("v2:" if model == "MiniMax-H3" else "v1:")
        done = await run_to_end(provider, submitted.upstream_id, creds(upstream))
        assert done.state == "completed" and done.video_url
        await provider.download(done, creds(upstream), tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes()[4:8] == b"ftyp"
    create = upstream.calls("/video_generation", method="POST")[0]
    assert create.headers["authorization"] == f"Bearer {KEY}"


async def test_v1_refusals_and_auth(upstream: FakeMiniMax, tmp_path: Path) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = minimax.MiniMaxProvider(http)
        with pytest.raises(UpstreamRejected) as policy:
            await provider.submit(request(prompt="FORBIDDEN"), creds(upstream), task_id="v")
        assert policy.value.code == CONTENT_POLICY_VIOLATION and "1026" in policy.value.message
        # An image too small for MiniMax (vidgate does not judge pixels): refused with 2013, naming the field.
        tiny = tmp_path / "tiny.png"
        tiny.write_bytes(png_bytes(64, 64))
        image = MediaInput(role="first_frame", field="metadata.img_url", path=tiny, mime="image/png")
        with pytest.raises(UpstreamRejected) as refused:
            await provider.submit(request(mode="i2v", inputs=(image,)), creds(upstream), task_id="v")
        assert refused.value.upstream is not None and refused.value.upstream.code == "2013"
        assert refused.value.param == "metadata.img_url" and "300px" in refused.value.message
        with pytest.raises(UpstreamTransient, match="2049"):
            await provider.submit(request(), creds(upstream, "sk-api-wrong"), task_id="v")
    assert upstream.tasks == {}


async def test_v1_output_policy_failure_and_fresh_url_per_poll(upstream: FakeMiniMax) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = minimax.MiniMaxProvider(http)
        failed = await run_to_end(
            provider,
            (await provider.submit(request(prompt="BLOCKED_OUTPUT"), creds(upstream), task_id="v")).upstream_id,
            creds(upstream),
        )
        assert (
            failed.error_code == CONTENT_POLICY_VIOLATION
            and failed.error_message == "MiniMax: 1027: output new_sensitive"
        )
        upstream_id = (await provider.submit(request(), creds(upstream), task_id="w")).upstream_id
        first = await run_to_end(provider, upstream_id, creds(upstream))
        again = await provider.poll(upstream_id, creds(upstream))
    assert first.video_url != again.video_url
    assert len(upstream.calls("/v1/files/retrieve")) == 2


async def test_v1_find_is_not_supported(upstream: FakeMiniMax) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(NotSupported):
            await minimax.MiniMaxProvider(http).find(request(), creds(upstream), task_id="v", since=time.time())


async def test_v2_lost_reply_is_found_by_listing(upstream: FakeMiniMax) -> None:
    req = request(model="MiniMax-H3", seconds=7)
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = minimax.MiniMaxProvider(http)
        since = time.time()
        # Another task of the account, of another shape: never taken for ours.
        await provider.submit(request(model="MiniMax-H3", seconds=9), creds(upstream), task_id="other")
        upstream.faults.queue("submit", "cut")
        with pytest.raises(UpstreamTransient) as lost:
            await provider.submit(req, creds(upstream), task_id="video_lost")
        assert not lost.value.nothing_created
        found = await provider.find(req, creds(upstream), task_id="video_lost", since=since)
        assert not await provider.find(req, creds(upstream), task_id="x", since=since + 3600)
    lost_task = next(t for t in upstream.tasks.values() if t.duration == 7)
    assert found == [f"v2:{lost_task.task_id}"]
    listed = upstream.calls("/v2/query/video_generation", method="GET")[0]
    assert listed.query["filter.model"] == "MiniMax-H3" and listed.headers["authorization"] == f"Bearer {KEY}"


async def test_v2_cancel_and_errors(upstream: FakeMiniMax) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = minimax.MiniMaxProvider(http)
        queued = (await provider.submit(request(model="MiniMax-H3"), creds(upstream), task_id="a")).upstream_id
        await provider.cancel(queued, creds(upstream))
        assert (await provider.poll(queued, creds(upstream))).state == "cancelled"
        running = (await provider.submit(request(model="MiniMax-H3"), creds(upstream), task_id="b")).upstream_id
        await provider.poll(running, creds(upstream))
        with pytest.raises(UpstreamRejected, match="running"):
            await provider.cancel(running, creds(upstream))
        with pytest.raises(NotSupported):
            await provider.cancel("v1:123", creds(upstream))
        with pytest.raises(UpstreamRejected) as policy:
            await provider.submit(request(model="MiniMax-H3", prompt="FORBIDDEN"), creds(upstream), task_id="c")
        assert policy.value.code == CONTENT_POLICY_VIOLATION and policy.value.upstream is not None
        assert policy.value.upstream.code == "1026"
        gone = await provider.poll("v2:404404404", creds(upstream))
        assert gone.error_code == UPSTREAM_TASK_LOST
        upstream.faults.queue("poll", "503")
        with pytest.raises(UpstreamTransient):
            await provider.poll(running, creds(upstream))


async def test_v2_find_pages_back_to_the_attempt(upstream: FakeMiniMax, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minimax, "FIND_PAGE_SIZE", 2)
    req = request(model="MiniMax-H3", seconds=11)
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = minimax.MiniMaxProvider(http)
        since = time.time()
        upstream.faults.queue("submit", "cut")
        with pytest.raises(UpstreamTransient):
            await provider.submit(req, creds(upstream), task_id="video_lost")
        for n in range(5):  # newer tasks of other shapes push ours to the third page; a full page asks for the next
            await provider.submit(request(model="MiniMax-H3", seconds=4 + n), creds(upstream), task_id=f"o{n}")
        found = await provider.find(req, creds(upstream), task_id="video_lost", since=since)
    lost_task = next(t for t in upstream.tasks.values() if t.duration == 11)
    assert found == [f"v2:{lost_task.task_id}"]
    assert [c.query["page_num"] for c in upstream.calls("/v2/query/video_generation", method="GET")] == [
        "1",
        "2",
        "3",
        "4",
    ]


class CallbackRoute(FakeUpstream):
    """Stands in for vidgate's callback route: answers with callback_challenge(), else 200 {}."""

    name = "callback-route"

    def routes(self) -> list[BaseRoute]:
        return [Route("/callbacks/minimax/{task_id}", self._receive, methods=["POST"])]

    async def _receive(self, request: Request) -> Response:
        entry = await self.record(request)
        answer = minimax.callback_challenge(entry.body)
        return JSONResponse(answer if answer is not None else {})


async def test_callback_challenge_passes_minimax_handshake(upstream: FakeMiniMax) -> None:
    route = CallbackRoute()
    with route.running():
        url = f"{route.base_url}/callbacks/minimax/video_1?sig=abc"
        async with httpx.AsyncClient(trust_env=False) as http:
            provider = minimax.MiniMaxProvider(http)
            upstream_id = (
                await provider.submit(request(), creds(upstream), task_id="video_1", callback_url=url)
            ).upstream_id
            task = upstream.tasks[upstream_id.removeprefix("v1:")]
            assert task.body["callback_url"] == url
            deadline = time.monotonic() + 5
            while not task.callback_verified:
                assert time.monotonic() < deadline, "the handshake did not complete"
                await asyncio.sleep(0.02)
            await run_to_end(provider, upstream_id, creds(upstream))
            while len(route.history) < 4:
                assert time.monotonic() < deadline + 5, "status updates did not arrive"
                await asyncio.sleep(0.02)
    statuses = [entry.json["status"] for entry in route.history[1:]]
    assert statuses == ["processing", "processing", "success"]
    assert all(entry.query["sig"] == "abc" for entry in route.history)


def test_content_part_names_the_item_a_v2_message_is_about() -> None:
    body = {"content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {}, "role": "last_frame"}]}
    assert minimax.content_part("content[1].image_url.url short side must be at least 256px", body) == "last_frame"
    assert minimax.content_part("content[0].text must be a non-empty string", body) == "prompt"
    assert minimax.content_part("content[7].role is wrong", body) is None
    assert minimax.content_part("duration must be an integer from 4 to 15", body) is None


async def test_v2_refusal_names_the_clients_field(upstream: FakeMiniMax, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(png_bytes(64, 64))
    image = MediaInput(role="first_frame", field="input.img_url", path=tiny, mime="image/png")
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(UpstreamRejected) as refused:
            await minimax.MiniMaxProvider(http).submit(
                request(model="MiniMax-H3", mode="i2v", inputs=(image,)), creds(upstream), task_id="v"
            )
    assert refused.value.param == "input.img_url" and refused.value.upstream is not None
    assert refused.value.upstream.code == "2013" and "256px" in refused.value.message


def test_vidgate_models_lists_the_seven(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text(
        f'media_dir = "{tmp_path / "media"}"\n[[channels]]\nname = "mm"\nprovider = "minimax"\napi_key = "{KEY}"\n'
    )
    text = cli("models", config=config).stdout
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    for model in SPEC_MODELS:
        cells = [cell.strip() for cell in rows[model].split("│")[1:-1]]
        assert cells[1] == "minimax" and cells[2] and cells[3] and cells[4] and cells[8], cells
    assert "4-15" in rows["MiniMax-H3"] and "2560x1440" in rows["MiniMax-H3"] and "0.1127" in rows["MiniMax-H3"]
    assert "6,10" in rows["MiniMax-Hailuo-02"] and "480P 0.0167" in rows["MiniMax-Hailuo-02"]
