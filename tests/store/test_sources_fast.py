"""DuckDB's parallel CSV reader and the block reader stage the same rows, lines and text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest

from data.generator import generate
from store import sources

Write = Callable[[Path, str, str], Path]
HEADER = "event_id,account_id,service,destination_group,started_at,quantity,amount"


def staged(file: sources.InputFile) -> tuple[bool, pl.DataFrame]:
    """Whether DuckDB's reader took the file, and the staged rows in file order."""
    con = duckdb.connect()
    try:
        header, _ = sources._read_header(file)
        native = sources._stage_csv_natively(con, file, "_probe_rows", header)
        sources.stage_raw(con, file, "_raw")
        return native, con.sql("SELECT * FROM _raw ORDER BY line").pl()
    finally:
        con.close()


def block_read(file: sources.InputFile) -> pl.DataFrame:
    return sources.read_all(file).rename({"_extra": sources.EXTRA})


def test_a_regular_file_goes_through_duckdb_and_reads_as_the_block_reader(
    tmp_path: Path, write: Write
) -> None:
    path = write(tmp_path, "usage.csv", "\n".join([
        HEADER,
        "E1,A1,voice,US,2026-01-05 10:00:00,1,1",
        " E2 ,\tA1 ,\"a, b\",US,2026-01-05T10:00:00Z,1.5,2",
        "E3,A1",
        ",,,,,,",
        "E4,A1,voice,US,2026-01-05 10:00:00,1,1,surplus",
        'E5,A1,"say ""hi""",US ,2026-01-05 10:00:00, 1 ,\u00a01\u00a0',
        "E6,A1,voice,,2026-01-05 10:00:00,,",
    ]) + "\n")
    file = sources.InputFile("usage", path)
    native, table = staged(file)
    assert native
    assert table.equals(block_read(file))
    assert table["line"].to_list() == list(range(2, 9))
    assert table["event_id"].to_list() == ["E1", "E2", "E3", None, "E4", "E5", "E6"]
    assert table["service"].to_list()[1] == "a, b" and table["amount"].to_list()[5] == "1"


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        ('E1,A1,"two\nlines",US,2026-01-05 10:00:00,1,1\nE2,A1,v,US,2026-01-05 10:00:00,1,1\n',
         [2, 4]),
        ("E1,A1,v,US,2026-01-05 10:00:00,1,1\n\nE2,A1,v,US,2026-01-05 10:00:00,1,1\n",
         [2, 3, 4]),
        ("E1,A1,v,US,2026-01-05 10:00:00,1,1,x,y\nE2,A1,v,US,2026-01-05 10:00:00,1,1\n",
         [2, 3]),
    ],
    ids=["quoted line break", "blank line", "two surplus fields"],
)
def test_an_irregular_file_falls_back_with_physical_lines(
    tmp_path: Path, body: str, lines: list[int]
) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(HEADER + "\n" + body, encoding="utf-8")  # exactly, blank lines included
    file = sources.InputFile("usage", path)
    native, table = staged(file)
    assert not native
    assert table.equals(block_read(file))
    assert table["line"].to_list() == lines


def test_not_utf8_falls_back_and_the_row_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_bytes(f"{HEADER}\nE1,A1,IN\xffTL,US,2026-01-05 10:00:00,1,1\n".encode("latin-1"))
    file = sources.InputFile("usage", path)
    native, table = staged(file)
    assert not native
    assert table["service"].to_list() == ["IN\ufffdTL"]


def test_generated_data_stages_alike(tmp_path: Path) -> None:
    generate(60, tmp_path, seed=5, months=1)
    file = sources.find_inputs(tmp_path).get("usage")
    assert file is not None
    native, table = staged(file)
    assert native
    assert table.equals(block_read(file))
