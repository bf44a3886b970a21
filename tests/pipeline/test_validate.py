"""Validation (SPEC §2): every kind of bad row, every problem of a row, exact decimals."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import UNIT, parse_catalog
from pipeline.validate import (
    Validated,
    parse_timestamp,
    validate_accounts,
    validate_assignments,
)
from store import checks
from store.sources import COLUMNS, EXTRA

CATALOG = parse_catalog(
    (Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml").read_text()
)
KNOWN = pl.Series("account_id", ["A1", "A2"])


def raw(kind: str, *rows: dict[str, str | None]) -> pl.DataFrame:
    """An all-string frame like the one `store.sources` reads; line 2 is the first row."""
    data = {"line": list(range(2, 2 + len(rows)))}
    for col in [*COLUMNS[kind], EXTRA]:
        data[col] = [r.get(col) for r in rows]
    schema = {"line": pl.Int64, **{c: pl.String for c in data if c != "line"}}
    return pl.DataFrame(data, schema=schema)


def account(**over: str | None) -> dict[str, str | None]:
    base = {"account_id": "A1", "currency": "USD", "main_product_id": "MP_BASIC",
            "billing_day": "1", "status": "active", "opened_on": "2025-01-01"}
    return {**base, **over}


def assignment(**over: str | None) -> dict[str, str | None]:
    base = {"assignment_id": "S1", "account_id": "A1", "addon_id": "ADD_TV", "fee_plan_id": "TV1",
            "start_date": "2025-02-01", "assigned_at": "2025-01-30 10:00:00"}
    return {**base, **over}


def event(**over: str | None) -> dict[str, str | None]:
    base = {"event_id": "E1", "account_id": "A1", "service": "voice", "destination_group": "US",
            "started_at": "2026-01-05 10:00:00", "quantity": "1.5", "amount": "0.03"}
    return {**base, **over}


def validate_usage(rows: pl.DataFrame, *, source: str, account_ids: pl.Series) -> Validated:
    """The usage rules are SQL (store/checks.py): the same checks, over the frame."""
    return Validated(*checks.check_usage_frame(rows, source=source, account_ids=account_ids))


def sql(expression: str, value: str) -> tuple:
    """One row of `expression` over `x = value`, with the usage checks' parsers."""
    con = duckdb.connect()
    try:
        checks.define_macros(con)
        return con.execute(f"SELECT {expression} FROM (SELECT CAST(? AS VARCHAR) AS x)",
                           [value]).fetchall()[0]
    finally:
        con.close()


def reasons(result) -> list[str]:  # noqa: ANN001
    return result.rejected.sort("line")["reason"].to_list()


# ---------------------------------------------------------------------------------------------
# Accounts


def test_a_good_account_gets_its_defaults() -> None:
    out = validate_accounts(
        raw("accounts", account(billing_day=None)), CATALOG, source="accounts.csv"
    )
    assert out.rejected.is_empty()
    row = out.valid.row(0, named=True)
    assert row["billing_day"] == 1
    assert row["effective_from"] == date(2025, 1, 1)
    assert row["line"] == 2 and "raw" not in row


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"currency": "GBP"}, "currency: wrong currency 'GBP': not declared in the catalog"),
        ({"currency": None}, "currency: required"),
        ({"main_product_id": "MP_GOLD"}, "main_product_id: unknown main product 'MP_GOLD'"),
        ({"billing_day": "29"}, "billing_day: '29' is outside 1..28"),
        ({"billing_day": "x"}, "billing_day: 'x' is not a whole number"),
        ({"status": "frozen"}, "status: 'frozen' is not one of active|suspended|closed"),
        ({"opened_on": "2025-02-30"}, "opened_on: '2025-02-30' is not a date (YYYY-MM-DD)"),
        ({"opened_on": None}, "opened_on: required"),
        ({"closed_on": "2024-12-31"}, "closed_on: closed before it was opened"),
        ({"status": "closed"}, "closed_on: required when status is closed"),
        ({"effective_from": "2024-01-01"}, "effective_from: before opened_on"),
        ({"account_id": None}, "account_id: required"),
    ],
)
def test_bad_account_rows(over: dict[str, str | None], expected: str) -> None:
    out = validate_accounts(raw("accounts", account(**over)), CATALOG, source="accounts.csv")
    assert out.valid.is_empty()
    assert reasons(out) == [expected]
    assert out.rejected["source"].to_list() == ["accounts.csv"]


