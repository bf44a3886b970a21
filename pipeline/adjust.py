"""Recompute, then diff (SPEC §5): a finalized period is never rewritten; differences become
adjustment lines, the way a credit note works.
"""

from __future__ import annotations

import polars as pl

from pipeline.contracts import LINE_KEY, LINE_TYPES


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


def adjustment_lines(billed: pl.DataFrame, recomputed: pl.DataFrame) -> pl.DataFrame:
    """Lines that bring what was billed (final lines plus earlier adjustments) to the recomputed
    lines; one per changed line key, with a `reason`. Unchanged inputs give no line."""
    old = _net_by_key(billed)
    new = _net_by_key(recomputed)
    joined = old.join(new, on=LINE_KEY, how="full", nulls_equal=True, coalesce=True, suffix="_new")
    delta_amount = pl.col("amount_minor_new").fill_null(0) - pl.col("amount_minor").fill_null(0)
    delta_quantity = pl.col("quantity_units_new").fill_null(0) - pl.col("quantity_units").fill_null(
        0
    )
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
                pl.col("amount_minor").fill_null(0).cast(pl.Utf8),
                pl.lit(", now "),
                pl.col("amount_minor_new").fill_null(0).cast(pl.Utf8),
                pl.lit(" minor units"),
            ).alias("reason"),
        )
        .sort(LINE_KEY, nulls_last=True)
    )
