"""The conformance case of `vertex` (Veo on Vertex AI) against tests/fakes/vertex.py, with a service-account key
generated per run and registered with the emulator's token endpoint."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.conformance.harness import ProviderCase
from tests.fakes.base import FakeUpstream, Recorded
from tests.fakes.veo import FILTER_TRIGGER
from tests.fakes.vertex import FakeVertex, make_service_account

PROJECT, LOCATION = "proj-test", "us-central1"


def make_fake() -> FakeVertex:
    fake = FakeVertex()
    fake.extra_fields = True  # answers carry fields the adapter does not know
    return fake


def channel_toml(fake: FakeUpstream, folder: Path) -> str:
    assert isinstance(fake, FakeVertex)
    key_file = folder / "vertex-sa.json"
    make_service_account(fake, key_file, project=PROJECT)
    return f"""
[[channels]]
name = "vertex-main"
provider = "vertex"
base_url = "{fake.base_url}"
service_account_file = "{key_file}"
project = "{PROJECT}"
location = "{LOCATION}"
"""


def check_submit(entry: Recorded, mode: str) -> None:
    assert entry.method == "POST" and entry.path.endswith(":predictLongRunning")
    assert entry.path.startswith(f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/")
    scheme, _, token = entry.headers["authorization"].partition(" ")
    assert scheme == "Bearer" and token.startswith("ya29.")
    body = entry.json
    assert set(body) == {"instances", "parameters"}
    (instance,) = body["instances"]
    assert set(instance) == ({"prompt"} if mode == "t2v" else {"prompt", "image"})
    if mode != "t2v":
        image = instance["image"]
        assert set(image) == {"bytesBase64Encoded", "mimeType"} and image["mimeType"] in ("image/png", "image/jpeg")
        assert base64.b64decode(image["bytesBase64Encoded"], validate=True)
    params = body["parameters"]
    assert params["aspectRatio"] in ("16:9", "9:16")
    assert params["durationSeconds"] in (4, 5, 6, 7, 8) and params["resolution"] in ("720p", "1080p")
    assert params["sampleCount"] == 1
    # No storageUri: the video comes back inline. Veo 3 asks for its soundtrack.
    assert "storageUri" not in params
    if "/models/veo-3" in entry.path:
        assert params["generateAudio"] is True


CASE = ProviderCase(
    provider="vertex",
    make_fake=make_fake,
    channel_toml=channel_toml,
    t2v_model="veo-3.1-fast-generate-001",
    i2v_model="veo-3.0-generate-001",
    dashscope_model="veo-2.0-generate-001",
    policy_prompt=f"a {FILTER_TRIGGER} at noon",
    policy_code="58061214",
    # allow_all is for allow-listed projects only (§2.3); the emulator's project is not on the list.
    bad_metadata={"person_generation": "allow_all"},
    bad_code="INVALID_ARGUMENT",
    lists=False,
    check_submit=check_submit,
    submit_path=":predictLongRunning",
)
