"""The Jimeng adapter: its signer against the OFFICIAL `volcengine` signer, its pure functions on recorded JSON,
then end to end through a running vidgate (driven by the real `openai` package) against the Jimeng emulator
(tests/fakes/jimeng.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from volcengine.auth.SignerV4 import SignerV4
from volcengine.auth.SignParam import SignParam
from volcengine.Credentials import Credentials as VolcCredentials

from tests.fakes.jimeng import FakeJimeng
from tests.helpers import Server, mp4_facts, png_bytes, running_gateway
from tests.helpers import wait_video as finish
from vidgate.errors import InvalidRequest, UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers import jimeng
from vidgate.providers.base import Credentials, MediaInput, VideoRequest

AK, SK = "AKLTvidgatejimengtest", "V2tkR2FsbFhVbXhaVjFKb1lWaFNiRmxZWkhCaVIzaHY="
JIMENG_QUERY = {"Action": "CVSync2AsyncSubmitTask", "Version": "2022-08-31"}


def request(**changes: Any) -> VideoRequest:
    fields: dict[str, Any] = {
        "model": "jimeng_vgfm_t2v_l20",
        "prompt": "千军万马",
        "seconds": 5,
        "width": 1280,
        "height": 720,
        "tier": "720P",
        "mode": "t2v",
    }
    return VideoRequest(**{**fields, **changes})


# -- the signer against the official SDK ------------------------------------------------------------------------


def official(host: str, path: str, query: dict[str, str], body: bytes, date: datetime) -> Any:
    param = SignParam()
    param.set_method("POST")
    param.set_host(host)
    param.set_path(path)
    param.set_query(OrderedDict(query))
    param.set_header_list(OrderedDict({"Content-Type": "application/json", "Host": host}))
    param.set_body(body)
    param.set_date(date)
    return SignerV4.sign_only(param, VolcCredentials(AK, SK, "cv", "cn-north-1"))


@pytest.mark.parametrize(
    ("host", "path", "query", "body", "date"),
    [
        (
            "visual.volcengineapi.com",
            "/",
            JIMENG_QUERY,
            b'{"req_key":"jimeng_vgfm_t2v_l20","prompt":"a red kite","seed":-1,"frames":121,"aspect_ratio":"16:9"}',
            datetime(2025, 8, 5, 14, 49, 38, tzinfo=UTC),
        ),
        (
            "visual.volcengineapi.com",
            "/",
            {"Action": "CVSync2AsyncGetResult", "Version": "2022-08-31"},
            b'{"req_key":"jimeng_vgfm_i2v_l20","task_id":"7392616336519610409"}',
            datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
        ),
        (
            "127.0.0.1:18080",
            "/",
            JIMENG_QUERY,
            json.dumps({"prompt": "千军万马 — ünïcode"}, ensure_ascii=False).encode(),
            datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC),
        ),
        ("visual.volcengineapi.com:443", "/", JIMENG_QUERY, b"", datetime(2025, 12, 31, 12, 0, 1, tzinfo=UTC)),
        (
            "gateway.example.com:8443",
            "/jimeng/",
            {"Version": "2022-08-31", "Action": "CVSync2AsyncSubmitTask", "note": "a b/c~d+e=f&g*é"},
            b'{"binary_data_base64":["iVBORw0KGgo="]}',
            datetime(2025, 6, 1, 8, 30, 0, tzinfo=UTC),
        ),
    ],
    ids=["submit", "get-result", "local-port-unicode", "default-port-empty-body", "prefix-odd-query"],
)
def test_signer_matches_the_official_sdk(
    host: str, path: str, query: dict[str, str], body: bytes, date: datetime
) -> None:
    ours = jimeng.sign_request(
        AK, SK, host=jimeng.canonical_host(host), path=path, query=list(query.items()), body=body, now=date
    )
    theirs = official(host, path, query, body, date)
    assert ours["Authorization"] == theirs.authorization
    assert ours["X-Date"] == theirs.xdate == date.strftime("%Y%m%dT%H%M%SZ")
    assert ours["X-Content-Sha256"] == theirs.xContextSha256 == hashlib.sha256(body).hexdigest()
    assert theirs.xSignedHeaders == "content-type;host;x-content-sha256;x-date"


def test_signer_pieces() -> None:
    headers = {"content-type": "application/json", "host": "h", "x-content-sha256": "abc", "x-date": "20250805T144938Z"}
    canonical = jimeng.canonical_request("POST", "/", [("Version", "2022-08-31"), ("Action", "A")], headers, "abc")
    assert canonical.split("\n") == [
        "POST",
        "/",
        "Action=A&Version=2022-08-31",
        "content-type:application/json",
        "host:h",
        "x-content-sha256:abc",
        "x-date:20250805T144938Z",
        "",  # the header block ends in \n before the join's own \n
        "content-type;host;x-content-sha256;x-date",
        "abc",
    ]
    assert jimeng.credential_scope("20250805") == "20250805/cn-north-1/cv/request"
    assert jimeng.canonical_query([("b", "x y"), ("a", "1/2")]) == "a=1%2F2&b=x%20y"
    assert [jimeng.canonical_host(h) for h in ("h:80", "h:443", "h:8080", "h")] == ["h", "h", "h:8080", "h"]
    local = datetime(2025, 8, 5, 22, 49, 38).astimezone()  # any zone: the signer signs in UTC
    assert jimeng.sign_request(AK, SK, host="h", path="/", query=[], body=b"", now=local)["X-Date"] == (
        local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    )


# -- bodies -------------------------------------------------------------------------------------------------------


def test_build_body_text_to_video() -> None:
    assert jimeng.build_body(request(seed=42, width=720, height=1280)) == {
        "req_key": "jimeng_vgfm_t2v_l20",
        "prompt": "千军万马",
        "seed": 42,
        "frames": 121,
        "aspect_ratio": "9:16",
    }
    ten = jimeng.build_body(request(model="jimeng_t2v_v30_1080p", seconds=10, width=2176, height=928, tier="1080P"))
    assert (ten["seed"], ten["frames"], ten["aspect_ratio"]) == (-1, 241, "21:9")


@pytest.mark.parametrize(
    ("size", "aspect"),
    [
        ("1280x720", "16:9"),
        ("960x720", "4:3"),
        ("720x720", "1:1"),
        ("720x960", "3:4"),
        ("720x1280", "9:16"),
        ("1680x720", "21:9"),
        ("1920x1088", "16:9"),
        ("1920x1080", "16:9"),
        ("1664x1248", "4:3"),
        ("1248x1664", "3:4"),
        ("1088x1920", "9:16"),
    ],
)
def test_every_declared_size_maps_to_its_aspect_ratio(size: str, aspect: str) -> None:
    width, height = (int(side) for side in size.split("x"))
    assert jimeng.aspect_ratio(width, height) == aspect
    assert any(size in spec.sizes for spec in jimeng.MODELS)


def test_build_body_images(tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    image.write_bytes(png_bytes(640, 480))
    upload = MediaInput(role="first_frame", field="input_reference", path=image, mime="image/png")
    body = jimeng.build_body(request(model="jimeng_vgfm_i2v_l20", mode="i2v", inputs=(upload,)))
    assert body == {
        "req_key": "jimeng_vgfm_i2v_l20",
        "prompt": "千军万马",
        "seed": -1,
        "frames": 121,
        "binary_data_base64": [base64.b64encode(image.read_bytes()).decode()],
    }
    urls = (
        MediaInput(role="first_frame", field="metadata.first_frame_url", url="https://e.x/first.png"),
        MediaInput(role="last_frame", field="metadata.last_frame_url", url="https://e.x/last.png"),
    )
    kf2v = jimeng.build_body(request(model="jimeng_i2v_first_tail_v30", mode="kf2v", inputs=urls))
    assert kf2v["image_urls"] == ["https://e.x/first.png", "https://e.x/last.png"]
    assert "aspect_ratio" not in kf2v and "binary_data_base64" not in kf2v


def test_upstream_id_round_trip() -> None:
    made = jimeng.upstream_id("jimeng_vgfm_i2v_l20", "7392616336519610409", 1_722_769_557.8)
    assert made == "jimeng_vgfm_i2v_l20:7392616336519610409:1722769557"
    assert jimeng.split_upstream_id(made) == ("jimeng_vgfm_i2v_l20", "7392616336519610409", 1_722_769_557.0)
    assert jimeng.split_upstream_id("jimeng_t2v_v30:1") == ("jimeng_t2v_v30", "1", None)


# -- answers (recorded JSON, providers.md §4.5-4.7) ------------------------------------------------------------


def answer(code: int, data: Any, message: str = "Success") -> dict[str, Any]:
    return {
        "code": code,
        "data": data,
        "message": message,
        "request_id": "20240720103939AF0029465CF6A74E51EC",
        "status": code,
        "time_elapsed": "104.852309ms",
    }


ENVELOPE = {
    "ResponseMetadata": {
        "RequestId": "20250612211650F6034647881AD3D59CF6",
        "Action": "CVSync2AsyncSubmitTask",
        "Version": "2022-08-31",
        "Service": "cv",
        "Region": "cn-north-1",
        "Error": {"CodeN": 100010, "Code": "SignatureDoesNotMatch", "Message": "The request signature ..."},
    }
}


def test_parse_submit() -> None:
    assert jimeng.parse_submit(answer(10000, {"task_id": "7392616336519610409"})) == "7392616336519610409"
    with pytest.raises(UpstreamRejected) as info:
        jimeng.parse_submit(answer(50412, None, "Text Risk Not Pass"))
    refusal = info.value
    assert (refusal.code, refusal.message, refusal.param) == (
        "content_policy_violation",
        "Jimeng: 50412: Text Risk Not Pass",
        "prompt",
    )
    assert refusal.upstream == UpstreamFailure("Jimeng", "50412", "Text Risk Not Pass")
    for transient in (answer(50429, None, "Request Has Reached API Limit"), answer(10000, None), ENVELOPE, {}):
        with pytest.raises(UpstreamTransient):
            jimeng.parse_submit(transient)


def test_parse_progress_states() -> None:
    assert jimeng.parse_progress(answer(10000, {"status": "in_queue", "video_url": ""})).state == "queued"
    assert jimeng.parse_progress(answer(10000, {"status": "generating", "video_url": ""})).state == "in_progress"
    done = jimeng.parse_progress(
        answer(10000, {"aigc_meta_tagged": True, "status": "done", "video_url": "https://x.volces.com/v.mp4"})
    )
    assert (done.state, done.progress, done.video_url) == ("completed", 100, "https://x.volces.com/v.mp4")
    risk = jimeng.parse_progress(answer(50413, None, "Post Text Risk Not Pass"))
    assert (risk.state, risk.error_code) == ("failed", "content_policy_violation")
    assert risk.error_message == "Jimeng: 50413: Post Text Risk Not Pass"
    # A business code that is no risk block: our generic code, Jimeng's code and words in the message.
    odd = jimeng.parse_progress(answer(50400, None, "Invalid parameter: frames"))
    assert (odd.error_code, odd.error_message) == ("generation_failed", "Jimeng: 50400: Invalid parameter: frames")
    expired = jimeng.parse_progress(answer(10000, {"status": "expired", "video_url": ""}))
    assert (expired.state, expired.error_code) == ("failed", "upstream_task_lost")
    assert expired.error_message == "Jimeng: expired - The Jimeng task expired."


def test_not_found_is_transient_only_right_after_submit() -> None:
    gone = answer(10000, {"status": "not_found", "video_url": ""})
    with pytest.raises(UpstreamTransient):
        jimeng.parse_progress(gone, age_s=3.0)
    lost = jimeng.parse_progress(gone, age_s=jimeng.NOT_FOUND_GRACE_S + 1)
    assert (lost.error_code, lost.error_message) == (
        "upstream_task_lost",
        "Jimeng: not_found - Jimeng no longer knows this task.",
    )
    assert jimeng.parse_progress(gone).state == "failed"


@pytest.mark.parametrize(
    "payload",
    [
        answer(10000, {"status": "paused_x", "video_url": ""}),
        answer(10000, {"status": "done", "video_url": ""}),
        answer(10000, None),
        answer(50429, None, "Request Has Reached API Limit, Please Try Later"),
        answer(50430, None, "Request Has Reached API Concurrent Limit, Please Try Later"),
        answer(50500, None, "Internal Error"),
        answer(50501, None, "Internal RPC Error"),
        ENVELOPE,
        {"message": "no code"},
    ],
    ids=["unknown", "done-no-url", "no-data", "50429", "50430", "50500", "50501", "envelope", "no-code"],
)
def test_parse_progress_untrustworthy_answers_are_transient(payload: dict[str, Any]) -> None:
    with pytest.raises(UpstreamTransient):
        jimeng.parse_progress(payload)


@pytest.mark.parametrize(
    ("status", "body", "kind", "param"),
    [
        (401, ENVELOPE, UpstreamTransient, None),
        (429, answer(50429, None, "Request Has Reached API Limit"), UpstreamTransient, None),
        (500, answer(50500, None, "Internal Error"), UpstreamTransient, None),
        (400, answer(50411, None, "Pre Img Risk Not Pass"), UpstreamRejected, "first_frame"),
        (400, answer(50413, None, "Post Text Risk Not Pass"), UpstreamRejected, "prompt"),
        (400, answer(50400, None, "Invalid parameter: frames must be 121 or 241"), UpstreamRejected, "seconds"),
        (400, answer(50400, None, "Invalid parameter: aspect_ratio must be one of"), UpstreamRejected, "size"),
        (502, "<html>bad gateway</html>", UpstreamTransient, None),
    ],
)
def test_error_from(status: int, body: Any, kind: type[Exception], param: str | None) -> None:
    error = jimeng.error_from(status, body)
    assert type(error) is kind
    if isinstance(error, UpstreamRejected):
        assert error.param == param and error.upstream == UpstreamFailure("Jimeng", str(body["code"]), body["message"])
        assert error.message == f"Jimeng: {body['code']}: {body['message']}"
        assert error.code == ("content_policy_violation" if "Risk" in body["message"] else None)


# -- models and checks -------------------------------------------------------------------------------------------


def test_models() -> None:
    specs = {spec.name: spec for spec in jimeng.MODELS}
    assert specs["jimeng_vgfm_t2v_l20"].modes == {"t2v"} and specs["jimeng_vgfm_i2v_l20"].modes == {"i2v"}
    assert specs["jimeng_vgfm_t2v_l20"].seconds == (5,) and specs["jimeng_t2v_v30"].seconds == (5, 10)
    assert specs["jimeng_vgfm_t2v_l20"].sizes == ("1280x720", "960x720", "720x720", "720x960", "720x1280", "1680x720")
    assert specs["jimeng_vgfm_i2v_l20"].sizes == () and dict(specs["jimeng_vgfm_i2v_l20"].tiers) == {"720P": "1280x720"}
    assert dict(specs["jimeng_ti2v_v30_pro"].tiers) == {"1080P": "1920x1088"}
    assert all(set(spec.params) == {"seed"} for spec in specs.values())
    assert specs["jimeng_vgfm_t2v_l20"].media_keys() == []
    assert specs["jimeng_vgfm_i2v_l20"].media_keys() == ["img_url"]
    assert specs["jimeng_i2v_first_tail_v30"].media_keys() == ["first_frame_url", "last_frame_url"]
    # S2.0 Pro has a published price; the 3.0 models' prices are the operator's to state.
    assert specs["jimeng_vgfm_t2v_l20"].price == Decimal("0.04") and specs["jimeng_t2v_v30"].price is None


def test_check() -> None:
    provider = jimeng.JimengProvider(httpx.AsyncClient())
    provider.check(request(prompt="p" * 800))
    with pytest.raises(InvalidRequest) as info:
        provider.check(request(prompt="p" * 801))
    assert info.value.param == "prompt"
    mixed = (
        MediaInput(role="first_frame", field="input_reference", path=Path("/tmp/x.png")),
        MediaInput(role="last_frame", field="metadata.last_frame_url", url="https://e.x/b.png"),
    )
    with pytest.raises(InvalidRequest) as info:
        provider.check(request(model="jimeng_i2v_first_tail_v30", mode="kf2v", inputs=mixed))
    assert info.value.param == "metadata.last_frame_url"


# -- the adapter against the emulator, without vidgate around it ------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeJimeng]:
    fake = FakeJimeng(access_key=AK, secret_key=SK)
    with fake.running():
        yield fake


@pytest.fixture(autouse=True)
def _clean_upstream(upstream: FakeJimeng) -> None:
    upstream.history.clear()
    upstream.tasks.clear()
    upstream.faults.clear()
    upstream.auth_failures.clear()
    upstream._fail_queue.clear()
    upstream.files.clear()


def creds(upstream: FakeJimeng, secret: str = SK) -> Credentials:
    return Credentials(channel="jimeng-test", base_url=upstream.base_url, access_key=AK, secret_key=secret)


async def test_wrong_secret_is_transient(upstream: FakeJimeng) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(UpstreamTransient, match="SignatureDoesNotMatch"):
            await jimeng.JimengProvider(http).submit(request(), creds(upstream, "d3Jvbmc="), task_id="video_x")
    assert upstream.tasks == {} and upstream.auth_failures == ["signature differs"]


async def test_not_found_and_expired(upstream: FakeJimeng) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        provider = jimeng.JimengProvider(http)
        with pytest.raises(UpstreamTransient, match="not_found"):
            await provider.poll(jimeng.upstream_id("jimeng_t2v_v30", "123", time.time()), creds(upstream))
        old = await provider.poll(jimeng.upstream_id("jimeng_t2v_v30", "123", time.time() - 3600), creds(upstream))
        assert (old.state, old.error_code) == ("failed", "upstream_task_lost") and "not_found" in (
            old.error_message or ""
        )
        submitted = await provider.submit(request(), creds(upstream), task_id="video_y")
        assert (await provider.poll(submitted.upstream_id, creds(upstream))).state == "queued"
        upstream.expire(jimeng.split_upstream_id(submitted.upstream_id)[1])
        expired = await provider.poll(submitted.upstream_id, creds(upstream))
        assert (expired.state, expired.error_code) == ("failed", "upstream_task_lost")
        assert (expired.error_message or "").startswith("Jimeng: expired")


# -- end to end through vidgate ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeJimeng) -> Iterator[Server]:
    channels = f"""
