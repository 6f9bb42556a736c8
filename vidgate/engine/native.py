"""DashScope-native bodies ({model, input, parameters}) as a neutral Draft (engine/draft.py). Pure: no I/O.

Every value is recorded under DashScope's own field name (`parameters.duration`, `parameters.size`,
`input.img_url`, `parameters.<param>`, `input.negative_prompt`), so the one validator's errors name them as the
client wrote them. A body for a model whose provider speaks DashScope is also kept as `native` (its media
fields aside: they travel as the request's inputs, stored files by path) and forwarded verbatim; a body for
any other model is translated: only what the model declares is taken, and anything else is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from vidgate.engine.draft import Draft, StoredFile, Value
from vidgate.errors import InvalidRequest
from vidgate.providers.base import ModelSpec, Role

# Input fields that carry media, as DashScope names them, and the role each plays.
MEDIA_FIELDS: dict[str, Role] = {
    "img_url": "first_frame",
    "first_frame_url": "first_frame",
    "last_frame_url": "last_frame",
    "audio_url": "audio",
}
# Params DashScope carries in `input` rather than `parameters`.
INPUT_PARAMS = ("negative_prompt", "template")
# What the dashscope SDK always adds to `input`; meaningless to vidgate.
SDK_ARTEFACTS = frozenset({"function", "extend_prompt"})
# Quality hints that DashScope models take and others simply do not need; not worth refusing a request for.
_HINTS = frozenset({"watermark", "prompt_extend"})
# The `parameters` fields that are no params: the draft's seconds, size and resolution.
_SHAPE = {"duration", "size", "resolution"}


def sections(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`input` and `parameters` as dicts (either may be absent; both must be objects)."""
    inputs = body.get("input")
    params = body.get("parameters")
    if inputs is None:
        raise InvalidRequest(
            'input is required: {"input": {"prompt": ...}}.', param="input", code="BadRequest.EmptyInput"
        )
    if not isinstance(inputs, Mapping):
        raise InvalidRequest("input must be an object.", param="input")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidRequest("parameters must be an object.", param="parameters")
    return dict(inputs), dict(params or {})


def to_draft(
    body: Mapping[str, Any],
    spec: ModelSpec,
    *,
    passthrough: bool,
    files: Mapping[str, StoredFile] | None = None,
) -> Draft:
    """The body as a draft; `files` are stored files standing for media fields (resolved oss:// uploads)."""
    inputs, params = sections(body)
    stored = files or {}
    media: list[tuple[Role, Value]] = []
    for key, role in MEDIA_FIELDS.items():
        if inputs.get(key) not in (None, ""):
            media.append((role, Value(stored.get(key, inputs[key]), f"input.{key}")))
    for key in _HINTS:
        # Models that take no such hint ignore it, but a hint that is not a boolean is a mistake to point out.
        if key in params and not isinstance(params[key], bool):
            raise InvalidRequest(f"parameters.{key} must be true or false.", param=f"parameters.{key}")
    given = {key: Value(inputs[key], f"input.{key}") for key in INPUT_PARAMS if key in inputs}
    given.update({key: Value(value, f"parameters.{key}") for key, value in params.items() if key not in _SHAPE})
    if passthrough:
        # Forwarded verbatim: what the model declares is checked here, the rest is the upstream's to judge.
        taken = {key: value for key, value in given.items() if key in spec.params}
        _check_shape(params, spec)
    else:
        extra = sorted(set(inputs) - {"prompt", *MEDIA_FIELDS, *INPUT_PARAMS, *SDK_ARTEFACTS})
        if extra:
            raise InvalidRequest(f"input.{extra[0]} is not supported by {spec.name}.", param=f"input.{extra[0]}")
        taken = {key: value for key, value in given.items() if key in spec.params or key not in _HINTS}
    has_image = any(role == "first_frame" for role, _ in media)
    native = None
    if passthrough:
        native = copy.deepcopy(dict(body))
        native["input"] = {key: value for key, value in inputs.items() if key not in MEDIA_FIELDS}
    return Draft(
        model=spec.name,
        prompt=Value(inputs.get("prompt"), "input.prompt"),
        seconds=_given(params.get("duration"), "parameters.duration"),
        size=_given(params.get("size"), "parameters.size"),
        resolution=_given(params.get("resolution"), "parameters.resolution"),
        media=media,
        params=taken,
        native=native,
        prompt_required="t2v" in spec.modes and not has_image,
        image_field="input.first_frame_url" if "kf2v" in spec.modes and "i2v" not in spec.modes else "input.img_url",
        first_frame_field="input.first_frame_url",
    )


def _given(value: Any, name: str) -> Value | None:
    return None if value is None or value == "" else Value(value, name)


def _check_shape(params: Mapping[str, Any], spec: ModelSpec) -> None:
    """DashScope's own rule: t2v models take parameters.size (W*H), i2v/kf2v models parameters.resolution."""
    if "t2v" in spec.modes and params.get("resolution") not in (None, ""):
        raise InvalidRequest(
            f"{spec.name} takes parameters.size (W*H), not parameters.resolution.", param="parameters.resolution"
        )
    if "t2v" not in spec.modes and params.get("size") not in (None, ""):
        raise InvalidRequest(
            f"{spec.name} takes parameters.resolution (a tier; the aspect follows the image), not parameters.size.",
            param="parameters.size",
        )
