"""The Jimeng (Volcengine visual API) emulator: its V4 verifier against the OFFICIAL `volcengine` signer, and
the task lifecycle."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import av
import httpx
import pytest
from PIL import Image
from volcengine.auth.SignerV4 import SignerV4
from volcengine.auth.SignParam import SignParam
from volcengine.base.Request import Request as VolcRequest
from volcengine.Credentials import Credentials

from tests.fakes import jimeng
from tests.fakes.jimeng import FakeJimeng

AK, SK = "AKLTtest", "c2VjcmV0"
SUBMIT, RESULT = "CVSync2AsyncSubmitTask", "CVSync2AsyncGetResult"
Headers = dict[str, str]


# One client for the module: building an httpx client per request (an SSL context each) is slow.
HTTP = httpx.Client(trust_env=False, timeout=10)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeJimeng]:
    emulator = FakeJimeng()
    with emulator.running():
        yield emulator
    HTTP.close()


@pytest.fixture(autouse=True)
def reset(fake: FakeJimeng) -> Iterator[None]:
    yield
    fake.faults.clear()
    fake.polls_per_step = 1
    fake.file_ttl_s = 3600
    fake._fail_queue.clear()


# -- signing with the official SDK -----------------------------------------------------------------------


def query_for(action: str) -> dict[str, str]:
    return {"Action": action, "Version": "2022-08-31"}


def host_of(fake: FakeJimeng) -> str:
    return f"127.0.0.1:{fake.port}"


def official_sign(
    fake: FakeJimeng,
    action: str,
    body: bytes,
    *,
    ak: str = AK,
    sk: str = SK,
    region: str = "cn-north-1",
    service: str = "cv",
) -> Headers:
    """SignerV4.sign: signs now, adds X-Date, X-Content-Sha256 and Authorization to request.headers."""
    request = VolcRequest()
    request.set_method("POST")
    request.set_host(host_of(fake))
    request.set_path("/")
    request.set_query(OrderedDict(query_for(action)))
    request.set_headers(OrderedDict({"Content-Type": "application/json", "Host": host_of(fake)}))
    request.set_body(body)
    SignerV4.sign(request, Credentials(ak, sk, service, region))
    return dict(request.headers)


def official_sign_at(fake: FakeJimeng, action: str, body: bytes, date: datetime) -> tuple[Headers, Any]:
    """SignerV4.sign_only: the same signature for a chosen (UTC) date; returns (headers, SignResult)."""
    param = SignParam()
    param.set_method("POST")
    param.set_host(host_of(fake))
    param.set_path("/")
    param.set_query(OrderedDict(query_for(action)))
    param.set_header_list(OrderedDict({"Content-Type": "application/json", "Host": host_of(fake)}))
    param.set_body(body)
    param.set_date(date)
    result = SignerV4.sign_only(param, Credentials(AK, SK, "cv", "cn-north-1"))
    # sign_only wrote X-Date and X-Content-Sha256 into the header list it was given.
    return {**param.header_list, "Authorization": result.authorization}, result


def send(fake: FakeJimeng, action: str, body: bytes, headers: Headers) -> httpx.Response:
    return HTTP.post(f"{fake.base_url}/", params=query_for(action), content=body, headers=headers)


def call(fake: FakeJimeng, action: str, payload: dict[str, Any]) -> httpx.Response:
    body = json.dumps(payload).encode()
    return send(fake, action, body, official_sign(fake, action, body))


def envelope_error(response: httpx.Response, status: int, code_n: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    meta = response.json()["ResponseMetadata"]
    assert set(meta) == {"RequestId", "Action", "Version", "Service", "Region", "Error"}
    assert (meta["Service"], meta["Region"]) == ("cv", "cn-north-1")
    assert re.fullmatch(r"\d{14}[0-9A-F]{20}", meta["RequestId"])
    assert (meta["Error"]["CodeN"], meta["Error"]["Code"]) == (code_n, code), meta
    error: dict[str, Any] = meta["Error"]
    return error


def business(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["code", "data", "message", "request_id", "status", "time_elapsed"]
    assert (body["code"], body["status"]) == (code, code), body
    assert re.fullmatch(r"\d{14}[0-9A-F]{20}", body["request_id"])
    assert re.fullmatch(r"\d+\.\d+ms", body["time_elapsed"])
    if code != 10000:
        assert body["data"] is None
    return body


def submit(fake: FakeJimeng, **payload: Any) -> str:
    body = business(call(fake, SUBMIT, {"req_key": "jimeng_t2v_v30", "prompt": "a red kite", **payload}), 200, 10000)
    task_id: str = body["data"]["task_id"]
    return task_id


def result(fake: FakeJimeng, task_id: str, req_key: str = "jimeng_t2v_v30", **extra: Any) -> httpx.Response:
    return call(fake, RESULT, {"req_key": req_key, "task_id": task_id, **extra})


def status_of(fake: FakeJimeng, task_id: str, req_key: str = "jimeng_t2v_v30") -> str:
    status: str = business(result(fake, task_id, req_key), 200, 10000)["data"]["status"]
    return status


def png_b64(width: int, height: int, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 20)).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


# -- the signature verifier ------------------------------------------------------------------------------


def test_official_signer_is_accepted(fake: FakeJimeng) -> None:
    body = business(call(fake, SUBMIT, {"req_key": "jimeng_t2v_v30", "prompt": "a red kite"}), 200, 10000)
    assert body["message"] == "Success" and re.fullmatch(r"\d{19}", body["data"]["task_id"])
    auth = fake.history[-1].headers["authorization"]
    assert re.fullmatch(
        rf"HMAC-SHA256 Credential={AK}/\d{{8}}/cn-north-1/cv/request, "
        r"SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=[0-9a-f]{64}",
        auth,
    )


def test_pure_functions_match_the_official_signer(fake: FakeJimeng) -> None:
    body = b'{"req_key":"jimeng_t2v_v30","prompt":"\xe5\x8d\x83\xe5\x86\x9b\xe4\xb8\x87\xe9\xa9\xac"}'
    date = datetime(2025, 8, 5, 14, 49, 38, tzinfo=UTC)
    headers, official = official_sign_at(fake, SUBMIT, body, date)
    assert official.xdate == "20250805T144938Z"
    names = ["content-type", "host", "x-content-sha256", "x-date"]
    canonical = jimeng.canonical_request(
        "POST", "/", query_for(SUBMIT).items(), headers, names, jimeng.sha256_hex(body)
    )
    assert canonical.splitlines()[:3] == ["POST", "/", "Action=CVSync2AsyncSubmitTask&Version=2022-08-31"]
    scope = jimeng.credential_scope("20250805")
    to_sign = jimeng.string_to_sign("20250805T144938Z", scope, canonical)
    assert jimeng.signature(jimeng.signing_key(SK, "20250805"), to_sign) == official.xSignature
    ours = jimeng.sign(
        AK,
        SK,
        headers={"Content-Type": "application/json", "Host": host_of(fake)},
        body=body,
        query=query_for(SUBMIT).items(),
        x_date="20250805T144938Z",
    )
    assert ours["Authorization"] == official.authorization
    assert ours["X-Content-Sha256"] == official.xContextSha256


def test_clock_skew_window(fake: FakeJimeng) -> None:
    body = json.dumps({"req_key": "jimeng_t2v_v30", "prompt": "x"}).encode()
    now = datetime.now(UTC)
    recent, _ = official_sign_at(fake, SUBMIT, body, now - timedelta(seconds=60))
    business(send(fake, SUBMIT, body, recent), 200, 10000)
    for shift in (timedelta(minutes=-10), timedelta(minutes=10)):
        headers, _ = official_sign_at(fake, SUBMIT, body, now + shift)
        error = envelope_error(send(fake, SUBMIT, body, headers), 400, 100006, "InvalidTimestamp")
        assert error["Message"] == "signature of the request is expired"


def tamper_body(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return headers, body.replace(b"kite", b"kits")


def tamper_body_and_hash(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    new = body.replace(b"kite", b"kits")
    return {**headers, "X-Content-Sha256": jimeng.sha256_hex(new)}, new


def tamper_header(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {**headers, "Content-Type": "application/json; charset=utf-8"}, body


def tamper_date(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    shifted = datetime.strptime(headers["X-Date"], "%Y%m%dT%H%M%SZ") + timedelta(seconds=1)
    return {**headers, "X-Date": shifted.strftime("%Y%m%dT%H%M%SZ")}, body


def tamper_host(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {**headers, "Host": "visual.volcengineapi.com"}, body


def drop_authorization(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {k: v for k, v in headers.items() if k != "Authorization"}, body


def drop_signature(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {**headers, "Authorization": headers["Authorization"].split(", Signature=")[0]}, body


Tamper = Callable[[Headers, bytes], tuple[Headers, bytes]]


@pytest.mark.parametrize(
    ("tamper", "status", "code_n", "code"),
    [
        (tamper_body, 401, 100010, "SignatureDoesNotMatch"),
        (tamper_body_and_hash, 401, 100010, "SignatureDoesNotMatch"),
        (tamper_header, 401, 100010, "SignatureDoesNotMatch"),
        (tamper_date, 401, 100010, "SignatureDoesNotMatch"),
        (tamper_host, 401, 100010, "SignatureDoesNotMatch"),
        (drop_authorization, 401, 100003, "MissingAuthenticationToken"),
        (drop_signature, 401, 100005, "MissingSignature"),
    ],
)
def test_tampered_requests_are_refused(fake: FakeJimeng, tamper: Tamper, status: int, code_n: int, code: str) -> None:
    body = json.dumps({"req_key": "jimeng_t2v_v30", "prompt": "a red kite"}).encode()
    before = len(fake.tasks)
    headers, sent = tamper(official_sign(fake, SUBMIT, body), body)
    error = envelope_error(send(fake, SUBMIT, sent, headers), status, code_n, code)
    if code_n == 100010:
        assert error["Message"] == jimeng.SIGNATURE_MISMATCH
    assert len(fake.tasks) == before


@pytest.mark.parametrize(
    ("credentials", "status", "code_n", "code"),
    [
        ({"sk": "d3Jvbmc="}, 401, 100010, "SignatureDoesNotMatch"),
        ({"ak": "AKLTother"}, 401, 100009, "InvalidAccessKey"),
        ({"region": "cn-beijing"}, 401, 100010, "SignatureDoesNotMatch"),
        ({"service": "iam"}, 401, 100010, "SignatureDoesNotMatch"),
    ],
)
def test_wrong_credentials_are_refused(
    fake: FakeJimeng, credentials: dict[str, str], status: int, code_n: int, code: str
) -> None:
    body = json.dumps({"req_key": "jimeng_t2v_v30", "prompt": "x"}).encode()
    headers = official_sign(fake, SUBMIT, body, **credentials)
    envelope_error(send(fake, SUBMIT, body, headers), status, code_n, code)


def test_scope_date_must_match_x_date(fake: FakeJimeng) -> None:
    body = b'{"req_key":"jimeng_t2v_v30","prompt":"x"}'
    headers = official_sign(fake, SUBMIT, body)
    other_day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")
    headers["Authorization"] = re.sub(r"/\d{8}/", f"/{other_day}/", headers["Authorization"])
    envelope_error(send(fake, SUBMIT, body, headers), 401, 100010, "SignatureDoesNotMatch")
    assert "scope date" in fake.auth_failures[-1]


def test_declared_signed_headers_are_honoured(fake: FakeJimeng) -> None:
    body = b'{"req_key":"jimeng_t2v_v30","prompt":"x"}'
    base = {"Content-Type": "application/json"}
    # Like Volcengine's Node sample: only x-date signed, no x-content-sha256 header in the signature.
    only_date = jimeng.sign(AK, SK, headers=base, body=body, query=query_for(SUBMIT).items(), signed_headers=["x-date"])
    business(send(fake, SUBMIT, body, only_date), 200, 10000)
    without_date = jimeng.sign(
        AK, SK, headers=base, body=body, query=query_for(SUBMIT).items(), signed_headers=["content-type"]
    )
    envelope_error(send(fake, SUBMIT, body, without_date), 401, 100010, "SignatureDoesNotMatch")
    assert fake.auth_failures[-1] == "x-date not signed"


@pytest.mark.parametrize(
    "query", [{"Action": "CVProcess", "Version": "2022-08-31"}, {"Action": SUBMIT, "Version": "2020-01-01"}, {}]
)
def test_wrong_action_or_version(fake: FakeJimeng, query: dict[str, str]) -> None:
    body = b"{}"
    headers = official_sign(fake, SUBMIT, body)
    response = HTTP.post(f"{fake.base_url}/", params=query, content=body, headers=headers)
    envelope_error(response, 404, 100008, "InvalidActionOrVersion")


# -- lifecycle -------------------------------------------------------------------------------------------


def test_t2v_lifecycle_and_download(fake: FakeJimeng) -> None:
    task_id = submit(fake, frames=121, aspect_ratio="16:9", seed=7)
    assert status_of(fake, task_id) == "in_queue"
    assert status_of(fake, task_id) == "generating"
    done = business(result(fake, task_id), 200, 10000)["data"]
    assert done["status"] == "done" and done["aigc_meta_tagged"] is False
    assert done == business(result(fake, task_id), 200, 10000)["data"]  # the same URL on every later poll
    video = HTTP.get(done["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height, stream.frames) == (240, 136, 121)


def test_polls_per_step(fake: FakeJimeng) -> None:
    fake.polls_per_step = 2
    task_id = submit(fake)
    seen = [status_of(fake, task_id) for _ in range(5)]
    assert seen == ["in_queue", "in_queue", "generating", "generating", "done"]


def test_aigc_meta_in_req_json(fake: FakeJimeng) -> None:
    task_id = submit(fake)
    req_json = json.dumps({"aigc_meta": {"content_producer": "vidgate", "producer_id": "1"}})
    for _ in range(2):
        result(fake, task_id, req_json=req_json)
    assert business(result(fake, task_id, req_json=req_json), 200, 10000)["data"]["aigc_meta_tagged"] is True
    business(result(fake, task_id, req_json="{broken"), 400, 50400)


def test_unknown_mismatched_and_expired_tasks(fake: FakeJimeng) -> None:
    task_id = submit(fake)
    assert status_of(fake, task_id, req_key="jimeng_t2v_v30_1080p") == "not_found"
    assert status_of(fake, "7392616336519610409") == "not_found"
    assert status_of(fake, task_id) == "in_queue"  # the mismatched poll did not move it on
    fake.expire(task_id)
    assert status_of(fake, task_id) == "expired"
    business(call(fake, RESULT, {"req_key": "jimeng_t2v_v30"}), 400, 50400)


def test_expired_video_url_is_403(fake: FakeJimeng) -> None:
    fake.file_ttl_s = -1
    task_id = submit(fake)
    for _ in range(2):
        status_of(fake, task_id)
    url = business(result(fake, task_id), 200, 10000)["data"]["video_url"]
    assert HTTP.get(url).status_code == 403


def test_risk_failure_and_fail_next(fake: FakeJimeng) -> None:
    task_id = submit(fake, prompt="please FAIL")
    assert [status_of(fake, task_id) for _ in range(2)] == ["in_queue", "generating"]
    failed = business(result(fake, task_id), 400, 50413)
    assert failed["message"] == "Post Text Risk Not Pass"
    business(result(fake, task_id), 400, 50413)  # it stays failed
    fake.fail_next(50412, "Text Risk Not Pass")
    fake.fail_next(50500, "Internal Error")
    first, second = submit(fake), submit(fake)
    for _ in range(2):
        status_of(fake, first), status_of(fake, second)
    assert business(result(fake, first), 400, 50412)["message"] == "Text Risk Not Pass"
    business(result(fake, second), 500, 50500)


# -- business validation ---------------------------------------------------------------------------------


def test_i2v_with_base64_and_urls(fake: FakeJimeng) -> None:
    task_id = submit(fake, req_key="jimeng_i2v_first_v30", binary_data_base64=[png_b64(480, 640, "JPEG")])
    assert fake.tasks[task_id].image_source == "binary_data_base64"
    assert fake.tasks[task_id].aspect_ratio == "3:4"  # follows the image
    task_id = submit(fake, req_key="jimeng_vgfm_i2v_l20", image_urls=["https://example.com/a.png"])
    assert fake.tasks[task_id].image_source == "image_urls"
    submit(
        fake,
        req_key="jimeng_i2v_first_tail_v30_1080",
        image_urls=["https://example.com/first.png", "https://example.com/last.png"],
    )
    submit(fake, req_key="jimeng_ti2v_v30_pro", prompt="", image_urls=["https://example.com/a.png"])
    submit(fake, req_key="jimeng_ti2v_v30_pro", prompt="text only")
    submit(fake, req_key="jimeng_vgfm_t2v_l20", aspect_ratio="9:21")
    submit(fake, aspect_ratio="")  # new-api always sends it, possibly empty


@pytest.mark.parametrize(
    "payload",
    [
        {"req_key": "jimeng_i2v_first_v30", "image_urls": ["https://e.com/a.png"], "binary_data_base64": ["eA=="]},
        {"req_key": "jimeng_i2v_first_v30"},
        {"req_key": "jimeng_i2v_first_v30", "image_urls": ["https://e.com/a.png", "https://e.com/b.png"]},
        {"req_key": "jimeng_i2v_first_tail_v30", "image_urls": ["https://e.com/a.png"]},
        {"req_key": "jimeng_i2v_first_v30", "image_urls": ["ftp://e.com/a.png"]},
        {"req_key": "jimeng_i2v_first_v30", "binary_data_base64": [base64.b64encode(b"not an image").decode()]},
        {"req_key": "jimeng_i2v_first_v30", "binary_data_base64": ["data:image/png;base64," + png_b64(640, 360)]},
        {"req_key": "jimeng_i2v_first_v30", "binary_data_base64": [png_b64(100, 100)]},
        {"req_key": "jimeng_t2v_v30", "prompt": "x", "image_urls": ["https://e.com/a.png"]},
        {"req_key": "jimeng_t2v_v30"},
        {"req_key": "jimeng_ti2v_v30_pro"},
        {"req_key": "jimeng_t2v_v30", "prompt": "x", "frames": 100},
        {"req_key": "jimeng_t2v_v30", "prompt": "x", "frames": "121"},
        {"req_key": "jimeng_t2v_v30", "prompt": "x", "aspect_ratio": "9:21"},
        {"req_key": "jimeng_t2v_v30", "prompt": "x", "aspect_ratio": "2:1"},
        {"req_key": "jimeng_t2v_v30", "prompt": "x" * 801},
        {"req_key": "jimeng_t2v_v30_720p", "prompt": "x"},
        {"prompt": "x"},
    ],
)
def test_submit_refusals(fake: FakeJimeng, payload: dict[str, Any]) -> None:
    before = len(fake.tasks)
    body = business(call(fake, SUBMIT, payload), 400, 50400)
    assert body["message"].startswith("Invalid parameter: ")
    assert len(fake.tasks) == before


def test_body_not_json(fake: FakeJimeng) -> None:
    body = b"req_key=jimeng_t2v_v30"
    business(send(fake, SUBMIT, body, official_sign(fake, SUBMIT, body)), 400, 50400)


# -- faults ----------------------------------------------------------------------------------------------


def test_fault_rate_limit_and_internal_error(fake: FakeJimeng) -> None:
    fake.faults.queue("submit", "429")
    limited = business(call(fake, SUBMIT, {"req_key": "jimeng_t2v_v30", "prompt": "x"}), 429, 50429)
    assert limited["message"] == "Request Has Reached API Limit, Please Try Later"
    task_id = submit(fake)
    fake.faults.queue("poll", "500")
    assert business(result(fake, task_id), 500, 50500)["message"] == "Internal Error"


def test_fault_statuses(fake: FakeJimeng) -> None:
    task_id = submit(fake)
    fake.faults.queue("poll", "unknown_status", "not_found")
    assert status_of(fake, task_id) == "paused_x"
    assert status_of(fake, task_id) == "not_found"


def test_fault_drop_reply_creates_then_500(fake: FakeJimeng) -> None:
    before = set(fake.tasks)
    fake.faults.queue("submit", "drop_reply")
    business(call(fake, SUBMIT, {"req_key": "jimeng_t2v_v30", "prompt": "lost reply"}), 500, 50500)
    (task_id,) = set(fake.tasks) - before
    assert fake.tasks[task_id].prompt == "lost reply"
    assert status_of(fake, task_id) == "in_queue"


def test_fault_is_applied_after_authentication(fake: FakeJimeng) -> None:
    fake.faults.queue("submit", "429")
    body = b'{"req_key":"jimeng_t2v_v30","prompt":"x"}'
    headers = official_sign(fake, SUBMIT, body, sk="d3Jvbmc=")
    envelope_error(send(fake, SUBMIT, body, headers), 401, 100010, "SignatureDoesNotMatch")
    business(call(fake, SUBMIT, {"req_key": "jimeng_t2v_v30", "prompt": "x"}), 429, 50429)
