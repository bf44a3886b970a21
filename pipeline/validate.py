"""Validation of the accounts and assignments inputs (SPEC §2): pure and vectorized, frames in
and frames out. The usage file, too large for memory, is checked in SQL where DuckDB staged it
(`store/checks.py`).

Each `validate_*` takes the all-string frame that `store.sources` reads (a `line` column, the
input's columns, `_extra`) and returns `Validated(valid, rejected)`:

- `valid`: the typed columns of docs/CONTRACTS.md, plus `line` so that the store keeps each
  row's origin (and, for assignments, `raw`: a change row's text, which the store may still
  reject: SPEC §8.1);
- `rejected`: `source, line, reason, raw`. The reason lists every problem of the row, each as
  `field: problem`, joined by `; `. No row is ever dropped: `valid` + `rejected` = the input.

Nothing here reads a file, opens a database or asks for today's date.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from pipeline.bounds import MAX_ASSIGNMENT_QUANTITY
from pipeline.catalog import Catalog
from pipeline.contracts import INPUT_COLUMNS, REJECTED_SCHEMA

STATUSES = ("active", "suspended", "closed")
EXTRA = "_extra"

_DATE = r"^\d{4}-\d{2}-\d{2}$"
_TIMESTAMP = (
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?$"
)
# A UTC offset at the end of a timestamp: sign, hours, minutes (`+02:00`, `-0530`).
_OFFSET = r"([+-])(\d{2}):?(\d{2})$"


class Validated(NamedTuple):
    """The rows that passed, typed, and the rows that did not, with every reason."""

    valid: pl.DataFrame
    rejected: pl.DataFrame


# A check is a condition that marks a bad row and the message that says why. Messages are built
# only for the rows that fail, so a clean file of millions of rows formats no text at all.
Check = tuple[pl.Expr, pl.Expr]


# ---------------------------------------------------------------------------------------------
# Field parsers: each returns the typed value (null when it does not parse) and its checks.


def _c(name: str) -> pl.Expr:
    return pl.col(name)


def _check(cond: pl.Expr, message: pl.Expr | str) -> Check:
    return cond, pl.lit(message) if isinstance(message, str) else message


def _quoted(name: str, template: str) -> pl.Expr:
    """`name: template` with `{}` replaced by the field's text, e.g. `'1.2.3' is not ...`."""
    return pl.format(f"{name}: {template}", _c(name))


def _required(name: str) -> Check:
    return _check(_c(name).is_null(), f"{name}: required")


class Parsed(NamedTuple):
    """A parsed field: columns to add first (each computed once), then its value and checks."""

    prepare: list[pl.Expr]
    value: pl.Expr
    checks: list[Check]


def parse_whole(name: str) -> Parsed:
    """A whole-number text as Int64."""
    text, held = _c(name), f"_{name}_value"
    value = pl.when(text.str.contains(r"^\+?\d{1,9}$")).then(text.cast(pl.Int64, strict=False))
    return Parsed(
        [value.alias(held)],
        _c(held),
        [
            _check(
                text.is_not_null() & _c(held).is_null(),
                _quoted(name, "'{}' is not a whole number"),
            )
        ],
    )


def parse_date(name: str) -> Parsed:
    """A `YYYY-MM-DD` text as Date."""
    text, held = _c(name), f"_{name}_value"
    value = pl.when(text.str.contains(_DATE)).then(text.str.to_date("%Y-%m-%d", strict=False))
    return Parsed(
        [value.alias(held)],
        _c(held),
        [
            _check(
                text.is_not_null() & _c(held).is_null(),
                _quoted(name, "'{}' is not a date (YYYY-MM-DD)"),
            )
        ],
    )


