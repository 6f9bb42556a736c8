"""The Gemini API Veo emulator behaves as §2.2 documents: key auth, per-model validation, operations, the
filtered and error outcomes, the key-authenticated expiring download, and faults."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.gemini import FakeGemini
from tests.fakes.veo import FAIL_MESSAGE, FILTER_REASON, FILTER_TRIGGER
from tests.helpers import mp4_facts, png_bytes

SUBMIT = "/v1beta/models/veo-3.0-generate-001:predictLongRunning"


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeGemini]:
    emulator = FakeGemini()
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeGemini) -> FakeGemini:
    running_fake.reset()
    return running_fake


@pytest.fixture
def client(fake: FakeGemini) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=fake.base_url, headers={"x-goog-api-key": fake.api_key}, timeout=10, trust_env=False
    ) as http:
        yield http


def image(mime: str = "image/png") -> dict[str, str]:
    return {"bytesBase64Encoded": base64.b64encode(png_bytes()).decode(), "mimeType": mime}


def body(prompt: str = "a fox in snow", **params: Any) -> dict[str, Any]:
    return {"instances": [{"prompt": prompt}], "parameters": {"aspectRatio": "16:9", "durationSeconds": 8, **params}}


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == response.status_code
    return error


def run(client: httpx.Client, path: str = SUBMIT, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = client.post(path, json=payload or body())
    assert answer.status_code == 200, answer.text
    name = answer.json()["name"]
    for _ in range(5):
        op: dict[str, Any] = client.get(f"/v1beta/{name}").json()
        if op["done"]:
            return op
    raise AssertionError("never done")


def test_lifecycle_and_keyed_download(fake: FakeGemini, client: httpx.Client) -> None:
    fake.store.polls_per_step = 2
    answer = client.post(SUBMIT, json=body())
    name = answer.json()["name"]
    assert name.startswith("models/veo-3.0-generate-001/operations/")
    assert client.get(f"/v1beta/{name}").json()["done"] is False
    op = client.get(f"/v1beta/{name}").json()
    assert op["done"] is True and "metadata" in op
    uri = op["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
    assert uri.startswith(f"{fake.base_url}/v1beta/files/") and uri.endswith(":download?alt=media")
    # The download needs the key, by header or ?key=.
    assert httpx.get(uri, trust_env=False).status_code == 403
    assert httpx.get(uri, headers={"x-goog-api-key": "AIza-wrong"}, trust_env=False).status_code == 400
    data = client.get(uri).content
    assert mp4_facts(data).width == 160
    assert httpx.get(f"{uri}&key={fake.api_key}", trust_env=False).content == data


def test_download_expires(fake: FakeGemini, client: httpx.Client) -> None:
    fake.file_ttl_s = -1
    uri = run(client)["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
    answer = client.get(uri)
    assert answer.status_code == 404 and error_of(answer)["status"] == "NOT_FOUND"


def test_auth_errors_in_googles_shape(fake: FakeGemini) -> None:
    missing = httpx.post(fake.base_url + SUBMIT, json=body(), trust_env=False)
    assert missing.status_code == 403 and error_of(missing)["status"] == "PERMISSION_DENIED"
    wrong = httpx.post(fake.base_url + SUBMIT, json=body(), headers={"x-goog-api-key": "AIza-x"}, trust_env=False)
    error = error_of(wrong)
    assert error["status"] == "INVALID_ARGUMENT" and error["details"][0]["reason"] == "API_KEY_INVALID"
    by_query = httpx.post(f"{fake.base_url}{SUBMIT}?key={fake.api_key}", json=body(), trust_env=False)
    assert by_query.status_code == 200
    assert not fake.store.ops.keys() - {by_query.json()["name"].rsplit("/", 1)[-1]}


@pytest.mark.parametrize(
    ("model", "payload", "needle"),
    [
        ("veo-9", body(), "not found"),
        ("veo-3.0-generate-001", body(durationSeconds=5), "durationSeconds 5"),
        ("veo-3.0-generate-001", body(aspectRatio="1:1"), "aspectRatio"),
        ("veo-3.0-generate-001", body(resolution="4k"), "resolution '4k'"),
        ("veo-3.0-generate-001", body(resolution="1080p", aspectRatio="9:16"), "16:9"),
        ("veo-3.1-generate-preview", body(resolution="1080p", durationSeconds=6), "requires durationSeconds 8"),
        ("veo-3.0-generate-001", body(seed=3), "`seed` isn't supported"),
        ("veo-3.0-generate-001", body(generateAudio=True), "`generateAudio` isn't supported"),
        ("veo-3.0-generate-001", body(colour="red"), 'Unknown name "colour"'),
        ("veo-3.0-generate-001", body(personGeneration="allow_adult"), "text-to-video"),
        ("veo-3.0-generate-001", body(sampleCount=2), "sampleCount"),
        ("veo-3.0-generate-001", {"instances": [{"prompt": ""}]}, "prompt is required"),
        ("veo-3.0-generate-001", {"instances": [{"prompt": "x", "lastFrame": image()}]}, "lastFrame requires image"),
        ("veo-3.1-lite-generate-preview", {"instances": [{"prompt": "x", "video": {"uri": "u"}}]}, "video isn't"),
        ("veo-3.0-generate-001", {"instances": [{"prompt": "x", "image": image("image/jpeg")}]}, "does not match"),
        (
            "veo-3.0-generate-001",
            {"instances": [{"prompt": "x", "image": {"bytesBase64Encoded": "!!", "mimeType": "image/png"}}]},
            "base64",
        ),
    ],
)
def test_validation(client: httpx.Client, model: str, payload: dict[str, Any], needle: str) -> None:
    answer = client.post(f"/v1beta/models/{model}:predictLongRunning", json=payload)
    assert answer.status_code in (400, 404), answer.text
    assert needle in error_of(answer)["message"]


def test_accepts_both_image_encodings_and_string_durations(client: httpx.Client) -> None:
    sdk = {
        "instances": [{"prompt": "x", "image": image(), "lastFrame": image()}],
        "parameters": {"durationSeconds": "6", "personGeneration": "allow_adult"},
    }
    assert client.post(SUBMIT, json=sdk).status_code == 200
    rest = {
        "instances": [
            {"prompt": "x", "image": {"inlineData": {"mimeType": "image/png", "data": image()["bytesBase64Encoded"]}}}
        ]
    }
    assert client.post(SUBMIT, json=rest).status_code == 200
    refs = {
        "instances": [{"prompt": "x", "referenceImages": [{"image": image(), "referenceType": "asset"}]}],
        "parameters": {"durationSeconds": 8},
    }
    assert client.post("/v1beta/models/veo-3.1-generate-preview:predictLongRunning", json=refs).status_code == 200


def test_filtered_and_failed_outcomes(client: httpx.Client) -> None:
    filtered = run(client, payload=body(f"a {FILTER_TRIGGER}"))["response"]["generateVideoResponse"]
    assert filtered == {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTER_REASON]}
    failed = run(client, payload=body("FAIL-GENERATION please"))
    assert failed["error"] == {"code": 13, "message": FAIL_MESSAGE} and "response" not in failed


@pytest.mark.parametrize(("fault", "status"), [("429", 429), ("503", 503), ("500", 500)])
def test_submit_faults(fake: FakeGemini, client: httpx.Client, fault: Any, status: int) -> None:
    fake.faults.queue("submit", fault)
    answer = client.post(SUBMIT, json=body())
    assert answer.status_code == status and "status" in error_of(answer)
    if fault == "429":
        assert error_of(answer)["details"][0]["retryDelay"] == "7s"
    assert not fake.store.ops
    assert client.post(SUBMIT, json=body()).status_code == 200


def test_poll_and_download_faults(fake: FakeGemini, client: httpx.Client) -> None:
    name = client.post(SUBMIT, json=body()).json()["name"]
    fake.faults.queue("poll", "garbage", "unknown_status", "503")
    assert client.get(f"/v1beta/{name}").headers["content-type"].startswith("text/plain")
    assert "response" not in client.get(f"/v1beta/{name}").json()
    assert client.get(f"/v1beta/{name}").status_code == 503
    uri = client.get(f"/v1beta/{name}").json()["response"]["generateVideoResponse"]["generatedSamples"][0]["video"][
        "uri"
    ]
    fake.faults.queue("download", "503")
    assert client.get(uri).status_code == 503
    assert client.get(uri).content[4:8] == b"ftyp"


def test_cut_submit_still_creates_the_operation(fake: FakeGemini, client: httpx.Client) -> None:
    fake.faults.queue("submit", "cut")
    with pytest.raises(httpx.HTTPError):
        client.post(SUBMIT, json=body())
    assert len(fake.store.ops) == 1


def test_timeout_fault_hangs(fake: FakeGemini) -> None:
    fake.faults.hang_s = 2.0
    fake.faults.queue("submit", "timeout")
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(
            fake.base_url + SUBMIT, json=body(), headers={"x-goog-api-key": fake.api_key}, timeout=0.5, trust_env=False
        )
    assert time.monotonic() - started < 2.0
