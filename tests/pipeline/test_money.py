"""Exact money arithmetic (pipeline/money.py): one rounding, half away from zero."""

from __future__ import annotations

from fractions import Fraction

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.money import (
    micro_to_minor,
    minor_factor,
    pico_to_minor,
    prorate,
    round_half_away,
    round_half_away_int,
)


def reference(numerator: int, denominator: int) -> int:
    """Half away from zero, by exact fractions."""
    value = Fraction(numerator, denominator)
    magnitude = abs(value)
    whole = int(magnitude)
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return whole if value >= 0 else -whole


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (5, 2, 3),  # 2.5 -> 3
        (-5, 2, -3),  # -2.5 -> -3 (away from zero, not towards +inf)
        (3, 2, 2),  # 1.5 -> 2 (not half-to-even)
        (-3, 2, -2),
        (5, -2, -3),
        (7, 3, 2),
        (-7, 3, -2),
        (1, 3, 0),
        (0, 7, 0),
        (2900 * 15, 29, 1500),  # Kill Bill's leap-year credit: 15/29 of $29.00
        (900 * 21, 90, 210),  # 21/90 of $9.00
        (1000 * 17, 31, 548),  # Lago: 17/31 of $10.00 = 5.4838...
    ],
)
def test_round_half_away(numerator: int, denominator: int, expected: int) -> None:
    assert round_half_away_int(numerator, denominator) == expected
    assert reference(numerator, denominator) == expected
    got = pl.select(round_half_away(pl.lit(numerator), pl.lit(denominator))).item()
    assert got == expected


@settings(max_examples=500, deadline=None)
@given(
    numerator=st.integers(-(10**30), 10**30),
    denominator=st.integers(1, 10**15) | st.integers(-(10**15), -1),
)
def test_vectorized_rounding_matches_exact_fractions_in_int128(
    numerator: int, denominator: int
) -> None:
    frame = pl.DataFrame(
        {"n": [numerator], "d": [denominator]}, schema={"n": pl.Int128, "d": pl.Int128}
    )
    assert frame.select(round_half_away(pl.col("n"), pl.col("d"))).item() == reference(
        numerator, denominator
    )
    assert round_half_away_int(numerator, denominator) == reference(numerator, denominator)


@pytest.mark.parametrize(
    ("micro", "minor_units", "expected"),
    [
        (10_600_000, 2, 1060),  # $10.60
        (5_000, 2, 1),  # $0.005 -> $0.01
        (-5_000, 2, -1),
        (4_999, 2, 0),
        (1_000_500_000, 0, 1001),  # JPY 1000.5 -> 1001
        (1_000_499_999, 0, 1000),
        (123_456_789, 4, 1_234_568),
    ],
)
def test_micro_to_minor(micro: int, minor_units: int, expected: int) -> None:
    got = pl.select(micro_to_minor(pl.lit(micro), pl.lit(minor_factor(minor_units)))).item()
    assert got == expected


@pytest.mark.parametrize(
    ("pico", "minor_units", "expected"),
    [
        (2_125 * 10**9, 2, 213),  # $2.125 -> $2.13
        (1_500 * 10**9, 2, 150),
        (5 * 10**9, 2, 1),  # $0.005
        (4_999_999_999, 2, 0),
        (10**25, 2, 10**15),  # the product is far beyond Int64 before the division
        (499_999_999_999, 0, 0),
        (500_000_000_000, 0, 1),
    ],
)
def test_pico_to_minor(pico: int, minor_units: int, expected: int) -> None:
    got = pl.select(
        pico_to_minor(pl.lit(pico, dtype=pl.Int128), pl.lit(minor_factor(minor_units)))
    ).item()
    assert got == expected


@pytest.mark.parametrize(
    ("amount", "days", "full", "expected"),
    [
        (3000, 20, 30, 2000),  # $30 a month from June 11: $20.00
        (900, 21, 90, 210),
        (2900, 29, 29, 2900),
        (1000, 17, 31, 548),
        (299, 15, 30, 150),  # 149.5 -> 150
        (3000, 19, 30, 1900),
    ],
)
def test_prorate_is_one_exact_ratio_rounded_once(
    amount: int, days: int, full: int, expected: int
) -> None:
    got = pl.select(prorate(pl.lit(amount), pl.lit(days), pl.lit(full))).item()
    assert got == expected
