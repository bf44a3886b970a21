"""Recompute, then diff (SPEC §5): a finalized period is never rewritten; differences become
adjustment lines, the way a credit note works.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.contracts import LINE_KEY, LINE_TYPES
from pipeline.money import minor_as_text


class DuplicateLineKeyError(RuntimeError):
    """Two lines share a key: the run must fail rather than bill twice."""


def check_unique_line_keys(lines: pl.DataFrame, what: str = "charges") -> None:
    """Raise DuplicateLineKeyError when two lines of `lines` share a LINE_KEY."""
    dupes = lines.group_by(LINE_KEY).len().filter(pl.col("len") > 1)
    if dupes.height:
        sample = dupes.head(5).to_dicts()
        raise DuplicateLineKeyError(f"{dupes.height} duplicate line key(s) in {what}: {sample}")


def _net_by_key(lines: pl.DataFrame) -> pl.DataFrame:
    return lines.group_by(LINE_KEY).agg(
        pl.col("amount_minor").sum(),
        pl.col("quantity_units").sum(),
        pl.col("currency").first(),
        pl.col("description").last(),
        pl.col("line_date").max(),
    )


def _likely_cause() -> pl.Expr:
    """The business cause an analyst reads first; the rest of the reason gives the amounts."""
    causes = {t.name: t.adjustment_cause for t in LINE_TYPES.values()}
    return pl.col("line_type").replace_strict(
        causes, default="corrected assignment", return_dtype=pl.Utf8
    )


def adjustment_lines(
    billed: pl.DataFrame, recomputed: pl.DataFrame, minor_units: dict[str, int] | None = None
) -> pl.DataFrame:
    """Lines that bring what was billed (final lines plus earlier adjustments) to the recomputed
    lines; one per changed line key, with a `reason`. Unchanged inputs give no line.

    The reason gives both amounts in the currency (`billed 7.79, now 10.39 USD`) at the
    precision `minor_units` (the catalog's currencies) gives; a currency it lacks reads as 2."""
    old = _net_by_key(billed)
    new = _net_by_key(recomputed)
    joined = old.join(new, on=LINE_KEY, how="full", nulls_equal=True, coalesce=True, suffix="_new")
    delta_amount = pl.col("amount_minor_new").fill_null(0) - pl.col("amount_minor").fill_null(0)
    delta_quantity = pl.col("quantity_units_new").fill_null(0) - pl.col("quantity_units").fill_null(
        0
    )
    currency = pl.coalesce("currency_new", "currency")
    units = currency.replace_strict(
        minor_units or {}, default=2, return_dtype=pl.Int64
    ) if minor_units else pl.lit(2, dtype=pl.Int64)
    change = (
        pl.when(pl.col("amount_minor").is_null())
        .then(pl.lit("added"))
        .when(pl.col("amount_minor_new").is_null())
        .then(pl.lit("removed"))
        .otherwise(pl.lit("changed"))
    )
    return (
        joined.with_columns(
            delta_amount.alias("delta_amount"),
            delta_quantity.alias("delta_quantity"),
            change.alias("change"),
        )
        .filter((pl.col("delta_amount") != 0) | (pl.col("delta_quantity") != 0))
        .select(
            *LINE_KEY[:-1],
            pl.col("delta_quantity").alias("quantity_units"),
            pl.col("delta_amount").alias("amount_minor"),
            pl.coalesce("currency_new", "currency").alias("currency"),
            pl.concat_str(
                pl.lit("adjustment: "), pl.coalesce("description_new", "description")
            ).alias("description"),
            "term_start",
            pl.coalesce("line_date_new", "line_date").alias("line_date"),
            pl.concat_str(
                _likely_cause(),
                pl.lit(": "),
                pl.col("line_type"),
                pl.lit(" line "),
                pl.col("change"),
                pl.lit(" on reprocess of finalized period "),
                pl.col("period"),
                pl.lit(": billed "),
                minor_as_text(pl.col("amount_minor").fill_null(0), units),
                pl.lit(", now "),
                minor_as_text(pl.col("amount_minor_new").fill_null(0), units),
                pl.lit(" "),
                currency,
            ).alias("reason"),
        )
        .sort(LINE_KEY, nulls_last=True)
    )


@dataclass(frozen=True)
class ReprocessSplit:
    """A reprocessed period split by status (SPEC §5): drafts are replaced, finals adjusted."""

    scope: pl.DataFrame  # account_id, period, status of the drafts rewritten
    charges: pl.DataFrame  # the drafts' recomputed lines
    invoices: pl.DataFrame
    decisions: pl.DataFrame
    adjustments: pl.DataFrame  # what brings the finals to their recomputed lines


def split_reprocess(
    plan: pl.DataFrame,
    charges: pl.DataFrame,
    invoices: pl.DataFrame,
    decisions: pl.DataFrame,
    billed: pl.DataFrame,
    minor_units: dict[str, int] | None = None,
) -> ReprocessSplit:
    """Keep the drafts' recomputed results; turn the finals' into adjustment lines against
    `billed` (their final lines plus earlier adjustments). `plan`: account_id, period, status;
    `minor_units`: the catalog's currencies, for the reasons' amounts."""
    final_ids = plan.filter(pl.col("status") == "final").select("account_id")
    drafts = plan.filter(pl.col("status") == "draft")
    return ReprocessSplit(
        scope=drafts.select("account_id", "period", "status"),
        charges=charges.join(drafts, on="account_id", how="semi"),
        invoices=invoices.join(drafts, on="account_id", how="semi"),
        decisions=decisions.join(
            drafts.select("account_id", "period"), on=["account_id", "period"], how="semi"
        ),
        adjustments=adjustment_lines(
            billed, charges.join(final_ids, on="account_id", how="semi"), minor_units
        ),
    )