def parse_timestamp(name: str) -> Parsed:
    """A timestamp text (space or `T`, optional fraction, optional `Z` or UTC offset such as
    `+00:00`, which a zoned Parquet column gives as text) as a UTC Datetime[us]."""
    text, held = _c(name), f"_{name}_value"
    # The pattern keeps the form strict; chrono alone would take `2026-1-5 1:2:3` too. Fractions
    # finer than a microsecond are cut off: TIMESTAMP keeps microseconds.
    offset = text.str.extract_groups(_OFFSET)
    sign = pl.when(offset.struct.field("1") == "-").then(-1).otherwise(1)
    minutes = sign * (
        offset.struct.field("2").cast(pl.Int64, strict=False) * 60
        + offset.struct.field("3").cast(pl.Int64, strict=False)
    ).fill_null(0)
    normal = (
        text.str.replace(r"(Z|[+-]\d{2}:?\d{2})$", "").str.replace("T", " ", literal=True)
    )
    value = pl.when(text.str.contains(_TIMESTAMP)).then(
        normal.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
        - pl.duration(minutes=minutes)
    )
    return Parsed(
        [value.alias(held)],
        _c(held),
        [
            _check(
                text.is_not_null() & _c(held).is_null(),
                _quoted(
                    name, "'{}' is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][Z|±HH:MM])"
                ),
            )
        ],
    )


def _prepared(raw: pl.DataFrame, *fields: Parsed) -> pl.DataFrame:
    return raw.with_columns(*[e for f in fields for e in f.prepare])


def _known(name: str, ids: pl.Series | list[str], what: str) -> Check:
    """Check that a present field is one of `ids`."""
    series = ids if isinstance(ids, pl.Series) else pl.Series(name, ids, dtype=pl.String)
    return _check(
        _c(name).is_not_null() & ~_c(name).is_in(series.cast(pl.String).implode()),
        _quoted(name, f"unknown {what} '{{}}'"),
    )


def first_line(key: list[str]) -> pl.Expr:
    """The line of the key's first occurrence (add it as `_first` before `_duplicate`)."""
    return pl.col("line").min().over(key).alias("_first")


def _duplicate(key: list[str], label: str, shown: pl.Expr) -> Check:
    """Reject every later occurrence of a key within the file; the first one stands. Needs the
    `_first` column, computed over all rows (the message is worded after filtering)."""
    present = pl.all_horizontal([pl.col(k).is_not_null() for k in key])
    return _check(
        present & (pl.col("line") != pl.col("_first")),
        pl.format(f"{key[0]}: duplicate {label} {{}} (first at line {{}})", shown, _c("_first")),
    )


def raw_text(columns: list[str], trailing: tuple[str, ...] = ()) -> pl.Expr:
    """The row re-joined as CSV text (RFC 4180 quoting), with any surplus field at the end.

    `trailing` columns come after `columns` only where the row has a value: an optional column
    added later (assignments' `effective_from`) leaves the text of the rows without it as it
    was before the column existed."""

    def field(col: pl.Expr) -> pl.Expr:
        needs_quotes = col.str.contains(r'[",\r\n]')
        quoted = pl.concat_str([pl.lit('"'), col.str.replace_all('"', '""'), pl.lit('"')])
        return pl.when(needs_quotes).then(quoted).otherwise(col).fill_null("")

    row = pl.concat_str([field(pl.col(c)) for c in columns], separator=",")
    for name in trailing:
        row = pl.when(pl.col(name).is_not_null()).then(
            pl.concat_str([row, field(pl.col(name))], separator=",")
        ).otherwise(row)
    return (
        pl.when(pl.col(EXTRA).is_not_null())
        .then(pl.concat_str([row, field(pl.col(EXTRA))], separator=","))
        .otherwise(row)
    )


def _row_checks(columns: list[str]) -> list[Check]:
    """Checks that concern the row as a whole (a blank row is handled in `_split`)."""
    # The reader turns bytes that are not UTF-8 into U+FFFD.
    garbled = pl.any_horizontal([pl.col(c).str.contains("\ufffd", literal=True) for c in columns])
    return [
        _check(pl.col(EXTRA).is_not_null(), "row: more fields than the header"),
        _check(garbled, "row: not valid UTF-8 text"),
    ]


