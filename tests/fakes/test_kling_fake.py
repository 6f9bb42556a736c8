"""The Kling emulator behaves like the documented API: JWT auth codes, validation, lifecycle, faults."""

from __future__ import annotations

import base64
import io
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from PIL import Image

from tests.fakes.kling import RISK_CONTROL_MSG, FakeKling

T2V = "/v1/videos/text2video"
I2V = "/v1/videos/image2video"


def sign(payload: dict[str, Any], secret: str = "sk-test", alg: str = "HS256") -> str:
    # The fake's default secret is short; PyJWT warns about HMAC keys under 32 bytes and some tokens are built
    # at collection time, where a pytest filterwarnings mark would not apply yet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=alg, headers={"typ": "JWT"})


def make_token(
    iss: str = "ak-test", secret: str = "sk-test", exp_in: float = 1800, nbf_in: float = -5, alg: str = "HS256"
) -> str:
    now = int(time.time())
    return sign({"iss": iss, "exp": int(now + exp_in), "nbf": int(now + nbf_in)}, secret, alg)


def png_b64(width: int = 320, height: int = 320, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeKling]:
    # One server per module (starting and stopping uvicorn costs ~0.3 s); each test gets it reset.
    emulator = FakeKling()
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeKling) -> FakeKling:
    running_fake.reset()
    return running_fake


@pytest.fixture
def client(fake: FakeKling) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {make_token()}"}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=10, trust_env=False) as http:
        yield http


def create(client: httpx.Client, path: str = T2V, **body: Any) -> dict[str, Any]:
    body = {"model_name": "kling-v1", "prompt": "a cat surfing", **body} if path == T2V else body
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    assert payload["code"] == 0
    return payload


def poll_until_done(client: httpx.Client, path: str, task_id: str, limit: int = 10) -> dict[str, Any]:
    for _ in range(limit):
        data: dict[str, Any] = client.get(f"{path}/{task_id}").json()["data"]
        if data["task_status"] in ("succeed", "failed"):
            return data
    raise AssertionError(f"task {task_id} never finished")


def refusal(response: httpx.Response, status: int, code: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "request_id"}
    message: str = body["message"]
    return message


# -- happy paths ----------------------------------------------------------------------------------------------


def test_text2video_lifecycle_and_download(fake: FakeKling, client: httpx.Client) -> None:
    created = create(client, duration="10", aspect_ratio="9:16", mode="pro")
    assert created["message"] == "SUCCEED" and created["request_id"]
    data = created["data"]
    assert data["task_status"] == "submitted"
    assert data["created_at"] > 10**12  # milliseconds, not seconds
    task_id = data["task_id"]
    statuses = [client.get(f"{T2V}/{task_id}").json()["data"]["task_status"] for _ in range(3)]
    assert statuses == ["processing", "succeed", "succeed"]
    done = client.get(f"{T2V}/{task_id}").json()["data"]
    video = done["task_result"]["videos"][0]
    assert video["duration"] == "10.0"
    assert done["final_unit_deduction"] == "4"
    mp4 = httpx.get(video["url"], trust_env=False)
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    assert mp4.content[4:8] == b"ftyp"
    assert fake.tasks[task_id].status == "succeed"
    assert fake.jwt_claims[0] is not None and fake.jwt_claims[0]["iss"] == "ak-test"
    first_call = fake.calls(T2V, method="POST")[0]
    claims = fake.claims_of(first_call)
    assert claims is not None and claims["iss"] == "ak-test"


def test_image2video_raw_base64(client: httpx.Client) -> None:
    task_id = create(client, I2V, model_name="kling-v1-5", image=png_b64(320, 480), prompt="wave")["data"]["task_id"]
    done = poll_until_done(client, I2V, task_id)
    assert done["task_status"] == "succeed"
    assert httpx.get(done["task_result"]["videos"][0]["url"], trust_env=False).content[4:8] == b"ftyp"


def test_image2video_start_and_end_frames(fake: FakeKling, client: httpx.Client) -> None:
    image = png_b64()
    tail = png_b64(fmt="JPEG")
    task_id = create(client, I2V, model_name="kling-v2-1", image=image, image_tail=tail)["data"]["task_id"]
    assert poll_until_done(client, I2V, task_id)["task_status"] == "succeed"
    assert fake.tasks[task_id].body["image_tail"]


def test_image_url_and_tail_only_are_accepted(client: httpx.Client) -> None:
    create(client, I2V, image="https://example.com/cat.png")
    create(client, I2V, image_tail=png_b64())


def test_query_by_external_task_id(fake: FakeKling, client: httpx.Client) -> None:
    created = create(client, external_task_id="job-42")["data"]
    assert created["task_info"] == {"external_task_id": "job-42"}
    by_external = client.get(f"{T2V}/job-42").json()["data"]
    assert by_external["task_id"] == created["task_id"]
    assert by_external["task_info"]["external_task_id"] == "job-42"
    # A task is only visible under its own family.
    refusal(client.get(f"{I2V}/job-42"), 404, 1203)


