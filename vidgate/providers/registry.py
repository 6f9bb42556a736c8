"""Which providers exist, which channels serve which models, and the model catalogue.

Providers register through the `vidgate.providers` entry-point group (`name = "module:factory"`), the built-in
ones too (pyproject.toml), so a plugin package adds one without touching vidgate (as llm's plugins do). A
provider's module is imported only when a channel uses it: a broken or missing plugin matters only where it is
configured. A factory takes (settings, http client) and returns a Provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata

import httpx

from vidgate.config import ChannelConfig, Settings
from vidgate.errors import ConfigError, InvalidRequest
from vidgate.providers.base import Credentials, ModelSpec, Provider

ProviderFactory = Callable[[Settings, httpx.AsyncClient], Provider]
ENTRY_POINT_GROUP = "vidgate.providers"


def registered() -> dict[str, metadata.EntryPoint]:
    """Every provider registered through the entry-point group, by name (the first one found wins)."""
    found: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


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
            extra=dict(config.extra),
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

    def __init__(
        self,
        providers: Mapping[str, Provider],
        channels: Iterable[Channel],
        prices: Mapping[str, object] | None = None,
    ) -> None:
        self._providers = dict(providers)
        # A channel without `models` serves every model its provider knows, not the names other channels declare.
        self._channels = [
            ch
            if ch.models is not None
            else replace(ch, models=frozenset(spec.name for spec in self._providers[ch.provider].models()))
            for ch in channels
        ]
        # model -> provider -> spec; a model several providers know (veo on gemini and vertex) routes to all.
        self._by_provider: dict[str, dict[str, ModelSpec]] = {}
        for channel in self._channels:
            provider = self._providers[channel.provider]
            for spec in provider.models():
                if channel.serves(spec.name):
                    self._by_provider.setdefault(spec.name, {}).setdefault(channel.provider, spec)
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
                serving = self._by_provider.setdefault(name, {})
                others = sorted(set(serving) - {channel.provider})
                if others:
                    # A passed-on model is checked by its upstream only; others' channels would get unchecked input.
                    raise ConfigError(
                        f"channel {channel.name}: {name} is served by {others[0]} channels here; "
                        f"a model {channel.provider} passes on routes to channels of {channel.provider} only"
                    )
                serving.setdefault(channel.provider, passed_on)
            if (channel.seconds or channel.sizes) and not declared:
                raise ConfigError(
                    f"channel {channel.name}: seconds and sizes describe models that {channel.provider} does not "
                    "know, and this channel's models names none"
                )
        # The first provider to serve a model (in channel order) describes it: its capabilities are validated.
        self._specs = {name: next(iter(specs.values())) for name, specs in self._by_provider.items()}
        priced = prices or {}
        unpriced = sorted(name for name, spec in self._specs.items() if spec.price is None and name not in priced)
        if unpriced:
            raise ConfigError(
                f"no price for {', '.join(unpriced)}: set one under [prices] "
                '(USD per second, e.g. "' + unpriced[0] + '" = 0.1, or 0 for free)'
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

    def specs(self, model: str) -> list[ModelSpec]:
        """The model as each provider serving it declares it (first: the one requests are validated against)."""
        return list(self._by_provider.get(model, {}).values())

    def channels_for(self, model: str) -> list[Channel]:
        providers = self._by_provider.get(model, {})
        return [ch for ch in self._channels if ch.provider in providers and ch.serves(model)]

    def channel(self, name: str) -> Channel | None:
        return next((ch for ch in self._channels if ch.name == name), None)


def build_registry(
    settings: Settings, http: httpx.AsyncClient, factories: Mapping[str, ProviderFactory] | None = None
) -> Registry:
    """Instantiate the providers the configuration uses, and its channels (plus local when enabled).

    `factories` replaces the entry-point table (tests); by default each channel's provider is looked up among
    the registered entry points and its module imported then.
    """
    points = registered() if factories is None else {}
    available = sorted(points) if factories is None else sorted(factories)
    if not available:
        raise ConfigError(
            f"no providers are registered (entry-point group {ENTRY_POINT_GROUP!r} is empty): install vidgate "
            "with pip (`pip install -e .` in a checkout) so its built-in providers are registered"
        )
    channels = [Channel.from_config(config) for config in settings.channels]
    names = [ch.name for ch in channels]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise ConfigError(f"two channels are named {duplicate}")
    if settings.local_enabled and not any(ch.provider == "local" for ch in channels):
        channels.append(LOCAL_CHANNEL)
    providers: dict[str, Provider] = {}
    for channel in channels:
        if channel.provider not in providers:
            providers[channel.provider] = _instantiate(channel, settings, http, points, factories, available)
        provider = providers[channel.provider]
        config = next((c for c in settings.channels if c.name == channel.name), None)
        unknown = sorted(set(config.extra) - provider.channel_keys) if config else []
        if unknown:
            takes = ", ".join(sorted(provider.channel_keys)) or "none besides api_key, access_key, secret_key"
            raise ConfigError(
                f"channel {channel.name}: unknown key {unknown[0]!r}; provider {channel.provider} takes {takes}"
            )
    return Registry(providers, channels, settings.prices)


def _instantiate(
    channel: Channel,
    settings: Settings,
    http: httpx.AsyncClient,
    points: Mapping[str, metadata.EntryPoint],
    factories: Mapping[str, ProviderFactory] | None,
    available: list[str],
) -> Provider:
    name = channel.provider
    if factories is not None and name in factories:
        return factories[name](settings, http)
    point = points.get(name)
    if point is None:
        raise ConfigError(
            f"channel {channel.name}: provider {name!r} is not registered; registered: {', '.join(available)}"
        )
    try:
        factory = point.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"channel {channel.name}: provider {name!r} is registered as {point.value!r}, which does not load: "
            f"{exc.__class__.__name__}: {exc}"
        ) from exc
    provider = factory(settings, http)
    if not isinstance(provider, Provider):
        raise ConfigError(f"provider {name!r} ({point.value}) did not make a Provider")
    return provider
