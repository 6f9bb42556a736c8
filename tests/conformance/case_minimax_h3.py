"""MiniMax-H3 on MiniMax's V2 API in the shared conformance suite (list-based reconcile: `lists=True`)."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.conformance.harness import ProviderCase
from tests.fakes.base import FakeUpstream, Recorded
from tests.fakes.minimax import FakeMiniMax
from tests.helpers import png_bytes

KEY = "sk-api-vidgate-conformance-v2"
RATIOS = ("adaptive", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")


TINY_PNG = "data:image/png;base64," + base64.b64encode(png_bytes(64, 64)).decode()


def channel_toml(fake: FakeUpstream, folder: Path) -> str:
    return (
        "[[channels]]\n"
        'name = "minimax-v2"\n'
        'provider = "minimax"\n'
        f'api_key = "{KEY}"\n'
        f'base_url = "{fake.base_url}"\n'
        'models = ["MiniMax-H3"]\n'
    )


def check_submit(entry: Recorded, mode: str) -> None:
    """The V2 create body (content array) and auth, field by field."""
    assert entry.method == "POST" and entry.path == "/v2/video_generation"
    assert entry.headers["authorization"] == f"Bearer {KEY}"
    body = entry.json
    assert isinstance(body, dict)
    assert set(body) <= {"model", "content", "resolution", "duration", "ratio", "callback_url", "aigc_watermark"}
    assert body["model"] == "MiniMax-H3"
    assert body["resolution"] in ("768P", "2K")
    assert isinstance(body["duration"], int) and 4 <= body["duration"] <= 15
    content = body["content"]
    texts = [item for item in content if item["type"] == "text"]
    images = [item for item in content if item["type"] == "image_url"]
    assert len(texts) <= 1 and all(item["text"] for item in texts)
    if mode == "i2v":
        assert body["ratio"] == "adaptive"
        assert [item["role"] for item in images] == ["first_frame"]
        assert images[0]["image_url"]["url"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,", "http"))
    else:
        assert body["ratio"] in RATIOS[1:] and not images and texts


CASE = ProviderCase(
    provider="minimax",
    make_fake=lambda: FakeMiniMax(api_key=KEY),
    channel_toml=channel_toml,
    t2v_model="MiniMax-H3",
    i2v_model="MiniMax-H3",
    dashscope_model="MiniMax-H3",
    policy_prompt="a FORBIDDEN scene",
    policy_code="1026",
    # A first frame too small for MiniMax (short side under 256 px): vidgate passes images on without judging
    # their pixels, so MiniMax's own refusal (2013) must reach the client, naming metadata.img_url.
    bad_metadata={"img_url": TINY_PNG},
    bad_code="2013",
    lists=True,
    check_submit=check_submit,
    submit_path="/v2/video_generation",
)
