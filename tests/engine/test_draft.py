"""The one validator: every refusal names the field as the client's surface called it; params are typed."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from vidgate.engine import native
from vidgate.engine.draft import Draft, StoredFile, Value, validate
from vidgate.errors import InvalidRequest
from vidgate.providers.base import AUDIO, SEED, ModelSpec, Param, VideoRequest

SPEC = ModelSpec(
    name="m",
    provider="test",
    modes=frozenset({"t2v", "i2v"}),
    seconds=(5, 10),
    default_seconds=5,
    sizes=("1280x720",),
    tiers={"720P": "1280x720"},
    default_size="1280x720",
    audio=True,
    params={
        "seed": SEED,
        "audio": AUDIO,
        "camera_fixed": Param("bool"),
        "style": Param("string", choices=("anime", "real")),
        "strength": Param("number", low=0, high=1),
    },
    price=Decimal("0.1"),
)


def refused(draft: Draft, spec: ModelSpec = SPEC) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        validate(draft, spec)
    return info.value


@pytest.mark.parametrize(
    ("seconds_field", "param_field"), [("seconds", "metadata.seed"), ("parameters.duration", "parameters.seed")]
)
def test_errors_name_the_clients_own_fields(seconds_field: str, param_field: str) -> None:
    error = refused(Draft(model="m", prompt=Value("p", "prompt"), seconds=Value("7", seconds_field)))
    assert error.param == seconds_field and f"'{seconds_field}'" in error.message and "'5', '10'" in error.message
    error = refused(Draft(model="m", prompt=Value("p", "prompt"), params={"seed": Value(-1, param_field)}))
    assert error.param == param_field and "from 0 to 2147483647" in error.message


def test_typed_params_land_in_extras_and_seed_audio_on_the_request() -> None:
    req = validate(
        Draft(
            model="m",
            prompt=Value("p", "input.prompt"),
            params={
                "seed": Value(9, "parameters.seed"),
                "audio": Value(True, "parameters.audio"),
                "camera_fixed": Value(True, "parameters.camera_fixed"),
                "style": Value("anime", "parameters.style"),
            },
        ),
        SPEC,
    )
    assert (req.seed, req.audio, dict(req.extras)) == (9, True, {"camera_fixed": True, "style": "anime"})
    assert req.field_of("camera_fixed") == "parameters.camera_fixed" and req.field_of("prompt") == "input.prompt"
    assert req.field_of("seconds") == "seconds"  # not given: the OpenAI name
    assert VideoRequest.from_json(req.to_json()) == req


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("camera_fixed", "yes", "true or false"),
        ("style", "oil", "one of: 'anime', 'real'"),
        ("strength", 2, "a number from 0 to 1"),
        ("strength", True, "a number from 0 to 1"),
        ("seed", 1.5, "an integer from 0"),
    ],
)
def test_a_bad_param_value_lists_what_it_takes(name: str, value: object, words: str) -> None:
    error = refused(Draft(model="m", prompt=Value("p", "prompt"), params={name: Value(value, f"metadata.{name}")}))
    assert error.param == f"metadata.{name}" and words in error.message and f"'metadata.{name}'" in error.message


def test_an_undeclared_param_lists_the_models_params() -> None:
    error = refused(Draft(model="m", prompt=Value("p", "prompt"), params={"cfg": Value(1, "parameters.cfg")}))
    assert error.param == "parameters.cfg" and "audio, camera_fixed, seed, strength, style" in error.message


def test_media_stored_files_travel_by_path(tmp_path: Path) -> None:
    stored = StoredFile(path=tmp_path / "a.png", mime="image/png")
    req = validate(
        Draft(model="m", prompt=Value("p", "prompt"), media=[("first_frame", Value(stored, "input.img_url"))]), SPEC
    )
    (item,) = req.inputs
    assert (item.path, item.url, item.field, req.mode) == (stored.path, None, "input.img_url", "i2v")
    error = refused(
        Draft(
            model="m",
            prompt=Value("p", "prompt"),
            media=[
                ("first_frame", Value(stored, "input_reference")),
                ("last_frame", Value("https://e.com/l.png", "x")),
            ],
        )
    )
    assert error.param == "x" and "does not take a last frame" in error.message


def test_dashscope_body_for_a_translated_model() -> None:
    body = {
        "model": "m",
        "input": {"prompt": "p", "img_url": "https://e.com/a.png", "function": "video-synthesis"},
        "parameters": {"duration": 10, "size": "1280*720", "camera_fixed": True, "watermark": False},
    }
    req = validate(native.to_draft(body, SPEC, passthrough=False), SPEC)
    assert (req.seconds, req.size, req.mode, dict(req.extras), req.native) == (
        10,
        "1280x720",
        "i2v",
        {"camera_fixed": True},  # the watermark hint is dropped: this model takes none
        None,
    )
    error = refused(native.to_draft({**body, "parameters": {"duration": "x"}}, SPEC, passthrough=False))
    assert error.param == "parameters.duration" and "'parameters.duration'" in error.message


def test_dashscope_passthrough_keeps_the_body_but_its_media() -> None:
    body = {"model": "m", "input": {"prompt": "p", "img_url": "https://e.com/a.png"}, "parameters": {"custom": 1}}
    req = validate(native.to_draft(body, SPEC, passthrough=True), SPEC)
    assert req.native == {"model": "m", "input": {"prompt": "p"}, "parameters": {"custom": 1}}
    assert [(item.field, item.url) for item in req.inputs] == [("input.img_url", "https://e.com/a.png")]


def test_param_describe_for_the_model_list() -> None:
    assert SEED.describe() == {
        "type": "int",
        "allowed": "an integer from 0 to 2147483647",
        "min": 0,
        "max": 2147483647,
        "description": SEED.description,
    }
    assert Param("string", choices=("a", "b")).describe()["choices"] == ["a", "b"]
