"""A reprocess publishes what it changed (issue 24): the adjustments and notes of its period,
not the lines of the periods it left as they were (store/parquet_set.py
`partitions_to_write`; docs/RUNS.md, "What is published")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.load import load_flow
from flows.reprocess import reprocess_flow
from store.parquet_set import MANIFEST, parquet_pointer
from tests.flows.conftest import copy_database, write_drop
from tests.flows.test_publication_by_period import USAGE_HEADER, assert_published, billed

pytestmark = pytest.mark.slow
__all__ = ["billed"]  # the module fixture: January final, February a draft

# A1's January held 120 minutes (50 + 70) of its 100 included ones: 30 more, loaded after
# January was final, are late usage; reprocessing January adjusts it.
LATE_JANUARY = USAGE_HEADER + "L1,A1,voice,US,2026-01-20 08:00:00,30,3.00\n"


def _inode(folder: Path, path: str) -> int:
    return (folder / path).stat().st_ino


def test_a_reprocess_writes_its_adjustments_and_links_the_lines_it_left(
    billed: Path, tmp_path: Path
) -> None:
    db = copy_database(billed, tmp_path / "billrun.duckdb")
    load_flow(str(write_drop(tmp_path / "late", usage=LATE_JANUARY)), str(db))
    before = parquet_pointer(db).resolve()
    reprocess_flow("2026-01", db=str(db))
    after = parquet_pointer(db).resolve()
    manifest = json.loads((after / MANIFEST).read_text())
    # The late minutes became adjustment lines of January, numbered by a note.
    assert manifest["relations"]["adjustments"]["parts"]["2026-01"]["rows"] >= 1
    assert "2026-01" in manifest["relations"]["documents"]["parts"]
    # January's lines and decisions are final: the reprocess left them, and the set links
    # the previous set's files (a reprocess used to write every period-split table of every
    # period it touched again).
    for table in ("charges", "decisions", "finalized_periods"):
        for period in ("2026-01", "2026-02"):
            for f in manifest["relations"][table]["parts"].get(period, {}).get("files", []):
                assert _inode(after, f) == _inode(before, f), f
    # The set is the tables, row for row: the same as writing every partition again.
    assert_published(db)
