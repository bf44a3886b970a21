"""Invoice lines and invoices (SPEC §4 "Lines", "Invoice").

Every charge module returns frames of `LINE_SCHEMA` (pipeline.contracts); the coordinator
concatenates them, drops the zero lines that carry no information, sorts them by the line key
and totals them here.
"""

from __future__ import annotations

import polars as pl

from pipeline.contracts import INVOICE_SCHEMA, LINE_KEY, LINE_SCHEMA, line_types_where

# The line key orders the lines (pipeline.contracts.LINE_KEY).
LINE_ORDER = LINE_KEY
# Lines of these kinds are dropped when their amount is 0 (the registry says which).
DROP_WHEN_ZERO = tuple(line_types_where(drop_when_zero=True))


def as_lines(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """The line columns of `frame`, in schema order and types."""
    return frame.lazy().select(
        [pl.col(name).cast(dtype) for name, dtype in LINE_SCHEMA.items()]
    )


def empty_lines() -> pl.DataFrame:
    """A frame of `LINE_SCHEMA` with no rows."""
    return pl.DataFrame(schema=LINE_SCHEMA)


def is_silent() -> pl.Expr:
    """True for a line that says nothing: a zero line of a type the registry drops."""
    return pl.col("line_type").is_in(list(DROP_WHEN_ZERO)) & (pl.col("amount_minor") == 0)


def invoice_lines(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate the modules' lines, drop the silent ones, sort by the line key."""
    # One lazy plan: the casts, the filter and the sort run in one pass over the lines.
    lines = pl.concat([as_lines(p) for p in parts] or [empty_lines().lazy()])
    return lines.filter(~is_silent()).sort(LINE_ORDER, nulls_last=True).collect()


def invoices(lines: pl.DataFrame) -> pl.DataFrame:
    """One invoice per account, period and currency that has a line: the sum of its lines."""
    return (
        lines.group_by("account_id", "period", "currency")
        # Summed in Int128 and cast back strictly: a total beyond Int64 fails, never wraps.
        .agg(pl.col("amount_minor").cast(pl.Int128).sum().alias("total_minor"))
        .select([pl.col(name).cast(dtype) for name, dtype in INVOICE_SCHEMA.items()])
        .sort("account_id", "period", "currency")
    )
