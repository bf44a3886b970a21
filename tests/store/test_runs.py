"""`store.runs` and `store.clock`: one run-id scheme, one writer of `runs`, one UTC clock."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import store
from store.runs import RunRecord, new_run_id, record_run


def test_run_ids_name_the_kind_and_the_utc_start_and_never_clash() -> None:
    start = datetime(2026, 1, 5, 2, 0, 0)
    ids = {new_run_id("nightly", start) for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"nightly-20260105T020000-[0-9a-f]{6}", i) for i in ids)
    # Sortable by start: a later second sorts after, whatever the random suffix.
    assert max(ids) < new_run_id("nightly", start + timedelta(seconds=1))


def test_the_clock_is_naive_utc() -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    now = store.utc_now()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert now.tzinfo is None and before <= now <= after


def test_a_run_row_holds_exactly_what_the_run_says(tmp_path: Path) -> None:
    con = store.connect(tmp_path / "runs.duckdb")
    try:
        run = RunRecord(
            run_id="reprocess-20260105T020000-abcdef", kind="reprocess",
            started_at=datetime(2026, 1, 5, 2, 0, 0), period="2025-12", as_of=date(2026, 1, 4),
            rows_in=7, rows_out=3, message=None, finished_at=datetime(2026, 1, 5, 2, 0, 9),
        )
        record_run(con, run, "success")
        rows = store.read_runs(con).rows(named=True)
    finally:
        con.close()
    assert rows == [{
        "run_id": run.run_id, "kind": "reprocess", "period": "2025-12", "as_of": date(2026, 1, 4),
        "started_at": run.started_at, "finished_at": run.finished_at, "status": "success",
        "rows_in": 7, "rows_out": 3, "message": None,
    }]
