"""The Kling adapter: its pure functions on recorded JSON, then end to end through a running vidgate (driven by
the real `openai` package) against the Kling emulator (tests/fakes/kling.py)."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.fakes.kling import RISK_CONTROL_MSG, FakeKling
from tests.helpers import Server, mp4_facts, png_bytes, running_gateway
from tests.helpers import wait_video as finish
from vidgate.errors import InvalidRequest, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers import kling
from vidgate.providers.base import Credentials, MediaInput, VideoRequest

AK = "ak-vidgate-kling-test"
SK = "sk-vidgate-kling-test-" + "s" * 24  # >= 32 bytes: PyJWT warns about shorter HMAC keys
KLING_MODELS = ("kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master")


def request(**changes: Any) -> VideoRequest:
    fields: dict[str, Any] = {
        "model": "kling-v1",
        "prompt": "a cat surfing",
        "seconds": 5,
        "width": 1280,
        "height": 720,
        "tier": "720P",
        "mode": "t2v",
    }
    return VideoRequest(**{**fields, **changes})


# -- JWT ------------------------------------------------------------------------------------------------------


def test_make_jwt_claims_and_header() -> None:
    token = kling.make_jwt(AK, SK, 1_722_769_557.9)
    claims = jwt.decode(token, SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims == {"iss": AK, "exp": 1_722_769_557 + 1800, "nbf": 1_722_769_557 - 5}
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-of-at-least-32-bytes!!", algorithms=["HS256"])


def test_make_jwt_is_valid_now_and_fresh_per_call() -> None:
    now = time.time()
    claims = jwt.decode(kling.make_jwt(AK, SK, now), SK, algorithms=["HS256"])
    assert claims["nbf"] <= now < claims["exp"]
    assert kling.make_jwt(AK, SK, now) != kling.make_jwt(AK, SK, now + 1)


def test_make_jwt_short_secret_does_not_warn() -> None:
    # pytest runs with filterwarnings=error: a warning here would fail the test.
    assert kling.make_jwt(AK, "short", time.time()).count(".") == 2


# -- bodies ---------------------------------------------------------------------------------------------------


def test_build_body_text2video() -> None:
    req = request(seconds=10, width=720, height=1280, extras={"negative_prompt": "blur", "cfg_scale": 0.3})
    assert kling.kind_of(req) == "text2video"
    assert kling.build_body(req, external_task_id="video_1") == {
        "model_name": "kling-v1",
        "prompt": "a cat surfing",
        "duration": "10",
        "mode": "std",
        "aspect_ratio": "9:16",
        "negative_prompt": "blur",
        "cfg_scale": 0.3,
        "external_task_id": "video_1",
    }


@pytest.mark.parametrize(
    ("size", "tier", "aspect", "mode"),
    [
        ((1280, 720), "720P", "16:9", "std"),
        ((720, 720), "720P", "1:1", "std"),
        ((1920, 1080), "1080P", "16:9", "pro"),
        ((1080, 1920), "1080P", "9:16", "pro"),
        ((1080, 1080), "1080P", "1:1", "pro"),
    ],
)
def test_size_gives_aspect_ratio_and_mode(size: tuple[int, int], tier: str, aspect: str, mode: str) -> None:
    body = kling.build_body(request(width=size[0], height=size[1], tier=tier))
    assert (body["aspect_ratio"], body["mode"]) == (aspect, mode)


def test_build_body_image2video_raw_base64(tmp_path: Path) -> None:
    first = tmp_path / "first.png"
    first.write_bytes(png_bytes(640, 360))
    tail = png_bytes(640, 360, (10, 200, 10))
    req = request(
        model="kling-v1-6",
        width=1920,
        height=1080,
        tier="1080P",
        mode="kf2v",
        inputs=(
            MediaInput(role="first_frame", field="input_reference", path=first, mime="image/png"),
            MediaInput(
                role="last_frame",
                field="metadata.last_frame_url",
                url="data:image/png;base64," + base64.b64encode(tail).decode(),
            ),
        ),
    )
    body = kling.build_body(req)
    assert kling.kind_of(req) == "image2video"
    assert "aspect_ratio" not in body and body["mode"] == "pro"
    assert base64.b64decode(body["image"]) == first.read_bytes()
    assert base64.b64decode(body["image_tail"]) == tail
    assert not body["image"].startswith("data:") and not body["image_tail"].startswith("data:")


def test_build_body_passes_urls_and_converts_webp(tmp_path: Path) -> None:
    url = MediaInput(role="first_frame", field="metadata.img_url", url="https://example.com/cat.png")
    assert kling.build_body(request(mode="i2v", inputs=(url,)))["image"] == "https://example.com/cat.png"
    webp = tmp_path / "frame.webp"
    Image.new("RGB", (400, 300), (20, 40, 60)).save(webp, format="WEBP")
    item = MediaInput(role="first_frame", field="input_reference", path=webp, mime="image/webp")
    image = kling.build_body(request(mode="i2v", inputs=(item,)))["image"]
    with Image.open(io.BytesIO(base64.b64decode(image))) as decoded:
        assert (decoded.format, decoded.size) == ("PNG", (400, 300))


def test_build_body_without_prompt_for_image2video() -> None:
    url = MediaInput(role="first_frame", field="metadata.img_url", url="https://example.com/cat.png")
    assert "prompt" not in kling.build_body(request(prompt="", mode="i2v", inputs=(url,)))


# -- answers (recorded JSON, providers.md §3.7) ---------------------------------------------------------------

CREATED: dict[str, Any] = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "CjhHU2dn6uIAAAAAAMPbAQ",
    "data": {
        "task_id": "797428282378637398",
        "task_status": "submitted",
        "task_info": {"external_task_id": "video_1"},
        "created_at": 1722769557708,
        "updated_at": 1722769557708,
    },
}
SUCCEEDED: dict[str, Any] = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "CjikY2dn6uIAAAAAAMPbAQ",
    "data": {
        "task_id": "797428282378637398",
        "task_status": "succeed",
        "task_status_msg": "",
        "task_info": {"external_task_id": "video_1"},
        "watermark_info": {"enabled": False},
        "final_unit_deduction": "1",
        "created_at": 1722769557708,
        "updated_at": 1722769630123,
        "task_result": {
            "videos": [{"id": "a3a8f0d1", "url": "https://p1.a.kwimgs.com/bs2/upload/x.mp4", "duration": "5.1"}]
        },
    },
}
FAILED: dict[str, Any] = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "Cjg",
    "data": {"task_id": "1", "task_status": "failed", "task_status_msg": RISK_CONTROL_MSG, "task_info": {}},
}


def with_status(status: Any) -> dict[str, Any]:
    return {**CREATED, "data": {**CREATED["data"], "task_status": status}}


def test_parse_progress_states() -> None:
    assert kling.parse_progress(CREATED).state == "queued"
    assert kling.parse_progress(with_status("processing")).state == "in_progress"
    done = kling.parse_progress(SUCCEEDED)
    assert (done.state, done.progress, done.video_url) == ("completed", 100, "https://p1.a.kwimgs.com/bs2/upload/x.mp4")
    failed = kling.parse_progress(FAILED)
    assert (failed.state, failed.error_code) == ("failed", "content_policy_violation")
    assert failed.error_message == f"Kling: {RISK_CONTROL_MSG}"
    broke = kling.parse_progress({**FAILED, "data": {**FAILED["data"], "task_status_msg": "Insufficient balance"}})
    assert (broke.error_code, broke.error_message) == ("generation_failed", "Kling: Insufficient balance")
    silent = kling.parse_progress({**FAILED, "data": {**FAILED["data"], "task_status_msg": ""}})
    assert (silent.error_code, silent.error_message) == ("generation_failed", "Kling: no reason given")
    assert kling.task_id_of(CREATED) == "797428282378637398"


@pytest.mark.parametrize(
    "payload",
    [
        with_status("weird"),
        with_status(""),
        with_status(None),
        {"code": 0, "message": "SUCCEED", "data": None},
        {"code": 5000, "message": "server internal error"},
        {**SUCCEEDED, "data": {**SUCCEEDED["data"], "task_result": {"videos": []}}},
        {},
    ],
    ids=["unknown", "empty", "null", "no-data", "error-code", "succeed-without-video", "empty-object"],
)
def test_parse_progress_untrustworthy_answers_are_transient(payload: dict[str, Any]) -> None:
    with pytest.raises(UpstreamTransient):
        kling.parse_progress(payload)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, 1000, UpstreamTransient),
        (401, 1004, UpstreamTransient),
        (429, 1101, UpstreamTransient),
        (403, 1103, UpstreamTransient),
        (400, 1201, UpstreamRejected),
        (404, 1203, UpstreamRejected),
        (400, 1301, UpstreamRejected),
        (429, 1302, UpstreamTransient),
        (429, 1304, UpstreamTransient),
        (500, 5000, UpstreamTransient),
        (504, 5002, UpstreamTransient),
    ],
)
def test_error_codes(status: int, code: int, kind: type[Exception]) -> None:
    error = kling.error_from(status, {"code": code, "message": "m", "request_id": "r"})
    assert type(error) is kind
    if isinstance(error, UpstreamRejected):
        assert error.upstream == UpstreamFailure("Kling", str(code), "m") and error.message == f"Kling: {code}: m"
        assert error.code == ("content_policy_violation" if code == 1301 else None)


def test_error_without_kling_body_is_transient() -> None:
    assert isinstance(kling.error_from(502, "<html>bad gateway</html>"), UpstreamTransient)
    assert isinstance(kling.error_from(400, None), UpstreamTransient)


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ('duration must be a string, one of "5", "10"', "seconds"),
        ("image_tail is not a valid image (jpg/jpeg/png)", "last_frame"),
        ("image must be at least 300px on each side", "first_frame"),
        ("cfg_scale is not supported by kling-v2-master (kling-v2.x models)", "cfg_scale"),
        ("negative_prompt must be at most 2500 characters", "negative_prompt"),
        ("model_name 'kling-v9' is not supported by text2video", "model"),
        ("requested resource does not exist (e.g. model)", None),
        ("something else entirely", None),
    ],
)
def test_parameter_messages_name_the_field(message: str, param: str | None) -> None:
    assert kling.param_of(message) == param


# -- models and checks ----------------------------------------------------------------------------------------


def test_models_declare_kling_capabilities() -> None:
    specs = {spec.name: spec for spec in kling.MODELS}
    assert tuple(specs) == KLING_MODELS
    assert all(spec.seconds == (5, 10) and spec.provider == "kling" for spec in specs.values())
    assert "cfg_scale" in specs["kling-v1"].params and "cfg_scale" in specs["kling-v1-6"].params
    assert "cfg_scale" not in specs["kling-v2-master"].params and "camera_control" in specs["kling-v1"].params
    assert all("seed" not in spec.params and "mode" not in spec.params for spec in specs.values())
    assert all(spec.params["negative_prompt"].high == 2500 for spec in specs.values())
    assert specs["kling-v2-master"].price == Decimal("0.28") and specs["kling-v1"].price["1080P"] == Decimal("0.098")
    assert specs["kling-v1"].sizes == ("1280x720", "720x1280", "720x720", "1920x1080", "1080x1920", "1080x1080")
    assert dict(specs["kling-v2-1-master"].tiers) == {"1080P": "1920x1080"}
    assert specs["kling-v2-1-master"].default_size == "1920x1080"
    assert [name for name, spec in specs.items() if "kf2v" in spec.modes] == ["kling-v1-6"]


def test_check_refuses_what_the_capability_map_forbids() -> None:
    provider = kling.KlingProvider(httpx.AsyncClient())
    image = (MediaInput(role="first_frame", field="input_reference", url="https://e.x/a.png"),)
    tail = (*image, MediaInput(role="last_frame", field="metadata.last_frame_url", url="https://e.x/b.png"))
    with pytest.raises(InvalidRequest) as info:
        provider.check(request(model="kling-v1-6", mode="kf2v", inputs=tail))
    assert info.value.param == "size"
    provider.check(request(model="kling-v1-6", mode="kf2v", inputs=tail, width=1920, height=1080, tier="1080P"))
    simple = {"type": "simple", "config": {"zoom": 5}}
    provider.check(request(extras={"camera_control": simple}))
    for bad in (
        request(extras={"camera_control": {"type": "simple", "config": {"zoom": 5, "pan": 1}}}),
        request(extras={"camera_control": {"type": "spin"}}),
        request(extras={"camera_control": {"type": "down_back", "config": {"zoom": 1}}}),
        request(extras={"camera_control": simple}, seconds=10),
        request(extras={"camera_control": simple}, mode="i2v", inputs=image),
        request(prompt="p" * 2501),
    ):
        with pytest.raises(InvalidRequest):
            provider.check(bad)


# -- the adapter against the emulator, without vidgate around it ------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeKling]:
    fake = FakeKling(access_key=AK, secret_key=SK)
    with fake.running():
        yield fake


@pytest.fixture(autouse=True)
def _clean_upstream(upstream: FakeKling) -> None:
    upstream.reset()


def creds(upstream: FakeKling, secret: str = SK) -> Credentials:
    return Credentials(channel="kling-test", base_url=upstream.base_url, access_key=AK, secret_key=secret)


async def test_resubmit_of_one_task_id_finds_the_first_task(upstream: FakeKling) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = kling.KlingProvider(http)
        first = await provider.submit(request(), creds(upstream), task_id="video_resubmitted")
        # As after a crash between the upstream's answer and our row update: the poller submits again.
        second = await provider.submit(request(), creds(upstream), task_id="video_resubmitted")
    assert first.upstream_id == second.upstream_id and first.upstream_id.startswith("text2video:")
    assert len(upstream.tasks) == 1
    assert len(upstream.calls("/v1/videos/text2video", method="POST")) == 2


async def test_transient_failure_without_a_task_stays_transient(upstream: FakeKling) -> None:
    upstream.faults.queue("submit", "503")
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(UpstreamTransient, match="no task video_lost exists"):
            await kling.KlingProvider(http).submit(request(), creds(upstream), task_id="video_lost")
    assert upstream.tasks == {}


async def test_bad_credentials_are_transient(upstream: FakeKling) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(UpstreamTransient, match="1002"):
            await kling.KlingProvider(http).submit(request(), creds(upstream, "x" * 40), task_id="video_auth")


# -- end to end through vidgate ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeKling) -> Iterator[Server]:
    channels = f"""
