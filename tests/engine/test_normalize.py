"""Request normalisation: every refusal names its field and what the model accepts."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from vidgate.engine.normalize import RawCreate, Upload, build_request, parse_metadata
from vidgate.errors import InvalidRequest
from vidgate.providers.base import AUDIO, SEED, ModelSpec
from vidgate.providers.local import MODEL as LOCAL

SORA_LIKE = ModelSpec(
    name="sora-like",
    provider="test",
    modes=frozenset({"t2v", "i2v"}),
    seconds=(4, 8, 12),
    default_seconds=4,
    sizes=("720x1280", "1280x720"),
    tiers={"720P": "1280x720"},
    default_size="720x1280",
    price=Decimal("0.1"),
)
I2V_ONLY = ModelSpec(
    name="i2v-only",
    provider="test",
    modes=frozenset({"i2v"}),
    seconds=(5,),
    default_seconds=5,
    tiers={"480P": "832x480", "1080P": "1920x1080"},
    default_size="1920x1080",
    params={"seed": SEED},
)


def refused(raw: RawCreate, spec: ModelSpec = LOCAL) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        build_request(raw, spec)
    return info.value


def test_defaults_for_local() -> None:
    req = build_request(RawCreate(prompt="a fox"), LOCAL)
    assert (req.seconds, req.width, req.height, req.tier, req.mode, req.audio) == (4, 1280, 720, "720P", "t2v", False)


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        ("640x360", None, (640, 360, "480P")),
        ("640*360", None, (640, 360, "480P")),
        ("720p", None, (1280, 720, "720P")),
        ("1080P", None, (1920, 1080, "1080P")),
        (None, "480P", (832, 480, "480P")),
        ("832x480", "480p", (832, 480, "480P")),
        (" 64X1920 ", None, (64, 1920, "480P")),
    ],
)
def test_size_forms(size: str | None, resolution: str | None, expected: tuple[int, int, str]) -> None:
    req = build_request(RawCreate(prompt="p", size=size, resolution=resolution), LOCAL)
    assert (req.width, req.height, req.tier) == expected


@pytest.mark.parametrize("size", ["641x360", "62x62", "1922x1080", "big", "1280P", "0x0"])
def test_bad_sizes_name_the_field_and_allowed_values(size: str) -> None:
    error = refused(RawCreate(prompt="p", size=size))
    assert error.param == "size"
    assert "64" in error.message and "1920" in error.message


def test_size_must_be_in_the_models_list() -> None:
    error = refused(RawCreate(prompt="p", size="1920x1080"), SORA_LIKE)
    assert error.param == "size" and "720x1280" in error.message and "1280x720" in error.message


@pytest.mark.parametrize(
    ("seconds", "ok"), [("8", True), (8, True), ("5", False), (5, False), ("4.5", False), (True, False), ("", True)]
)
def test_seconds_string_or_int(seconds: object, ok: bool) -> None:
    raw = RawCreate(prompt="p", seconds=seconds)
    if ok:
        assert build_request(raw, SORA_LIKE).seconds in (4, 8)
    else:
        error = refused(raw, SORA_LIKE)
        assert error.param == "seconds" and "'4', '8', '12'" in error.message


def test_prompt_required() -> None:
    assert refused(RawCreate(prompt="  ")).param == "prompt"
    assert refused(RawCreate()).param == "prompt"
    assert refused(RawCreate(prompt=5)).param == "prompt"


def test_metadata_as_string_or_object() -> None:
    assert parse_metadata('{"seed": 3}') == {"seed": 3}
    assert parse_metadata({"seed": 3}) == {"seed": 3}
    assert build_request(RawCreate(prompt="p", metadata='{"seed": 7, "audio": true}'), LOCAL).seed == 7
    with pytest.raises(InvalidRequest) as info:
        parse_metadata("{nope")
    assert info.value.param == "metadata"
    with pytest.raises(InvalidRequest):
        parse_metadata("[1, 2]")


def test_metadata_key_the_model_cannot_use() -> None:
    error = refused(RawCreate(prompt="p", metadata={"negative_prompt": "x"}))
    assert error.param == "metadata.negative_prompt" and "seed" in error.message
    error = refused(RawCreate(prompt="p", metadata={"model": "sora-2"}))
    assert error.param == "metadata.model"


def test_metadata_types_are_checked() -> None:
    assert refused(RawCreate(prompt="p", metadata={"seed": "7"})).param == "metadata.seed"
    assert refused(RawCreate(prompt="p", metadata={"audio": "yes"})).param == "metadata.audio"


def test_modes_from_inputs(tmp_path: Path) -> None:
    upload = Upload(path=tmp_path / "a.png", filename="a.png", content_type="image/png", size=10)
    i2v = build_request(RawCreate(prompt="p", input_reference=upload), LOCAL)
    assert i2v.mode == "i2v" and i2v.input("first_frame") is not None
    kf2v = build_request(
        RawCreate(
            prompt="p", metadata={"first_frame_url": "https://e.com/1.png", "last_frame_url": "https://e.com/2.png"}
        ),
        LOCAL,
    )
    assert kf2v.mode == "kf2v"
    json_ref = build_request(RawCreate(prompt="p", input_reference={"image_url": "data:image/png;base64,AAAA"}), LOCAL)
    assert json_ref.input("first_frame") is not None and json_ref.input("first_frame").url.startswith("data:")  # type: ignore[union-attr]


def test_i2v_model_without_image() -> None:
    error = refused(RawCreate(prompt="p"), I2V_ONLY)
    assert error.param == "input_reference" and "i2v" in error.message


def test_t2v_model_with_image_refused() -> None:
    only_t2v = ModelSpec(
        name="t",
        provider="x",
        modes=frozenset({"t2v"}),
        seconds=(5,),
        default_seconds=5,
        sizes=("1280x720",),
        default_size="1280x720",
    )
    error = refused(RawCreate(prompt="p", input_reference="https://e.com/a.png"), only_t2v)
    assert error.param == "input_reference"


def test_last_frame_needs_first() -> None:
    assert (
        refused(RawCreate(prompt="p", metadata={"last_frame_url": "https://e.com/2.png"})).param
        == "metadata.first_frame_url"
    )


def test_duplicate_first_frame_refused(tmp_path: Path) -> None:
    upload = Upload(path=tmp_path / "a.png", filename="a.png", content_type="image/png", size=10)
    error = refused(RawCreate(prompt="p", input_reference=upload, metadata={"img_url": "https://e.com/1.png"}))
    assert error.param == "metadata.img_url"


def test_audio_needs_an_audio_model() -> None:
    silent = replace(I2V_ONLY, params={"audio": AUDIO}, modes=frozenset({"t2v"}))
    error = refused(RawCreate(prompt="p", metadata={"audio": True}), silent)
    assert error.param == "metadata.audio"


def test_resolution_tiers_checked() -> None:
    error = refused(RawCreate(prompt="p", resolution="720P", input_reference="https://e.com/1.png"), I2V_ONLY)
    assert error.param == "resolution" and "480P" in error.message and "1080P" in error.message
    req = build_request(RawCreate(prompt="p", resolution="480p", input_reference="https://e.com/1.png"), I2V_ONLY)
    assert (req.width, req.height) == (832, 480)


def test_request_json_roundtrip(tmp_path: Path) -> None:
    upload = Upload(path=tmp_path / "a.png", filename="a.png", content_type="image/png", size=10)
    req = build_request(RawCreate(prompt="p", input_reference=upload, metadata={"seed": 3, "audio": True}), LOCAL)
    from vidgate.providers.base import VideoRequest

    assert VideoRequest.from_json(req.to_json()) == req
