"""Exact money arithmetic on integer columns: ratios rounded once, half away from zero."""

from __future__ import annotations

import polars as pl

# Exact intermediate usage parts are carried in 10^-12 of the currency (Int128).
PICO_SCALE = 12


def round_half_away(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """`numerator / denominator` rounded to an integer, halves away from zero (SPEC §4)."""
    num_abs, den_abs = numerator.abs(), denominator.abs()
    magnitude = (num_abs * 2 + den_abs) // (den_abs * 2)
    negative = (numerator < 0) != (denominator < 0)
    return pl.when(negative).then(-magnitude).otherwise(magnitude)


def round_half_away_int(numerator: int, denominator: int) -> int:
    """Scalar twin of `round_half_away`, for tests and summaries."""
    magnitude = (abs(numerator) * 2 + abs(denominator)) // (abs(denominator) * 2)
    return -magnitude if (numerator < 0) != (denominator < 0) else magnitude
