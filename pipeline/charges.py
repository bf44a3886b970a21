"""The charges coordinator (SPEC §4): fee lines and usage lines of one period, and invoices.

Thin on purpose: it types the inputs, builds the account context (billing day, currency, period
bounds and the day limit of a draft), calls `recurring.fee_lines` and `usage.usage_charges`, and
totals the concatenated lines with `invoices`. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from pipeline.bounds import MoneyOverflowError
from pipeline.catalog import CatalogFrames
from pipeline.contracts import (
    ACCOUNT_SCHEMA,
    CHARGED_LIFECYCLE_SCHEMA,
    COUNTER_INPUT_SCHEMA,
    USAGE_SCHEMA,
    USAGE_SUM_SCHEMA,
    UsageSoFar,
    first_billing_day,
    typed,
)
from pipeline.invoices import invoice_lines, invoices
from pipeline.money import minor_factor
from pipeline.periods import period_end_expr, period_start_expr
from pipeline.recurring import fee_lines
from pipeline.schedule import day_limit
from pipeline.usage import usage_charges
from pipeline.usage.rollover import empty_parcels


@dataclass(frozen=True)
class ChargesResult:
    """Lines, invoices, counters after the period and per-event usage parts (see CONTRACTS)."""

    charges: pl.DataFrame
    invoices: pl.DataFrame
    counters_after: pl.DataFrame
    usage_detail: pl.DataFrame
    parcels: pl.DataFrame = field(default_factory=empty_parcels)  # SPEC §7.3, quota_rollovers
    parcel_use: pl.DataFrame = field(default_factory=pl.DataFrame)  # for explain
    # each usage line's exact sums, what a later night continues from (docs/RUNS.md)
    usage_sums: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=USAGE_SUM_SCHEMA))


def account_context(
    catalog: CatalogFrames, accounts: pl.DataFrame, period: str, cutoff: date | None
) -> pl.DataFrame:
    """One row per account: `acct_idx`, billing day, currency, period bounds and `day_limit`.

    The billing day and currency are those of the account's earliest row. `day_limit` is the
    first day not included: the period's end, or the day after the cutoff of a draft. `acct_idx`
    numbers the accounts in `account_id` order; the modules join on it instead of the text id.
    """
    factors = catalog.currencies.select(
        "currency",
        pl.col("minor_units")
        .replace_strict({m: minor_factor(m) for m in range(5)}, return_dtype=pl.Int64)
        .alias("minor_factor"),
    )
    day = pl.col("billing_day")
    limit = day_limit(pl.col("period_end"), pl.lit(cutoff, dtype=pl.Date))
    first = pl.col("effective_from").arg_min()
    return (
        accounts.lazy()
        .group_by("account_id")
        .agg(pl.col("currency").get(first), first_billing_day())
        .sort("account_id")
        .with_row_index("acct_idx")
        .with_columns(
            pl.lit(period).alias("period"),
            period_start_expr(period, day).alias("period_start"),
            period_end_expr(period, day).alias("period_end"),
        )
        .join(factors.lazy(), on="currency", how="left", maintain_order="left")
        .with_columns(day_limit=limit)
        .collect()
    )


def compute_charges(
    catalog: CatalogFrames,
    accounts: pl.DataFrame,
    lifecycles: pl.DataFrame,
    usage: pl.DataFrame,
    counters_before: pl.DataFrame,
    period: str,
    cutoff: date | None = None,
    *,
    detail: bool = True,
    parcels_before: pl.DataFrame | None = None,
    so_far: UsageSoFar | None = None,
    segments: pl.DataFrame | None = None,
    quantity_steps: pl.DataFrame | None = None,
    _full: bool = False,
) -> ChargesResult:
    """Charges, invoices, counters and usage detail of `period` for the given accounts.

    With `cutoff` (a draft as of that day) only lines dated on or before it, and only events
    started before the next day, are counted. `detail=False` skips the per-event parts.
    `parcels_before` are the rollover parcels left at the end of the previous period (§7.3).
    `so_far`: what a draft of this period counted; `usage` then holds only the later events.
    `segments` and `quantity_steps`: the plan segments the rules cut the lives into (SPEC
    §8.1); without them each billable life is one segment of one step. `_full`: take the
    full usage path even without events (for the tests that compare it with the fast one).
    """
    try:
        return _compute(catalog, accounts, lifecycles, usage, counters_before, period, cutoff,
                        detail, parcels_before, so_far, segments, quantity_steps, _full)
    except pl.exceptions.InvalidOperationError as exc:
        # A strict Int128 -> Int64 cast refused a sum: say so, rather than a Polars message.
        if "`i128` to `i64`" not in str(exc):
            raise
        raise MoneyOverflowError(
            f"period {period}: a usage line, counter or invoice total is beyond the largest "
            f"value billrun computes (Int64 of its unit, docs/INPUTS.md \"Bounds\"): "
            f"{str(exc).splitlines()[0]}"
        ) from None


def _compute(
    catalog: CatalogFrames,
    accounts: pl.DataFrame,
    lifecycles: pl.DataFrame,
    usage: pl.DataFrame,
    counters_before: pl.DataFrame,
    period: str,
    cutoff: date | None,
    detail: bool,
    parcels_before: pl.DataFrame | None,
    so_far: UsageSoFar | None,
    segments: pl.DataFrame | None,
    quantity_steps: pl.DataFrame | None,
    full: bool,
) -> ChargesResult:
    account_rows = accounts  # with `status`, for the suspension credits (SPEC §7.2)
    accounts = typed(accounts, ACCOUNT_SCHEMA)
    lifecycles = typed(lifecycles, CHARGED_LIFECYCLE_SCHEMA)
    usage = typed(usage, USAGE_SCHEMA)
    counters_before = typed(counters_before, COUNTER_INPUT_SCHEMA)
    context = account_context(catalog, accounts, period, cutoff)
    fees = fee_lines(catalog, lifecycles, context, period, account_rows,
                     segments=segments, quantity_steps=quantity_steps)
    used = usage_charges(
        catalog, accounts, lifecycles, usage, counters_before, context, period, detail,
        parcels_before, so_far, _full=full,
    )
    lines = invoice_lines([fees, used.lines])
    return ChargesResult(
        charges=lines,
        invoices=invoices(lines),
        counters_after=used.counters_after,
        usage_detail=used.detail,
        parcels=used.parcels,
        parcel_use=used.parcel_use,
        usage_sums=used.sums,
    )
