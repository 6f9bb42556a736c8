"""The registry: which channels serve which models, and models a channel names that its provider does not know."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from vidgate.config import parse_settings
from vidgate.engine.pricing import price_for
from vidgate.errors import ConfigError
from vidgate.providers.registry import Registry, build_registry


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
    reg = registry(http, SORA, {**PEER, "models": ["my-model"]})
    spec = reg.spec("my-model")
    assert (spec.provider, spec.modes, spec.default_seconds, spec.default_size) == (
        "openai",
        frozenset({"t2v", "i2v"}),
        4,
        "1280x720",
    )
    # Undeclared: any whole seconds to 60 and any even size go on; the upstream judges them.
    assert spec.seconds == tuple(range(1, 61)) and spec.any_size == (16, 4096) and not spec.metadata_keys
    assert [ch.name for ch in reg.channels_for("my-model")] == ["peer"]
    # The channel without `models` serves the provider's own models, not names other channels declare.
    assert [ch.name for ch in reg.channels_for("sora-2")] == ["sora-main"]
    assert [s.name for s in reg.models() if s.provider == "openai"] == ["my-model", "sora-2", "sora-2-pro"]
    # Price: nothing unless [prices] names it.
    assert price_for("my-model", "720P", 4, {}, spec.price) == 0


def test_declared_seconds_and_sizes(http: httpx.AsyncClient) -> None:
    peer = {**PEER, "models": ["a", "b"], "seconds": [10, 5], "sizes": ["960X960", "1280x720"]}
    reg = registry(http, peer, prices={"a": 0.03})
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
        # One model routes to one provider's channels.
        (
            [{"name": "wan", "provider": "dashscope", "api_key": "k"}, {**PEER, "models": ["wan2.5-t2v-preview"]}],
            "wan2.5-t2v-preview is served by dashscope",
        ),
    ],
)
def test_what_a_channel_may_not_declare(http: httpx.AsyncClient, channels: list[dict[str, object]], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        registry(http, *channels)


@pytest.mark.parametrize("bad", [{"seconds": []}, {"seconds": [0]}, {"sizes": ["big"]}, {"sizes": []}])
def test_declared_values_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_settings({"channels": [{**PEER, "models": ["m"], **bad}]}, environ={})
