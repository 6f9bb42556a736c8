"""Defence in depth for secrets in text: what leaves vidgate as a log line, an error body or a stored error.

Secrets are kept out of texts at their source (credentials sealed at rest, SQLAlchemy's hide_parameters, no
header or key in an error message). This module masks whatever slips through anyway: the configured channel
credentials and signing secret, anything shaped like our keys (`sk-vg-…`) or webhook secrets (`whsec_…`),
bearer tokens, JWTs, and credential-like query parameters (an upstream URL with `?key=…` in an error).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from vidgate.config import Settings

MASK = "[redacted]"
# Shorter configured values are not masked: masking "abc" everywhere would garble every log line.
_MIN_SECRET_LEN = 4

_SHAPES = re.compile(
    "|".join(
        (
            r"sk-vg-[A-Za-z0-9_\-]{6,}",  # our API keys
            r"whsec_[A-Za-z0-9+/=_\-]{6,}",  # webhook signing secrets
            r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]+",  # JWTs (Kling's bearer tokens)
        )
    )
)
# Keep the name, mask the value: "Bearer …", "Token …", "?api_key=…", "Signature=…".
_LABELLED = re.compile(
    r"(?i)(\bbearer\s+|\btoken\s+(?=[A-Za-z0-9._\-]{16,})"
    r"|[?&;](?:api[_-]?key|key|access[_-]?token|token|sig|x-amz-credential|x-amz-security-token|"
    r"ossaccesskeyid|accesskeyid)="
    r"|\b(?:signature|x-amz-signature)=)"
    r"[^\s&#\"'<>,;)]+"
)


class Redactor:
    """Masks secrets in text; callable."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(s) for s in known)) if known else None

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        """Masking the signing secret, the database password, every channel's credentials and the S3 secret key,
        besides the shapes of keys."""
        values = [settings.secret]
        with contextlib.suppress(ArgumentError):
            values.append(make_url(settings.database_url).password or "")
        for channel in settings.channels:
            values += [channel.api_key, channel.access_key, channel.secret_key]
        values.append(settings.storage.secret_key)
        return cls(values)

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        text = _SHAPES.sub(MASK, text)
        return _LABELLED.sub(lambda match: match.group(1) + MASK, text)

    def value(self, value: Any) -> Any:
        """The same, through the strings of a JSON-like value (the attempts list of a task)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


class RedactFilter(logging.Filter):
    """Rewrites each record's message and traceback text with a Redactor before any handler formats it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn's access formatter reads the args one by one; keep their shape.
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        else:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = str(record.msg)
            record.msg, record.args = redact(message), None
            # uvicorn's coloured formatter would re-render this unredacted template instead of `msg`.
            record.__dict__.pop("color_message", None)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_LOGGERS = ("", "vidgate", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "sqlalchemy", "httpx")


def install(redactor: Redactor) -> None:
    """Put the filter on vidgate's and uvicorn's loggers and on every handler they write through.

    A logger's filters see only records logged on that very logger; a handler's see every record that reaches
    it, children's included, so the handlers (and Python's last-resort handler) are what make this complete.
    """
    flt = RedactFilter(redactor)
    targets: list[logging.Filterer] = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        targets.append(logger)
        targets.extend(logger.handlers)
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for target in targets:
        for old in [f for f in target.filters if isinstance(f, RedactFilter)]:
            target.removeFilter(old)
        target.addFilter(flt)
