"""The usage goes to the units as the table stores it, DECIMAL(18,6), and the unit takes the
decimal's integer as millionths (store/staging.py `USAGE_SQL`, `usage_units`): exact, the same
numbers as multiplying by 10^6 in DuckDB, to the extremes of DECIMAL(18,6)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.staging import usage_units

# DECIMAL(18,6): 12 integer digits, 6 decimals.
MICROS = st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1)


def _staged(tmp: Path, values: list[str]) -> pl.DataFrame:
    """`values` stored as the usage table stores them and staged as the export writes them."""
    path = tmp / "usage.parquet"
    with duckdb.connect() as con:
        con.execute("CREATE TABLE usage (quantity DECIMAL(18,6), amount DECIMAL(18,6))")
        con.executemany("INSERT INTO usage VALUES (?, ?)", [[v, v] for v in values])
        con.execute(f"COPY (SELECT CAST(quantity AS DECIMAL(18,6)) AS quantity, "
                    f"CAST(amount AS DECIMAL(18,6)) AS amount FROM usage) TO '{path}' "
                    "(FORMAT parquet)")
    return pl.read_parquet(path)


def test_the_extremes_and_the_smallest_steps_are_exact(tmp_path: Path) -> None:
    frame = usage_units(_staged(tmp_path, [
        "999999999999.999999", "-999999999999.999999", "0.000001", "-0.000001", "1.5", "0"]))
    assert frame.schema == {"quantity_units": pl.Int64(), "amount_units": pl.Int64()}
    assert frame["quantity_units"].to_list() == [
        999_999_999_999_999_999, -999_999_999_999_999_999, 1, -1, 1_500_000, 0]
    assert frame["amount_units"].to_list() == frame["quantity_units"].to_list()


@settings(max_examples=25, deadline=None)
@given(micros=st.lists(MICROS, min_size=1, max_size=20))
def test_units_are_the_stored_decimal_times_a_million(
    tmp_path_factory: pytest.TempPathFactory, micros: list[int]
) -> None:
    tmp = tmp_path_factory.mktemp("units")
    values = [str(Decimal(m).scaleb(-6)) for m in micros]
    assert usage_units(_staged(tmp, values))["amount_units"].to_list() == micros
