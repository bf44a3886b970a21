"""Names, schemas and packed integer keys shared by the usage steps.

Two keys are packed into one UInt64 for fast sorts and joins: `(account, pair)` as
`acct_idx * 2^pair_bits + sdg` and `(key, day)` as `key * 2^DAY_BITS + day`. The widths are
sized from the data (`KeyBudget`) and checked, so a large catalog (more than 4096 discounted
pairs) or many accounts can never make two keys collide silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from pipeline.contracts import COUNTER_SCHEMA, NEVER_START, OPEN_END

KEY = ["account_id", "service", "destination_group"]
COUNTER_KIND = ["service", "destination_group", "threshold_type"]
WINDOW = ["account_id", *COUNTER_KIND, "window_start"]
# Stands in for an open top tier (and for a missing tier: an empty range far above any counter).
OPEN = 2**62
PAIR = ["service", "destination_group"]
# Days since 1970-01-01 take 20 bits: up to the year 4840, far beyond any billing day limit.
DAY_BITS = 20
KEY_BITS = 64
RESET_CODES = {"billing_period": 0, "daily": 1, "never": 2}
# Converts (10^-6 currency) × (10^-4 percent-hundredths → fraction) into 10^-12 of the currency.
PCT_TO_PICO = 100

__all__ = ["COUNTER_SCHEMA", "NEVER_START", "OPEN_END"]  # re-exported from the contracts

DETAIL_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "account_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "started_at": pl.Datetime("us"),
    "assignment_id": pl.Utf8(),
    "addon_id": pl.Utf8(),
    "threshold_type": pl.Utf8(),
    "reset": pl.Utf8(),
    "window_start": pl.Date(),
    "tier_no": pl.Int64(),
    "pct": pl.Int64(),
    "counter_from_units": pl.Int64(),
    "counter_to_units": pl.Int64(),
    "quantity_units": pl.Int64(),
    "amount_pico": pl.Int128(),
    "discount_pico": pl.Int128(),
}


class KeyBudgetError(ValueError):
    """A packed key would need more than 64 bits."""


def bits_for(count: int) -> int:
    """Bits that hold the indices `0 .. count - 1` (at least 1)."""
    return max(1, (max(count, 1) - 1).bit_length())


@dataclass(frozen=True)
class KeyBudget:
    """Checked bit widths of the packed `(account, pair)` and `(key, day)` keys."""

    pair_bits: int
    account_bits: int

    @classmethod
    def of(cls, accounts: int, pairs: int) -> KeyBudget:
        """The widths for `accounts` accounts and `pairs` discounted pairs, or KeyBudgetError."""
        budget = cls(pair_bits=bits_for(pairs), account_bits=bits_for(accounts))
        used = budget.account_bits + budget.pair_bits + DAY_BITS
        if used > KEY_BITS:
            raise KeyBudgetError(
                f"{accounts} accounts x {pairs} discounted pairs x days need {used} bits in a"
                f" {KEY_BITS}-bit key; bill the accounts in smaller batches"
            )
        return budget

    def pair_key(self, acct_idx: pl.Expr, sdg: pl.Expr) -> pl.Expr:
        """`(account, service/destination pair)` packed into one UInt64."""
        return acct_idx.cast(pl.UInt64) * (1 << self.pair_bits) + sdg.cast(pl.UInt64)

    @staticmethod
    def day_key(key: pl.Expr, day: pl.Expr) -> pl.Expr:
        """A pair key and a day packed into one UInt64, ordered like `(key, day)`."""
        return key * (1 << DAY_BITS) + day.cast(pl.Int32).cast(pl.UInt64)

    @staticmethod
    def key_of(day_key: pl.Expr) -> pl.Expr:
        """The pair key of a packed `(key, day)`."""
        return day_key // (1 << DAY_BITS)

    @staticmethod
    def day_of(day_key: pl.Expr) -> pl.Expr:
        """The day of a packed `(key, day)`."""
        return (day_key % (1 << DAY_BITS)).cast(pl.Int32).cast(pl.Date)


def check_days(*days: date | None) -> None:
    """Raise KeyBudgetError if a day does not fit in DAY_BITS (days since 1970-01-01)."""
    for day in days:
        if day is not None and not 0 <= (day - NEVER_START).days < (1 << DAY_BITS):
            raise KeyBudgetError(f"day {day} is outside the {DAY_BITS}-bit day key")
