"""The conformance case of `gemini` (Veo on the Gemini API) against tests/fakes/gemini.py."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.conformance.harness import ProviderCase
from tests.fakes.base import FakeUpstream, Recorded
from tests.fakes.gemini import FakeGemini
from tests.fakes.veo import FILTER_TRIGGER

API_KEY = "AIza-conformance-key"


def channel_toml(fake: FakeUpstream, folder: Path) -> str:
    return f"""
[[channels]]
name = "gemini-main"
provider = "gemini"
base_url = "{fake.base_url}"
api_key = "{API_KEY}"
"""


def check_submit(entry: Recorded, mode: str) -> None:
    assert entry.method == "POST" and entry.path.endswith(":predictLongRunning")
    assert entry.headers["x-goog-api-key"] == API_KEY and "key" not in entry.query
    body = entry.json
    assert set(body) == {"instances", "parameters"}
    (instance,) = body["instances"]
    assert set(instance) == ({"prompt"} if mode == "t2v" else {"prompt", "image"})
    assert isinstance(instance["prompt"], str) and instance["prompt"]
    if mode != "t2v":
        image = instance["image"]
        assert set(image) == {"bytesBase64Encoded", "mimeType"} and image["mimeType"] in ("image/png", "image/jpeg")
        assert base64.b64decode(image["bytesBase64Encoded"], validate=True)
    params = body["parameters"]
    assert params["aspectRatio"] in ("16:9", "9:16")
    assert params["durationSeconds"] in (4, 6, 8) and params["resolution"] in ("720p", "1080p")
    assert params["sampleCount"] == 1
    # What the Gemini API refuses (§2.2) is never sent.
    assert not {"seed", "generateAudio", "storageUri", "enhancePrompt"} & set(params)


CASE = ProviderCase(
    provider="gemini",
    make_fake=lambda: FakeGemini(api_key=API_KEY),
    channel_toml=channel_toml,
    t2v_model="veo-3.1-fast-generate-preview",
    i2v_model="veo-3.0-generate-001",
    dashscope_model="veo-3.1-lite-generate-preview",
    policy_prompt=f"a {FILTER_TRIGGER} at noon",
    policy_code="58061214",
    # The Gemini API takes allow_adult only with an image: a text-to-video request carrying it is refused.
    bad_metadata={"person_generation": "allow_adult"},
    bad_code="INVALID_ARGUMENT",
    lists=False,
    check_submit=check_submit,
    submit_path=":predictLongRunning",
)