def test_every_problem_of_a_row_is_listed() -> None:
    bad = account(currency="GBP", billing_day="31", status="x", opened_on="nope")
    out = validate_accounts(raw("accounts", bad), CATALOG, source="accounts.csv")
    assert reasons(out)[0].split("; ") == [
        "currency: wrong currency 'GBP': not declared in the catalog",
        "billing_day: '31' is outside 1..28",
        "status: 'x' is not one of active|suspended|closed",
        "opened_on: 'nope' is not a date (YYYY-MM-DD)",
    ]


def test_a_later_row_may_not_change_currency_or_billing_day() -> None:
    rows = raw(
        "accounts",
        account(),
        account(main_product_id="MP_PLUS", effective_from="2025-06-01", currency="EUR"),
        account(main_product_id="MP_PLUS", effective_from="2025-07-01", billing_day="5"),
        account(main_product_id="MP_BIZ", effective_from="2025-08-01"),
    )
    out = validate_accounts(rows, CATALOG, source="accounts.csv")
    assert out.valid["effective_from"].to_list() == [date(2025, 1, 1), date(2025, 8, 1)]
    assert reasons(out) == [
        "currency: cannot change from 'USD' to 'EUR' for account 'A1'",
        "billing_day: cannot change from 1 to 5 for account 'A1'",
    ]


def test_the_stored_rows_are_the_reference() -> None:
    stored = pl.DataFrame(
        {"account_id": ["A1"], "effective_from": [date(2024, 1, 1)], "currency": ["EUR"],
         "billing_day": [7]}
    )
    out = validate_accounts(
        raw("accounts", account(billing_day="7", effective_from="2025-03-01")),
        CATALOG, source="accounts.csv", stored=stored,
    )
    assert reasons(out) == ["currency: cannot change from 'EUR' to 'USD' for account 'A1'"]


def test_duplicate_account_key_first_one_loads() -> None:
    out = validate_accounts(
        raw("accounts", account(), account(main_product_id="MP_PLUS")),
        CATALOG, source="accounts.csv",
    )
    assert out.valid["main_product_id"].to_list() == ["MP_BASIC"]
    assert reasons(out) == [
        "account_id: duplicate account_id, effective_from ('A1', 2025-01-01) (first at line 2)"
    ]


def test_blank_and_ragged_rows_are_rejected_not_dropped() -> None:
    out = validate_accounts(
        raw("accounts", {}, account(**{EXTRA: "surplus"}, main_product_id='MP "X", new')),
        CATALOG, source="accounts.csv",
    )
    assert reasons(out) == [
        "row: empty row",
        "row: more fields than the header; main_product_id: unknown main product 'MP \"X\", new'",
    ]
    assert out.rejected["raw"].to_list() == [
        ",,,,,,,",
        'A1,USD,"MP ""X"", new",1,active,2025-01-01,,,surplus',
    ]


# ---------------------------------------------------------------------------------------------
# Assignments


def test_a_good_assignment_is_typed() -> None:
    out = validate_assignments(
        raw("assignments", assignment(assigned_at="2025-01-30T10:00:00.25Z")),
        CATALOG, source="assignments.csv", account_ids=KNOWN,
    )
    row = out.valid.row(0, named=True)
    assert row["quantity"] == 1 and row["end_date"] is None
    assert row["assigned_at"] == datetime(2025, 1, 30, 10, 0, 0, 250000)


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"account_id": "A9"}, "account_id: unknown account 'A9'"),
        ({"addon_id": "ADD_NOPE"}, "addon_id: unknown add-on 'ADD_NOPE'"),
        ({"fee_plan_id": "FP_NOPE"}, "fee_plan_id: unknown fee plan 'FP_NOPE'"),
        ({"fee_plan_id": None}, "fee_plan_id: required, add-on 'ADD_TV' has subscription 'SUB_TV'"),
        ({"end_date": "2025-01-31"}, "end_date: end before start (2025-01-31 < 2025-02-01)"),
        ({"quantity": "0"}, "quantity: '0' is less than 1"),
        ({"quantity": "1.5"}, "quantity: '1.5' is not a whole number"),
        ({"start_date": "2025/02/01"}, "start_date: '2025/02/01' is not a date (YYYY-MM-DD)"),
        ({"assigned_at": "yesterday"}, "assigned_at: 'yesterday' is not a timestamp"),
    ],
)
def test_bad_assignment_rows(over: dict[str, str | None], expected: str) -> None:
    out = validate_assignments(
        raw("assignments", assignment(**over)), CATALOG, source="assignments.csv",
        account_ids=KNOWN,
    )
    assert out.valid.is_empty()
    assert reasons(out)[0].startswith(expected)


