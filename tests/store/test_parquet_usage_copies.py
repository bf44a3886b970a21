"""The usage files of the Parquet set are written by one plain COPY per (month, load) when there
are few of them, else by one partitioned COPY (store/parquet_set.py `write_run_files`): both
ways give the same files, by the same names, with the same rows."""

from __future__ import annotations

from pathlib import Path

import pytest

import store.parquet_set as parquet_set
from store.parquet_set import parquet_pointer
from store.snapshot import publish_snapshot
from tests.store.test_parquet_usage import (
    _load,
    _months,
    _new_db,
    _published_usage,
    _working_usage,
)

LOADS = [
    [("E1", "2026-01-05"), ("E2", "2026-02-01")],
    [("E3", "2026-01-31"), ("E4", "2026-02-28"), ("E5", "2026-03-01")],
    [("E6", "2026-01-02")],
]
# Loads 1 to 3 stored events of these months: one file per month and load.
EXPECTED = {
    "2026-01": ["usage/month=2026-01/load-1_0.parquet", "usage/month=2026-01/load-2_0.parquet",
                "usage/month=2026-01/load-3_0.parquet"],
    "2026-02": ["usage/month=2026-02/load-1_0.parquet", "usage/month=2026-02/load-2_0.parquet"],
    "2026-03": ["usage/month=2026-03/load-2_0.parquet"],
}


@pytest.mark.parametrize("copies", [0, 8], ids=["partitioned", "plain"])
def test_both_ways_write_one_file_per_month_and_load_with_the_table_s_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies: int
) -> None:
    monkeypatch.setattr(parquet_set, "RUN_FILE_COPIES", copies)
    db = _new_db(tmp_path / "billrun.duckdb")
    # The first set writes its months whole; the next one adds the last load's files.
    _load(db, 1, LOADS[0])
    _load(db, 2, LOADS[1])
    publish_snapshot(db, "s1")
    _load(db, 3, LOADS[2])
    publish_snapshot(db, "s2")
    assert _months(parquet_pointer(db).resolve()) == EXPECTED
    published = _published_usage(db)
    assert len(published) == 6
    assert published == _working_usage(db)
