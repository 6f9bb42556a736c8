"""MiniMax Hailuo V1 (Hailuo 2.3 / 2.3-Fast / 02, the 01 series) in the shared conformance suite.

V1 has no list, so a lost create cannot be reconciled (`lists=False`); V2 (MiniMax-H3) is case_minimax_h3.py.
"""

from __future__ import annotations

import base64
from pathlib import Path

from tests.conformance.harness import ProviderCase
from tests.fakes.base import FakeUpstream, Recorded
from tests.fakes.minimax import FakeMiniMax
from tests.helpers import png_bytes

KEY = "sk-api-vidgate-conformance-v1"
MODELS = ("MiniMax-Hailuo-2.3", "MiniMax-Hailuo-2.3-Fast", "MiniMax-Hailuo-02", "T2V-01-Director")


TINY_PNG = "data:image/png;base64," + base64.b64encode(png_bytes(64, 64)).decode()


def channel_toml(fake: FakeUpstream, folder: Path) -> str:
    models = ", ".join(f'"{model}"' for model in MODELS)
    return (
        "[[channels]]\n"
        'name = "minimax-v1"\n'
        'provider = "minimax"\n'
        f'api_key = "{KEY}"\n'
        f'base_url = "{fake.base_url}"\n'
        f"models = [{models}]\n"
    )


def check_submit(entry: Recorded, mode: str) -> None:
    """The V1 create body and auth, field by field."""
    assert entry.method == "POST" and entry.path == "/v1/video_generation"
    assert entry.headers["authorization"] == f"Bearer {KEY}"
    body = entry.json
    assert isinstance(body, dict)
    assert body["model"] in MODELS
    assert body["duration"] in (6, 10) and isinstance(body["duration"], int)
    assert body["resolution"] in ("512P", "768P", "1080P")
    assert "callback_url" not in body or str(body["callback_url"]).startswith(("http://", "https://"))
    if mode == "i2v":
        image = body["first_frame_image"]
        assert image.startswith(("data:image/png;base64,", "data:image/jpeg;base64,", "http"))
        assert "subject_reference" not in body
    else:
        assert isinstance(body.get("prompt"), str) and body["prompt"]
        assert "first_frame_image" not in body and "last_frame_image" not in body
    # Nothing vidgate-internal leaks into the vendor body.
    assert set(body) <= {
        "model",
        "prompt",
        "duration",
        "resolution",
        "first_frame_image",
        "last_frame_image",
        "prompt_optimizer",
        "fast_pretreatment",
        "aigc_watermark",
        "callback_url",
    }


CASE = ProviderCase(
    provider="minimax",
    make_fake=lambda: FakeMiniMax(api_key=KEY),
    channel_toml=channel_toml,
    t2v_model="MiniMax-Hailuo-2.3",
    i2v_model="MiniMax-Hailuo-2.3-Fast",
    dashscope_model="MiniMax-Hailuo-02",
    policy_prompt="a FORBIDDEN scene",
    policy_code="1026",
    # A first frame too small for MiniMax (short side under 300 px): vidgate passes images on without judging
    # their pixels, so MiniMax's own refusal (2013) must reach the client, naming metadata.img_url.
    bad_metadata={"img_url": TINY_PNG},
    bad_code="2013",
    lists=False,
    check_submit=check_submit,
    submit_path="/v1/video_generation",
)
