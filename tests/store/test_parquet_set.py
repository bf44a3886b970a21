"""The Parquet set's swap (store/parquet_set.py): one atomic link, two sets kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.parquet_set import parquet_pointer, publish_parquet, sets_folder


def _set(pointer: Path, name: str) -> Path:
    folder = sets_folder(pointer) / name
    folder.mkdir(parents=True)
    (folder / "invoices.parquet").write_text(name)
    return folder


def test_the_link_moves_to_each_new_set_keeping_the_one_it_replaced(tmp_path: Path) -> None:
    pointer = parquet_pointer(tmp_path / "billrun.duckdb")
    assert pointer.name == "billrun.analyst"
    first = _set(pointer, "run-1")
    publish_parquet(pointer, first)
    assert pointer.is_symlink() and (pointer / "invoices.parquet").read_text() == "run-1"
    assert not Path(str(pointer.readlink())).is_absolute()  # the folder can be moved whole

    _set(pointer, "run-2-killed")  # written by a run killed before its swap
    third = _set(pointer, "run-3")
    publish_parquet(pointer, third)
    assert (pointer / "invoices.parquet").read_text() == "run-3"
    assert sorted(p.name for p in sets_folder(pointer).iterdir()) == ["run-1", "run-3"]

    publish_parquet(pointer, _set(pointer, "run-4"))
    assert sorted(p.name for p in sets_folder(pointer).iterdir()) == ["run-3", "run-4"]
    assert not list(tmp_path.glob(".billrun.analyst.link-*"))  # no temporary link left


def test_a_real_folder_in_the_way_is_refused_not_deleted(tmp_path: Path) -> None:
    pointer = parquet_pointer(tmp_path / "billrun.duckdb")
    pointer.mkdir()
    (pointer / "mine.csv").write_text("an analyst's file")
    with pytest.raises(RuntimeError, match="not billrun's link"):
        publish_parquet(pointer, _set(pointer, "run-1"))
    assert (pointer / "mine.csv").exists()


def _tiny_db(path: Path) -> Path:
    """A database with a period-split table, an empty one and a whole one (store/parquet_set.py
    SPLITS), by hand: one line in 2026-01 by run r1."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR)")
        con.execute("CREATE TABLE charges (account_id VARCHAR, period VARCHAR, "
                    "amount DECIMAL(38,4), run_id VARCHAR)")
        con.execute("CREATE TABLE adjustments (account_id VARCHAR, period VARCHAR, "
                    "amount DECIMAL(38,4), run_id VARCHAR)")
        con.execute("INSERT INTO runs VALUES ('r1')")
        con.execute("INSERT INTO charges VALUES ('A1', '2026-01', 1.25, 'r1')")
    return path


def _rows(db: Path) -> dict[str, list[tuple]]:
    import duckdb

    from store.snapshot import analyst_path

    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("runs", "charges", "adjustments")}


def test_a_partition_whose_file_cannot_be_linked_is_written_and_an_empty_table_has_its_columns(
    tmp_path: Path,
) -> None:
    from decimal import Decimal

    import duckdb
    import polars as pl

    from store.snapshot import publish_snapshot

    db = _tiny_db(tmp_path / "billrun.duckdb")
    publish_snapshot(db, "s1")
    pointer = parquet_pointer(db)
    first = pointer.resolve()
    assert (first / "charges/period=2026-01/part_0.parquet").is_file()
    empty = pl.read_parquet(first / "adjustments")  # no row: one file with the columns
    assert (empty.height, empty.columns) == (0, ["account_id", "period", "amount", "run_id"])

    with duckdb.connect(str(db)) as con:  # run r2 adds a February line
        con.execute("INSERT INTO runs VALUES ('r2')")
        con.execute("INSERT INTO charges VALUES ('A1', '2026-02', 2.50, 'r2')")
    (first / "charges/period=2026-01/part_0.parquet").unlink()  # the link will fail
    publish_snapshot(db, "s2")
    second = pointer.resolve()
    assert (second / "charges/period=2026-01/part_0.parquet").stat().st_nlink == 1  # rewritten
    assert _rows(db)["charges"] == [("A1", "2026-01", Decimal("1.25"), "r1"),
                                    ("A1", "2026-02", Decimal("2.50"), "r2")]
    assert _rows(db)["runs"] == [("r1",), ("r2",)] and _rows(db)["adjustments"] == []

    publish_snapshot(db, "s3")  # nothing changed: every partition is a link to s2's file
    third = pointer.resolve()
    for part in ("2026-01", "2026-02"):
        path = f"charges/period={part}/part_0.parquet"
        assert (third / path).stat().st_ino == (second / path).stat().st_ino
