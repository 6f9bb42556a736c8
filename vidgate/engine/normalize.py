"""Turn what a client sent into a VideoRequest, validated against its model. Pure: no I/O.

Every refusal is an InvalidRequest naming the field (`param`) and listing what the model accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from vidgate import netguard
from vidgate.errors import InvalidRequest
from vidgate.providers.base import MEDIA_KEYS, TIERS, MediaInput, Mode, ModelSpec, VideoRequest, tier_of

MAX_PROMPT = 32_000
_MEDIA_KEYS = MEDIA_KEYS
# WxH, W*H, and the multiplication sign; ASCII digits only (int() also reads "١٢٨", and `\d` matches it).
_SIZE = re.compile(r"^\s*([0-9]{2,5})\s*[xX*\u00d7]\s*([0-9]{2,5})\s*$")
_TIER = re.compile(r"^\s*(480|720|1080)\s*[pP]\s*$")


@dataclass(frozen=True)
class Upload:
    """A file the client sent in the request body, already written to a temporary path."""

    path: Path
    filename: str
    content_type: str | None
    size: int


@dataclass
class RawCreate:
    """The create fields as they arrived, from JSON or multipart, before any validation."""

    prompt: Any = None
    model: Any = None
    seconds: Any = None
    size: Any = None
    resolution: Any = None
    input_reference: Any = None  # Upload, str (URL / data URI), or {"image_url": ...}
    metadata: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_metadata(value: Any) -> dict[str, Any]:
    """metadata as a JSON object or a JSON string of one."""
    if value is None or value == "":
        return {}
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(
                f"metadata must be a JSON object (or a JSON string of one): {exc}", param="metadata"
            ) from exc
    if not isinstance(value, Mapping):
        raise InvalidRequest("metadata must be a JSON object.", param="metadata", code="invalid_type")
    return dict(value)


def parse_prompt(value: Any, *, required: bool = True) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidRequest(
                "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
            )
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("prompt must be a string.", param="prompt", code="invalid_type")
    if len(value) > MAX_PROMPT:
        raise InvalidRequest(f"prompt is longer than {MAX_PROMPT} characters.", param="prompt")
    return value


def parse_seconds(value: Any, spec: ModelSpec) -> int:
    allowed = ", ".join(f"'{s}'" for s in spec.seconds)
    if value is None or value == "":
        return spec.default_seconds
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise InvalidRequest(
            f"seconds must be a string or integer; {spec.name} accepts {allowed}.", param="seconds", code="invalid_type"
        )
    text = str(value).strip()
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else text
    if not re.fullmatch(r"[0-9]{1,4}", text) or int(text) not in spec.seconds:
        raise InvalidRequest(
            f"Invalid value for 'seconds': '{value}'. Supported values for {spec.name} are: {allowed}.",
            param="seconds",
        )
    return int(text)


def parse_size(size: Any, resolution: Any, spec: ModelSpec) -> tuple[int, int, str]:
    """(width, height, tier) from `size` (WxH, W*H or a tier) and/or `resolution` (a tier)."""
    allowed = ", ".join(spec.allowed_sizes())
    res_tier: str | None = None
    if resolution not in (None, ""):
        match = _TIER.match(str(resolution))
        if not isinstance(resolution, str) or not match or f"{match.group(1)}P" not in spec.tiers:
            tiers = ", ".join(t for t in TIERS if t in spec.tiers) or "none"
            raise InvalidRequest(
                f"Invalid value for 'resolution': '{resolution}'. Supported tiers for {spec.name} are: {tiers}.",
                param="resolution",
            )
        res_tier = f"{match.group(1)}P"
    if size in (None, ""):
        if res_tier is not None:
            return (*_dims(spec.tiers[res_tier]), res_tier)
        width, height = _dims(spec.default_size)
        return width, height, tier_of(width, height)
    if not isinstance(size, str):
        raise InvalidRequest(
            f"size must be a string; {spec.name} accepts: {allowed}.", param="size", code="invalid_type"
        )
    tier_match = _TIER.match(size)
    if tier_match:
        tier = f"{tier_match.group(1)}P"
        if tier not in spec.tiers:
            raise InvalidRequest(
                f"Invalid value for 'size': '{size}'. Supported values for {spec.name} are: {allowed}.", param="size"
            )
        if res_tier is not None and res_tier != tier:
            raise InvalidRequest(f"size '{size}' and resolution '{resolution}' disagree.", param="resolution")
        return (*_dims(spec.tiers[tier]), tier)
    match = _SIZE.match(size)
    if not match:
        raise InvalidRequest(
            f"Invalid value for 'size': '{size}'. Use WxH (e.g. 1280x720), W*H or a tier (480P/720P/1080P); "
            f"{spec.name} accepts: {allowed}.",
            param="size",
        )
    width, height = int(match.group(1)), int(match.group(2))
    if not _size_allowed(width, height, spec):
        raise InvalidRequest(
            f"Invalid value for 'size': '{size}'. Supported values for {spec.name} are: {allowed}.", param="size"
        )
    tier = tier_of(width, height)
    if res_tier is not None and res_tier != tier:
        raise InvalidRequest(f"size '{size}' is {tier}, but resolution says '{resolution}'.", param="resolution")
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


def parse_reference(value: Any) -> MediaInput | None:
    """input_reference: an uploaded file, a URL or data URI string, or {"image_url": ...}."""
    if value is None or value == "":
        return None
    if isinstance(value, Upload):
        return MediaInput(role="first_frame", field="input_reference", path=value.path, mime=value.content_type)
    if isinstance(value, Mapping):
        if "file_id" in value and "image_url" not in value:
            raise InvalidRequest(
                "input_reference.file_id is not supported; send the image as a file, a URL or a data URI.",
                param="input_reference",
            )
        value = value.get("image_url")
        if not isinstance(value, str) or not value:
            raise InvalidRequest("input_reference must carry image_url.", param="input_reference")
    if isinstance(value, str):
        return MediaInput(role="first_frame", field="input_reference", url=_media_url(value, "input_reference"))
    raise InvalidRequest(
        'input_reference must be an image file, a URL, a data: URI, or {"image_url": ...}.',
        param="input_reference",
        code="invalid_type",
    )


def _media_url(value: str, param: str) -> str:
    text = value.strip()
    if not text.startswith(("http://", "https://", "data:", "oss://")):
        raise InvalidRequest(f"{param} must be an http(s) URL, a data: URI or an oss:// upload key.", param=param)
    if text.startswith(("http://", "https://")):
        # Checked whoever fetches it: vidgate (for providers that need bytes) or the upstream, which gets
        # the text as it was given.
        try:
            netguard.parse_url(text)
        except ValueError as exc:
            raise InvalidRequest(f"{param} is not a valid URL: {exc}.", param=param) from exc
    return text


def build_request(raw: RawCreate, spec: ModelSpec, *, prompt_required: bool = True) -> VideoRequest:
    """Validate everything the client sent against the model; nothing is stored or sent yet."""
    prompt = parse_prompt(raw.prompt, required=prompt_required)
    metadata = parse_metadata(raw.metadata)
    taken = [*spec.media_keys(), *spec.params, *(["resolution"] if spec.tiers else [])]
    unusable = sorted(set(metadata) - set(taken))
    if unusable:
        accepted = ", ".join(sorted(taken)) or "none"
        raise InvalidRequest(
            f"metadata.{unusable[0]} is not supported by {spec.name}; it accepts: {accepted}.",
            param=f"metadata.{unusable[0]}",
        )
    seconds = parse_seconds(raw.seconds, spec)
    resolution = raw.resolution if raw.resolution not in (None, "") else metadata.get("resolution")
    width, height, tier = parse_size(raw.size, resolution, spec)
    inputs = _inputs(parse_reference(raw.input_reference), metadata)
    mode = _mode(inputs, spec)
    extras = _extras(metadata, spec)
    audio = bool(extras.pop("audio", False)) or any(item.role == "audio" for item in inputs)
    if audio and not spec.audio:
        param = "metadata.audio_url" if "audio_url" in metadata else "metadata.audio"
        raise InvalidRequest(f"{spec.name} does not produce audio.", param=param)
    seed = extras.pop("seed", None)
    extras.pop("resolution", None)
    return VideoRequest(
        model=spec.name,
        prompt=prompt,
        seconds=seconds,
        width=width,
        height=height,
        tier=tier,
        mode=mode,
        inputs=tuple(inputs),
        audio=audio,
        seed=seed,
        extras=extras,
    )


def _inputs(reference: MediaInput | None, metadata: Mapping[str, Any]) -> list[MediaInput]:
    inputs: list[MediaInput] = [reference] if reference else []
    for key, role in _MEDIA_KEYS.items():
        value = metadata.get(key)
        if value in (None, ""):
            continue
        param = f"metadata.{key}"
        if not isinstance(value, str):
            raise InvalidRequest(f"{param} must be a URL string.", param=param, code="invalid_type")
        if any(item.role == role for item in inputs):
            taken = next(item.field for item in inputs if item.role == role)
            raise InvalidRequest(f"{param} gives the {role.replace('_', ' ')} that {taken} already gives.", param=param)
        inputs.append(MediaInput(role=role, field=param, url=_media_url(value, param)))
    return inputs


def _mode(inputs: list[MediaInput], spec: ModelSpec) -> Mode:
    roles = {item.role for item in inputs}
    if "last_frame" in roles and "first_frame" not in roles:
        raise InvalidRequest(
            "A last frame needs a first frame (metadata.first_frame_url).", param="metadata.first_frame_url"
        )
    mode: Mode = "kf2v" if "last_frame" in roles else "i2v" if "first_frame" in roles else "t2v"
    if mode in spec.modes:
        return mode
    modes = ", ".join(sorted(spec.modes))
    if mode == "t2v":
        raise InvalidRequest(
            f"{spec.name} needs an input image (modes: {modes}); send input_reference or metadata.img_url.",
            param="input_reference",
        )
    param = "metadata.last_frame_url" if mode == "kf2v" else next(i.field for i in inputs if i.role == "first_frame")
    raise InvalidRequest(
        f"{spec.name} does not take {'a last frame' if mode == 'kf2v' else 'an input image'} (modes: {modes}).",
        param=param,
    )


def _extras(metadata: Mapping[str, Any], spec: ModelSpec) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _MEDIA_KEYS or key == "resolution":
            continue
        extras[key] = spec.params[key].check(value, f"metadata.{key}", spec.name)
    return extras
