"""Secrets at rest (crypto.Vault) and the redactor that masks secrets in texts (redact.Redactor)."""

from __future__ import annotations

import io
import logging

import pytest

from vidgate.auth import new_key, new_webhook_secret
from vidgate.config import parse_settings
from vidgate.crypto import Vault, is_sealed
from vidgate.errors import SealError
from vidgate.redact import MASK, RedactFilter, Redactor


def test_sealed_values_open_only_with_their_secret_and_context() -> None:
    vault = Vault("one secret")
    token = vault.seal_json({"api_key": "sk-upstream-123"}, context="tasks.credentials:video_1")
    assert is_sealed(token) and token.startswith("v1.")
    assert "sk-upstream-123" not in token
    assert vault.open_json(token, context="tasks.credentials:video_1") == {"api_key": "sk-upstream-123"}
    # Each seal is fresh (random nonce): equal plaintexts do not give equal tokens.
    assert vault.seal_json({"api_key": "sk-upstream-123"}, context="tasks.credentials:video_1") != token
    with pytest.raises(SealError, match="another secret"):
        Vault("another secret").open(token, context="tasks.credentials:video_1")
    # Bound to its row: copied onto another task it does not open.
    with pytest.raises(SealError):
        vault.open(token, context="tasks.credentials:video_2")
    tampered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(SealError):
        vault.open(tampered, context="tasks.credentials:video_1")
    with pytest.raises(SealError, match="not sealed"):
        vault.open('{"api_key": "x"}', context="tasks.credentials:video_1")


def test_redactor_masks_configured_secrets_and_the_shapes_of_keys() -> None:
    key, whsec = new_key(), new_webhook_secret()
    redact = Redactor(["ds-channel-secret-42", "ab"])
    text = (
        f"DashScope 401: bad key ds-channel-secret-42; client {key}; webhook {whsec}; "
        "GET https://up.example/v1/x?alt=json&key=AIzaSyQUERYKEY123&x=1; "
        "headers {'authorization': 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhayJ9.c2lnbmF0dXJl'}; "
        "Authorization: HMAC-SHA256 Credential=AK/x, Signature=0123456789abcdef0123; "
        "a token was refused; ab stays"
    )
    masked = redact(text)
    for secret in ("ds-channel-secret-42", key, whsec, "AIzaSyQUERYKEY123", "eyJhbGci", "0123456789abcdef0123"):
        assert secret not in masked, (secret, masked)
    assert "?alt=json&key=" + MASK in masked and "&x=1" in masked
    # Ordinary words survive; values shorter than 4 characters are not treated as secrets.
    assert "a token was refused" in masked and "ab stays" in masked
    assert redact.value({"attempts": [{"error": f"x {key}"}], "n": 3}) == {
        "attempts": [{"error": f"x {MASK}"}],
        "n": 3,
    }


def test_log_filter_masks_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter(Redactor(["very-secret-value"])))
    logger = logging.getLogger("vidgate.test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("submit failed: %s", "upstream said very-secret-value")
        try:
            raise RuntimeError("boom with very-secret-value inside")
        except RuntimeError:
            logger.exception("advancing failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    output = stream.getvalue()
    assert "very-secret-value" not in output
    assert "upstream said [redacted]" in output and "RuntimeError: boom with [redacted] inside" in output


def test_redactor_for_settings_knows_every_configured_secret() -> None:
    settings = parse_settings(
        {
            "secret": "signing-secret-1",
            "database_url": "postgresql://vidgate:db-password-2@127.0.0.1/vidgate",
            "channels": [
                {"name": "a", "provider": "dashscope", "api_key": "channel-key-3"},
                {"name": "b", "provider": "kling", "access_key": "access-key-4", "secret_key": "secret-key-5"},
            ],
        },
        {},
    )
    text = "signing-secret-1 db-password-2 channel-key-3 access-key-4 secret-key-5"
    assert Redactor.for_settings(settings)(text) == " ".join([MASK] * 5)
    # Nor do they show in the settings' repr.
    assert not any(secret in repr(settings) for secret in text.split())
