"""The store and the sources, on real files and a real DuckDB file (no Prefect here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

import store
from data.generator import generate
from flows.load import load_directory
from store import FileBatch, LoadBatch, Staged, sources
from store.checks import check_usage_frame

Write = Callable[[Path, str, str], Path]
CATALOG = (Path(__file__).resolve().parents[2] / "data" / "sample" / "catalog.yaml").read_text()

ACCOUNTS = """
account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from
A1,USD,MP_BASIC,1,active,2025-01-01,,
A2,EUR,MP_PLUS,15,active,2025-02-01,,
"""
ASSIGNMENTS = """
assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity
S1,A1,ADD_TV,TV1,2025-03-01,,2025-02-28 10:00:00,
S2,A2,ADD_SMS,S1E,2025-03-01,,2025-02-28 11:00:00,2
"""
USAGE = """
event_id,account_id,service,destination_group,started_at,quantity,amount
E1,A1,voice,US,2026-01-05 10:00:00,12.5,0.123456
E2,A1,voice,INTL,2026-01-05T11:00:00Z,1,12345678.5
E3,A2,sms,ANY,2026-01-06 00:00:00,1,0.05
"""


@pytest.fixture
def folder(tmp_path: Path, write: Write) -> Path:
    drop = tmp_path / "drop"
    write(drop, "catalog.yaml", CATALOG)
    write(drop, "accounts.csv", ACCOUNTS)
    write(drop, "assignments.csv", ASSIGNMENTS)
    write(drop, "usage.csv", USAGE)
    return drop


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(tmp_path / "billrun.duckdb")
    yield connection
    connection.close()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, except the run log (which grows by one row per load)."""
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog <> 'temp'"
    ).fetchall()
    return {
        f"{s}.{t}": con.execute(f'SELECT * FROM "{s}"."{t}" ORDER BY ALL').fetchall()
        for s, t in tables if t != "runs"
    }


# ---------------------------------------------------------------------------------------------
# Schema


def test_connect_creates_raw_and_results_tables(con: duckdb.DuckDBPyConnection) -> None:
    tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    names = {r[0] for r in tables}
    assert {
        "catalog_versions", "accounts", "assignment_versions", "assignments", "usage",
        "rejected_rows", "runs", "decisions", "charges", "invoices", "adjustments",
        "discount_counters",
    } <= names
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'usage'"
        ).fetchall()
    )
    assert types["amount"] == "DECIMAL(18,6)" and types["started_at"] == "TIMESTAMP"


def test_read_only_connection_does_not_write(tmp_path: Path) -> None:
    store.connect(tmp_path / "x.duckdb").close()
    ro = store.connect(tmp_path / "x.duckdb", read_only=True)
    with pytest.raises(duckdb.Error):
        ro.execute("CREATE TABLE t (a INT)")
    ro.close()


# ---------------------------------------------------------------------------------------------
# Loading


