"""The `ark` provider (Seedance on Volcengine Ark) in the shared conformance suite, against tests/fakes/ark.py."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conformance.harness import ProviderCase
from tests.fakes.ark import OUTPUT_POLICY_CODE, OUTPUT_POLICY_TRIGGER, TASKS_PATH, FakeArk
from tests.fakes.base import FakeUpstream, Recorded
from vidgate.providers import ark

KEY = "ark-conformance-key"
T2V = "doubao-seedance-1-5-pro-251215"
I2V = "doubao-seedance-1-0-pro-250528"
BODY_KEYS = {"model", "content", "resolution", "ratio", "duration", "execution_expires_after"}


def make_fake() -> FakeArk:
    return FakeArk(KEY, step_s=0.2)


def channel_toml(fake: FakeUpstream, folder: Path) -> str:
    return f'[[channels]]\nname = "ark-fake"\nprovider = "ark"\nbase_url = "{fake.base_url}"\napi_key = "{KEY}"\n'


def wide_png() -> str:
    """A 4:1 image: the gateway takes it, Ark refuses it (width/height must be in (0.4, 2.5))."""
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 300), (20, 90, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def check_submit(call: Recorded, mode: str) -> None:
    """The vendor body and auth, field by field (§1.5, §1.6)."""
    assert call.method == "POST" and call.path.endswith(TASKS_PATH)
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers.get("x-client-request-id", "").startswith("video_")
    body: dict[str, Any] = call.json
    model = T2V if mode == "t2v" else I2V
    family = ark.family_of(model)
    assert family is not None
    assert body["model"] == model
    assert body["resolution"] in ("480p", "720p", "1080p") and body["ratio"] in (*ark.RATIOS, "adaptive")
    assert isinstance(body["duration"], int) and body["duration"] in family.seconds
    assert body["execution_expires_after"] == ark.DEADLINE_S - ark.EXPIRY_MARGIN_S
    assert ("generate_audio" in body) == family.audio
    allowed = BODY_KEYS | {"generate_audio", "seed", "watermark", "camera_fixed", "return_last_frame"}
    assert set(body) <= allowed | {"callback_url", "safety_identifier"}, set(body) - allowed
    text, *images = body["content"]
    prompt = "a lighthouse at dusk" if mode == "t2v" else "the waves roll in"
    assert text == {"type": "text", "text": prompt}
    assert body["resolution"] == "720p" and body["ratio"] == "16:9" and body["duration"] == 5
    if family.audio:
        assert body["generate_audio"] is False  # vidgate's default: a silent video, said outright
    if mode == "t2v":
        assert images == []
    else:
        (image,) = images
        assert image["type"] == "image_url" and image["role"] == "first_frame"
        url = image["image_url"]["url"]
        # A multipart upload travels as a data URL with a lowercase format, the bytes untouched.
        assert url.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
        base64.b64decode(url.partition(",")[2], validate=True)


CASE = ProviderCase(
    provider="ark",
    make_fake=make_fake,
    channel_toml=channel_toml,
    t2v_model=T2V,
    i2v_model=I2V,
    dashscope_model=T2V,
    policy_prompt=f"a lighthouse at dusk {OUTPUT_POLICY_TRIGGER}",
    policy_code=OUTPUT_POLICY_CODE,
    bad_metadata={"img_url": wide_png()},
    bad_code="InvalidParameter",
    lists=True,
    check_submit=check_submit,
    submit_path=TASKS_PATH,
    t2v_args={"size": "1280x720", "seconds": "5"},
    i2v_args={"size": "1248x704", "seconds": "5"},
    dashscope_args={"size": "1280*720", "duration": 5},
)
