"""The OpenAI surface's create fields (JSON or multipart) as a neutral Draft (engine/draft.py). Pure: no I/O.

Field names are the OpenAI surface's own: `prompt`, `seconds`, `size`, `resolution`, `input_reference`, and
`metadata.<name>` for media keys (`img_url`, `first_frame_url`, `last_frame_url`, `audio_url`) and the model's
typed params. The one validator (draft.validate) checks the draft against the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from vidgate.engine.draft import Draft, StoredFile, Value, check_prompt, validate
from vidgate.errors import InvalidRequest
from vidgate.providers.base import MEDIA_KEYS, ModelSpec, Role, VideoRequest


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
    return check_prompt(Value(value, "prompt"), required=required)


def parse_reference(value: Any) -> Value | None:
    """input_reference: an uploaded file, a URL or data URI string, or {"image_url": ...}."""
    if value is None or value == "":
        return None
    if isinstance(value, Upload):
        return Value(StoredFile(path=value.path, mime=value.content_type), "input_reference")
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
        return Value(value, "input_reference")
    raise InvalidRequest(
        'input_reference must be an image file, a URL, a data: URI, or {"image_url": ...}.',
        param="input_reference",
        code="invalid_type",
    )


def _given(value: Any, name: str) -> Value | None:
    return None if value is None or value == "" else Value(value, name)


def to_draft(raw: RawCreate, model: str) -> Draft:
    """The create fields as a draft, each value under the OpenAI surface's name for it."""
    metadata = parse_metadata(raw.metadata)
    resolution = _given(raw.resolution, "resolution") or _given(metadata.pop("resolution", None), "metadata.resolution")
    media: list[tuple[Role, Value]] = []
    reference = parse_reference(raw.input_reference)
    if reference is not None:
        media.append(("first_frame", reference))
    for key, role in MEDIA_KEYS.items():
        if key in metadata:
            media.append((role, Value(metadata.pop(key), f"metadata.{key}")))
    return Draft(
        model=model,
        prompt=Value(raw.prompt, "prompt"),
        seconds=_given(raw.seconds, "seconds"),
        size=_given(raw.size, "size"),
        resolution=resolution,
        media=media,
        params={key: Value(value, f"metadata.{key}") for key, value in metadata.items()},
    )


def build_request(raw: RawCreate, spec: ModelSpec) -> VideoRequest:
    """Validate everything the client sent against the model; nothing is stored or sent yet."""
    return validate(to_draft(raw, spec.name), spec)
