"""Each account's first usage day is kept (store/first_usage.py): a night's plan reads the
stored days and the events loaded since the last fold, not every event ever loaded; on a real
DuckDB file."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb

from store.first_usage import FIRST_USAGE, MARK, first_usage_sql, fold_first_usage
from store.results import read_first_activity
from store.schema import connect


def _load(con: duckdb.DuckDBPyConnection, run: str, loaded_at: str,
          events: list[tuple[str, str, str]]) -> None:
    """Store `(event_id, account_id, started_at)` events as load `run` started at `loaded_at`."""
    for line, (event, account, started) in enumerate(events, start=1):
        con.execute(
            "INSERT INTO usage VALUES (?, ?, 'voice', 'US', ?, 1, 0.10, 'usage.csv', ?, ?, ?)",
            [event, account, started, line, run, loaded_at])


def _first_days(con: duckdb.DuckDBPyConnection) -> dict[str, date]:
    sql, params = first_usage_sql(con)
    return dict(con.execute(sql, params or None).fetchall())


def test_the_first_days_come_from_the_stored_days_and_the_events_loaded_since(
    tmp_path: Path,
) -> None:
    con = connect(tmp_path / "billrun.duckdb")
    _load(con, "load-1", "2026-01-10 02:00:00", [
        ("E1", "A1", "2026-01-05 10:00:00"), ("E2", "A1", "2026-01-03 23:59:59"),
        ("E3", "A2", "2026-01-08 00:00:00")])
    # Nothing folded yet: every event is read.
    assert _first_days(con) == {"A1": date(2026, 1, 3), "A2": date(2026, 1, 8)}
    assert fold_first_usage(con) == 2
    assert con.execute(f"SELECT * FROM {MARK}").fetchall() == [(datetime(2026, 1, 10, 2),)]
    assert sorted(con.execute(f"SELECT * FROM {FIRST_USAGE}").fetchall()) == [
        ("A1", date(2026, 1, 3)), ("A2", date(2026, 1, 8))]

    # The folded events are not read again: an event changed by hand behind the state's back
    # (events are immutable once loaded) does not move A2's day.
    con.execute("UPDATE usage SET started_at = TIMESTAMP '2025-12-01 00:00:00' "
                "WHERE event_id = 'E3'")
    assert _first_days(con)["A2"] == date(2026, 1, 8)

    # A later load: a late event moves A1 earlier, a new account A3 appears, A2's later event
    # changes nothing. Read before the fold and after it, the same days.
    _load(con, "load-2", "2026-01-11 02:00:00", [
        ("E4", "A1", "2025-12-31 08:00:00"), ("E5", "A3", "2026-01-10 12:00:00"),
        ("E6", "A2", "2026-01-10 13:00:00")])
    want = {"A1": date(2025, 12, 31), "A2": date(2026, 1, 8), "A3": date(2026, 1, 10)}
    assert _first_days(con) == want
    assert fold_first_usage(con) == 2  # A1 moved, A3 new
    assert _first_days(con) == want
    assert con.execute(f"SELECT * FROM {MARK}").fetchall() == [(datetime(2026, 1, 11, 2),)]
    assert fold_first_usage(con) == 0  # nothing loaded since

    # The plan's first activity: the earlier of the first assignment and the first event.
    con.execute("""INSERT INTO assignment_versions (assignment_id, account_id, addon_id,
                   fee_plan_id, start_date, end_date, quantity, assigned_at, load_seq, source,
                   line, run_id, loaded_at)
                   VALUES ('S1', 'A3', 'TV', 'TV1', DATE '2026-01-02', NULL, 1,
                           TIMESTAMP '2026-01-01 00:00:00', 1, 'assignments.csv', 1, 'load-1',
                           TIMESTAMP '2026-01-10 02:00:00')""").fetchall()
    first = dict(read_first_activity(con).iter_rows())
    assert first == {**want, "A3": date(2026, 1, 2)}
    con.close()


def test_a_database_without_the_state_reads_every_event(tmp_path: Path) -> None:
    """A database made before the state existed, opened read-only: the events are read whole."""
    path = tmp_path / "billrun.duckdb"
    con = connect(path)
    _load(con, "load-1", "2026-01-10 02:00:00", [("E1", "A1", "2026-01-05 10:00:00")])
    con.execute(f"DROP TABLE {FIRST_USAGE}")
    con.close()
    with duckdb.connect(str(path), read_only=True) as old:
        assert _first_days(old) == {"A1": date(2026, 1, 5)}
