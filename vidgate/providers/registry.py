"""Which providers exist, which channels serve which models, and the model catalogue.

Built-in providers register through DEFAULT_PROVIDERS, the same table a plugin would extend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import httpx

from vidgate.config import ChannelConfig, Settings
from vidgate.errors import ConfigError, InvalidRequest
from vidgate.providers.base import Credentials, ModelSpec, Provider

ProviderFactory = Callable[[Settings, httpx.AsyncClient], Provider]

# provider name -> "module:factory"; a factory takes (settings, http client) and returns a Provider.
DEFAULT_PROVIDERS: dict[str, str] = {
    "local": "vidgate.providers.local:from_settings",
    "dashscope": "vidgate.providers.dashscope:from_settings",
    "openai": "vidgate.providers.openai:from_settings",
    "kling": "vidgate.providers.kling:from_settings",
    "jimeng": "vidgate.providers.jimeng:from_settings",
    "vidu": "vidgate.providers.vidu:from_settings",
}


@dataclass(frozen=True)
class Channel:
    """One upstream account serving some of a provider's models."""

    name: str
    provider: str
    credentials: Credentials
    models: frozenset[str] | None = None
    model_map: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    weight: int = 1
    max_in_flight: int | None = None
    # What the channel declares for models its provider does not know (see ChannelConfig).
    seconds: tuple[int, ...] | None = None
    sizes: tuple[str, ...] | None = None

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models

    def upstream_model(self, model: str) -> str:
        return self.model_map.get(model, model)

    @classmethod
    def from_config(cls, config: ChannelConfig) -> Channel:
        creds = Credentials(
            channel=config.name,
            base_url=config.base_url,
            api_key=config.api_key,
            access_key=config.access_key,
            secret_key=config.secret_key,
        )
        return cls(
            name=config.name,
            provider=config.provider,
            credentials=creds,
            models=frozenset(config.models) if config.models is not None else None,
            model_map=dict(config.model_map),
            priority=config.priority,
            weight=config.weight,
            max_in_flight=config.max_in_flight,
            seconds=config.seconds,
            sizes=config.sizes,
        )


LOCAL_CHANNEL = Channel(name="local", provider="local", credentials=Credentials(channel="local"))


class Registry:
    """Providers by name, channels, and the models they make routable."""

    def __init__(self, providers: Mapping[str, Provider], channels: Iterable[Channel]) -> None:
        self._providers = dict(providers)
        # A channel without `models` serves every model its provider knows, not the names other channels declare.
        self._channels = [
            ch
            if ch.models is not None
            else replace(ch, models=frozenset(spec.name for spec in self._providers[ch.provider].models()))
            for ch in channels
        ]
        self._specs: dict[str, ModelSpec] = {}
        for channel in self._channels:
            provider = self._providers[channel.provider]
            for spec in provider.models():
                if channel.serves(spec.name):
                    self._specs.setdefault(spec.name, spec)
        for channel in self._channels:
            provider = self._providers[channel.provider]
            known = {spec.name for spec in provider.models()}
            declared = sorted((channel.models or frozenset()) - known)
            for name in declared:
                # A model the provider does not know: passed on (e.g. by `openai` to any OpenAI-format upstream)
                # for the upstream to validate, or a configuration error.
                passed_on = provider.declared_model(name, seconds=channel.seconds, sizes=channel.sizes)
                if passed_on is None:
                    raise ConfigError(
                        f"channel {channel.name}: {channel.provider} has no model {name}; "
                        f"it has: {', '.join(sorted(known))}"
                    )
                other = self._specs.setdefault(name, passed_on).provider
                if other != channel.provider:
                    raise ConfigError(
                        f"channel {channel.name}: {name} is served by {other} channels here; "
                        "one model routes to channels of one provider"
                    )
            if (channel.seconds or channel.sizes) and not declared:
                raise ConfigError(
                    f"channel {channel.name}: seconds and sizes describe models that {channel.provider} does not "
                    "know, and this channel's models names none"
                )

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self._providers

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels)

    def models(self) -> list[ModelSpec]:
        """Every routable model, sorted by provider then name."""
        return sorted(self._specs.values(), key=lambda spec: (spec.provider, spec.name))

    def spec(self, model: str, *, param: str = "model") -> ModelSpec:
        """The model's capabilities; a 400 naming the known models when it is not routable."""
        spec = self._specs.get(model)
        if spec is None:
            known = ", ".join(sorted(self._specs))
            raise InvalidRequest(
                f"The model '{model}' does not exist or is not served here. Available models: {known}.",
                param=param,
                code="model_not_found",
            )
        return spec

    def provider(self, name: str) -> Provider:
        return self._providers[name]

    def channels_for(self, model: str) -> list[Channel]:
        provider = self._specs[model].provider
        return [ch for ch in self._channels if ch.provider == provider and ch.serves(model)]

    def channel(self, name: str) -> Channel | None:
        return next((ch for ch in self._channels if ch.name == name), None)


def _factory(path: str) -> ProviderFactory:
    module, _, attr = path.partition(":")
    factory: ProviderFactory = getattr(importlib.import_module(module), attr)
    return factory


def build_registry(settings: Settings, http: httpx.AsyncClient, factories: Mapping[str, str] | None = None) -> Registry:
    """Instantiate the providers the configuration uses, and its channels (plus local when enabled)."""
    table = dict(DEFAULT_PROVIDERS if factories is None else factories)
    channels = [Channel.from_config(config) for config in settings.channels]
    names = [ch.name for ch in channels]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise ConfigError(f"two channels are named {duplicate}")
    if settings.local_enabled and not any(ch.provider == "local" for ch in channels):
        channels.append(LOCAL_CHANNEL)
    providers: dict[str, Provider] = {}
    for channel in channels:
        if channel.provider in providers:
            continue
        if channel.provider not in table:
            raise ConfigError(
                f"channel {channel.name}: provider {channel.provider} is not available in this build; "
                f"available: {', '.join(sorted(table))}"
            )
        providers[channel.provider] = _factory(table[channel.provider])(settings, http)
    return Registry(providers, channels)