@pytest.mark.parametrize(
    "over",
    [
        {"fee_plan_id": "TV1E"},  # a known fee plan in another currency: the rules decide
        {"fee_plan_id": "V1"},  # a known fee plan of another subscription: the rules decide
        {"addon_id": "ADD_INTL", "fee_plan_id": None},  # no subscription, no fee plan
        {"end_date": "2025-02-01", "quantity": "3"},
    ],
)
def test_assignments_the_rules_settle_are_not_rejected(over: dict[str, str | None]) -> None:
    out = validate_assignments(
        raw("assignments", assignment(**over)), CATALOG, source="assignments.csv",
        account_ids=KNOWN,
    )
    assert out.rejected.is_empty()


def test_duplicate_assignment_id() -> None:
    out = validate_assignments(
        raw("assignments", assignment(), assignment(quantity="2")), CATALOG,
        source="assignments.csv", account_ids=KNOWN,
    )
    assert out.valid["quantity"].to_list() == [1]
    assert reasons(out) == ["assignment_id: duplicate assignment_id 'S1' (first at line 2)"]


def test_a_file_without_effective_from_gives_base_rows_as_before() -> None:
    rows = raw("assignments", assignment(), assignment(assignment_id="S2", quantity="x"))
    out = validate_assignments(rows, CATALOG, source="assignments.csv", account_ids=KNOWN)
    assert out.valid["effective_from"].to_list() == [None]
    assert out.valid["raw"].to_list() == [None]  # only a change row keeps its text
    # the text of a rejected row has no trailing field for the column the file lacks
    assert out.rejected["raw"].to_list() == [
        "S2,A1,ADD_TV,TV1,2025-02-01,,2025-01-30 10:00:00,x"
    ]


def test_change_rows_are_typed_and_keep_their_text() -> None:
    """SPEC §8.1: a row with effective_from is a change; its start_date and assigned_at are the
    base version's, so it may leave them out."""
    out = validate_assignments(
        raw("assignments", assignment(),
            assignment(effective_from="2025-03-11", fee_plan_id="TV1P", quantity="3",
                       start_date=None, assigned_at=None)),
        CATALOG, source="assignments.csv", account_ids=KNOWN,
    )
    assert out.rejected.is_empty()
    assert out.valid.select("effective_from", "fee_plan_id", "quantity", "start_date",
                            "raw").rows() == [
        (None, "TV1", 1, date(2025, 2, 1), None),
        (date(2025, 3, 11), "TV1P", 3, None, "S1,A1,ADD_TV,TV1P,,,,3,2025-03-11"),
    ]


def test_a_bad_effective_from_is_rejected_naming_the_field() -> None:
    out = validate_assignments(
        raw("assignments", assignment(effective_from="2025-02-30"), assignment()),
        CATALOG, source="assignments.csv", account_ids=KNOWN,
    )
    # the bad row is no key: the base row after it is not taken for its duplicate
    assert out.valid["line"].to_list() == [3]
    assert reasons(out) == ["effective_from: '2025-02-30' is not a date (YYYY-MM-DD)"]
    assert out.rejected["raw"].to_list() == [
        "S1,A1,ADD_TV,TV1,2025-02-01,,2025-01-30 10:00:00,,2025-02-30"
    ]


def test_the_key_is_assignment_id_and_effective_from() -> None:
    out = validate_assignments(
        raw("assignments",
            assignment(),
            assignment(effective_from="2025-03-01", quantity="2"),
            assignment(effective_from="2025-04-01", quantity="3"),
            assignment(effective_from="2025-03-01", quantity="4"),
            assignment(quantity="5")),
        CATALOG, source="assignments.csv", account_ids=KNOWN,
    )
    assert out.valid["quantity"].to_list() == [1, 2, 3]
    assert reasons(out) == [
        "assignment_id: duplicate assignment_id, effective_from ('S1', 2025-03-01) "
        "(first at line 3)",
        "assignment_id: duplicate assignment_id 'S1' (first at line 2)",
    ]


def test_a_base_row_still_needs_its_start_and_assignment_time() -> None:
    out = validate_assignments(
        raw("assignments", assignment(start_date=None, assigned_at=None)),
        CATALOG, source="assignments.csv", account_ids=KNOWN,
    )
    assert reasons(out) == ["start_date: required; assigned_at: required"]