def _split(
    frame: pl.DataFrame, checks: list[Check], typed: list[pl.Expr | str], columns: list[str],
    source: str, raw: pl.Expr | None = None,
) -> Validated:
    """Flag the rows that fail any check, then word the reasons of those rows only. `raw`: the
    rejected rows' text (default: `raw_text(columns)`)."""
    flags = [f"_bad{i}" for i in range(len(checks))]
    blank = pl.all_horizontal([pl.col(c).is_null() for c in [*columns, EXTRA]])
    flagged = frame.with_columns(
        *[cond.fill_null(False).alias(f) for f, (cond, _) in zip(flags, checks, strict=True)],
        blank.alias("_blank"),
    ).with_columns(pl.any_horizontal([*flags, "_blank"]).alias("_any"))
    valid = flagged.filter(~pl.col("_any")).select(*typed, "line")
    bad = flagged.filter(pl.col("_any"))
    reason = (
        pl.when(pl.col("_blank"))
        .then(pl.lit("row: empty row"))
        .otherwise(
            pl.concat_str(
                [
                    pl.when(pl.col(f)).then(msg)
                    for f, (_, msg) in zip(flags, checks, strict=True)
                ],
                separator="; ",
                ignore_nulls=True,
            )
        )
    )
    rejected = bad.select(
        pl.lit(source, pl.String).alias("source"),
        pl.col("line").cast(pl.Int64),
        reason.alias("reason"),
        (raw_text(columns) if raw is None else raw).alias("raw"),
    )
    return Validated(valid, rejected)


def rejected_whole(
    rows: pl.DataFrame, *, source: str, missing: list[str], header: list[str],
    empty_valid: pl.DataFrame,
) -> Validated:
    """Every row of a file whose header lacks required columns, rejected with that reason.

    Nothing of such a file can be trusted to bill, yet its rows must not vanish (SPEC §2): each
    physical row lands in `rejected_rows`, re-joined from the file's own columns in its order.
    """
    present = [c for c in header if c in rows.columns and c not in ("line", EXTRA)]
    reason = "; ".join(f"{c}: required column missing from the header of {source}" for c in missing)
    return Validated(
        empty_valid,
        rows.select(
            pl.lit(source, pl.String).alias("source"),
            pl.col("line").cast(pl.Int64),
            pl.lit(reason, pl.String).alias("reason"),
            (raw_text(present) if present else pl.lit("", pl.String)).alias("raw"),
        ),
    )


