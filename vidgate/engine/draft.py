"""The neutral draft both surfaces build, and the one validator that turns it into a VideoRequest. Pure: no I/O.

A surface records each value with the field the client gave it under, in the client's own terms (`seconds` or
`parameters.duration`, `metadata.seed` or `parameters.seed`, `input_reference` or `input.img_url`), so every
refusal names the field the client wrote, with no rewriting of messages afterwards. Neither the surfaces nor
this module name a provider's parameters: a model's typed params (ModelSpec.params) say what it takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgate import netguard
from vidgate.errors import InvalidRequest
from vidgate.providers.base import TIERS, MediaInput, Mode, ModelSpec, Role, VideoRequest, tier_of

MAX_PROMPT = 32_000
# WxH, W*H, and the multiplication sign; ASCII digits only (int() also reads "١٢٨", and `\d` matches it).
_SIZE = re.compile(r"^\s*([0-9]{2,5})\s*[xX*\u00d7]\s*([0-9]{2,5})\s*$")
_TIER = re.compile(r"^\s*(480|720|1080)\s*[pP]\s*$")


@dataclass(frozen=True)
class StoredFile:
    """Bytes vidgate holds for a media input (a multipart upload, an oss:// upload): passed by path, never
    re-encoded. The file is the request's own (a temporary copy): it is moved into the task's folder."""

    path: Path
    mime: str | None = None


@dataclass(frozen=True)
class Value:
    """A value as the client sent it, and the client's own name for where it was."""

    value: Any
    field: str


@dataclass
class Draft:
    """A create request in neutral terms, before any validation."""

    model: str
    prompt: Value | None = None
    seconds: Value | None = None
    size: Value | None = None
    resolution: Value | None = None
    # Images and audio by role; a value is a URL / data: URI string as given, or a StoredFile.
    media: list[tuple[Role, Value]] = field(default_factory=list)
    params: dict[str, Value] = field(default_factory=dict)
    # A provider-native body to forward verbatim (its media fields left out: they are `media`).
    native: Mapping[str, Any] | None = None
    prompt_required: bool = True
    # The client's names for a first image and for a first frame beside a last one, for errors about one missing.
    image_field: str = "input_reference"
    first_frame_field: str = "metadata.first_frame_url"


def validate(draft: Draft, spec: ModelSpec) -> VideoRequest:
    """Check everything the client sent against the model; nothing is stored or sent yet."""
    prompt = check_prompt(draft.prompt, required=draft.prompt_required)
    seconds = check_seconds(draft.seconds, spec)
    width, height, tier = check_size(draft.size, draft.resolution, spec)
    inputs = check_media(draft.media)
    mode = check_mode(inputs, spec, draft.image_field, draft.first_frame_field)
    extras = check_params(draft.params, spec)
    asked_audio = bool(extras.pop("audio", False))
    audio_input = next((item for item in inputs if item.role == "audio"), None)
    if (asked_audio or audio_input) and not spec.audio and "a2v" not in spec.modes:
        where = audio_input.field if audio_input else draft.params["audio"].field
        raise InvalidRequest(f"{spec.name} does not produce audio.", param=where)
    seed = extras.pop("seed", None)
    fields = {name: value.field for name, value in draft.params.items()}
    for name, value in (("prompt", draft.prompt), ("seconds", draft.seconds), ("size", draft.size)):
        if value is not None:
            fields[name] = value.field
    if draft.resolution is not None:
        fields["resolution"] = draft.resolution.field
        fields.setdefault("size", draft.resolution.field)
    return VideoRequest(
        model=spec.name,
        prompt=prompt,
        seconds=seconds,
        width=width,
        height=height,
        tier=tier,
        mode=mode,
        inputs=tuple(inputs),
        audio=asked_audio or audio_input is not None,
        seed=seed,
        extras=extras,
        native=draft.native,
        fields=fields,
    )


def check_prompt(value: Value | None, *, required: bool = True) -> str:
    text = value.value if value is not None else None
    name = value.field if value is not None else "prompt"
    if text is None or (isinstance(text, str) and not text.strip()):
        if required:
            raise InvalidRequest(
                f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
            )
        return ""
    if not isinstance(text, str):
        raise InvalidRequest(f"{name} must be a string.", param=name, code="invalid_type")
    if len(text) > MAX_PROMPT:
        raise InvalidRequest(f"{name} is longer than {MAX_PROMPT} characters.", param=name)
    return text


def check_seconds(given: Value | None, spec: ModelSpec) -> int:
    allowed = ", ".join(f"'{s}'" for s in spec.seconds)
    if given is None or given.value is None or given.value == "":
        return spec.default_seconds
    value, name = given.value, given.field
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise InvalidRequest(
            f"{name} must be a string or integer; {spec.name} accepts {allowed}.", param=name, code="invalid_type"
        )
    text = str(value).strip()
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else text
    if not re.fullmatch(r"[0-9]{1,4}", text) or int(text) not in spec.seconds:
        raise InvalidRequest(
            f"Invalid value for '{name}': '{value}'. Supported values for {spec.name} are: {allowed}.", param=name
        )
    return int(text)


def check_size(size: Value | None, resolution: Value | None, spec: ModelSpec) -> tuple[int, int, str]:
    """(width, height, tier) from `size` (WxH, W*H or a tier) and/or `resolution` (a tier)."""
    allowed = ", ".join(spec.allowed_sizes())
    res_tier: str | None = None
    if resolution is not None and resolution.value not in (None, ""):
        value, name = resolution.value, resolution.field
        match = _TIER.match(value) if isinstance(value, str) else None
        if not match or f"{match.group(1)}P" not in spec.tiers:
            tiers = ", ".join(t for t in TIERS if t in spec.tiers) or "none"
            raise InvalidRequest(
                f"Invalid value for '{name}': '{value}'. Supported tiers for {spec.name} are: {tiers}.", param=name
            )
        res_tier = f"{match.group(1)}P"
    if size is None or size.value in (None, ""):
        if res_tier is not None:
            return (*_dims(spec.tiers[res_tier]), res_tier)
        width, height = _dims(spec.default_size)
        return width, height, tier_of(width, height)
    value, name = size.value, size.field
    if not isinstance(value, str):
        raise InvalidRequest(
            f"{name} must be a string; {spec.name} accepts: {allowed}.", param=name, code="invalid_type"
        )
    tier_match = _TIER.match(value)
    if tier_match:
        tier = f"{tier_match.group(1)}P"
        if tier not in spec.tiers:
            raise InvalidRequest(
                f"Invalid value for '{name}': '{value}'. Supported values for {spec.name} are: {allowed}.", param=name
            )
        if res_tier is not None and resolution is not None and res_tier != tier:
            raise InvalidRequest(
                f"{name} '{value}' and {resolution.field} '{resolution.value}' disagree.", param=resolution.field
            )
        return (*_dims(spec.tiers[tier]), tier)
    match = _SIZE.match(value)
    if not match:
        raise InvalidRequest(
            f"Invalid value for '{name}': '{value}'. Use WxH (e.g. 1280x720), W*H or a tier (480P/720P/1080P); "
            f"{spec.name} accepts: {allowed}.",
            param=name,
        )
    width, height = int(match.group(1)), int(match.group(2))
    if not _size_allowed(width, height, spec):
        raise InvalidRequest(
            f"Invalid value for '{name}': '{value}'. Supported values for {spec.name} are: {allowed}.", param=name
        )
    tier = tier_of(width, height)
    if res_tier is not None and resolution is not None and res_tier != tier:
        raise InvalidRequest(
            f"{name} '{value}' is {tier}, but {resolution.field} says '{resolution.value}'.", param=resolution.field
        )
    return width, height, tier


def _size_allowed(width: int, height: int, spec: ModelSpec) -> bool:
    text = f"{width}x{height}"
    if text in spec.sizes or text in spec.tiers.values():
        return True
    if spec.any_size:
        low, high = spec.any_size
        return low <= width <= high and low <= height <= high and width % 2 == 0 and height % 2 == 0
    return False


def _dims(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def check_media(media: Sequence[tuple[Role, Value]]) -> list[MediaInput]:
    """Each media value as a MediaInput: a stored file by path, or a URL / data: URI / oss:// key as given."""
    inputs: list[MediaInput] = []
    for role, given in media:
        if given.value is None or given.value == "":
            continue
        taken = next((item for item in inputs if item.role == role), None)
        if taken is not None:
            raise InvalidRequest(
                f"{given.field} gives the {role.replace('_', ' ')} that {taken.field} already gives.", param=given.field
            )
        if isinstance(given.value, StoredFile):
            inputs.append(MediaInput(role=role, field=given.field, path=given.value.path, mime=given.value.mime))
        elif isinstance(given.value, str):
            inputs.append(MediaInput(role=role, field=given.field, url=media_url(given.value, given.field)))
        else:
            raise InvalidRequest(f"{given.field} must be a URL string.", param=given.field, code="invalid_type")
    return inputs


def media_url(value: str, name: str) -> str:
    """A media URL as given, once it is plainly one of the kinds vidgate reads."""
    text = value.strip()
    if not text.startswith(("http://", "https://", "data:", "oss://")):
        raise InvalidRequest(f"{name} must be an http(s) URL, a data: URI or an oss:// upload key.", param=name)
    if text.startswith(("http://", "https://")):
        # Checked whoever fetches it: vidgate (for providers that need bytes) or the upstream, which gets the
        # text as it was given.
        try:
            netguard.parse_url(text)
        except ValueError as exc:
            raise InvalidRequest(f"{name} is not a valid URL: {exc}.", param=name) from exc
    return text


def check_mode(inputs: Sequence[MediaInput], spec: ModelSpec, image_field: str, first_frame_field: str) -> Mode:
    roles = {item.role for item in inputs}
    if "last_frame" in roles and "first_frame" not in roles:
        last = next(item.field for item in inputs if item.role == "last_frame")
        raise InvalidRequest(f"{last} needs a first frame ({first_frame_field}).", param=first_frame_field)
    mode: Mode = "kf2v" if "last_frame" in roles else "i2v" if "first_frame" in roles else "t2v"
    if "audio" in roles and mode == "t2v" and "a2v" in spec.modes and "t2v" not in spec.modes:
        mode = "a2v"
    if mode in spec.modes:
        return mode
    modes = ", ".join(sorted(spec.modes))
    if mode == "t2v":
        raise InvalidRequest(
            f"{spec.name} needs an input image (modes: {modes}); send {image_field}.", param=image_field
        )
    if mode == "kf2v":
        field_name = next(item.field for item in inputs if item.role == "last_frame")
        raise InvalidRequest(f"{spec.name} does not take a last frame (modes: {modes}).", param=field_name)
    field_name = next(item.field for item in inputs if item.role == "first_frame")
    raise InvalidRequest(f"{spec.name} does not take an input image (modes: {modes}).", param=field_name)


def check_params(params: Mapping[str, Value], spec: ModelSpec) -> dict[str, Any]:
    """Each param the model declares, checked by its Param; any other is refused, listing what it takes."""
    checked: dict[str, Any] = {}
    for name, given in params.items():
        param = spec.params.get(name)
        if param is None:
            taken = ", ".join(sorted(spec.params)) or "none"
            raise InvalidRequest(
                f"{given.field} is not supported by {spec.name}; its parameters are: {taken}.", param=given.field
            )
        checked[name] = param.check(given.value, given.field, spec.name)
    return checked