# ---------------------------------------------------------------------------------------------
# Usage


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"amount": "1.2.3"}, "amount: '1.2.3' is not a decimal number"),
        ({"quantity": "1e3"}, "quantity: '1e3' is not a decimal number"),
        ({"amount": "0.1234567"}, "amount: '0.1234567' has more than 6 decimals"),
        ({"amount": "1234567890123"}, "amount: '1234567890123' is too large"),
        ({"quantity": "-1"}, "quantity: '-1' is negative"),
        ({"amount": None}, "amount: required"),
        ({"account_id": "A9"}, "account_id: unknown account 'A9'"),
        ({"service": None}, "service: required"),
        ({"destination_group": None}, "destination_group: required"),
        ({"started_at": "2026-01-32 10:00:00"}, "started_at: '2026-01-32 10:00:00' is not a"),
        ({"started_at": "2026-01-05 10:00"}, "started_at: '2026-01-05 10:00' is not a"),
    ],
)
def test_bad_usage_rows(over: dict[str, str | None], expected: str) -> None:
    out = validate_usage(raw("usage", event(**over)), source="usage.csv", account_ids=KNOWN)
    assert out.valid.is_empty()
    assert reasons(out)[0].startswith(expected)


def test_usage_duplicates_and_counts() -> None:
    rows = raw("usage", event(), event(amount="9"), event(event_id="E2"), event(event_id="E1"))
    out = validate_usage(rows, source="usage.csv", account_ids=KNOWN)
    assert out.valid["event_id"].to_list() == ["E1", "E2"]
    assert out.rejected["line"].to_list() == [3, 5]
    assert set(reasons(out)) == {"event_id: duplicate event_id 'E1' (first at line 2)"}
    assert out.valid.height + out.rejected.height == rows.height


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("0.123456", 123_456),
        ("12345678.5", 12_345_678_500_000),
        ("1", UNIT),
        (".5", 500_000),
        ("2.", 2 * UNIT),
        ("+2.25", 2_250_000),
        ("-0.000001", -1),
        ("007.000100", 7_000_100),
        ("999999999999.999999", 999_999_999_999_999_999),
        ("1.50000000", 1_500_000),  # trailing zeros carry no precision
        (".0", 0),
    ],
)
def test_decimals_are_parsed_exactly(text: str, units: int) -> None:
    # The value, then the three checks of a decimal (not a decimal, too precise, too large).
    out = sql(
        "CAST(CAST(_dec(x) AS DECIMAL(38,6)) * 1000000 AS BIGINT), NOT _dec_form(x), "
        "_dec_precise(x), _dec_large(x)",
        text,
    )
    assert out == (units, False, False, False)


@settings(deadline=None)  # one in-memory DuckDB per example
@given(st.integers(min_value=0, max_value=10**18 - 1), st.integers(min_value=0, max_value=6))
def test_any_decimal_text_round_trips(units: int, decimals: int) -> None:
    scaled = units - units % 10 ** (6 - decimals)
    whole, frac = divmod(scaled, UNIT)
    text = f"{whole}.{frac:06d}"[: len(str(whole)) + 1 + decimals].rstrip(".")
    assert sql("CAST(CAST(_dec(x) AS DECIMAL(38,6)) * 1000000 AS BIGINT)", text)[0] == scaled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05 10:00:00", datetime(2026, 1, 5, 10)),
        ("2026-01-05T10:00:00Z", datetime(2026, 1, 5, 10)),
        ("2026-01-05T10:00:00.5", datetime(2026, 1, 5, 10, 0, 0, 500000)),
        ("2026-01-05 10:00:00.123456789Z", datetime(2026, 1, 5, 10, 0, 0, 123456)),
        ("2026-01-05", None),
        ("2026-01-05 24:00:00", None),
    ],
)
def test_timestamps(text: str, expected: datetime | None) -> None:
    parsed = parse_timestamp("t")
    frame = pl.DataFrame({"t": [text]}).with_columns(parsed.prepare)
    assert frame.select(parsed.value).item() == expected
    # The usage file's started_at is read by the SQL twin of the same rule.
    assert sql("_ts(x)", text)[0] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05 10:00:00+02:00", datetime(2026, 1, 5, 8)),
        ("2026-01-05T10:00:00-0530", datetime(2026, 1, 5, 15, 30)),
        ("2026-01-05 10:00:00.000001+00:00", datetime(2026, 1, 5, 10, 0, 0, 1)),
        ("2026-02-30 10:00:00", None),
        ("2026-01-05 10:00:00+24:00", None),
    ],
)
def test_timestamp_offsets_convert_to_utc(text: str, expected: datetime | None) -> None:
    parsed = parse_timestamp("t")
    frame = pl.DataFrame({"t": [text]}).with_columns(parsed.prepare)
    assert frame.select(parsed.value).item() == expected
    assert sql("_ts(x)", text)[0] == expected
