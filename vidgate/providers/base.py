"""The Provider contract and the types that cross it.

A provider module is the whole story of one upstream: its models, how a VideoRequest becomes its body,
how its answers become a Progress, how it signs. Nothing outside providers/ knows a provider's fields.
"""

from __future__ import annotations

import asyncio
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx

from vidgate.errors import InvalidRequest, NotSupported, UpstreamFailure, UpstreamTransient
from vidgate.providers.http import download_to

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from vidgate.storage import Storage

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


ParamKind = Literal["bool", "int", "number", "string", "object"]
_KIND_WORDS = {"bool": "true or false", "int": "an integer", "number": "a number", "string": "a string"}


@dataclass(frozen=True)
class Param:
    """A typed extra parameter a model takes (OpenAI surface: `metadata.<name>`; DashScope: `parameters.<name>`).

    `choices` lists the only values allowed; `low`/`high` bound a number (inclusive) or a string's length.
    """

    kind: ParamKind
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    description: str = ""

    def allowed(self) -> str:
        """What the parameter accepts, in words (errors and the model list)."""
        if self.choices:
            return "one of: " + ", ".join(_show(choice) for choice in self.choices)
        if self.kind == "object":
            return "a JSON object"
        words = _KIND_WORDS[self.kind]
        if self.kind == "string":
            if self.high is not None:
                return f"a string of at most {int(self.high)} characters"
            return words
        if self.low is not None and self.high is not None:
            return f"{words} from {_show(self.low)} to {_show(self.high)}"
        if self.low is not None:
            return f"{words} of at least {_show(self.low)}"
        if self.high is not None:
            return f"{words} of at most {_show(self.high)}"
        return words

    def check(self, value: Any, field: str, model: str) -> Any:
        """The value when it is allowed; InvalidRequest naming `field` and listing what it accepts otherwise."""
        if not self._fits(value):
            code = None if self._right_type(value) else "invalid_type"
            raise InvalidRequest(
                f"Invalid value for '{field}': {_show(value)}. {model} accepts {self.allowed()}.",
                param=field,
                code=code,
            )
        return dict(value) if isinstance(value, Mapping) else value

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description (GET /v1/models, `vidgate models`)."""
        shown: dict[str, Any] = {"type": self.kind, "allowed": self.allowed()}
        if self.choices:
            shown["choices"] = list(self.choices)
        if self.low is not None:
            shown["min"] = self.low
        if self.high is not None:
            shown["max"] = self.high
        if self.description:
            shown["description"] = self.description
        return shown

    def _right_type(self, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind == "string":
            return isinstance(value, str)
        return isinstance(value, Mapping)

    def _fits(self, value: Any) -> bool:
        if not self._right_type(value):
            return False
        if self.choices:
            return any(value == choice and type(value) is type(choice) for choice in self.choices)
        if self.kind == "string":
            return self.high is None or len(value) <= self.high
        if self.kind in ("int", "number"):
            return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        return True


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f"'{value}'"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Ready-made parameters for the keys SPEC §3 names; a provider may declare its own beside them.
SEED = Param("int", low=0, high=2**31 - 1, description="Random seed; the same seed gives similar results.")
AUDIO = Param("bool", description="Generate a soundtrack.")
NEGATIVE_PROMPT = Param("string", description="What the video should not show.")
WATERMARK = Param("bool", description="Add the vendor's watermark.")
PROMPT_EXTEND = Param("bool", description="Let the vendor rewrite the prompt for more detail.")
TEMPLATE = Param("string", description="A vendor effect template.")
CFG_SCALE = Param("number", low=0, high=1, description="How closely to follow the prompt.")
CAMERA_CONTROL = Param("object", description="Camera movement (vendor-specific object).")
MOVEMENT_AMPLITUDE = Param("string", choices=("auto", "small", "medium", "large"), description="How much moves.")
BGM = Param("bool", description="Add background music.")
# The media keys are no params: they follow a model's modes (and `audio`); see engine/draft.py.
MEDIA_KEYS: Mapping[str, Role] = {
    "img_url": "first_frame",
    "first_frame_url": "first_frame",
    "last_frame_url": "last_frame",
    "audio_url": "audio",
}

Price = Decimal | Mapping[str, Decimal]


def per_tier(p480: str, p720: str, p1080: str) -> dict[str, Decimal]:
    """A price table (USD per second) by resolution tier, from three decimal strings."""
    return {"480P": Decimal(p480), "720P": Decimal(p720), "1080P": Decimal(p1080)}


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts: modes, seconds, sizes, audio, typed params, its defaults and its price."""

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
    # Extra parameters by name (`seed` and `audio` among them when the model takes them).
    params: Mapping[str, Param] = field(default_factory=dict)
    remix: bool = False
    # How long a task may stay unfinished before it is failed (and refunded).
    deadline_s: int = 3600
    # What clients are told to wait between status reads (openai-poll-after-ms).
    poll_hint_ms: int = 2000
    # USD per second of output, one number or per tier; None = the operator must set it in [prices].
    price: Price | None = None
    description: str = ""

    def allowed_sizes(self) -> list[str]:
        """Everything `size` may be for this model, as shown in errors and /v1/models."""
        listed = list(self.sizes) + [tier for tier in TIERS if tier in self.tiers]
        if self.any_size:
            low, high = self.any_size
            listed.insert(0, f"any even WxH from {low} to {high} per side")
        return listed

    def media_keys(self) -> list[str]:
        """The media inputs this model takes besides input_reference, as their metadata keys."""
        keys = []
        if "i2v" in self.modes:
            keys.append("img_url")
        if "kf2v" in self.modes:
            keys += ["first_frame_url", "last_frame_url"]
        if self.audio or "a2v" in self.modes:
            keys.append("audio_url")
        return keys


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
    # Params the model takes, already validated, by name (negative_prompt, watermark, ...).
    extras: Mapping[str, Any] = field(default_factory=dict)
    # A provider-native body to forward verbatim (DashScope surface); None for translated requests. Its media
    # fields are not in it: they are the `inputs`, whose `field` names where each one goes back.
    native: Mapping[str, Any] | None = None
    # Name -> the client's own field for it ("seconds" -> "parameters.duration"), for errors raised later.
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def field_of(self, name: str) -> str:
        """The client's field for a request part ("seconds", "size", "prompt") or a param ("seed")."""
        if name in self.fields:
            return self.fields[name]
        return name if name in ("seconds", "size", "resolution", "prompt", "model") else f"metadata.{name}"

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
    # The provider's own channel keys (Provider.channel_keys), e.g. vertex's service_account_file and project.
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "channel": self.channel,
            "base_url": self.base_url,
            "api_key": self.api_key,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }
        if self.extra:
            data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Credentials:
        extra = data.get("extra")
        return cls(
            **{key: str(data.get(key, "")) for key in ("channel", "base_url", "api_key", "access_key", "secret_key")},
            extra={str(k): str(v) for k, v in extra.items()} if isinstance(extra, Mapping) else {},
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
    # Extra outputs by name -> URL (e.g. "last_frame"); stored beside the video, shown on the DashScope surface.
    extras: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def failed(cls, code: str, failure: UpstreamFailure, *, state: UpstreamState = "failed") -> Progress:
        """A finished-badly answer: our `code`, and the upstream's own words as the message."""
        return cls(state=state, error_code=code, error_message=failure.text())


@dataclass(frozen=True)
class Submitted:
    """The upstream accepted the task under this id."""

    upstream_id: str


# Called by a provider when a task it runs itself changed, so the poller looks at once.
Notify = Callable[[str], None]


class Provider(ABC):
    """One upstream: its models, and how to submit, poll, cancel and download."""

    name: ClassVar[str]
    # True when the provider needs input bytes (vidgate fetches URLs for it), not URLs.
    needs_bytes: ClassVar[bool] = False
    # The channel config keys this provider reads besides api_key/access_key/secret_key (Credentials.extra).
    channel_keys: ClassVar[frozenset[str]] = frozenset()
    # True when submit() passes a callback_url on to the vendor (the engine then gives it one).
    accepts_callback: ClassVar[bool] = False
    # Where a channel without base_url goes.
    default_base_url: ClassVar[str] = ""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @abstractmethod
    def models(self) -> Sequence[ModelSpec]:
        """Every model this provider serves, with its capabilities."""

    def base_url(self, creds: Credentials) -> str:
        """The channel's base_url, or the provider's default (its host may serve results: see download)."""
        return (creds.base_url or self.default_base_url).rstrip("/")

    def declared_model(
        self, name: str, *, seconds: Sequence[int] | None = None, sizes: Sequence[str] | None = None
    ) -> ModelSpec | None:
        """The spec of a model a channel names that this provider does not know (with the seconds and sizes the
        channel declares for it, if any), when the provider passes such models on to an upstream that validates
        them; None (the default) when it serves only its own models."""
        return None

    def check(self, req: VideoRequest) -> None:  # noqa: B027 - optional hook
        """Refuse (InvalidRequest, naming the field) what the generic checks of its ModelSpec cannot see.

        Called before anything is stored or sent; the generic checks (modes, seconds, sizes, params) have
        already passed. Name fields with `req.field_of(name)`, so each surface's client reads its own names.
        """

    @abstractmethod
    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        """Create the upstream task; raise UpstreamRejected or UpstreamTransient on failure.

        `callback_url` is given only to providers that set `accepts_callback`; it goes in the vendor's callback
        field, and a call to it only wakes the poller."""

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
        """Store the finished video at `dest`: fetch `result.video_url` (no auth header: result URLs are signed
        or public; the channel's base_url host is allowed) or copy `result.video_path`.

        Override only for a download that needs auth (a key header) or bytes the poll answer carried."""
        if result.video_path is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copyfile, result.video_path, dest)
            return
        if not result.video_url:
            raise UpstreamTransient(f"{self.name}: the finished task has no video to download")
        await download_to(self.http, result.video_url, dest, base_url=self.base_url(creds))

    async def download_extra(self, name: str, url: str, creds: Credentials, dest: Path) -> None:
        """Store one extra output (Progress.extras) at `dest`, fetched like the video."""
        await download_to(self.http, url, dest, base_url=self.base_url(creds))

    async def download_previews(
        self, result: Progress, upstream_id: str, creds: Credentials, folder: Path
    ) -> dict[str, Path]:
        """Store the upstream's own previews ("thumbnail" → .webp, "spritesheet" → .jpg) in `folder`.

        Returns what it stored; vidgate makes whatever is missing from the video itself.
        """
        return {}

    async def release(self, upstream_id: str, creds: Credentials) -> None:  # noqa: B027 - optional hook
        """The task is over and its result stored: free whatever the provider keeps for it."""

    def use_database(self, db: AsyncEngine) -> None:  # noqa: B027 - optional hook
        """Called before start() with the app's database, for providers that keep their own state in it."""

    def use_storage(self, storage: Storage) -> None:  # noqa: B027 - optional hook
        """Called before start() with the app's storage, for providers that keep files every replica must see."""

    def callback_answer(self, body: bytes) -> dict[str, Any] | None:
        """What to answer a signed callback whose body asks for more than an acknowledgement (MiniMax's
        `{"challenge": …}` handshake: echo it), or None for the uniform acknowledgement. `body` is untrusted
        (at most callbacks.MAX_BODY_BYTES); the answer must not depend on anything but the body itself."""
        return None

    async def start(self, notify: Notify) -> None:  # noqa: B027 - optional hook
        """Called once when the app starts; `notify(upstream_id)` wakes the poller."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once when the app stops."""
