"""The Vertex AI Veo adapter: the service-account assertion, the token cache (injected clock), pure body and
Operation parsing, then the provider against the emulator (tests/fakes/vertex.py), in process."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.fakes.base import make_mp4
from tests.fakes.veo import FILTER_REASON, FILTER_TRIGGER
from tests.fakes.vertex import FakeVertex, make_service_account
from tests.helpers import mp4_facts, png_bytes
from vidgate.errors import UpstreamRejected, UpstreamTransient
from vidgate.providers import vertex
from vidgate.providers.base import CONTENT_POLICY_VIOLATION, GENERATION_FAILED, Credentials, MediaInput, VideoRequest

OP = "projects/p/locations/us-central1/publishers/google/models/veo-3.0-generate-001/operations/123"


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
def key_file(running_fake: FakeVertex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sa") / "key.json"
    make_service_account(running_fake, path)
    return path


def creds(fake: FakeVertex, key_file: Path, project: str = "proj-test") -> Credentials:
    extra = {"service_account_file": str(key_file), "project": project, "location": "us-central1"}
    return Credentials(channel="v", base_url=fake.base_url, extra=extra)


# -- the service account ------------------------------------------------------------------------------------


def test_assertion_claims_and_signature(key_file: Path) -> None:
    account = vertex.ServiceAccount.load(key_file)
    info = json.loads(key_file.read_text())
    token = vertex.make_assertion(account, 1_760_000_000.7)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": info["private_key_id"]}
    from cryptography.hazmat.primitives import serialization

    public = serialization.load_pem_private_key(info["private_key"].encode(), None).public_key()
    claims = jwt.decode(token, public, algorithms=["RS256"], audience=info["token_uri"], options={"verify_exp": False})
    assert claims == {
        "iss": info["client_email"],
        "scope": vertex.SCOPE,
        "aud": info["token_uri"],
        "iat": 1_760_000_000,
        "exp": 1_760_003_600,
    }
    assert "PRIVATE" not in repr(account)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("nope", "is not JSON"),
        ('{"type": "authorized_user"}', "not a service-account key"),
        ('{"client_email": "a", "private_key_id": "b"}', "has no private_key"),
        ('{"client_email": "a", "private_key_id": "b", "private_key": "x"}', "not a PEM key"),
        (
            '{"client_email": "a", "private_key_id": "b", "private_key": "-----BEGIN PRIVATE KEY-----", '
            '"token_uri": "file:///etc/passwd"}',
            "token_uri",
        ),
    ],
)
def test_bad_key_files(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=needle):
        vertex.ServiceAccount.load(path)
    with pytest.raises(ValueError, match="cannot be read"):
        vertex.ServiceAccount.load(tmp_path / "missing.json")


def test_token_cached_and_refreshed_before_expiry(fake: FakeVertex, key_file: Path) -> None:
    now = [1_000_000.0]

    async def go() -> list[str]:
        # The emulator checks iat/exp against the real clock: the fake clock starts far enough back that the
        # steps below stay in the past, and the first assertion's exp is still ahead.
        import time

        now[0] = time.time() - 3400
        async with httpx.AsyncClient(trust_env=False) as http:
            tokens = vertex.AccessTokens(http, clock=lambda: now[0])
            got = [await tokens.get(str(key_file))]
            now[0] += 3599 - vertex.REFRESH_MARGIN_S - 1  # still fresh enough
            got.append(await tokens.get(str(key_file)))
            now[0] += 2  # within the margin: refreshed
            got.append(await tokens.get(str(key_file)))
            # Concurrent callers share one refresh.
            tokens.forget(str(key_file))
            got += await asyncio.gather(*(tokens.get(str(key_file)) for _ in range(5)))
            return got

    got = asyncio.run(go())
    assert got[0] == got[1] != got[2]
    assert len(set(got[3:])) == 1
    assert len(fake.calls("/token")) == 3


def test_token_refusal_is_transient(fake: FakeVertex, tmp_path: Path) -> None:
    other = FakeVertex()  # a key the fake does not know
    path = tmp_path / "k.json"
    info = make_service_account(other, path)
    info["token_uri"] = f"{fake.base_url}/token"
    path.write_text(json.dumps(info))

    async def go() -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            await vertex.AccessTokens(http).get(str(path))

    with pytest.raises(UpstreamTransient, match="invalid_grant"):
        asyncio.run(go())


# -- pure ------------------------------------------------------------------------------------------------------


def test_build_body(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    first = MediaInput(role="first_frame", field="input_reference", path=image, mime="image/png")
    req = request(
        model="veo-3.1-generate-001",
        mode="i2v",
        inputs=(first,),
        seed=42,
        width=720,
        height=1280,
        extras={"negative_prompt": "rain", "person_generation": "dont_allow", "prompt_extend": False},
    )
    body = vertex.build_body(req)
    assert body["parameters"] == {
        "aspectRatio": "9:16",
        "durationSeconds": 8,
        "resolution": "720p",
        "sampleCount": 1,
        "negativePrompt": "rain",
        "personGeneration": "dont_allow",
        "seed": 42,
        "enhancePrompt": False,
        "generateAudio": True,
    }
    assert body["instances"][0]["image"]["mimeType"] == "image/png"
    veo2 = vertex.build_body(request(model="veo-2.0-generate-001", seconds=5))
    assert "generateAudio" not in veo2["parameters"] and "storageUri" not in veo2["parameters"]


def test_shared_models_have_one_spec_on_both_surfaces() -> None:
    from dataclasses import replace

    from vidgate.providers import gemini

    on_gemini = {spec.name: spec for spec in gemini.MODELS}
    shared = [spec for spec in vertex.MODELS if spec.name in on_gemini]
    assert [spec.name for spec in shared] == ["veo-3.0-generate-001", "veo-3.0-fast-generate-001"]
    for spec in shared:
        # Same modes, seconds, sizes, params and price: valid on one channel means valid on the other.
        assert replace(spec, provider="gemini", description="") == replace(on_gemini[spec.name], description="")


def test_model_of() -> None:
    assert vertex.model_of(OP) == OP.rsplit("/operations/", 1)[0]
    for bad in (
        "models/x/operations/1",
        OP + "/x",
        OP.replace("publishers", "pub"),
        OP.replace("123", ""),
        OP.replace("locations/us-central1", "locations/.."),
        "projects/p/../x/operations/1",
    ):
        assert vertex.model_of(bad) is None, bad


def test_parse_task() -> None:
    assert vertex.parse_task({"name": OP, "done": False}) == vertex.Progress(state="in_progress")
    data = make_mp4(32, 32)
    done = {
        "name": OP,
        "done": True,
        "response": {
            "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            "raiMediaFilteredCount": 0,
            "videos": [{"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": "video/mp4"}],
        },
    }
    assert vertex.parse_task(done) == data
    filtered = vertex.parse_task(
        {"name": OP, "done": True, "response": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTER_REASON]}}
    )
    assert isinstance(filtered, vertex.Progress) and filtered.error_code == CONTENT_POLICY_VIOLATION
    assert filtered.error_message == f"Vertex AI: 58061214: {FILTER_REASON}"
    gcs = vertex.parse_task({"name": OP, "done": True, "response": {"videos": [{"gcsUri": "gs://b/x.mp4"}]}})
    assert (
        isinstance(gcs, vertex.Progress)
        and gcs.error_code == GENERATION_FAILED
        and "gs://b/x.mp4" in str(gcs.error_message)
    )
    with pytest.raises(UpstreamTransient):
        vertex.parse_task({"name": OP, "done": True, "response": {"videos": [{"bytesBase64Encoded": "@@"}]}})
    with pytest.raises(UpstreamTransient):
        vertex.parse_task({"name": OP, "done": True, "response": {"videos": []}})


# -- against the emulator -------------------------------------------------------------------------------------------


async def _run(provider: vertex.VertexProvider, req: VideoRequest, cred: Credentials, dest: Path) -> Any:
    submitted = await provider.submit(req, cred, task_id="t1")
    for _ in range(5):
        progress = await provider.poll(submitted.upstream_id, cred)
        if progress.state != "in_progress":
            break
    if progress.state == "completed":
        await provider.download(progress, cred, dest)
        await provider.release(submitted.upstream_id, cred)
    return submitted, progress


def run(fake: FakeVertex, key_file: Path, tmp_path: Path, req: VideoRequest, **kw: Any) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(trust_env=False) as http:
            provider = vertex.VertexProvider(http, tmp_path / "inline")
            return await _run(provider, req, creds(fake, key_file, **kw), tmp_path / "v.mp4")

    return asyncio.run(go())


def test_t2v_end_to_end(fake: FakeVertex, key_file: Path, tmp_path: Path) -> None:
    fake.store.polls_per_step = 2
    submitted, progress = run(fake, key_file, tmp_path, request(seed=9))
    assert submitted.upstream_id.startswith(
        "projects/proj-test/locations/us-central1/publishers/google/models/veo-3.0-generate-001/operations/"
    )
    assert progress.state == "completed"
    assert mp4_facts(tmp_path / "v.mp4").width == 160
    assert not list((tmp_path / "inline").iterdir())  # moved into place, nothing left behind
    sent = fake.calls(":predictLongRunning")[0]
    token = sent.headers["authorization"].removeprefix("Bearer ")
    assert token in fake.tokens
    assert sent.json["parameters"]["seed"] == 9 and sent.json["parameters"]["generateAudio"] is True
    fetches = fake.calls(":fetchPredictOperation")
    assert [f.json for f in fetches] == [{"operationName": submitted.upstream_id}] * 2
    assert len(fake.calls("/token")) == 1  # one token for the whole run


def test_filtered_and_refused(fake: FakeVertex, key_file: Path, tmp_path: Path) -> None:
    _, filtered = run(fake, key_file, tmp_path, request(prompt=f"a {FILTER_TRIGGER}"))
    assert filtered.error_code == CONTENT_POLICY_VIOLATION
    with pytest.raises(UpstreamRejected) as caught:
        run(
            fake,
            key_file,
            tmp_path,
            request(model="veo-2.0-generate-001", seconds=4, fields={"seconds": "parameters.duration"}),
        )
    assert caught.value.param == "parameters.duration" and "INVALID_ARGUMENT" in caught.value.message
    with pytest.raises(UpstreamTransient) as denied:
        run(fake, key_file, tmp_path, request(), project="proj-other")
    assert "PERMISSION_DENIED" in str(denied.value)


def test_expired_token_is_dropped_and_replaced(fake: FakeVertex, key_file: Path, tmp_path: Path) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            provider = vertex.VertexProvider(http, tmp_path / "inline")
            cred = creds(fake, key_file)
            upstream = (await provider.submit(request(), cred, task_id="t")).upstream_id
            fake.expire_tokens()  # revoked early: the cache still thinks it fresh
            with pytest.raises(UpstreamTransient) as caught:
                await provider.poll(upstream, cred)
            assert caught.value.status == 401
            assert (await provider.poll(upstream, cred)).state == "completed"

    asyncio.run(go())
    assert len(fake.calls("/token")) == 2


def test_poll_faults_and_size_cap(
    fake: FakeVertex, key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            provider = vertex.VertexProvider(http, tmp_path / "inline")
            cred = creds(fake, key_file)
            upstream = (await provider.submit(request(), cred, task_id="t")).upstream_id
            fake.faults.queue("poll", "garbage", "unknown_status", "503")
            fake.faults.queue("download", "500")
            for _ in range(4):
                with pytest.raises(UpstreamTransient):
                    await provider.poll(upstream, cred)
            monkeypatch.setattr(vertex, "MAX_OPERATION_BYTES", 1000)
            with pytest.raises(UpstreamTransient, match="larger than 1000"):
                await provider.poll(upstream, cred)
            monkeypatch.undo()
            done = await provider.poll(upstream, cred)
            assert done.video_path is not None and done.video_path.exists()
            await provider.release(upstream, cred)
            assert not done.video_path.exists()
            with pytest.raises(UpstreamTransient):
                await provider.download(done, cred, tmp_path / "x.mp4")

    asyncio.run(go())


def test_from_settings_checks_channel_keys(tmp_path: Path, key_file: Path) -> None:
    from vidgate.config import load_settings
    from vidgate.errors import ConfigError

    def settings(extra: str) -> Any:
        path = tmp_path / "vidgate.toml"
        path.write_text(f'media_dir = "{tmp_path}/m"\n[[channels]]\nname = "v"\nprovider = "vertex"\n{extra}\n')
        return load_settings(path)

    good = f'service_account_file = "{key_file}"\nproject = "proj-test"\nlocation = "us-central1"'
    provider = vertex.from_settings(settings(good), httpx.AsyncClient())
    assert provider.channel_keys == {"service_account_file", "project", "location"}
    with pytest.raises(ConfigError, match="vertex needs location, project"):
        vertex.from_settings(settings(f'service_account_file = "{key_file}"'), httpx.AsyncClient())
    with pytest.raises(ConfigError, match=r"location 'evil\.example\.com/x' is not a Google Cloud location id"):
        vertex.from_settings(settings(good.replace("us-central1", "evil.example.com/x")), httpx.AsyncClient())
    with pytest.raises(ConfigError, match="project 'P' is not"):
        vertex.from_settings(settings(good.replace('project = "proj-test"', 'project = "P"')), httpx.AsyncClient())
    with pytest.raises(ConfigError, match="cannot be read"):
        vertex.from_settings(settings(good.replace(str(key_file), str(tmp_path / "none.json"))), httpx.AsyncClient())
    cred = Credentials(channel="v", extra={"location": "europe-west4"})
    assert provider.base_url(cred) == "https://europe-west4-aiplatform.googleapis.com"
