"""The Vertex AI Veo emulator: the OAuth token endpoint verifies the service account's RS256 assertion, the API
takes only live tokens, bodies are validated per model (§2.3), results come inline; faults apply."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.veo import FILTER_REASON, FILTER_TRIGGER
from tests.fakes.vertex import JWT_BEARER, SCOPE, FakeVertex, make_service_account
from tests.helpers import mp4_facts, png_bytes

MODEL_PATH = "/v1/projects/proj-test/locations/us-central1/publishers/google/models/veo-3.0-generate-001"


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeVertex]:
    emulator = FakeVertex()
    with emulator.running():
        yield emulator


@pytest.fixture
def fake(running_fake: FakeVertex) -> FakeVertex:
    running_fake.reset()
    return running_fake


@pytest.fixture(scope="module")
def account(running_fake: FakeVertex, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_service_account(running_fake, tmp_path_factory.mktemp("sa") / "key.json")


def assertion(info: dict[str, Any], **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": info["client_email"], "scope": SCOPE, "aud": info["token_uri"], "iat": now, "exp": now + 3600}
    key = changes.pop("_key", None) or info["private_key"]
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": info["private_key_id"]})


def token(fake: FakeVertex, grant: str) -> httpx.Response:
    return httpx.post(f"{fake.base_url}/token", data={"grant_type": JWT_BEARER, "assertion": grant}, trust_env=False)


@pytest.fixture
def client(fake: FakeVertex, account: dict[str, Any]) -> Iterator[httpx.Client]:
    access = token(fake, assertion(account)).json()["access_token"]
    with httpx.Client(
        base_url=fake.base_url, headers={"Authorization": f"Bearer {access}"}, timeout=10, trust_env=False
    ) as http:
        yield http


def body(prompt: str = "a fox in snow", **params: Any) -> dict[str, Any]:
    return {"instances": [{"prompt": prompt}], "parameters": {"durationSeconds": 8, "sampleCount": 1, **params}}


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == response.status_code
    return error


def fetch(client: httpx.Client, name: str, path: str = MODEL_PATH) -> httpx.Response:
    return client.post(f"{path}:fetchPredictOperation", json={"operationName": name})


def test_token_endpoint_verifies_the_assertion(fake: FakeVertex, account: dict[str, Any]) -> None:
    answer = token(fake, assertion(account))
    assert answer.status_code == 200
    data = answer.json()
    assert data["token_type"] == "Bearer" and data["expires_in"] == 3599 and data["access_token"].startswith("ya29.")
    assert fake.assertions[0]["iss"] == account["client_email"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = [
        assertion(account, _key=other),  # signed with another key
        assertion(account, aud="https://oauth2.googleapis.com/token"),
        assertion(account, scope="https://www.googleapis.com/auth/devstorage.read_only"),
        assertion(account, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        assertion(account, exp=int(time.time()) + 7200),  # longer than an hour
        assertion(account, iss="someone@else.iam.gserviceaccount.com"),
        "not-a-jwt",
    ]
    for grant in bad:
        refused = token(fake, grant)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", grant
    wrong_grant = httpx.post(
        f"{fake.base_url}/token", data={"grant_type": "password", "assertion": assertion(account)}, trust_env=False
    )
    assert wrong_grant.json()["error"] == "invalid_grant"
    assert len(fake.assertions) == 1


def test_api_needs_a_live_token(fake: FakeVertex, client: httpx.Client) -> None:
    assert client.post(f"{MODEL_PATH}:predictLongRunning", json=body()).status_code == 200
    fake.expire_tokens()
    expired = client.post(f"{MODEL_PATH}:predictLongRunning", json=body())
    assert expired.status_code == 401 and error_of(expired)["status"] == "UNAUTHENTICATED"
    none = httpx.post(fake.base_url + f"{MODEL_PATH}:predictLongRunning", json=body(), trust_env=False)
    assert none.status_code == 401


def test_lifecycle_inline_bytes(fake: FakeVertex, client: httpx.Client) -> None:
    fake.store.polls_per_step = 2
    name = client.post(f"{MODEL_PATH}:predictLongRunning", json=body(generateAudio=True, seed=7)).json()["name"]
    assert name.startswith(MODEL_PATH.removeprefix("/v1/") + "/operations/")
    assert fetch(client, name).json() == {"name": name, "done": False}
    done = fetch(client, name).json()
    assert done["done"] is True and done["response"]["raiMediaFilteredCount"] == 0
    video = done["response"]["videos"][0]
    assert video["mimeType"] == "video/mp4"
    assert mp4_facts(base64.b64decode(video["bytesBase64Encoded"])).width == 160
    # The operation belongs to its model: fetching it under another one is refused.
    other = MODEL_PATH.replace("veo-3.0-generate-001", "veo-3.1-generate-001")
    assert fetch(client, name, other).status_code == 400
    assert fetch(client, name.replace("/operations/", "/operations/x")).status_code == 404


def test_storage_uri_gives_gcs_uris(client: httpx.Client) -> None:
    name = client.post(f"{MODEL_PATH}:predictLongRunning", json=body(storageUri="gs://b/out/")).json()["name"]
    video = fetch(client, name).json()["response"]["videos"][0]
    assert video["gcsUri"].startswith("gs://b/out/") and "bytesBase64Encoded" not in video


def test_filtered(client: httpx.Client) -> None:
    name = client.post(f"{MODEL_PATH}:predictLongRunning", json=body(f"a {FILTER_TRIGGER}")).json()["name"]
    response = fetch(client, name).json()["response"]
    assert response["raiMediaFilteredCount"] == 1 and response["raiMediaFilteredReasons"] == [FILTER_REASON]
    assert "videos" not in response


def image() -> dict[str, str]:
    return {"bytesBase64Encoded": base64.b64encode(png_bytes()).decode(), "mimeType": "image/png"}


@pytest.mark.parametrize(
    ("model", "payload", "needle"),
    [
        ("veo-3.0-generate-001", body(durationSeconds=5), "durationSeconds 5"),
        ("veo-2.0-generate-001", body(durationSeconds=4), "durationSeconds 4"),
        ("veo-2.0-generate-001", body(generateAudio=True), "generateAudio"),
        ("veo-3.0-generate-001", body(sampleCount=5), "sampleCount"),
        ("veo-3.0-generate-001", body(seed=-1), "seed"),
        ("veo-3.0-generate-001", body(personGeneration="allowAll"), "personGeneration"),
        ("veo-3.0-generate-001", body(personGeneration="allow_all"), "needs allow-listing"),
        ("veo-3.0-generate-001", body(resolution="4k"), "resolution"),
        ("veo-3.0-generate-001", body(resizeMode="crop"), "image-to-video only"),
        ("veo-3.0-generate-001", body(webhook="x"), 'Unknown name "webhook"'),
        (
            "veo-3.0-generate-001",
            {"instances": [{"prompt": "x", "image": image(), "lastFrame": image()}]},
            "lastFrame isn't supported",
        ),
        ("veo-3.0-generate-001", {"instances": [{"prompt": "x", "image": {"inlineData": {}}}]}, "Unknown name"),
        ("veo-9", body(), "not found"),
    ],
)
def test_validation(client: httpx.Client, model: str, payload: dict[str, Any], needle: str) -> None:
    path = MODEL_PATH.replace("veo-3.0-generate-001", model)
    answer = client.post(f"{path}:predictLongRunning", json=payload)
    assert answer.status_code in (400, 404), answer.text
    assert needle in error_of(answer)["message"]


def test_project_must_be_the_accounts(client: httpx.Client) -> None:
    answer = client.post(MODEL_PATH.replace("proj-test", "proj-other") + ":predictLongRunning", json=body())
    assert answer.status_code == 403 and error_of(answer)["status"] == "PERMISSION_DENIED"


def test_faults(fake: FakeVertex, client: httpx.Client, account: dict[str, Any]) -> None:
    fake.faults.queue("submit", "503", "429")
    assert client.post(f"{MODEL_PATH}:predictLongRunning", json=body()).status_code == 503
    assert error_of(client.post(f"{MODEL_PATH}:predictLongRunning", json=body()))["status"] == "RESOURCE_EXHAUSTED"
    assert not fake.store.ops
    name = client.post(f"{MODEL_PATH}:predictLongRunning", json=body()).json()["name"]
    fake.faults.queue("poll", "garbage", "unknown_status")
    fake.faults.queue("download", "500")
    assert fetch(client, name).headers["content-type"].startswith("text/plain")
    assert "response" not in fetch(client, name).json()
    assert fetch(client, name).status_code == 500  # the fetch that would carry the bytes
    fake.extra_fields = True
    done = fetch(client, name).json()
    assert "videos" in done["response"] and done["metadata"]["partialFailures"] == []
    fake.extra_fields = False
    fake.faults.queue("token", "503")
    assert token(fake, assertion(account)).status_code == 503


def test_service_account_file(tmp_path: Path, fake: FakeVertex) -> None:
    info = make_service_account(fake, tmp_path / "k.json", email="x@p.iam.gserviceaccount.com")
    assert (tmp_path / "k.json").read_text().count("BEGIN PRIVATE KEY") == 1
    assert info["token_uri"] == f"{fake.base_url}/token"
    assert token(fake, assertion(info)).status_code == 200
