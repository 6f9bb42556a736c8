"""The Provider contract and the types that cross it.

A provider module is the whole story of one upstream: its models, how a VideoRequest becomes its body,
how its answers become a Progress, how it signs. Nothing outside providers/ knows a provider's fields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from vidgate.errors import NotSupported, UpstreamFailure

Mode = Literal["t2v", "i2v", "kf2v", "a2v"]
Role = Literal["first_frame", "last_frame", "audio"]
TIERS = ("480P", "720P", "1080P")


def tier_of(width: int, height: int) -> str:
    """The resolution tier of a size, set by its shorter side."""
    short = min(width, height)
    if short <= 480:
        return "480P"
    if short <= 720:
        return "720P"
    return "1080P"


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts: modes, seconds, sizes, audio, metadata keys, and its defaults."""

    name: str
    provider: str
    modes: frozenset[Mode]
    seconds: tuple[int, ...]
    default_seconds: int
    # Explicit sizes ("WxH"); empty when the model takes any even size in `any_size` or tiers only.
    sizes: tuple[str, ...] = ()
    # Tier -> the size it stands for on this model (what "720P" means here).
    tiers: Mapping[str, str] = field(default_factory=dict)
    default_size: str = "1280x720"
    # (min, max) per side for models that take any even size.
    any_size: tuple[int, int] | None = None
    audio: bool = False
    metadata_keys: frozenset[str] = frozenset()
    remix: bool = False
    # How long a task may stay unfinished before it is failed (and refunded).
    deadline_s: int = 3600
    # What clients are told to wait between status reads (openai-poll-after-ms).
    poll_hint_ms: int = 2000
    price: Decimal | Mapping[str, Decimal] = Decimal(0)
    description: str = ""

    def allowed_sizes(self) -> list[str]:
        """Everything `size` may be for this model, as shown in errors and /v1/models."""
        listed = list(self.sizes) + [tier for tier in TIERS if tier in self.tiers]
        if self.any_size:
            low, high = self.any_size
            listed.insert(0, f"any even WxH from {low} to {high} per side")
        return listed


@dataclass(frozen=True)
class MediaInput:
    """An image or audio input: a URL the provider may fetch itself, or bytes vidgate stored."""

    role: Role
    field: str  # the client's field, for error messages ("input_reference", "metadata.img_url")
    url: str | None = None  # http(s)://, data:, or oss:// as given by the client
    path: Path | None = None  # stored bytes (uploads, fetched URLs, decoded data URIs)
    mime: str | None = None


