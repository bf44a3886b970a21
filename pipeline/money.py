"""Exact money arithmetic on integer columns: ratios rounded once, half away from zero."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import polars as pl

# Exact intermediate usage parts are carried in 10^-12 of the currency (Int128).
PICO_SCALE = 12


def round_half_away(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """`numerator / denominator` rounded to an integer, halves away from zero (SPEC §4)."""
    num_abs, den_abs = numerator.abs(), denominator.abs()
    magnitude = (num_abs * 2 + den_abs) // (den_abs * 2)
    negative = (numerator < 0) != (denominator < 0)
    return pl.when(negative).then(0 - magnitude).otherwise(magnitude)


def round_half_away_int(numerator: int, denominator: int) -> int:
    """Scalar twin of `round_half_away`, for tests and summaries."""
    magnitude = (abs(numerator) * 2 + abs(denominator)) // (abs(denominator) * 2)
    return -magnitude if (numerator < 0) != (denominator < 0) else magnitude


# Usage quantities and amounts are integers of 10^-6 (`pipeline.catalog.UNIT`).
MICRO = 10**6
PICO = 10**PICO_SCALE


def minor_factor(minor_units: int) -> int:
    """How many minor units make one major unit (`10 ** minor_units`)."""
    return 10**minor_units


def micro_to_minor(micro: pl.Expr, factor: pl.Expr) -> pl.Expr:
    """An amount in 10^-6 of the currency, rounded once to minor units (`factor` = 10^minor)."""
    return round_half_away(micro.cast(pl.Int128) * factor, pl.lit(MICRO, dtype=pl.Int128)).cast(
        pl.Int64
    )


def pico_to_minor(pico: pl.Expr, factor: pl.Expr) -> pl.Expr:
    """An exact amount in 10^-12 of the currency, rounded once to minor units."""
    return round_half_away(pico.cast(pl.Int128) * factor, pl.lit(PICO, dtype=pl.Int128)).cast(
        pl.Int64
    )


def prorate(amount_minor: pl.Expr, days: pl.Expr, full_days: pl.Expr) -> pl.Expr:
    """`amount × days / full_days` as an exact ratio of integers, rounded once to minor units."""
    return round_half_away(
        amount_minor.cast(pl.Int128) * days.cast(pl.Int128), full_days.cast(pl.Int128)
    ).cast(pl.Int64)


def format_amount(
    amount: Decimal | int | str,
    minor_units: int,
    currency: str | None = None,
    *,
    in_minor: bool = False,
) -> str:
    """An amount as people read it: exactly `minor_units` decimals (USD `137.80`, JPY `3,224`),
    thousands separated, followed by the currency code when given. `in_minor` says `amount` is
    an integer count of minor units. Display only: the tables keep their DECIMAL types.

    Stored amounts are already rounded to the minor unit, so this normally only drops zeros;
    anything finer is rounded half away from zero, as the spec rounds (ROUND_HALF_UP is that
    for Decimal).
    """
    value = Decimal(int(amount)).scaleb(-minor_units) if in_minor else Decimal(amount)
    shown = value.quantize(Decimal(1).scaleb(-minor_units), rounding=ROUND_HALF_UP)
    if shown == 0:
        shown = abs(shown)  # never "-0.00"
    text = f"{shown:,.{minor_units}f}"
    return f"{text} {currency}" if currency else text


def minor_as_text(amount_minor: pl.Expr, minor_units: pl.Expr) -> pl.Expr:
    """An integer count of minor units as plain decimal text at the currency's precision
    (`779` with 2 minor units -> `7.79`, with 0 -> `779`, `-5` -> `-0.05`): for reasons people
    read; the amounts themselves stay integers."""
    magnitude = amount_minor.abs()
    factor = pl.lit(10, dtype=pl.Int64).pow(minor_units).cast(pl.Int64)
    whole = (magnitude // factor).cast(pl.Utf8)
    fraction = (magnitude % factor).cast(pl.Utf8).str.zfill(minor_units)
    sign = pl.when(amount_minor < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return (
        pl.when(minor_units == 0)
        .then(pl.concat_str(sign, whole))
        .otherwise(pl.concat_str(sign, whole, pl.lit("."), fraction))
    )


def format_quantity(value: Decimal | int | str | None) -> str:
    """A stored quantity (DECIMAL(18,6)) as people read it: `130`, `12.5`, never `130.000000`
    (display only)."""
    if value is None:
        return ""
    text = f"{Decimal(value).normalize():f}"
    return "0" if text == "-0" else text
