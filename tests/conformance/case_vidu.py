"""Vidu through the shared conformance checks (emulator: tests/fakes/vidu.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conformance.harness import ProviderCase
from tests.fakes.base import FakeUpstream, Recorded
from tests.fakes.vidu import FakeVidu
from tests.helpers import png_bytes

KEY = "vda_conformance"


def make_fake() -> FakeUpstream:
    return FakeVidu(api_key=KEY)


def channel(fake: FakeUpstream, folder: Path) -> str:
    return f"""
[[channels]]
name = "vidu-main"
provider = "vidu"
base_url = "{fake.base_url}"
api_key = "{KEY}"
models = ["viduq1"]
"""


def check_submit(sent: Recorded, mode: str) -> None:
    assert sent.headers["authorization"] == f"Token {KEY}"  # Vidu's scheme, not Bearer
    body = sent.json
    assert (body["model"], body["duration"], body["resolution"]) == ("viduq1", 5, "1080p")
    if mode == "t2v":
        assert sent.path == "/ent/v2/text2video"
        assert body["aspect_ratio"] == "16:9" and "images" not in body and body["prompt"] == "a lighthouse at dusk"
    else:
        assert sent.path == "/ent/v2/img2video" and "aspect_ratio" not in body
        (image,) = body["images"]
        assert image.startswith("data:image/png;base64,")  # the multipart file, encoded from storage at submit


CASE = ProviderCase(
    provider="vidu",
    make_fake=make_fake,
    channel_toml=channel,
    t2v_model="viduq1",
    i2v_model="viduq1",
    dashscope_model="viduq1",
    policy_prompt="please FAIL this one",
    policy_code="CreationPolicyViolation",
    bad_metadata={},
    bad_code="PageSizeOutOfRange",
    # Vidu refuses images wider than 4:1 (only the upstream judges that).
    bad_args={
        "model": "viduq1",
        "prompt": "a strip",
        "input_reference": ("strip.png", png_bytes(1000, 200), "image/png"),
    },
    lists=False,
    check_submit=check_submit,
    submit_path="/ent/v2/",
    dashscope_args={"size": "1920*1080", "duration": 5},
)
