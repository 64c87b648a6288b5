"""US$ per million tokens from measured throughput and power: rented or owned hardware. Pure functions."""

from __future__ import annotations

import math

from bench.core.schema import NAN

HOURS_PER_YEAR = 8760.0


def usd_per_mtok_rented(tok_s: float, price_per_hour: float) -> float:
    """Rental: the hour's price over the tokens made in an hour, per million."""
    if not tok_s or math.isnan(tok_s) or tok_s <= 0:
        return NAN
    return price_per_hour / (tok_s * 3600.0) * 1e6


def owned_cost_per_hour(purchase: float, lifetime_years: float, utilisation: float, power_w: float,
                        usd_per_kwh: float) -> float:
    """Owning: purchase amortised over the hours it does useful work, plus electricity while it does.

    NaN when the power was not measured (the energy part cannot be priced).
    """
    if lifetime_years <= 0 or utilisation <= 0 or math.isnan(power_w):
        return NAN
    capital = purchase / (lifetime_years * HOURS_PER_YEAR * utilisation)
    energy = power_w / 1000.0 * usd_per_kwh
    return capital + energy


def usd_per_mtok_owned(tok_s: float, purchase: float, lifetime_years: float, utilisation: float,
                       power_w: float, usd_per_kwh: float) -> float:
    """Owning, per million tokens at the measured throughput and power."""
    return usd_per_mtok_rented(tok_s, owned_cost_per_hour(purchase, lifetime_years, utilisation, power_w,
                                                          usd_per_kwh))
