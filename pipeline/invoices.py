"""Invoice lines and invoices (SPEC §4 "Lines", "Invoice").

Every charge module returns frames of `LINE_SCHEMA`; the coordinator concatenates them, drops the
zero lines that carry no information, sorts them by `LINE_ORDER` and totals them here.
"""

from __future__ import annotations

import polars as pl

LINE_TYPES = ("recurring", "activation", "credit", "usage", "discount")

LINE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "period": pl.Utf8(),
    "line_type": pl.Utf8(),
    "assignment_id": pl.Utf8(),
    "addon_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "quantity_units": pl.Int64(),
    "amount_minor": pl.Int64(),
    "currency": pl.Utf8(),
    "description": pl.Utf8(),
    "term_start": pl.Date(),
    "line_date": pl.Date(),
}

# A line's key: unique within one computation, so sorting by it is a total order.
LINE_ORDER = [
    "account_id",
    "period",
    "line_type",
    "assignment_id",
    "addon_id",
    "service",
    "destination_group",
    "term_start",
]

INVOICE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "period": pl.Utf8(),
    "currency": pl.Utf8(),
    "total_minor": pl.Int64(),
}

# Lines of these kinds are dropped when their amount is 0; recurring and usage lines are kept.
DROP_WHEN_ZERO = ("activation", "credit", "discount")


def as_lines(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """The line columns of `frame`, in schema order and types."""
    return frame.lazy().select(
        [pl.col(name).cast(dtype) for name, dtype in LINE_SCHEMA.items()]
    )


def empty_lines() -> pl.DataFrame:
    """A frame of `LINE_SCHEMA` with no rows."""
    return pl.DataFrame(schema=LINE_SCHEMA)


def is_silent() -> pl.Expr:
    """True for a line that says nothing: a zero activation fee, credit or discount."""
    return pl.col("line_type").is_in(list(DROP_WHEN_ZERO)) & (pl.col("amount_minor") == 0)


def invoice_lines(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate the modules' lines, drop the silent ones, sort by the line key."""
    lines = pl.concat([as_lines(p).collect() for p in parts] or [empty_lines()])
    return lines.filter(~is_silent()).sort(LINE_ORDER, nulls_last=True)


def invoices(lines: pl.DataFrame) -> pl.DataFrame:
    """One invoice per account, period and currency that has a line: the sum of its lines."""
    return (
        lines.group_by("account_id", "period", "currency")
        # Summed in Int128 and cast back strictly: a total beyond Int64 fails, never wraps.
        .agg(pl.col("amount_minor").cast(pl.Int128).sum().alias("total_minor"))
        .select([pl.col(name).cast(dtype) for name, dtype in INVOICE_SCHEMA.items()])
        .sort("account_id", "period", "currency")
    )
