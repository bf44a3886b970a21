"""The run log (`runs`): one run-id scheme and the one writer of its rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

import duckdb


@dataclass(frozen=True)
class RunRecord:
    """One row of `runs`. The timestamps come from the run's clock (store.clock), in UTC."""

    run_id: str
    kind: str
    started_at: datetime
    period: str | None = None
    as_of: date | None = None
    rows_in: int | None = 0
    rows_out: int | None = 0
    message: str | None = None
    finished_at: datetime | None = None


def new_run_id(kind: str, started: datetime) -> str:
    """A sortable, unique run id, e.g. `nightly-20260105T020000-3f2a9c`: the kind, the UTC start
    to the second, and six random hex digits so that two runs in one second never clash."""
    return f"{kind}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def record_run(con: duckdb.DuckDBPyConnection, run: RunRecord, status: str) -> None:
    """Insert `run` into `runs` with `status` (the caller holds the transaction, if any)."""
    con.execute(
        """INSERT INTO runs (run_id, kind, period, as_of, started_at, finished_at, status,
                             rows_in, rows_out, message)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            run.run_id, run.kind, run.period, run.as_of, run.started_at, run.finished_at, status,
            run.rows_in, run.rows_out, run.message,
        ],
    )
