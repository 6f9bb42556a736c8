"""Idempotency-Key on POST /v1/videos (Stripe's convention): the key, and the fingerprint of the body.

The same key (per API key) and the same body within TTL_S return the task the first request made; the
same key with another body is a 409. The fingerprint covers the request as parsed, file bytes included,
so the multipart boundary an SDK picks anew for every send does not tell two sends of one request apart.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from vidgate.engine.normalize import RawCreate, Upload
from vidgate.errors import InvalidRequest

HEADER = "Idempotency-Key"
TTL_S = 24 * 3600.0
MAX_LENGTH = 255


@dataclass(frozen=True)
class Idempotency:
    """A request's idempotency key and the fingerprint of its body."""

    key: str
    fingerprint: str


def check_key(value: str) -> str:
    """The header's value, if it is 1-255 printable ASCII characters."""
    if not 1 <= len(value) <= MAX_LENGTH or not all(" " <= ch <= "~" for ch in value):
        raise InvalidRequest(
            f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters.", param=HEADER, code="invalid_value"
        )
    return value


async def for_create(value: str, raw: RawCreate) -> Idempotency:
    """The idempotency of a create: its key, and a fingerprint of every field and the bytes of its file."""
    fields: dict[str, Any] = {
        name: getattr(raw, name) for name in ("prompt", "model", "seconds", "size", "resolution", "metadata")
    }
    reference = raw.input_reference
    if isinstance(reference, Upload):
        digest = await asyncio.to_thread(_sha256, reference.path)
        reference = {"sha256": digest, "filename": reference.filename, "content_type": reference.content_type}
    fields["input_reference"] = reference
    fields["extra"] = raw.extra
    body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=str)
    return Idempotency(key=check_key(value), fingerprint=hashlib.sha256(body).hexdigest())


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
