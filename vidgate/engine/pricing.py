"""Prices: USD per second of video, by model and resolution tier, in exact micro-dollars. Pure.

Price = per-second price of the model at the request's tier, times seconds. The config's `[prices]` table wins;
otherwise the defaults below apply. Defaults are the vendors' public list prices per second of output as
published on their pricing pages (OpenAI API pricing, Alibaba Cloud Model Studio international pricing,
Kling AI developer pricing, Volcengine Jimeng pricing, Vidu API pricing) converted to USD per second where
they are sold per clip or per credit; they change, so operators should set their own in `[prices]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

MICROS = 1_000_000
Price = Decimal | Mapping[str, Decimal]


def _tiers(p480: str, p720: str, p1080: str) -> dict[str, Decimal]:
    return {"480P": Decimal(p480), "720P": Decimal(p720), "1080P": Decimal(p1080)}


DEFAULT_PRICES: dict[str, Price] = {
    # Built in: rendering on your own CPU costs nothing.
    "vidgate-local": Decimal("0"),
    # OpenAI API pricing: sora-2 $0.10/s (720p); sora-2-pro $0.30/s at 720p, $0.50/s at 1024x1792.
    "sora-2": Decimal("0.10"),
    "sora-2-pro": _tiers("0.30", "0.30", "0.50"),
    # Alibaba Cloud Model Studio (international) video generation, per second of output.
    "wan2.5-t2v-preview": _tiers("0.05", "0.10", "0.15"),
    "wan2.5-i2v-preview": _tiers("0.05", "0.10", "0.15"),
    "wan2.2-t2v-plus": _tiers("0.02", "0.10", "0.10"),
    "wan2.2-i2v-plus": _tiers("0.02", "0.10", "0.10"),
    "wan2.2-i2v-flash": _tiers("0.015", "0.036", "0.07"),
    "wanx2.1-t2v-turbo": Decimal("0.036"),
    "wanx2.1-t2v-plus": Decimal("0.10"),
    "wanx2.1-i2v-turbo": Decimal("0.036"),
    "wanx2.1-i2v-plus": Decimal("0.10"),
    "wan2.2-kf2v-flash": _tiers("0.015", "0.036", "0.07"),
    "wanx2.1-kf2v-plus": Decimal("0.10"),
    # Kling AI developer API: std (720p) / pro (1080p) 5 s clips, divided by 5.
    "kling-v1": _tiers("0.028", "0.028", "0.098"),
    "kling-v1-6": _tiers("0.056", "0.056", "0.098"),
    "kling-v2-master": Decimal("0.28"),
    "kling-v2-1-master": Decimal("0.28"),
    # Volcengine Jimeng video generation (S2.0 Pro), per 5 s clip divided by 5.
    "jimeng_vgfm_t2v_l20": Decimal("0.04"),
    "jimeng_vgfm_i2v_l20": Decimal("0.04"),
    # Vidu API: viduq1 1080p 5 s clip, divided by 5.
    "viduq1": Decimal("0.08"),
}


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


def price_for(model: str, tier: str, seconds: float, overrides: Mapping[str, Price], fallback: Price) -> int:
    """What `seconds` of `model` at `tier` cost, in micro-dollars."""
    price = overrides.get(model, DEFAULT_PRICES.get(model, fallback))
    return to_micros(per_second(price, tier) * Decimal(str(seconds)))


def settle_amount(reserved: int, *, per_second_micros: Decimal, requested: int, real_duration: float | None) -> int:
    """What a completed task finally costs: its real length (to 0.1 s), never more than was reserved."""
    if real_duration is None or real_duration <= 0:
        return reserved
    billed = min(Decimal(requested), Decimal(str(round(real_duration, 1))))
    return min(reserved, int((per_second_micros * billed).quantize(Decimal(1), rounding=ROUND_HALF_UP)))