def test_list_pages_newest_first(client: httpx.Client) -> None:
    ids = [create(client, prompt=f"clip {n}")["data"]["task_id"] for n in range(3)]
    create(client, I2V, image="https://example.com/a.png")
    page = client.get(T2V, params={"pageNum": 1, "pageSize": 2}).json()["data"]
    assert [t["task_id"] for t in page] == [ids[2], ids[1]]
    assert [t["task_id"] for t in client.get(T2V, params={"pageNum": 2, "pageSize": 2}).json()["data"]] == [ids[0]]
    refusal(client.get(T2V, params={"pageSize": 501}), 400, 1201)


def test_polls_per_step_slows_progress() -> None:
    slow = FakeKling(polls_per_step=2)
    headers = {"Authorization": f"Bearer {make_token()}"}
    with slow.running(), httpx.Client(base_url=slow.base_url, headers=headers, trust_env=False) as http:
        task_id = create(http)["data"]["task_id"]
        statuses = [http.get(f"{T2V}/{task_id}").json()["data"]["task_status"] for _ in range(4)]
    assert statuses == ["submitted", "processing", "processing", "succeed"]


def test_legacy_model_field_is_accepted(fake: FakeKling, client: httpx.Client) -> None:
    response = client.post(T2V, json={"model": "kling-v1-6", "prompt": "x"})
    assert response.status_code == 200
    assert fake.tasks[response.json()["data"]["task_id"]].model_name == "kling-v1-6"


# -- auth -------------------------------------------------------------------------------------------------------


# Tokens are made when the test runs, not at collection: time-bound claims must be fresh.
@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (lambda: None, 1001),
        (lambda: f"Bearer {make_token(secret='wrong-secret')}", 1002),
        (lambda: "Bearer not.a.jwt", 1002),
        (lambda: f"Token {make_token()}", 1002),
        (lambda: f"Bearer {make_token(alg='HS512')}", 1002),
        (lambda: f"Bearer {make_token(nbf_in=60)}", 1003),
        (lambda: f"Bearer {make_token(exp_in=-10)}", 1004),
        (lambda: f"Bearer {make_token(iss='ak-someone-else')}", 1000),
    ],
    ids=["missing", "bad-signature", "garbage", "wrong-scheme", "wrong-alg", "future-nbf", "expired", "unknown-iss"],
)
def test_auth_refusals(fake: FakeKling, authorization: Callable[[], str | None], code: int) -> None:
    value = authorization()
    headers = {"Authorization": value} if value else {}
    response = httpx.post(f"{fake.base_url}{T2V}", json={"prompt": "x"}, headers=headers, trust_env=False)
    refusal(response, 401, code)
    assert fake.tasks == {}


def test_auth_missing_exp_is_refused(fake: FakeKling) -> None:
    token = sign({"iss": "ak-test", "nbf": int(time.time()) - 5})
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.get(f"{fake.base_url}{T2V}/1", headers=headers, trust_env=False)
    refusal(response, 401, 1002)


def test_auth_refusal_records_claims(fake: FakeKling) -> None:
    expired = make_token(exp_in=-10)
    httpx.get(f"{fake.base_url}{T2V}/1", headers={"Authorization": f"Bearer {expired}"}, trust_env=False)
    assert fake.jwt_claims[-1] is not None and fake.jwt_claims[-1]["iss"] == "ak-test"


# -- validation ---------------------------------------------------------------------------------------------------

TINY_PNG = png_b64(40, 40)
NOT_AN_IMAGE = base64.b64encode(b"definitely not an image").decode()


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        (T2V, {"model_name": "kling-v1-5", "prompt": "x"}, "model_name"),
        (T2V, {"model_name": "kling-v9", "prompt": "x"}, "model_name"),
        (I2V, {"model_name": "kling-v3", "image": "https://e.x/a.png"}, "model_name"),
        (T2V, {"prompt": "x", "duration": 5}, 'duration must be a string, one of "5", "10"'),
        (T2V, {"prompt": "x", "duration": "7"}, "duration"),
        (T2V, {"prompt": "x", "mode": "ultra"}, "mode"),
        (T2V, {"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
        (I2V, {"image": "https://e.x/a.png", "aspect_ratio": "16:9"}, "aspect_ratio is not supported"),
        (T2V, {"prompt": "x", "cfg_scale": 1.5}, "cfg_scale"),
        (T2V, {"prompt": "x", "model_name": "kling-v2-master", "cfg_scale": 0.5}, "not supported by kling-v2-master"),
        (I2V, {"prompt": "x"}, "image is required"),
        (I2V, {"image": f"data:image/png;base64,{TINY_PNG}"}, "image must be a URL or raw base64 without the data:"),
        (I2V, {"image": NOT_AN_IMAGE}, "not a valid image"),
        (I2V, {"image": "%%% not base64 %%%"}, "neither a URL nor valid base64"),
        (I2V, {"image": TINY_PNG}, "at least 300px"),
        (I2V, {"image": png_b64(900, 300)}, "aspect ratio"),
        (I2V, {"image": png_b64(fmt="GIF")}, "format GIF"),
        (I2V, {"image": png_b64(), "image_tail": png_b64(), "camera_control": {"type": "down_back"}}, "together"),
        (T2V, {"prompt": "x", "camera_control": {"type": "simple", "config": {"zoom": 3, "pan": 2}}}, "exactly one"),
        (T2V, {"prompt": "x", "sound": "on"}, "sound"),
        (T2V, {}, "prompt is required"),
        (T2V, {"prompt": "p" * 2501}, "at most 2500"),
    ],
)
def test_validation_refusals(
    fake: FakeKling, client: httpx.Client, path: str, body: dict[str, Any], needle: str
) -> None:
    message = refusal(client.post(path, json=body), 400, 1201)
    assert needle in message
    assert fake.tasks == {}