def empty_rejected() -> pl.DataFrame:
    """A zero-row rejected frame."""
    return pl.DataFrame(schema=REJECTED_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Accounts


ACCOUNT_COLUMNS = list(INPUT_COLUMNS["accounts"])


def validate_accounts(
    raw: pl.DataFrame, catalog: Catalog, *, source: str, stored: pl.DataFrame | None = None
) -> Validated:
    """Validate account rows; `stored` (`account_id, effective_from, currency, billing_day`)
    holds the rows already loaded, against which a later row may not change billing day or
    currency."""
    billing_day, opened, closed, effective = fields = (
        parse_whole("billing_day"), parse_date("opened_on"), parse_date("closed_on"),
        parse_date("effective_from"),
    )
    parsed = _prepared(raw, *fields).with_columns(
        pl.when(_c("billing_day").is_null())
        .then(1)
        .otherwise(billing_day.value)
        .alias("_billing_day"),
        opened.value.alias("_opened_on"),
        closed.value.alias("_closed_on"),
        pl.when(_c("effective_from").is_null())
        .then(opened.value)
        .otherwise(effective.value)
        .alias("_effective_from"),
    ).with_columns(first_line(["account_id", "_effective_from"]))
    row_checks = [
        *_row_checks(ACCOUNT_COLUMNS),
        _required("account_id"),
        _required("currency"),
        _check(
            _c("currency").is_not_null()
            & ~_c("currency").is_in(pl.Series(list(catalog.currencies)).implode()),
            _quoted("currency", "wrong currency '{}': not declared in the catalog"),
        ),
        _required("main_product_id"),
        _known("main_product_id", [m.id for m in catalog.main_products], "main product"),
        *billing_day.checks,
        _check(
            _c("_billing_day").is_not_null() & ~_c("_billing_day").is_between(1, 28),
            _quoted("billing_day", "'{}' is outside 1..28"),
        ),
        _required("status"),
        _check(
            _c("status").is_not_null() & ~_c("status").is_in(list(STATUSES)),
            _quoted("status", "'{}' is not one of " + "|".join(STATUSES)),
        ),
        _required("opened_on"),
        *opened.checks,
        *closed.checks,
        _check(_c("_closed_on") < _c("_opened_on"), "closed_on: closed before it was opened"),
        _check(
            (_c("status") == "closed") & _c("closed_on").is_null(),
            "closed_on: required when status is closed",
        ),
        *effective.checks,
        _check(_c("_effective_from") < _c("_opened_on"), "effective_from: before opened_on"),
    ]
    duplicate = _duplicate(
        ["account_id", "_effective_from"],
        "account_id, effective_from",
        pl.format("('{}', {})", _c("account_id"), _c("_effective_from")),
    )
    parsed = parsed.with_columns(
        (~pl.any_horizontal([cond.fill_null(False) for cond, _ in [*row_checks, duplicate]]))
        .alias("_reference_ok")
    )
    parsed = _with_reference(parsed, stored)
    checks = [
        *row_checks,
        duplicate,
        _check(
            _c("currency") != _c("_ref_currency"),
            pl.format(
                "currency: cannot change from '{}' to '{}' for account '{}'",
                _c("_ref_currency"), _c("currency"), _c("account_id"),
            ),
        ),
        _check(
            _c("_billing_day") != _c("_ref_billing_day"),
            pl.format(
                "billing_day: cannot change from {} to {} for account '{}'",
                _c("_ref_billing_day"), _c("_billing_day"), _c("account_id"),
            ),
        ),
    ]
    typed = [
        "account_id", "currency", "main_product_id",
        _c("_billing_day").alias("billing_day"), "status",
        _c("_opened_on").alias("opened_on"), _c("_closed_on").alias("closed_on"),
        _c("_effective_from").alias("effective_from"),
    ]
    return _split(parsed, checks, typed, ACCOUNT_COLUMNS, source)


def _with_reference(parsed: pl.DataFrame, stored: pl.DataFrame | None) -> pl.DataFrame:
    """Add `_ref_currency`/`_ref_billing_day`: the account's first row, stored rows first."""
    candidates = parsed.filter(_c("_reference_ok")).select(
        "account_id",
        _c("_effective_from").alias("effective_from"),
        "currency",
        _c("_billing_day").alias("billing_day"),
        pl.lit(1).alias("_rank"),
        "line",
    )
    if stored is not None and stored.height:
        earlier = stored.select(
            "account_id",
            "effective_from",
            "currency",
            _c("billing_day").cast(pl.Int64),
            pl.lit(0).alias("_rank"),
            pl.lit(0, pl.Int64).alias("line"),
        )
        candidates = pl.concat([earlier, candidates], how="vertical_relaxed")
    reference = (
        candidates.sort("_rank", "effective_from", "line")
        .group_by("account_id", maintain_order=True)
        .agg(
            _c("currency").first().alias("_ref_currency"),
            _c("billing_day").first().alias("_ref_billing_day"),
        )
    )
    return parsed.join(reference, on="account_id", how="left")


# ---------------------------------------------------------------------------------------------
# Assignments


ASSIGNMENT_COLUMNS = list(INPUT_COLUMNS["assignments"])
# SPEC §8.1: `effective_from` came later and is optional; a row's text shows it only when the
# row has one, so the rows of a file without it read as they always did.
CHANGE_COLUMN = "effective_from"
_ASSIGNMENT_TEXT = raw_text(
    [c for c in ASSIGNMENT_COLUMNS if c != CHANGE_COLUMN], trailing=(CHANGE_COLUMN,)
)


def validate_assignments(
    raw: pl.DataFrame, catalog: Catalog, *, source: str, account_ids: pl.Series
) -> Validated:
    """Validate assignment rows; `account_ids` are the accounts stored or loaded alongside.

    A fee plan that exists but belongs to another subscription or currency is valid here: the
    rules layer decides that it is ineligible, and records why.

    SPEC §8.1: a row with `effective_from` is a change of the assignment's fee plan and
    quantity from that day; one without it is the base version. The key within a file is
    `(assignment_id, effective_from)` (a null `effective_from` is the base). A change's
    `start_date` and `assigned_at` are the base version's, so a change row may leave them
    empty (if given they must still parse). What a change is checked against (its base
    version: same account and add-on, `effective_from` not before `start_date`) may be in the
    store or in the same load, so the store checks it when it publishes the load
    (store/raw.py); a valid change row therefore keeps its text in `raw` (null for a base row).
    """
    start, end, assigned, quantity, effective = fields = (
        parse_date("start_date"), parse_date("end_date"), parse_timestamp("assigned_at"),
        parse_whole("quantity"), parse_date(CHANGE_COLUMN),
    )
    subscription_of = {a.id: a.subscription for a in catalog.addons if a.subscription}
    is_change = _c(CHANGE_COLUMN).is_not_null()
    # A key whose effective_from does not parse is no key: such a row is rejected for its date
    # and takes no part in finding duplicates.
    keyed = _c(CHANGE_COLUMN).is_null() | effective.value.is_not_null()
    parsed = _prepared(raw, *fields).with_columns(
        start.value.alias("_start_date"),
        end.value.alias("_end_date"),
        assigned.value.alias("_assigned_at"),
        pl.when(_c("quantity").is_null()).then(1).otherwise(quantity.value).alias("_quantity"),
        effective.value.alias("_effective_from"),
        keyed.alias("_keyed"),
    ).with_columns(
        pl.when(_c("_keyed")).then(_c("line")).min()
        .over(["assignment_id", "_effective_from"]).alias("_first"),
    )
    checks = [
        *_row_checks(ASSIGNMENT_COLUMNS),
        _required("assignment_id"),
        _required("account_id"),
        _known("account_id", account_ids, "account"),
        _required("addon_id"),
        _known("addon_id", [a.id for a in catalog.addons], "add-on"),
        _known(
            "fee_plan_id",
            [fp.id for s in catalog.subscriptions for fp in s.fee_plans],
            "fee plan",
        ),
        _check(
            _c("fee_plan_id").is_null() & _c("addon_id").is_in(list(subscription_of)),
            pl.format(
                "fee_plan_id: required, add-on '{}' has subscription '{}'",
                _c("addon_id"),
                _c("addon_id").replace_strict(subscription_of, default=None),
            ),
        ),
        _check(_c("start_date").is_null() & ~is_change, "start_date: required"),
        *start.checks,
        *end.checks,
        _check(
            _c("_end_date") < _c("_start_date"),
            pl.format("end_date: end before start ({} < {})", _c("end_date"), _c("start_date")),
        ),
        _check(_c("assigned_at").is_null() & ~is_change, "assigned_at: required"),
        *assigned.checks,
        *quantity.checks,
        _check(_c("_quantity") < 1, _quoted("quantity", "'{}' is less than 1")),
        _check(
            _c("_quantity") > MAX_ASSIGNMENT_QUANTITY,
            _quoted("quantity", f"'{{}}' is more than {MAX_ASSIGNMENT_QUANTITY}"),
        ),
        *effective.checks,
        _check(
            _c("assignment_id").is_not_null() & _c("_keyed")
            & (_c("line") != _c("_first")),
            pl.when(is_change).then(
                pl.format(
                    "assignment_id: duplicate assignment_id, effective_from ('{}', {}) "
                    "(first at line {})",
                    _c("assignment_id"), _c("_effective_from"), _c("_first"),
                )
            ).otherwise(
                pl.format(
                    "assignment_id: duplicate assignment_id '{}' (first at line {})",
                    _c("assignment_id"), _c("_first"),
                )
            ),
        ),
    ]
    typed = [
        "assignment_id", "account_id", "addon_id", "fee_plan_id",
        _c("_start_date").alias("start_date"), _c("_end_date").alias("end_date"),
        _c("_assigned_at").alias("assigned_at"), _c("_quantity").alias("quantity"),
        _c("_effective_from").alias(CHANGE_COLUMN),
        pl.when(is_change).then(_ASSIGNMENT_TEXT).alias("raw"),
    ]
    return _split(parsed, checks, typed, ASSIGNMENT_COLUMNS, source, raw=_ASSIGNMENT_TEXT)