def test_load_counts_and_typed_readers(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    report = load_directory(con, folder)
    assert [(f.source, f.rows_in, f.loaded, f.rejected) for f in report.files] == [
        ("accounts.csv", 2, 2, 0), ("assignments.csv", 2, 2, 0), ("usage.csv", 3, 3, 0),
    ]
    assert report.catalog == "new version 1"
    assert store.read_catalog(con).currencies["JPY"] == 0
    accounts = store.read_accounts(con)
    assert accounts.schema["billing_day"] == pl.Int64 and accounts.schema["opened_on"] == pl.Date
    assert store.read_assignments(con)["quantity"].to_list() == [1, 2]
    usage = store.read_usage(con, date(2026, 1, 1), date(2026, 2, 1))
    assert usage.schema["started_at"] == pl.Datetime("us")
    run = store.read_runs(con, "load").row(0, named=True)
    assert (run["status"], run["rows_in"], run["rows_out"]) == ("success", 7, 7)


def test_decimal_amounts_are_exact_end_to_end(
    con: duckdb.DuckDBPyConnection, folder: Path
) -> None:
    load_directory(con, folder)
    stored = dict(con.execute("SELECT event_id, amount FROM usage").fetchall())
    assert stored["E1"] == Decimal("0.123456")
    assert stored["E2"] == Decimal("12345678.5")
    units = store.read_usage(con, date(2026, 1, 5), date(2026, 1, 6))
    assert dict(units.select("event_id", "amount_units").iter_rows()) == {
        "E1": 123_456, "E2": 12_345_678_500_000,
    }
    assert units["quantity_units"].to_list() == [12_500_000, 1_000_000]


def test_reloading_the_same_files_changes_no_table(
    con: duckdb.DuckDBPyConnection, folder: Path, write: Write
) -> None:
    write(folder, "usage.csv", USAGE.strip() + "\nE1,A1,voice,US,2026-01-05 10:00:00,1,1\nbad\n")
    first = load_directory(con, folder)
    before = snapshot(con)
    second = load_directory(con, folder)
    assert snapshot(con) == before
    assert second.catalog == "unchanged (version 1)"
    for f1, f2 in zip(first.files, second.files, strict=True):
        assert (f2.rows_in, f2.loaded, f2.rejected) == (f1.rows_in, f1.loaded, f1.rejected)
        assert f2.unchanged == f2.loaded
        assert f2.rows_in == f2.loaded + f2.rejected
    assert len(store.read_runs(con, "load")) == 2


def test_an_assignment_update_is_a_new_version(
    con: duckdb.DuckDBPyConnection, folder: Path, tmp_path: Path, write: Write
) -> None:
    load_directory(con, folder)
    update = tmp_path / "update"
    write(update, "assignments.csv", """
        assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity
        S1,A1,ADD_TV,TV1,2025-03-01,2026-01-15,2025-02-28 10:00:00,
        S3,A1,ADD_SMS,S1,2026-01-01,,2025-12-30 10:00:00,
        """)
    report = load_directory(con, update)
    assert (report.files[0].loaded, report.files[0].unchanged) == (2, 0)
    versions = con.execute(
        "SELECT load_seq, end_date, source FROM assignment_versions WHERE assignment_id = 'S1' "
        "ORDER BY load_seq"
    ).fetchall()
    assert [v[1] for v in versions] == [None, date(2026, 1, 15)]
    assert versions[0][0] < versions[1][0]
    current = store.read_assignments(con).filter(assignment_id="S1")
    assert current["end_date"].to_list() == [date(2026, 1, 15)]
    again = load_directory(con, update)
    assert again.files[0].unchanged == 2
    assert con.execute("SELECT count(*) FROM assignment_versions").fetchall() == [(4,)]


def test_a_later_usage_file_may_not_change_a_loaded_event(
    con: duckdb.DuckDBPyConnection, folder: Path, tmp_path: Path, write: Write
) -> None:
    load_directory(con, folder)
    nightly = tmp_path / "nightly"
    write(nightly, "usage.csv", """
        event_id,account_id,service,destination_group,started_at,quantity,amount
        E1,A1,voice,US,2026-01-05 10:00:00,12.5,0.123456
        E2,A1,voice,INTL,2026-01-05 11:00:00,1,99
        E4,A2,sms,ANY,2026-01-07 00:00:00,1,0.05
        """)
    report = load_directory(con, nightly)
    stats = report.files[0]
    assert (stats.rows_in, stats.loaded, stats.unchanged, stats.rejected) == (3, 2, 1, 1)
    rejected = store.read_rejected(con).row(0, named=True)
    assert rejected["line"] == 3 and rejected["source"] == "usage.csv"
    assert rejected["raw"] == "E2,A1,voice,INTL,2026-01-05 11:00:00,1,99"
    assert rejected["reason"] == (
        "event_id: duplicate event_id 'E2' (already loaded from usage.csv line 3 with other "
        "values)"
    )
    assert con.execute("SELECT amount FROM usage WHERE event_id = 'E2'").fetchall() == [
        (Decimal("12345678.5"),)
    ]


def test_a_reloaded_id_is_found_at_either_end_of_the_files_ids(
    con: duckdb.DuckDBPyConnection, folder: Path, tmp_path: Path, write: Write
) -> None:
    """The lookup of stored ids reads only the stored rows between the file's smallest and
    largest id (store/raw.py `_stored_usage_between`): ids at both ends, one with a quote, and
    stored ids just outside the file's range are each settled as the whole table would."""
    load_directory(con, folder)  # E1, E2, E3
    nightly = tmp_path / "nightly"
    write(nightly, "usage.csv", """
        event_id,account_id,service,destination_group,started_at,quantity,amount
        E3,A2,sms,ANY,2026-01-06 00:00:00,1,0.05
        E2',A1,voice,US,2026-01-07 00:00:00,1,1
        E2,A1,voice,INTL,2026-01-05 11:00:00,2,2
        """)
    stats = load_directory(con, nightly).files[0]
    # E3 (the largest id) is the same event again; E2 (the smallest) came with other values;
    # E2' is new. E1, stored below the file's range, is left alone.
    assert (stats.rows_in, stats.loaded, stats.unchanged, stats.rejected) == (3, 2, 1, 1)
    assert store.read_rejected(con)["reason"].to_list() == [
        "event_id: duplicate event_id 'E2' (already loaded from usage.csv line 3 with other "
        "values)"
    ]
    assert con.execute("SELECT event_id FROM usage ORDER BY event_id").fetchall() == [
        ("E1",), ("E2",), ("E2'",), ("E3",)]


def _usage_stage(
    tmp_path: Path, write: Write, rows: list[str], fail: Exception | None = None
) -> Callable[[duckdb.DuckDBPyConnection, str], Staged]:
    """A usage file of `rows` (events of A1), staged as the load stages it; `fail` raises
    once the rows are staged."""
    header = "event_id,account_id,service,destination_group,started_at,quantity,amount"
    path = write(tmp_path / "usage_drop", "usage.csv", "\n".join([header, *rows]) + "\n")
    file = sources.InputFile("usage", path)

    def stage(con: duckdb.DuckDBPyConnection, table: str) -> Staged:
        sources.stage_raw(con, file, table)
        if fail is not None:
            raise fail
        return Staged()

    return stage


def _event(event_id: str) -> str:
    return f"{event_id},A1,sms,ANY,2026-01-05 10:00:00,1,0.05"


def test_a_duplicate_later_in_the_same_file_is_rejected_on_every_load(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, write: Write
) -> None:
    write(tmp_path / "accounts", "catalog.yaml", CATALOG)
    write(tmp_path / "accounts", "accounts.csv", ACCOUNTS)
    load_directory(con, tmp_path / "accounts")
    stage = _usage_stage(tmp_path, write, [_event("E1"), _event("E2"), _event("E1")])

    def batch() -> LoadBatch:
        return LoadBatch(CATALOG, files=[FileBatch("usage", "usage.csv", stage=stage)])

    for round_no in range(2):
        stats = store.load_batch(con, batch()).files[0]
        assert (stats.loaded, stats.rejected) == (2, 1), round_no
    assert store.read_rejected(con)["reason"].to_list() == [
        "event_id: duplicate event_id 'E1' (first at line 2)"
    ]


def test_a_failed_load_writes_nothing_but_its_run(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, write: Write
) -> None:
    exploding = _usage_stage(tmp_path, write, [_event("E1")], fail=RuntimeError("disk on fire"))

    with pytest.raises(RuntimeError, match="disk on fire"):
        store.load_batch(con, LoadBatch(CATALOG, files=[FileBatch("usage", "usage.csv",
                                                                   stage=exploding)]))
    assert con.execute("SELECT count(*) FROM usage").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM catalog_versions").fetchall() == [(0,)]
    runs = store.read_runs(con)
    assert runs["status"].to_list() == ["failed"]
    assert "disk on fire" in runs["message"][0]


def test_rows_in_is_loaded_plus_rejected_on_generated_data(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    generate(300, tmp_path / "gen", seed=7, months=1)
    report = load_directory(con, tmp_path / "gen")
    for f in report.files:
        assert f.rows_in == f.loaded + f.rejected
        assert f.rejected > 0
    stored = con.execute("SELECT count(*) FROM rejected_rows").fetchall()[0][0]
    assert stored == report.rejected


def test_csv_and_parquet_load_the_same_rows(tmp_path: Path) -> None:
    results = []
    for fmt in ("csv", "parquet"):
        generate(200, tmp_path / fmt, seed=3, months=1, fmt=fmt)
        con = store.connect(tmp_path / f"{fmt}.duckdb")
        load_directory(con, tmp_path / fmt)
        results.append(
            (
                con.execute(
                    "SELECT * EXCLUDE (source, line, run_id, loaded_at) FROM usage ORDER BY ALL"
                ).fetchall(),
                # Parquet rows count from 1, CSV lines from the header's 1.
                con.execute(
                    "SELECT line - ?, regexp_replace(reason, 'line [0-9]+', 'line N') "
                    "FROM rejected_rows ORDER BY ALL",
                    [int(fmt == "csv")],
                ).fetchall(),
            )
        )
        con.close()
    assert results[0] == results[1]


def test_no_catalog_anywhere_stops_with_a_catalog_error(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, write: Write
) -> None:
    from pipeline.catalog import CatalogError

    write(tmp_path / "d", "accounts.csv", ACCOUNTS)
    with pytest.raises(CatalogError, match="accounts.csv need a catalog"):
        load_directory(con, tmp_path / "d")


def test_usage_alone_loads_against_stored_accounts(
    con: duckdb.DuckDBPyConnection, folder: Path, tmp_path: Path, write: Write
) -> None:
    load_directory(con, folder)
    write(tmp_path / "u", "usage.csv", """
        event_id,account_id,service,destination_group,started_at,quantity,amount
        E9,A2,data,ANY,2026-01-09 00:00:00,3.5,0.035
        E10,A7,data,ANY,2026-01-09 00:00:00,3.5,0.035
        """)
    stats = load_directory(con, tmp_path / "u").files[0]
    assert (stats.loaded, stats.rejected) == (1, 1)


# ---------------------------------------------------------------------------------------------
# Sources


def test_lines_are_physical_even_with_multiline_values(tmp_path: Path, write: Write) -> None:
    write(tmp_path, "usage.csv", (
        'event_id,account_id,service,destination_group,started_at,quantity,amount\n'
        'E1,A1,"two\nlines",US,2026-01-05 10:00:00,1,1\n'
        '\n'
        'E2,A1,voice,US,2026-01-05 10:00:00,1,1,surplus\n'
        'E3,A1\n'
    ))
    file = sources.find_inputs(tmp_path).get("usage")
    assert file is not None
    frame = sources.read_all(file)
    assert frame["line"].to_list() == [2, 4, 5, 6]
    assert frame["event_id"].to_list() == ["E1", None, "E2", "E3"]
    assert frame["_extra"].to_list() == [None, None, "surplus", None]
    assert frame["amount"].to_list() == ["1", None, "1", None]


def test_small_blocks_give_the_same_rows_and_lines(tmp_path: Path) -> None:
    generate(50, tmp_path, seed=5, months=1)
    file = sources.find_inputs(tmp_path).get("usage")
    assert file is not None
    whole = sources.read_all(file)
    pieces = [b.frame for b in sources.iter_batches(file, block_bytes=4096)]
    assert len(pieces) > 10
    assert pl.concat(pieces).equals(whole)
    assert whole["line"].to_list() == list(range(2, whole.height + 2))


def test_a_missing_required_column_is_a_source_error(tmp_path: Path, write: Write) -> None:
    write(tmp_path, "usage.csv", "event_id,account_id\nE1,A1\n")
    file = sources.find_inputs(tmp_path).get("usage")
    assert file is not None
    with pytest.raises(sources.SourceError, match="lacks column"):
        sources.read_all(file)


def test_both_formats_of_one_input_is_a_source_error(tmp_path: Path, write: Write) -> None:
    write(tmp_path, "usage.csv", "x\n")
    write(tmp_path, "usage.parquet", "x\n")
    with pytest.raises(sources.SourceError, match="keep only one"):
        sources.find_inputs(tmp_path)


def test_bytes_that_are_not_utf8_reject_the_row_only(tmp_path: Path, write: Write) -> None:
    path = write(tmp_path, "usage.csv", USAGE)
    path.write_bytes(path.read_bytes().replace(b"INTL", b"IN\xffTL"))
    file = sources.find_inputs(tmp_path).get("usage")
    assert file is not None
    valid, rejected = check_usage_frame(
        sources.read_all(file), source="usage.csv", account_ids=pl.Series(["A1", "A2"])
    )
    assert valid.height == 2
    assert rejected["reason"].to_list() == ["row: not valid UTF-8 text"]
