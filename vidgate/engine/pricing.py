"""Prices: USD per second of video, by model and resolution tier, in exact micro-dollars. Pure.

Price = per-second price of the model at the request's tier, times seconds. The config's `[prices]` table wins;
otherwise the price the provider module states in the model's ModelSpec (with its source and date there). A
model with neither is refused at startup (providers/registry.py), so nothing is ever silently free.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

from vidgate.providers.base import Price

MICROS = 1_000_000


def per_second(price: Price, tier: str) -> Decimal:
    """The per-second price at a tier (a single number applies to every tier)."""
    if isinstance(price, Mapping):
        if tier in price:
            return Decimal(price[tier])
        # A table without this tier: the nearest tier above, else the highest listed.
        order = ["480P", "720P", "1080P"]
        for candidate in order[order.index(tier) if tier in order else 0 :]:
            if candidate in price:
                return Decimal(price[candidate])
        return max(Decimal(value) for value in price.values())
    return Decimal(price)


def to_micros(usd: Decimal) -> int:
    """USD → integer micro-dollars, rounded half up."""
    return int((usd * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_micros(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS).quantize(Decimal("0.000001"))


def price_for(model: str, tier: str, seconds: float, overrides: Mapping[str, Price], declared: Price | None) -> int:
    """What `seconds` of `model` at `tier` cost, in micro-dollars: `[prices]` first, else the spec's price."""
    price = overrides.get(model, declared)
    if price is None:
        # The registry refuses such a model at startup; reaching here is a bug, never a free video.
        raise ValueError(f"{model} has no price")
    return to_micros(per_second(price, tier) * Decimal(str(seconds)))


def settle_amount(reserved: int, *, per_second_micros: Decimal, requested: int, real_duration: float | None) -> int:
    """What a completed task finally costs: its real length (to 0.1 s), never more than was reserved."""
    if real_duration is None or real_duration <= 0:
        return reserved
    billed = min(Decimal(requested), Decimal(str(round(real_duration, 1))))
    return min(reserved, int((per_second_micros * billed).quantize(Decimal(1), rounding=ROUND_HALF_UP)))
