"""Every error vidgate raises on purpose.

Client-facing errors carry what each surface needs to render them (api/errors.py does the rendering):

    VidgateError
    ├── ConfigError                  bad or missing configuration (a startup error, never an HTTP answer)
    ├── SealError                    a value sealed at rest does not open (another secret, or altered)
    ├── ClientError                  the caller's fault or the caller's limit; rendered as a 4xx
    │   ├── InvalidRequest           400, names the offending field (`param`) and what it accepts
    │   ├── Unauthenticated          401, missing or bad key
    │   ├── PermissionDenied         403, the key may not use this model
    │   ├── NotFound                 404, unknown id or another key's id
    │   ├── Conflict                 409, the video is not ready
    │   │   └── IdempotencyKeyReused 409, an Idempotency-Key sent again with another body
    │   ├── PayloadTooLarge          413
    │   └── RateLimited              429, with retry_after (requests per minute, quota, full channels)
    ├── ServiceError                 vidgate or its upstreams cannot serve right now; rendered as 5xx
    │   ├── UpstreamUnavailable      502/503, no channel could take the request
    │   └── StorageUnavailable       503, the storage (file: or s3://) did not answer or refused
    └── ProviderError                raised by provider adapters, translated by the engine
        ├── UpstreamRejected         the upstream refused the request itself (its 4xx); not retried
        ├── UpstreamTransient        429, 5xx, timeout, connection error, garbage; try later / elsewhere
        └── NotSupported             the provider has no such operation (cancel, remix, find)
    UpstreamTaken                    another task already holds this upstream task (never an HTTP answer)

Foreign exceptions (httpx, SQLAlchemy, PyAV) are translated at one boundary with `raise X(...) from exc`.

Raised inside vidgate's HTTP client, and so an httpx error like any other failure to connect:

    httpx.ConnectError
    ├── AddressRefused               the URL guard (netguard.py) would not connect to a non-public address
    └── HostNotResolved              the URL guard found no address for the host

What an upstream itself said about a refused request or a failed task is kept verbatim in an UpstreamFailure
(who said it, its code, its text), so a user can look the code up in the vendor's documentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

# "Vendor: Code" or "Vendor: Code: message", as UpstreamFailure.text() writes them; a code is one word.
_FAILURE_TEXT = re.compile(r"^(?P<vendor>[^:\n]+): (?P<code>[\w.\-]+)(?:: (?P<message>.*))?$", re.S)


@dataclass(frozen=True)
class UpstreamFailure:
    """An upstream's own verdict, verbatim: who said it (`vendor`), its `code` and its `message`.

    Clients read it as `text()`: "Vidu: CreationPolicyViolation: <Vidu's message>". A part the upstream did
    not send is left out; `note` is vidgate's reading of a bare code and follows after " - ".
    """

    vendor: str
    code: str | None = None
    message: str | None = None
    note: str | None = None

    def text(self) -> str:
        said = ": ".join(part for part in (self.code, self.message) if part)
        if self.note:
            said = f"{said} - {self.note}" if said else self.note
        return f"{self.vendor}: {said or 'no reason given'}"

    @classmethod
    def parse(cls, text: str | None) -> UpstreamFailure | None:
        """The vendor, code and message back from a `text()` that carried a code (None for any other text)."""
        match = _FAILURE_TEXT.match(text or "")
        if match is None:
            return None
        return cls(vendor=match["vendor"], code=match["code"], message=match["message"])


class VidgateError(Exception):
    """Base of every error vidgate raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(VidgateError):
    """The configuration is invalid; raised at startup."""


class SealError(VidgateError):
    """A value sealed at rest (crypto.Vault) cannot be opened: sealed under another secret, or altered."""


class ClientError(VidgateError):
    """A request vidgate refuses; rendered as a 4xx in the surface's own error shape."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(ClientError):
    """A field is missing, malformed or outside what the model accepts."""

    status = 400
    code = "invalid_value"


class Unauthenticated(ClientError):
    """No key, or a key vidgate does not know (or that was revoked)."""

    status = 401
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    """The key exists but may not do this (e.g. use this model)."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(ClientError):
    """No such object for this key."""

    status = 404
    code = "not_found"


class Conflict(ClientError):
    """The object exists but is not in a state that allows this yet."""

    status = 409
    code = "video_not_ready"


class IdempotencyKeyReused(Conflict):
    """The Idempotency-Key was used within 24 h for a request with another body."""

    code = "idempotency_key_reused"


class PayloadTooLarge(ClientError):
    """An upload or body beyond the configured limit."""

    status = 413
    code = "payload_too_large"


class RateLimited(ClientError):
    """Too many requests, or not enough quota; the caller may retry after `retry_after` seconds."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: int = 1, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after


class ServiceError(VidgateError):
    """vidgate cannot serve this right now; rendered as a 5xx."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamUnavailable(ServiceError):
    """No channel could take the request (all failed, all unhealthy)."""

    def __init__(self, message: str, *, status: int = 503, retry_after: int = 5) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = "upstream_unavailable" if status == 503 else "upstream_error"


class StorageUnavailable(ServiceError):
    """The storage (a folder, an S3 bucket) did not answer or refused; the message never names a credential."""

    code = "storage_unavailable"


class ProviderError(VidgateError):
    """Raised by provider adapters; the engine decides what it means for the task."""


class UpstreamRejected(ProviderError):
    """The upstream refused the request itself (a parameter or policy error); not worth retrying.

    `code` is vidgate's own (e.g. content_policy_violation; None for a plain refusal); `upstream` keeps what
    the upstream said, verbatim, when it said something.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        upstream: UpstreamFailure | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.upstream = upstream


class UpstreamTransient(ProviderError):
    """A failure that may pass: 429, 5xx, timeout, connection error, an unparsable answer.

    `nothing_created` is True when a create that failed this way surely made no upstream task (no
    connection was made, or the upstream was asked and has none); otherwise its outcome is unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        nothing_created: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.nothing_created = nothing_created


class NotSupported(ProviderError):
    """The provider has no such operation."""


class AddressRefused(httpx.ConnectError):
    """The URL guard would not connect: the host is, or resolves to, an address that is not public.

    The message names the host and the class of address refused, never the address a name resolved to.
    """

    def __init__(self, host: str, kind: str, *, resolved: bool) -> None:
        what = f"{host} resolves to a {kind} address" if resolved else f"{host} is a {kind} address"
        super().__init__(f"{what}; vidgate connects only to public addresses")
        self.host = host
        self.kind = kind


class HostNotResolved(httpx.ConnectError):
    """The URL guard's one lookup of a host gave no address (or did not answer in time)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"cannot resolve {host}")
        self.host = host


class UpstreamTaken(VidgateError):
    """Another task already holds this upstream task: two submits raced for one (see engine/submit.py)."""