def test_prompt_of_2500_chars_is_accepted(client: httpx.Client) -> None:
    create(client, prompt="p" * 2500)


def test_body_must_be_json_object(client: httpx.Client) -> None:
    refusal(client.post(T2V, content=b"[1, 2]", headers={"Content-Type": "application/json"}), 400, 1200)


def test_duplicate_external_task_id(fake: FakeKling, client: httpx.Client) -> None:
    create(client, external_task_id="dup")
    message = refusal(client.post(I2V, json={"image": "https://e.x/a.png", "external_task_id": "dup"}), 400, 1201)
    assert "external_task_id" in message
    assert len(fake.tasks) == 1


# -- failures ------------------------------------------------------------------------------------------------------


def test_prompt_with_fail_ends_failed(client: httpx.Client) -> None:
    task_id = create(client, prompt="please FAIL")["data"]["task_id"]
    done = poll_until_done(client, T2V, task_id)
    assert done["task_status"] == "failed"
    assert done["task_status_msg"] == RISK_CONTROL_MSG
    assert "task_result" not in done


def test_fail_next(fake: FakeKling, client: httpx.Client) -> None:
    fake.fail_next("Insufficient account balance")
    first = create(client)["data"]["task_id"]
    second = create(client)["data"]["task_id"]
    assert poll_until_done(client, T2V, first)["task_status_msg"] == "Insufficient account balance"
    assert poll_until_done(client, T2V, second)["task_status"] == "succeed"


@pytest.mark.parametrize(("fault", "status", "code"), [("429", 429, 1302), ("500", 500, 5000), ("503", 503, 5001)])
def test_injected_http_faults(fake: FakeKling, client: httpx.Client, fault: Any, status: int, code: int) -> None:
    fake.faults.queue("submit", fault)
    message = refusal(client.post(T2V, json={"prompt": "x"}), status, code)
    if fault == "429":
        assert "rate limit" in message
    assert fake.tasks == {}
    create(client)  # the fault was consumed


def test_injected_poll_fault_keeps_task(fake: FakeKling, client: httpx.Client) -> None:
    task_id = create(client)["data"]["task_id"]
    fake.faults.queue("poll", "429")
    refusal(client.get(f"{T2V}/{task_id}"), 429, 1302)
    assert client.get(f"{T2V}/{task_id}").json()["data"]["task_status"] == "processing"


def test_drop_reply_creates_task_but_answers_500(fake: FakeKling, client: httpx.Client) -> None:
    fake.faults.queue("submit", "drop_reply")
    refusal(client.post(T2V, json={"prompt": "x", "external_task_id": "lost-1"}), 500, 5000)
    assert len(fake.tasks) == 1
    recovered = client.get(f"{T2V}/lost-1").json()["data"]
    assert recovered["task_id"] in fake.tasks
    # A retry with the same external id is refused, which is how a client learns the first one went through.
    refusal(client.post(T2V, json={"prompt": "x", "external_task_id": "lost-1"}), 400, 1201)


def test_unknown_status_and_not_found_on_poll(fake: FakeKling, client: httpx.Client) -> None:
    task_id = create(client)["data"]["task_id"]
    fake.faults.queue("poll", "unknown_status", "not_found")
    assert client.get(f"{T2V}/{task_id}").json()["data"]["task_status"] == "weird"
    refusal(client.get(f"{T2V}/{task_id}"), 404, 1203)
    assert client.get(f"{T2V}/{task_id}").json()["data"]["task_status"] == "processing"


def test_unknown_task_is_404(client: httpx.Client) -> None:
    refusal(client.get(f"{T2V}/does-not-exist"), 404, 1203)
    refusal(client.get("/v1/videos/lip-sync-x/1"), 404, 1202)


def test_expired_file_url_is_403(fake: FakeKling, client: httpx.Client) -> None:
    task_id = create(client)["data"]["task_id"]
    fake.file_ttl_s = -1
    url = poll_until_done(client, T2V, task_id)["task_result"]["videos"][0]["url"]
    assert httpx.get(url, trust_env=False).status_code == 403
