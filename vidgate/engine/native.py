"""DashScope-native bodies ({model, input, parameters}) → VideoRequest. Pure: no I/O.

A body for a model whose provider speaks DashScope is kept whole as `native` and forwarded verbatim
(after validation against the model); a body for any other model is translated into the common form.
Errors name the native field (`parameters.duration`, `input.img_url`, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vidgate.engine.normalize import RawCreate, build_request
from vidgate.errors import InvalidRequest
from vidgate.providers.base import ModelSpec, VideoRequest

# Input fields that carry media, as the SDK names them, and the metadata key each becomes.
MEDIA_FIELDS = {
    "img_url": "img_url",
    "first_frame_url": "first_frame_url",
    "last_frame_url": "last_frame_url",
    "audio_url": "audio_url",
}
_INPUT_EXTRAS = ("negative_prompt", "template")
_PARAM_EXTRAS = ("seed", "audio", "watermark", "prompt_extend")
# What the dashscope SDK always adds to `input`; meaningless to vidgate.
SDK_ARTEFACTS = frozenset({"function", "extend_prompt"})
# Quality hints that DashScope models take and others simply do not need; not worth refusing a request for.
_HINTS = frozenset({"watermark", "prompt_extend"})

_PARAMS = {
    "seconds": "parameters.duration",
    "size": "parameters.size",
    "resolution": "parameters.resolution",
    "prompt": "input.prompt",
    "input_reference": "input.img_url",
}


def native_param(param: str | None) -> str | None:
    """The native field an OpenAI-form param stands for."""
    if param is None:
        return None
    if param.startswith("metadata."):
        key = param.removeprefix("metadata.")
        return f"input.{key}" if key in MEDIA_FIELDS or key in _INPUT_EXTRAS else f"parameters.{key}"
    return _PARAMS.get(param, param)


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


def to_request(body: Mapping[str, Any], spec: ModelSpec, *, passthrough: bool) -> VideoRequest:
    """Validate a native body against its model; keep it verbatim when it is forwarded to DashScope."""
    inputs, params = sections(body)
    metadata: dict[str, Any] = {}
    for field, key in MEDIA_FIELDS.items():
        if inputs.get(field) not in (None, ""):
            metadata[key] = inputs[field]
    for key in _INPUT_EXTRAS:
        if key in inputs:
            metadata[key] = inputs[key]
    for key in _HINTS:
        # Models that take no such hint ignore it, but a hint that is not a boolean is a mistake to point out.
        if key in params and not isinstance(params[key], bool):
            raise InvalidRequest(f"parameters.{key} must be true or false.", param=f"parameters.{key}")
    for key in _PARAM_EXTRAS:
        if key in params and (passthrough or key not in _HINTS or key in spec.params):
            metadata[key] = params[key]
    if not passthrough:
        known = {"prompt", *MEDIA_FIELDS, *_INPUT_EXTRAS, *SDK_ARTEFACTS}
        extra = sorted(set(inputs) - known)
        if extra:
            raise InvalidRequest(f"input.{extra[0]} is not supported by {spec.name}.", param=f"input.{extra[0]}")
        extra = sorted(set(params) - {"duration", "size", "resolution", *_PARAM_EXTRAS})
        if extra:
            raise InvalidRequest(
                f"parameters.{extra[0]} is not supported by {spec.name}.", param=f"parameters.{extra[0]}"
            )
    elif "t2v" in spec.modes and params.get("resolution") not in (None, ""):
        raise InvalidRequest(
            f"{spec.name} takes parameters.size (W*H), not parameters.resolution.", param="parameters.resolution"
        )
    elif "t2v" not in spec.modes and params.get("size") not in (None, ""):
        raise InvalidRequest(
            f"{spec.name} takes parameters.resolution (a tier; the aspect follows the image), not parameters.size.",
            param="parameters.size",
        )
    if passthrough:
        # Metadata checks apply to the translated form; forwarded keys are the upstream's to judge.
        metadata = {k: v for k, v in metadata.items() if k in spec.params or k in MEDIA_FIELDS}
    raw = RawCreate(
        prompt=inputs.get("prompt") if inputs.get("prompt") is not None else ("" if "t2v" not in spec.modes else None),
        seconds=params.get("duration"),
        size=params.get("size"),
        resolution=params.get("resolution"),
        metadata=metadata,
    )
    try:
        req = build_request(
            raw, spec, prompt_required="t2v" in spec.modes and not metadata.keys() & {"img_url", "first_frame_url"}
        )
    except InvalidRequest as exc:
        param = native_param(exc.param)
        message = exc.message
        for ours, theirs in (
            ("'seconds'", "'parameters.duration'"),
            ("'size'", "'parameters.size'"),
            ("'resolution'", "'parameters.resolution'"),
        ):
            message = message.replace(ours, theirs)
        raise InvalidRequest(message, param=param, code=exc.code) from exc
    # Errors about an input (a fetch that fails, an unreadable image) name the field as the client sent it.
    req = replace(req, inputs=tuple(replace(item, field=native_param(item.field) or item.field) for item in req.inputs))
    if passthrough:
        return replace(req, native=copy.deepcopy(dict(body)))
    return req
