"""A unit writes its charges and decisions once, as the tables hold them (issue 24; docs/RUNS.md,
"Units of work"): `charges.rows.parquet` and `decisions.rows.parquet`, and no Polars-shaped
`charges.parquet` or `decisions.parquet` beside them; every other output keeps its
`<name>.parquet`. The run's totals (its summary) read the charges from those rows, the amounts
turned back into exact minor units by the catalog's currencies.

Real parts: the sample catalog staged as a run stages it, real Parquet files in a real staging
folder, a real DuckDB database with the project's schema."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl

from pipeline.contracts import DECISIONS_SCHEMA, LINE_SCHEMA
from store import staging
from store.results import read_staged_totals
from store.schema import create_schema
from store.unit_rows import ROWS_TABLES

SAMPLE_CATALOG = Path(__file__).parents[2] / "data" / "sample" / "catalog.yaml"


def _line(account: str, addon: str, minor: int, currency: str) -> dict:
    return {"account_id": account, "period": "2026-01", "line_type": "fee",
            "assignment_id": f"AS_{account}", "addon_id": addon, "service": None,
            "destination_group": None, "quantity_units": 1_000_000, "amount_minor": minor,
            "currency": currency, "description": "fee", "term_start": date(2026, 1, 1),
            "line_date": date(2026, 1, 1)}


def _stage(tmp_path: Path) -> staging.Stage:
    stage = staging.Stage(str(tmp_path / "staging"), "nightly-test")
    staging.write_text(stage, staging.CATALOG_FILE, SAMPLE_CATALOG.read_text())
    return stage


def _write_unit(stage: staging.Stage, shard: int, lines: list[dict]) -> dict:
    decisions = pl.DataFrame([{
        "assignment_id": "AS_A1", "account_id": "A1", "period": "2026-01", "rule": "start",
        "outcome": "active", "reason": "assigned", "effective_start": date(2026, 1, 1),
        "effective_end": None}], schema=DECISIONS_SCHEMA)
    return staging.write_outputs(stage, "2026-01", shard, {
        "charges": pl.DataFrame(lines, schema=LINE_SCHEMA), "decisions": decisions})


def test_a_unit_writes_its_charges_and_decisions_once_as_table_rows(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    counts = _write_unit(stage, 0, [_line("A1", "ADD_TV", 1234, "USD"),
                                    _line("A2", "ADD_TV", 700, "JPY")])

    folder = tmp_path / "staging" / "nightly-test" / "units" / "2026-01" / "0"
    written = {p.name for p in folder.iterdir()}
    assert ROWS_TABLES == ("charges", "decisions")
    assert written == {
        *(f"{name}.parquet" for name in staging.UNIT_OUTPUTS if name not in ROWS_TABLES),
        "charges.rows.parquet", "decisions.rows.parquet",
    }
    assert "charges.parquet" not in written and "decisions.parquet" not in written
    assert counts["charges"] == 2 and counts["decisions"] == 1
    rows = duckdb.sql(
        f"SELECT account_id, amount, run_id FROM read_parquet('{folder}/charges.rows.parquet') "
        "ORDER BY account_id").fetchall()
    # USD has 2 minor units: 1234 -> 12.34; JPY has none: 700 -> 700.
    assert rows == [("A1", Decimal("12.34"), "nightly-test"),
                    ("A2", Decimal("700"), "nightly-test")]


def test_the_run_totals_read_the_charges_rows_in_exact_minor_units(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    _write_unit(stage, 0, [_line("A1", "ADD_TV", 1234, "USD"), _line("A2", "ADD_TV", 700, "JPY")])
    _write_unit(stage, 1, [_line("A3", "ADD_TV", 1, "USD"), _line("A4", "ADD_SMS", -250, "USD")])
    currencies = pl.DataFrame({"currency": ["USD", "EUR", "JPY"], "minor_units": [2, 2, 0]})
    with duckdb.connect(str(tmp_path / "billrun.duckdb")) as con:
        create_schema(con)
        totals = read_staged_totals(con, stage, currencies)

    assert totals.charge_lines == 4
    # ADD_TV in USD: 12.34 + 0.01 = 12.35 -> 1235 cents over 2 lines; in JPY 700 yen, 1 line;
    # ADD_SMS in USD: -2.50 -> -250 cents.
    assert totals.revenue.rows() == [
        ("2026-01", "ADD_SMS", "USD", -250, 1),
        ("2026-01", "ADD_TV", "JPY", 700, 1),
        ("2026-01", "ADD_TV", "USD", 1235, 2),
    ]