[[channels]]
name = "kling-main"
provider = "kling"
base_url = "{upstream.base_url}"
access_key = "{AK}"
secret_key = "{SK}"
"""
    with running_gateway(tmp_path_factory.mktemp("klinggw"), channels, settings="poll_interval_s = 0.2\n") as server:
        yield server


@pytest.fixture(scope="module")
def client(gw: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key("kling"), max_retries=0) as sdk:
        yield sdk


def only_post(upstream: FakeKling, kind: str) -> dict[str, Any]:
    (entry,) = upstream.calls(f"/v1/videos/{kind}", method="POST")
    claims = upstream.claims_of(entry)
    assert claims is not None and set(claims) == {"iss", "exp", "nbf"}
    assert claims["iss"] == AK and claims["exp"] - claims["nbf"] == 1805
    assert abs(claims["nbf"] + 5 - entry.at) < 5
    token = entry.headers["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    body: dict[str, Any] = dict(entry.json)
    # vidgate's signed callback URL for the task (engine/callbacks.py).
    callback = rf"http://127\.0\.0\.1:\d+/callbacks/kling/{body['external_task_id']}\?sig=[0-9a-f]{{64}}"
    assert re.fullmatch(callback, body.pop("callback_url"))
    return body


def stored_video(client: OpenAI, upstream: FakeKling, video_id: str) -> bytes:
    data = client.videos.download_content(video_id).read()
    assert data in upstream.files.values()  # the very bytes the upstream served, stored and served back
    return data


def test_t2v_completes_with_the_vendor_body(client: OpenAI, upstream: FakeKling) -> None:
    video = client.videos.create(
        model="kling-v1",
        prompt="a cat surfing at dawn",
        seconds="5",  # type: ignore[arg-type]
        size="720x1280",
        extra_body={"metadata": json.dumps({"negative_prompt": "blurry", "cfg_scale": 0.3})},
    )
    video = finish(client, video.id)
    assert (video.status, video.progress, video.model, video.size, video.seconds) == (
        "completed",
        100,
        "kling-v1",
        "720x1280",
        "5",
    )
    assert only_post(upstream, "text2video") == {
        "model_name": "kling-v1",
        "prompt": "a cat surfing at dawn",
        "duration": "5",
        "mode": "std",
        "aspect_ratio": "9:16",
        "negative_prompt": "blurry",
        "cfg_scale": 0.3,
        "external_task_id": video.id,
    }
    (task,) = upstream.tasks.values()
    polls = upstream.calls(f"/v1/videos/text2video/{task.task_id}", method="GET")
    assert polls and all(upstream.claims_of(entry) is not None for entry in polls)
    facts = mp4_facts(stored_video(client, upstream, video.id))
    assert (facts.codec, facts.width, facts.height) == ("h264", 90, 160)
    thumb = client.videos.download_content(video.id, variant="thumbnail")
    assert thumb.response.headers["content-type"] == "image/webp"


def test_i2v_with_a_multipart_file_in_pro_mode(client: OpenAI, upstream: FakeKling) -> None:
    image = png_bytes(640, 360)
    video = client.videos.create(
        model="kling-v2-master",
        prompt="the flag waves",
        seconds="10",  # type: ignore[arg-type]
        size="1920x1080",  # type: ignore[arg-type]
        input_reference=("frame.png", image, "image/png"),
    )
    assert finish(client, video.id).status == "completed"
    body = only_post(upstream, "image2video")
    assert body == {
        "model_name": "kling-v2-master",
        "prompt": "the flag waves",
        "duration": "10",
        "mode": "pro",
        "image": base64.b64encode(image).decode(),
        "external_task_id": video.id,
    }
    (task,) = upstream.tasks.values()
    assert upstream.calls(f"/v1/videos/image2video/{task.task_id}", method="GET")
    facts = mp4_facts(stored_video(client, upstream, video.id))
    assert (facts.codec, facts.pix_fmt, facts.width, facts.height) == ("h264", "yuv420p", 160, 90)


def test_first_and_last_frame_on_kling_v1_6(client: OpenAI, upstream: FakeKling) -> None:
    tail = png_bytes(640, 640, (20, 20, 200))
    video = client.videos.create(
        model="kling-v1-6",
        prompt="red to blue",
        size="1920x1080",  # type: ignore[arg-type]
        input_reference=("first.png", png_bytes(640, 640), "image/png"),
        extra_body={
            "metadata": json.dumps({"last_frame_url": "data:image/png;base64," + base64.b64encode(tail).decode()})
        },
    )
    assert finish(client, video.id).status == "completed"
    body = only_post(upstream, "image2video")
    assert body["image_tail"] == base64.b64encode(tail).decode() and body["mode"] == "pro"
    assert mp4_facts(stored_video(client, upstream, video.id)).width == 96  # 1:1, like the image


def test_image_url_is_passed_on_untouched(client: OpenAI, upstream: FakeKling) -> None:
    video = client.videos.create(
        model="kling-v2-1-master",
        prompt="a slow pan",
        extra_body={"metadata": json.dumps({"img_url": "https://example.com/cat.png"})},
    )
    assert (finish(client, video.id).status, video.size) == ("completed", "1920x1080")
    body = only_post(upstream, "image2video")
    assert (body["image"], body["mode"], body["duration"]) == ("https://example.com/cat.png", "pro", "5")


def test_seed_models_are_listed(client: OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}
    for name in KLING_MODELS:
        assert listed[name].owned_by == "kling"


def test_lost_submit_reply_is_recovered_without_a_second_task(client: OpenAI, upstream: FakeKling) -> None:
    upstream.faults.queue("submit", "drop_reply")
    video = client.videos.create(model="kling-v1", prompt="a lost reply", seconds="5")  # type: ignore[arg-type]
    assert finish(client, video.id).status == "completed"
    assert len(upstream.calls("/v1/videos/text2video", method="POST")) == 1
    assert upstream.calls(f"/v1/videos/text2video/{video.id}", method="GET")  # looked up by external_task_id
    assert len(upstream.tasks) == 1
    task = upstream.task_by_external_id(video.id)
    assert task is not None and task.status == "succeed"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "kling-v1", "seconds": "7"}, "seconds"),
        ({"model": "kling-v1", "size": "1024x1024"}, "size"),
        ({"model": "kling-v2-1-master", "size": "1280x720"}, "size"),
        ({"model": "kling-v2-master", "metadata": {"cfg_scale": 0.5}}, "metadata.cfg_scale"),
        ({"model": "kling-v1", "metadata": {"seed": 7}}, "metadata.seed"),
        ({"model": "kling-v1", "metadata": {"mode": "pro"}}, "metadata.mode"),
        (
            {"model": "kling-v2-master", "metadata": {"camera_control": {"type": "down_back"}}},
            "metadata.camera_control",
        ),
        (
            {"model": "kling-v1", "metadata": {"camera_control": {"type": "simple", "config": {}}}},
            "metadata.camera_control",
        ),
        (
            {
                "model": "kling-v1-6",
                "metadata": {"img_url": "https://e.x/a.png", "last_frame_url": "https://e.x/b.png"},
            },
            "size",
        ),
        (
            {
                "model": "kling-v2-master",
                "metadata": {"img_url": "https://e.x/a.png", "last_frame_url": "https://e.x/b.png"},
            },
            "metadata.last_frame_url",
        ),
    ],
)
def test_refused_before_any_upstream_call(
    client: OpenAI, upstream: FakeKling, fields: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"prompt": "x", **fields}
    if "metadata" in body:
        body["metadata"] = json.dumps(body["metadata"])
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", extra_body=body)
    assert info.value.status_code == 400 and info.value.param == param
    assert upstream.history == []


def test_upstream_parameter_refusal_is_a_400_naming_the_field(client: OpenAI, upstream: FakeKling) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(
            model="kling-v1", prompt="tiny", input_reference=("tiny.png", png_bytes(200, 200), "image/png")
        )
    assert info.value.param == "input_reference" and "300px" in info.value.message
    assert upstream.tasks == {}
    # Before believing the refusal, the adapter checked that no task of ours exists (a resubmit is refused too).
    assert len(upstream.calls("/v1/videos/image2video/video_", method="GET")) == 1


def test_poll_faults_never_fail_a_task(client: OpenAI, upstream: FakeKling) -> None:
    upstream.faults.random("poll", 0.3, "500", "429", "garbage", "empty", "unknown_status")
    ids = [
        client.videos.create(model=model, prompt=f"fault run {n}").id
        for n, model in enumerate(("kling-v1", "kling-v1-6", "kling-v2-master") * 2)
    ]
    finished = [finish(client, video_id, timeout=40) for video_id in ids]
    assert [video.status for video in finished] == ["completed"] * len(ids), [v.error for v in finished]
    assert len(upstream.tasks) == len(ids)
    assert len(upstream.history) > 3 * len(ids)  # faults were served, and retried past


def test_provider_side_failure_surfaces_its_message(client: OpenAI, upstream: FakeKling) -> None:
    risky = finish(client, client.videos.create(model="kling-v1", prompt="please FAIL").id)
    assert risky.status == "failed" and risky.error is not None
    assert (risky.error.code, risky.error.message) == ("content_policy_violation", f"Kling: {RISK_CONTROL_MSG}")
    upstream.fail_next("Insufficient account balance")
    broke = finish(client, client.videos.create(model="kling-v2-master", prompt="fine").id)
    assert broke.status == "failed" and broke.error is not None
    assert (broke.error.code, broke.error.message) == ("generation_failed", "Kling: Insufficient account balance")
