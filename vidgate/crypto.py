"""Secrets at rest: values sealed with AES-256-GCM under a key derived from the configured `secret`.

A sealed value is text, `v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`: `v1` names the scheme (AES-256-GCM,
key = HKDF-SHA256(secret, info "vidgate/at-rest/v1")) and `kid` the key that sealed it (a fingerprint, not the
key), so a rotation can keep old keys to open old values while new ones are sealed under the new key. Each
value is bound to where it is kept (its `context`, e.g. "tasks.credentials:video_…") as associated data, so a
sealed value copied into another row or column does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vidgate.errors import SealError

SCHEME = "v1"
_INFO = b"vidgate/at-rest/v1"
_NONCE_BYTES = 12


def derive_key(secret: str, info: bytes = _INFO) -> bytes:
    """A 256-bit key for one purpose, derived from the configured secret (HKDF-SHA256)."""
    if not secret:
        raise ValueError("a secret is needed to derive a key")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret.encode())


def _kid(key: bytes) -> str:
    return hmac.new(key, b"vidgate key id", hashlib.sha256).hexdigest()[:8]


def is_sealed(value: object) -> bool:
    """True for text in the sealed form (whatever key sealed it)."""
    return isinstance(value, str) and value.startswith(SCHEME + ".")


class Vault:
    """Seals and opens values kept in the database."""

    def __init__(self, secret: str) -> None:
        key = derive_key(secret)
        self._kid = _kid(key)
        self._ciphers = {self._kid: AESGCM(key)}

    def seal(self, plaintext: bytes, *, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._kid].encrypt(nonce, plaintext, context.encode())
        return f"{SCHEME}.{self._kid}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, token: str, *, context: str) -> bytes:
        """The plaintext of a sealed value; SealError when it is not ours, or not for this context."""
        scheme, _, rest = token.partition(".")
        kid, _, body = rest.partition(".")
        if scheme != SCHEME or not body:
            raise SealError(f"{context}: the stored value is not sealed")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SealError(f"{context}: sealed under another secret (key id {kid}); `secret` must not change")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SealError(f"{context}: the sealed value does not open (altered, or moved from elsewhere)") from exc

    def seal_json(self, value: Any, *, context: str) -> str:
        return self.seal(orjson.dumps(value), context=context)

    def open_json(self, token: str, *, context: str) -> Any:
        return orjson.loads(self.open(token, context=context))


class SealedJSON(Mapping[str, Any]):
    """A sealed JSON object, opened on first use: a value that does not open fails where it is needed (one task's
    upstream call), not wherever its row is read (a page of tasks, a poller's whole batch)."""

    __slots__ = ("_context", "_opened", "_token", "_vault")

    def __init__(self, vault: Vault, token: str, *, context: str) -> None:
        self._vault, self._token, self._context = vault, token, context
        self._opened: dict[str, Any] | None = None

    def _open(self) -> dict[str, Any]:
        if self._opened is None:
            opened = self._vault.open_json(self._token, context=self._context)
            if not isinstance(opened, dict):
                raise SealError(f"{self._context}: the sealed value is not a JSON object")
            self._opened = opened
        return self._opened

    def __getitem__(self, key: str) -> Any:
        return self._open()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._open())

    def __len__(self) -> int:
        return len(self._open())

    def __repr__(self) -> str:
        return "SealedJSON(…)"