[[channels]]
name = "jimeng-main"
provider = "jimeng"
base_url = "{upstream.base_url}"
access_key = "{AK}"
secret_key = "{SK}"

[prices]
# Not in vidgate's references: an operator routing these states them (startup refuses them otherwise).
jimeng_t2v_v30 = 0.05
jimeng_t2v_v30_1080p = 0.07
jimeng_i2v_first_v30 = 0.05
jimeng_i2v_first_v30_1080 = 0.07
jimeng_i2v_first_tail_v30 = 0.05
jimeng_i2v_first_tail_v30_1080 = 0.07
jimeng_ti2v_v30_pro = 0.1
"""
    with running_gateway(tmp_path_factory.mktemp("jimenggw"), channels, settings="poll_interval_s = 0.2\n") as server:
        yield server


@pytest.fixture(scope="module")
def client(gw: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{gw.url}/v1", api_key=gw.key("jimeng"), max_retries=0) as sdk:
        yield sdk


AUTHORIZATION = re.compile(
    rf"HMAC-SHA256 Credential={AK}/(\d{{8}})/cn-north-1/cv/request, "
    r"SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=[0-9a-f]{64}"
)


def calls(upstream: FakeJimeng, action: str) -> list[dict[str, Any]]:
    """The JSON bodies of every `action` call, after checking each was signed as Volcengine expects."""
    bodies = []
    for entry in upstream.history:
        if entry.path != "/" or entry.query.get("Action") != action:
            continue
        assert entry.query == {"Action": action, "Version": "2022-08-31"}
        match = AUTHORIZATION.fullmatch(entry.headers["authorization"])
        assert match is not None, entry.headers["authorization"]
        assert match.group(1) == entry.headers["x-date"][:8]
        assert entry.headers["x-content-sha256"] == hashlib.sha256(entry.body).hexdigest()
        assert entry.headers["host"] == f"127.0.0.1:{upstream.port}"
        assert entry.headers["content-type"] == "application/json"
        upstream.verify(entry, list(entry.query.items()))  # the emulator's verifier recomputes the signature
        bodies.append(entry.json)
    assert upstream.auth_failures == []
    return bodies


def stored_video(client: OpenAI, upstream: FakeJimeng, video_id: str) -> bytes:
    data = client.videos.download_content(video_id).read()
    assert data in upstream.files.values()  # the very bytes the upstream served, stored and served back
    return data


def test_t2v_completes_with_a_signed_vendor_body(client: OpenAI, upstream: FakeJimeng) -> None:
    video = client.videos.create(
        model="jimeng_vgfm_t2v_l20",
        prompt="千军万马 across a plain",
        seconds="5",  # type: ignore[arg-type]
        size="720x1280",
        extra_body={"metadata": json.dumps({"seed": 42})},
    )
    video = finish(client, video.id)
    assert (video.status, video.model, video.size, video.seconds) == (
        "completed",
        "jimeng_vgfm_t2v_l20",
        "720x1280",
        "5",
    )
    (submitted,) = calls(upstream, "CVSync2AsyncSubmitTask")
    assert submitted == {
        "req_key": "jimeng_vgfm_t2v_l20",
        "prompt": "千军万马 across a plain",
        "seed": 42,
        "frames": 121,
        "aspect_ratio": "9:16",
    }
    (task_id,) = upstream.tasks
    results = calls(upstream, "CVSync2AsyncGetResult")
    assert len(results) >= 3 and all(body == {"req_key": "jimeng_vgfm_t2v_l20", "task_id": task_id} for body in results)
    facts = mp4_facts(stored_video(client, upstream, video.id))
    assert (facts.codec, facts.pix_fmt, facts.width, facts.height, facts.frames) == ("h264", "yuv420p", 136, 240, 121)


def test_i2v_with_a_multipart_file(client: OpenAI, upstream: FakeJimeng) -> None:
    image = png_bytes(640, 480)
    video = client.videos.create(
        model="jimeng_vgfm_i2v_l20",
        prompt="the kite rises",
        input_reference=("kite.png", image, "image/png"),
    )
    assert finish(client, video.id).status == "completed"
    (submitted,) = calls(upstream, "CVSync2AsyncSubmitTask")
    assert submitted == {
        "req_key": "jimeng_vgfm_i2v_l20",
        "prompt": "the kite rises",
        "seed": -1,
        "frames": 121,
        "binary_data_base64": [base64.b64encode(image).decode()],
    }
    assert all(body["req_key"] == "jimeng_vgfm_i2v_l20" for body in calls(upstream, "CVSync2AsyncGetResult"))
    facts = mp4_facts(stored_video(client, upstream, video.id))
    assert (facts.width, facts.height) == (208, 156)  # 4:3, the image's ratio


def test_ten_seconds_on_a_3_0_model(client: OpenAI, upstream: FakeJimeng) -> None:
    video = client.videos.create(
        model="jimeng_ti2v_v30_pro",
        prompt="a long take",
        seconds="10",  # type: ignore[arg-type]
        size="1088x1920",  # type: ignore[arg-type]
    )
    assert finish(client, video.id).status == "completed"
    (submitted,) = calls(upstream, "CVSync2AsyncSubmitTask")
    assert (submitted["frames"], submitted["aspect_ratio"]) == (241, "9:16")
    assert mp4_facts(stored_video(client, upstream, video.id)).frames == 241


def test_first_and_last_frame_urls_are_passed_on(client: OpenAI, upstream: FakeJimeng) -> None:
    metadata = {"first_frame_url": "https://example.com/a.png", "last_frame_url": "https://example.com/b.png"}
    video = client.videos.create(
        model="jimeng_i2v_first_tail_v30_1080",
        prompt="a to b",
        extra_body={"metadata": json.dumps(metadata)},
    )
    assert finish(client, video.id).status == "completed"
    (submitted,) = calls(upstream, "CVSync2AsyncSubmitTask")
    assert submitted["image_urls"] == ["https://example.com/a.png", "https://example.com/b.png"]
    assert "binary_data_base64" not in submitted and "aspect_ratio" not in submitted


def test_seed_models_are_listed(client: OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}
    for name in ("jimeng_vgfm_t2v_l20", "jimeng_vgfm_i2v_l20", "jimeng_ti2v_v30_pro"):
        assert listed[name].owned_by == "jimeng"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "jimeng_vgfm_t2v_l20", "seconds": "10"}, "seconds"),
        ({"model": "jimeng_t2v_v30", "seconds": "7"}, "seconds"),
        ({"model": "jimeng_vgfm_t2v_l20", "size": "1000x1000"}, "size"),
        ({"model": "jimeng_t2v_v30_1080p", "size": "1280x720"}, "size"),
        ({"model": "jimeng_vgfm_t2v_l20", "metadata": {"negative_prompt": "blur"}}, "metadata.negative_prompt"),
        ({"model": "jimeng_vgfm_t2v_l20", "metadata": {"img_url": "https://e.x/a.png"}}, "metadata.img_url"),
        ({"model": "jimeng_vgfm_i2v_l20"}, "input_reference"),
        ({"model": "jimeng_vgfm_t2v_l20", "prompt": "p" * 801}, "prompt"),
    ],
)
def test_refused_before_any_upstream_call(
    client: OpenAI, upstream: FakeJimeng, fields: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"prompt": "x", **fields}
    if "metadata" in body:
        body["metadata"] = json.dumps(body["metadata"])
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt=body.pop("prompt"), extra_body=body)
    assert info.value.status_code == 400 and info.value.param == param
    assert upstream.history == []


def test_mixed_frame_sources_are_refused_before_any_upstream_call(client: OpenAI, upstream: FakeJimeng) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(
            model="jimeng_i2v_first_tail_v30",
            prompt="x",
            input_reference=("a.png", png_bytes(640, 480), "image/png"),
            extra_body={"metadata": json.dumps({"last_frame_url": "https://example.com/b.png"})},
        )
    assert info.value.param == "metadata.last_frame_url"
    assert upstream.history == []


def test_upstream_refusal_is_a_400_naming_the_field(client: OpenAI, upstream: FakeJimeng) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(
            model="jimeng_vgfm_i2v_l20", prompt="tiny", input_reference=("tiny.png", png_bytes(200, 200), "image/png")
        )
    assert info.value.param == "input_reference" and "200x200" in info.value.message
    assert upstream.tasks == {}


def test_submit_rate_limit_is_not_a_client_error(client: OpenAI, upstream: FakeJimeng) -> None:
    upstream.faults.queue("submit", "429", "429", "429")  # one for each round of the submit
    with pytest.raises(openai.APIStatusError) as info:
        client.videos.create(model="jimeng_vgfm_t2v_l20", prompt="busy")
    assert info.value.status_code in (429, 502, 503), info.value
    assert upstream.tasks == {}


def test_poll_faults_never_fail_a_task(client: OpenAI, upstream: FakeJimeng) -> None:
    upstream.faults.random("poll", 0.3, "500", "429", "garbage", "empty", "unknown_status")
    models = ("jimeng_vgfm_t2v_l20", "jimeng_t2v_v30", "jimeng_ti2v_v30_pro") * 2
    ids = [client.videos.create(model=model, prompt=f"fault run {n}").id for n, model in enumerate(models)]
    finished = [finish(client, video_id, timeout=40) for video_id in ids]
    assert [video.status for video in finished] == ["completed"] * len(ids), [v.error for v in finished]
    assert len(upstream.tasks) == len(ids)
    assert len(calls(upstream, "CVSync2AsyncGetResult")) > 3 * len(ids)  # faults were served, and retried past


def test_provider_side_failure_surfaces_its_message(client: OpenAI, upstream: FakeJimeng) -> None:
    risky = finish(client, client.videos.create(model="jimeng_vgfm_t2v_l20", prompt="please FAIL").id)
    assert risky.status == "failed" and risky.error is not None
    assert (risky.error.code, risky.error.message) == (
        "content_policy_violation",
        "Jimeng: 50413: Post Text Risk Not Pass",
    )
    upstream.fail_next(50411, "Pre Img Risk Not Pass")
    image = ("kite.png", png_bytes(640, 480), "image/png")
    video_id = client.videos.create(model="jimeng_vgfm_i2v_l20", prompt="fine", input_reference=image).id
    broke = finish(client, video_id)
    assert broke.status == "failed" and broke.error is not None
    assert (broke.error.code, broke.error.message) == (
        "content_policy_violation",
        "Jimeng: 50411: Pre Img Risk Not Pass",
    )
    upstream.fail_next(50400, "Invalid parameter: seed")
    odd = finish(client, client.videos.create(model="jimeng_vgfm_t2v_l20", prompt="fine").id)
    assert odd.error is not None
    assert (odd.error.code, odd.error.message) == ("generation_failed", "Jimeng: 50400: Invalid parameter: seed")