@dataclass(frozen=True)
class VideoRequest:
    """One request in vidgate's own terms, validated against its model before any upstream call."""

    model: str
    prompt: str
    seconds: int
    width: int
    height: int
    tier: str
    mode: Mode
    inputs: tuple[MediaInput, ...] = ()
    audio: bool = False
    seed: int | None = None
    # Metadata keys the model takes, already validated (negative_prompt, watermark, ...).
    extras: Mapping[str, Any] = field(default_factory=dict)
    # A provider-native body to forward verbatim (DashScope surface); None for translated requests.
    native: Mapping[str, Any] | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def input(self, role: Role) -> MediaInput | None:
        """The input playing `role`, if any."""
        return next((item for item in self.inputs if item.role == role), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form, kept on the task row so a restart can resubmit and remix can reuse it."""
        data = asdict(self)
        data["inputs"] = [{**asdict(item), "path": str(item.path) if item.path else None} for item in self.inputs]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoRequest:
        inputs = tuple(
            MediaInput(**{**item, "path": Path(item["path"]) if item.get("path") else None})
            for item in data.get("inputs", ())
        )
        return cls(**{**data, "inputs": inputs})


@dataclass(frozen=True)
class Credentials:
    """The exact upstream account a task was submitted with; the same one polls and downloads."""

    channel: str
    base_url: str = ""
    # Never in a repr: an exception or log line that shows a Credentials must not show the secrets.
    api_key: str = field(default="", repr=False)
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)

    def to_json(self) -> dict[str, str]:
        return {
            "channel": self.channel,
            "base_url": self.base_url,
            "api_key": self.api_key,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Credentials:
        return cls(
            **{key: str(data.get(key, "")) for key in ("channel", "base_url", "api_key", "access_key", "secret_key")}
        )


UpstreamState = Literal["queued", "in_progress", "completed", "failed", "cancelled"]

# vidgate's own codes for what an upstream reported (a failed task's `error.code` on the OpenAI surface, and
# UpstreamRejected.code); the upstream's own code and text go, verbatim, into the message (UpstreamFailure).
CONTENT_POLICY_VIOLATION = "content_policy_violation"
GENERATION_FAILED = "generation_failed"
UPSTREAM_CANCELLED = "cancelled"
UPSTREAM_TASK_LOST = "upstream_task_lost"
OUR_FAILURE_CODES = frozenset({CONTENT_POLICY_VIOLATION, GENERATION_FAILED, UPSTREAM_CANCELLED, UPSTREAM_TASK_LOST})


@dataclass(frozen=True)
class Progress:
    """What an upstream says about a task, in vidgate's terms."""

    state: UpstreamState
    progress: int | None = None
    video_url: str | None = None  # where the finished video can be fetched
    video_path: Path | None = None  # or where it already is, for providers that write files
    thumbnail_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(
        cls,
        code: str,
        failure: UpstreamFailure,
        *,
        state: UpstreamState = "failed",
        usage: Mapping[str, Any] | None = None,
    ) -> Progress:
        """A finished-badly answer: our `code`, and the upstream's own words as the message."""
        return cls(state=state, error_code=code, error_message=failure.text(), usage=dict(usage or {}))


@dataclass(frozen=True)
class Submitted:
    """The upstream accepted the task under this id."""

    upstream_id: str
    progress: Progress | None = None


# Called by a provider when a task it runs itself changed, so the poller looks at once.
Notify = Callable[[str], None]


class Provider(ABC):
    """One upstream: its models, and how to submit, poll, cancel and download."""

    name: ClassVar[str]
    # True when the provider needs input bytes (vidgate fetches URLs for it), not URLs.
    needs_bytes: ClassVar[bool] = False
    # True when the upstream takes a callback URL: submit then gets `callback_url` (engine/callbacks.py) and
    # puts it in the vendor's callback field; a call to it makes the poller read the task at once.
    accepts_callback: ClassVar[bool] = False

    @abstractmethod
    def models(self) -> Sequence[ModelSpec]:
        """Every model this provider serves, with its capabilities."""

    def declared_model(
        self, name: str, *, seconds: Sequence[int] | None = None, sizes: Sequence[str] | None = None
    ) -> ModelSpec | None:
        """The spec of a model a channel names that this provider does not know (with the seconds and sizes the
        channel declares for it, if any), when the provider passes such models on to an upstream that validates
        them; None (the default) when it serves only its own models."""
        return None

    def check(self, req: VideoRequest) -> None:  # noqa: B027 - optional hook
        """Refuse (InvalidRequest, naming the field) what the generic checks of its ModelSpec cannot see.

        Called before anything is stored or sent; the generic checks (modes, seconds, sizes, metadata keys)
        have already passed.
        """

    @abstractmethod
    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        """Create the upstream task; raise UpstreamRejected or UpstreamTransient on failure.

        `callback_url` is given only when the provider `accepts_callback`: the vendor's callback field takes it.
        """

    @abstractmethod
    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        """Read the task's state; raise UpstreamTransient when the answer cannot be trusted."""

    async def cancel(self, upstream_id: str, creds: Credentials) -> None:
        """Cancel the upstream task."""
        raise NotSupported(f"{self.name} cannot cancel tasks")

    async def remix(self, source_upstream_id: str, req: VideoRequest, creds: Credentials, *, task_id: str) -> Submitted:
        """Create a remix of a finished upstream task."""
        raise NotSupported(f"{self.name} cannot remix videos")

    async def find(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, since: float, remix_of: str | None = None
    ) -> list[str]:
        """The upstream tasks an unanswered create of `req` may have made, best match first; [] when surely none.

        Called before any resubmit of a create whose outcome is unknown (a timeout after sending, a cut
        connection, a crash): by the id vidgate chose (`task_id`) where the upstream keeps one, else by
        listing the account's tasks created since `since` (this host's clock) that match the request.
        `remix_of` is the source's upstream id when the create was a remix. Raise NotSupported when the
        upstream offers no way to look, UpstreamTransient when the lookup itself failed.
        """
        raise NotSupported(f"{self.name} cannot look its tasks up")

    async def download(self, result: Progress, creds: Credentials, dest: Path) -> None:
        """Store the finished video at `dest` (adapters with an HTTP client override this)."""
        raise NotSupported(f"{self.name} has no download")

    async def download_previews(self, upstream_id: str, creds: Credentials, folder: Path) -> dict[str, Path]:
        """Store the upstream's own previews ("thumbnail" → .webp, "spritesheet" → .jpg) in `folder`.

        Returns what it stored; vidgate makes whatever is missing from the video itself.
        """
        return {}

    async def release(self, upstream_id: str, creds: Credentials) -> None:  # noqa: B027 - optional hook
        """The task is over and its result stored: free whatever the provider keeps for it."""

    def callback_answer(self, body: bytes) -> dict[str, Any] | None:
        """What to answer a signed callback whose body asks for more than an acknowledgement (MiniMax's
        `{"challenge": …}` handshake: echo it), or None for the uniform acknowledgement. `body` is untrusted
        (at most callbacks.MAX_BODY_BYTES); the answer must not depend on anything but the body itself."""
        return None

    async def start(self, notify: Notify) -> None:  # noqa: B027 - optional hook
        """Called once when the app starts; `notify(upstream_id)` wakes the poller."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once when the app stops."""
