"""`format_amount`: every amount people read, at its currency's precision (issue 13 item 3)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline.money import format_amount


@pytest.mark.parametrize(
    ("amount", "minor_units", "currency", "in_minor", "shown"),
    [
        # DECIMAL(18,4) amounts as the tables hold them, shown at the currency's decimals.
        (Decimal("137.8000"), 2, "USD", False, "137.80 USD"),
        (Decimal("20.3200"), 2, "EUR", False, "20.32 EUR"),
        (Decimal("3224.0000"), 0, "JPY", False, "3,224 JPY"),
        (Decimal("-10.0000"), 2, "USD", False, "-10.00 USD"),
        (Decimal("1234567.5000"), 2, "USD", False, "1,234,567.50 USD"),
        (Decimal("0.0000"), 2, "USD", False, "0.00 USD"),
        (Decimal("-0.0000"), 2, "USD", False, "0.00 USD"),  # never "-0.00"
        ("30.00", 2, None, False, "30.00"),  # no code: a column whose header names it
        # Integer minor units, as the run summaries carry them.
        (7232, 2, "USD", True, "72.32 USD"),  # 37.32 + 35.00
        (6448, 0, "JPY", True, "6,448 JPY"),
        (-5, 2, "EUR", True, "-0.05 EUR"),
        (1500, 3, "BHD", True, "1.500 BHD"),
        # Finer than the minor unit (never billed so): rounded once, half away from zero.
        (Decimal("2.345"), 2, "USD", False, "2.35 USD"),
        (Decimal("-2.345"), 2, "USD", False, "-2.35 USD"),
        (Decimal("2.344"), 2, "USD", False, "2.34 USD"),
        (Decimal("1499.5"), 0, "JPY", False, "1,500 JPY"),
    ],
)
def test_format_amount(
    amount: Decimal | int | str, minor_units: int, currency: str | None, in_minor: bool,
    shown: str,
) -> None:
    assert format_amount(amount, minor_units, currency, in_minor=in_minor) == shown
