"""Settings: the TOML file plus ${ENV} substitution. The only reader of os.environ."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vidgate.errors import ConfigError

ENV_CONFIG = "VIDGATE_CONFIG"
DEFAULT_CONFIG_FILE = "vidgate.toml"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Price = Decimal | dict[str, Decimal]


class ChannelConfig(BaseModel):
    """One upstream account: a provider, where it lives, its credentials and which models it serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    # A registered provider (entry-point group `vidgate.providers`); build_registry checks the name.
    provider: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base_url: str = ""
    # Credentials: never in a repr (a logged Settings or channel must not carry them).
    api_key: str = Field(default="", repr=False)
    access_key: str = Field(default="", repr=False)
    secret_key: str = Field(default="", repr=False)
    models: tuple[str, ...] | None = None
    model_map: dict[str, str] = Field(default_factory=dict)
    priority: int = 0
    weight: int = Field(default=1, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1)
    # Only for models the provider does not know (an `openai` channel's `models` naming what its OpenAI-format
    # upstream serves): the seconds and WxH sizes those models take, the first size being the default. Omitted:
    # any whole seconds from 1 to 60 and any even WxH from 16 to 4096 per side go through, and the upstream judges.
    seconds: tuple[int, ...] | None = None
    sizes: tuple[str, ...] | None = None
    # Keys the channel's provider declares for itself (Provider.channel_keys, e.g. vertex's `project`), as
    # strings; build_registry refuses any its provider does not declare. Never in a repr (they may be secret).
    extra: dict[str, str] = Field(default_factory=dict, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _provider_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if "extra" in data:
            raise ValueError("`extra` is not a channel key; write the provider's keys on the channel itself")
        own = {key: value for key, value in data.items() if key in cls.model_fields}
        extra = {key: value for key, value in data.items() if key not in cls.model_fields}
        for key, value in extra.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", str(key)):
                raise ValueError(f"{key!r} is not a channel key")
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string")
        return {**own, "extra": extra} if extra else own

    @field_validator("seconds")
    @classmethod
    def _seconds(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or any(not 1 <= item <= 3600 for item in value)):
            raise ValueError("seconds must list whole seconds from 1 to 3600")
        return value

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        sizes = tuple(item.strip().lower() for item in value)
        if not sizes or any(not re.fullmatch(r"[1-9]\d{1,4}x[1-9]\d{1,4}", item) for item in sizes):
            raise ValueError('sizes must list WxH sizes such as "1280x720"')
        return sizes

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/]+", value):
            raise ValueError("base_url must look like scheme://host[:port][/prefix]")
        return value.rstrip("/")


class Settings(BaseModel):
    """Everything vidgate reads at startup, validated once and passed into create_app()."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str = "http://127.0.0.1:8000"
    # Not in a repr: it may carry the database password.
    database_url: str = Field(default="sqlite:///var/vidgate.db", repr=False)
    media_dir: Path = Path("var/media")
    default_model: str = "vidgate-local"
    secret: str = Field(default="", repr=False)
    signed_url_ttl: int = Field(default=86400, ge=1)
    retention_days: int = Field(default=7, ge=1)
    # How often stored videos past their retention are looked for and deleted.
    sweep_interval_s: float = Field(default=300.0, gt=0)
    fetch_private_urls: bool = False
    local_enabled: bool = True
    # How many local renders run at once (worker processes); 0 = one per CPU.
    local_workers: int = Field(default=0, ge=0)
    # The largest request body on any route (an uploaded file, a JSON body with data: URIs); larger is a 413.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # What one key may upload through the DashScope upload flow in any 24 h (uploads are kept 48 h).
    upload_allowance_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    # When set, GET /metrics needs "Authorization: Bearer <metrics_token>"; empty = open.
    metrics_token: str = ""
    # First interval between status reads of an upstream task (it then grows); 0 = each model's own pace.
    poll_interval_s: float = Field(default=0.0, ge=0.0)
    # A whole submit (failover and lookups included) ends within this; the row's lease is twice as long.
    submit_timeout_s: float = Field(default=60.0, gt=0)
    # How many times a submit goes over a model's channels (after 0.5 s, then 1 s, ...) before the client gets
    # a 503, while submit_timeout_s allows: only refusals and lookups that found nothing are asked again.
    submit_rounds: int = Field(default=3, ge=1)
    # A channel whose submits fail this many times in a row is taken out for breaker_cooldown_s.
    breaker_threshold: int = Field(default=3, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    # Webhook retries: these delays first (SPEC: 1 s, 5 s, 30 s, 2 min, 10 min), then hourly, for 24 h.
    webhook_retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    webhook_retry_every_s: float = Field(default=3600.0, gt=0)
    webhook_give_up_after_s: float = Field(default=86400.0, gt=0)
    channels: tuple[ChannelConfig, ...] = ()
    prices: dict[str, Price] = Field(default_factory=dict)
    # Where the file was read from (None for the embedded default); not a TOML key.
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/]+", value):
            raise ValueError("public_url must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "sqlite+aiosqlite:", "postgresql:", "postgresql+asyncpg:", "postgres:")):
            raise ValueError("database_url must be sqlite:///PATH or postgresql://user@host/db")
        return value

    @property
    def state_dir(self) -> Path:
        """The folder beside media_dir where vidgate keeps its own files (the generated secret)."""
        return self.media_dir.parent

    def with_secret(self) -> Settings:
        """Return settings whose secret is set, generating and keeping one under state_dir when absent.

        The file is readable by its owner only. Several processes may start at once: the first to link its
        fully written file into place wins, and the others read that one.
        """
        if self.secret:
            return self
        path = self.state_dir / "secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
                with contextlib.suppress(FileExistsError):
                    os.link(draft, path)
            finally:
                draft.unlink(missing_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # kept by an older vidgate with the default umask
        secret = path.read_text().strip()
        if not secret:
            raise ConfigError(f"{path} is empty; delete it to have a new secret generated, or set `secret`")
        return self.model_copy(update={"secret": secret})


def config_path(explicit: str | Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Pick the config file: --config, then $VIDGATE_CONFIG, then ./vidgate.toml, else none."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_settings(explicit: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; the embedded default when no file is named or found."""
    env = os.environ if environ is None else environ
    path = config_path(explicit, env)
    if path is None:
        return Settings()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_settings(raw, env, source=path)


def parse_settings(raw: Mapping[str, Any], environ: Mapping[str, str], source: Path | None = None) -> Settings:
    """Validate a parsed TOML document after ${ENV} substitution."""
    where = str(source) if source else "config"
    data = _substitute(raw, environ, where)
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{where}: {problems}") from exc


def _substitute(value: Any, environ: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{where}: environment variable {name} is not set (referenced as ${{{name}}})")
            return environ[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, Mapping):
        return {key: _substitute(item, environ, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, environ, where) for item in value]
    return value
