"""The registry: which channels serve which models, and models a channel names that its provider does not know."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from importlib import metadata

import httpx
import pytest

from vidgate.config import parse_settings
from vidgate.engine.pricing import price_for
from vidgate.errors import ConfigError
from vidgate.providers import registry as registry_module
from vidgate.providers.base import Credentials, ModelSpec, Progress, Provider, Submitted, VideoRequest
from vidgate.providers.registry import ENTRY_POINT_GROUP, Registry, build_registry, registered


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:  # never sends: building a registry makes no request
        yield client


def registry(
    http: httpx.AsyncClient, *channels: dict[str, object], prices: dict[str, object] | None = None
) -> Registry:
    settings = parse_settings({"channels": list(channels), "prices": prices or {}}, environ={})
    return build_registry(settings, http)


SORA = {"name": "sora-main", "provider": "openai", "api_key": "k"}
PEER = {"name": "peer", "provider": "openai", "base_url": "http://peer.example:8000", "api_key": "k"}


def test_an_openai_channel_routes_a_model_it_names(http: httpx.AsyncClient) -> None:
    reg = registry(http, SORA, {**PEER, "models": ["my-model"]}, prices={"my-model": 0.02})
    spec = reg.spec("my-model")
    assert (spec.provider, spec.modes, spec.default_seconds, spec.default_size) == (
        "openai",
        frozenset({"t2v", "i2v"}),
        4,
        "1280x720",
    )
    # Undeclared: any whole seconds to 60 and any even size go on; the upstream judges them.
    assert spec.seconds == tuple(range(1, 61)) and spec.any_size == (16, 4096) and not spec.params
    assert [ch.name for ch in reg.channels_for("my-model")] == ["peer"]
    # The channel without `models` serves the provider's own models, not names other channels declare.
    assert [ch.name for ch in reg.channels_for("sora-2")] == ["sora-main"]
    assert [s.name for s in reg.models() if s.provider == "openai"] == ["my-model", "sora-2", "sora-2-pro"]
    # Price: none of its own; [prices] names it (startup refuses it otherwise, see below).
    assert spec.price is None
    assert price_for("my-model", "720P", 4, {"my-model": Decimal("0.02")}, spec.price) == 80_000


def test_declared_seconds_and_sizes(http: httpx.AsyncClient) -> None:
    peer = {**PEER, "models": ["a", "b"], "seconds": [10, 5], "sizes": ["960X960", "1280x720"]}
    reg = registry(http, peer, prices={"a": 0.03, "b": 0})
    spec = reg.spec("a")
    assert (spec.seconds, spec.default_seconds, spec.sizes, spec.default_size) == (
        (5, 10),
        5,
        ("960x960", "1280x720"),
        "960x960",
    )
    assert spec.any_size is None and not spec.tiers and reg.spec("b").sizes == spec.sizes
    assert price_for("a", "720P", 10, {"a": Decimal("0.03")}, spec.price) == 300_000


@pytest.mark.parametrize(
    ("channels", "named"),
    [
        # Other providers serve only their own models.
        (
            [{"name": "wan", "provider": "dashscope", "api_key": "k", "models": ["my-model"]}],
            "dashscope has no model my-model",
        ),
        # seconds / sizes describe models the provider does not know; here there are none.
        ([{**SORA, "models": ["sora-2"], "seconds": [4]}], "seconds and sizes"),
        # A model openai passes on unchecked routes to openai channels only.
        (
            [{"name": "wan", "provider": "dashscope", "api_key": "k"}, {**PEER, "models": ["wan2.5-t2v-preview"]}],
            "wan2.5-t2v-preview is served by dashscope",
        ),
        # A provider nobody registered: the error lists the registered ones.
        ([{"name": "x", "provider": "nope"}], "provider 'nope' is not registered; registered: .*dashscope.*kling"),
        # A key no provider reads, or one another provider reads.
        ([{**SORA, "projekt": "p"}], "unknown key 'projekt'; provider openai takes none"),
    ],
)
def test_what_a_channel_may_not_declare(http: httpx.AsyncClient, channels: list[dict[str, object]], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        registry(http, *channels)


@pytest.mark.parametrize("bad", [{"seconds": []}, {"seconds": [0]}, {"sizes": ["big"]}, {"sizes": []}])
def test_declared_values_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_settings({"channels": [{**PEER, "models": ["m"], **bad}]}, environ={})


def test_a_model_without_a_price_fails_startup_naming_it(http: httpx.AsyncClient) -> None:
    peer = {**PEER, "models": ["free-one", "paid-one"]}
    with pytest.raises(ConfigError, match="no price for free-one, paid-one"):
        registry(http, peer)
    with pytest.raises(ConfigError, match="no price for paid-one"):
        registry(http, peer, prices={"free-one": 0})
    # An explicit 0 is a price.
    reg = registry(http, peer, prices={"free-one": 0, "paid-one": {"720P": 0.1}})
    assert price_for("free-one", "720P", 4, {"free-one": Decimal(0)}, reg.spec("free-one").price) == 0


def test_a_registered_provider_loads_only_when_a_channel_uses_it(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = metadata.EntryPoint(name="ghost", value="vidgate_no_such_module:from_settings", group=ENTRY_POINT_GROUP)
    real = registered()
    monkeypatch.setattr(registry_module, "registered", lambda: {**real, "ghost": missing})
    # Not configured: nothing imports it.
    assert [spec.name for spec in registry(http, SORA).models() if spec.provider == "openai"] == [
        "sora-2",
        "sora-2-pro",
    ]
    with pytest.raises(ConfigError, match=r"'ghost' is registered as .*vidgate_no_such_module.* does not load"):
        registry(http, {"name": "g", "provider": "ghost"})


def test_no_registered_providers_is_a_clear_error(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "registered", dict)
    with pytest.raises(ConfigError, match=r"no providers are registered .*pip install -e"):
        registry(http, SORA)


def test_built_ins_are_registered_through_the_entry_point_group() -> None:
    names = set(registered())
    assert {"local", "openai", "dashscope", "kling", "jimeng", "vidu", "ark", "gemini", "vertex", "minimax"} <= names


class TwinA(Provider):
    """Two providers serving one model (as gemini and vertex serve veo), with a channel key of its own."""

    name = "twin_a"
    channel_keys = frozenset({"project"})

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(name="shared", provider=self.name, modes=frozenset({"t2v"}), seconds=(4,),
                          default_seconds=4, price=Decimal("0.1"))]  # fmt: skip

    async def submit(
        self, req: VideoRequest, creds: Credentials, *, task_id: str, callback_url: str | None = None
    ) -> Submitted:
        raise NotImplementedError

    async def poll(self, upstream_id: str, creds: Credentials) -> Progress:
        raise NotImplementedError


class TwinB(TwinA):
    name = "twin_b"
    channel_keys = frozenset()


def test_a_model_of_several_providers_routes_to_all_and_channel_keys_reach_credentials(http: httpx.AsyncClient) -> None:
    settings = parse_settings(
        {
            "channels": [
                {"name": "a", "provider": "twin_a", "project": "p-1", "priority": 1},
                {"name": "b", "provider": "twin_b"},
            ],
            "local_enabled": False,
        },
        environ={},
    )
    factories = {"twin_a": TwinA, "twin_b": TwinB}
    reg = build_registry(settings, http, factories={k: (lambda s, h, c=c: c(h)) for k, c in factories.items()})
    assert [ch.name for ch in reg.channels_for("shared")] == ["a", "b"]
    assert [spec.provider for spec in reg.specs("shared")] == ["twin_a", "twin_b"]
    creds = reg.channel("a").credentials  # type: ignore[union-attr]
    assert creds.extra == {"project": "p-1"} and "p-1" not in repr(creds)
    assert Credentials.from_json(creds.to_json()) == creds
    bad = parse_settings(
        {"channels": [{"name": "b", "provider": "twin_b", "project": "p"}], "local_enabled": False}, environ={}
    )
    with pytest.raises(ConfigError, match="unknown key 'project'; provider twin_b takes none"):
        build_registry(bad, http, factories={"twin_b": lambda s, h: TwinB(h)})
