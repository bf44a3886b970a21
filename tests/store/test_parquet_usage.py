"""The usage in the Parquet set (store/parquet_set.py): split by the month of `started_at`, one
file per load; a publication adds the new loads' events as files of their own and links every
file published before, and a month that lost or changed an event is written again whole.

The database is made by hand with the columns the set reads (`runs.started_at`, the usage's
`run_id` and `loaded_at`): a load stamps its events with its start, as store/raw.py does."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.parquet_set import MANIFEST, parquet_pointer
from store.snapshot import analyst_path, publish_snapshot

START = datetime(2026, 3, 1, 2, 0)


def _new_db(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR, kind VARCHAR, started_at TIMESTAMP)")
        con.execute("CREATE TABLE usage (event_id VARCHAR, account_id VARCHAR, "
                    "started_at TIMESTAMP, amount DECIMAL(18,6), run_id VARCHAR, "
                    "loaded_at TIMESTAMP)")
    return path


def _load(db: Path, n: int, events: list[tuple[str, str]]) -> str:
    """Run `load-<n>`, started n hours after START, stores `events` (event id, day)."""
    run, started = f"load-{n}", START + timedelta(hours=n)
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO runs VALUES (?, 'load', ?)", [run, started])
        for event, day in events:
            con.execute("INSERT INTO usage VALUES (?, 'A1', ?, ?, ?, ?)",
                        [event, f"{day} 10:00:00", Decimal(len(event)), run, started])
    return run


def _files(folder: Path) -> dict[str, int]:
    """`relative path -> inode` of every usage file of a set with events, from its manifest
    (not the one file with the columns only, of a set without events)."""
    usage = json.loads((folder / MANIFEST).read_text())["relations"]["usage"]
    return {f: (folder / f).stat().st_ino for f in usage["files"] if "month=" in f}


def _months(folder: Path) -> dict[str, list[str]]:
    parts = json.loads((folder / MANIFEST).read_text())["relations"]["usage"]["parts"]
    return {month: part["files"] for month, part in parts.items()}


def _published_usage(db: Path) -> list[tuple]:
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        return con.execute("SELECT * FROM usage ORDER BY ALL").fetchall()


def _working_usage(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM usage ORDER BY ALL").fetchall()


def test_a_load_adds_one_file_to_each_month_it_touched_and_links_the_rest(
    tmp_path: Path,
) -> None:
    db = _new_db(tmp_path / "billrun.duckdb")
    _load(db, 1, [("E1", "2026-01-05"), ("E2", "2026-01-31"), ("E3", "2026-02-01")])
    publish_snapshot(db, "s1")
    first = parquet_pointer(db).resolve()
    assert _months(first) == {"2026-01": ["usage/month=2026-01/load-1_0.parquet"],
                              "2026-02": ["usage/month=2026-02/load-1_0.parquet"]}

    # The next night: one event of February, one late one of January, none of March's before.
    _load(db, 2, [("E4", "2026-02-02"), ("E5", "2026-01-20"), ("E6", "2026-03-01")])
    publish_snapshot(db, "s2")
    second = parquet_pointer(db).resolve()
    assert _months(second) == {
        "2026-01": ["usage/month=2026-01/load-1_0.parquet", "usage/month=2026-01/load-2_0.parquet"],
        "2026-02": ["usage/month=2026-02/load-1_0.parquet", "usage/month=2026-02/load-2_0.parquet"],
        "2026-03": ["usage/month=2026-03/load-2_0.parquet"],
    }
    old, new = _files(first), _files(second)
    for path, inode in old.items():  # every file published before: the same file, linked
        assert new[path] == inode, path
    with duckdb.connect() as con:  # each new file holds its load's events of its month only
        got = con.execute(
            "SELECT event_id FROM read_parquet(?) ORDER BY 1",
            [[str(second / f) for f in new if f not in old]]).fetchall()
    assert got == [("E4",), ("E5",), ("E6",)]
    manifest = json.loads((second / MANIFEST).read_text())["relations"]["usage"]
    assert manifest["rows"] == 6
    assert {m: p["rows"] for m, p in manifest["parts"].items()} == {
        "2026-01": 3, "2026-02": 2, "2026-03": 1}
    assert _published_usage(db) == _working_usage(db)

    publish_snapshot(db, "s3")  # nothing new: every usage file linked
    assert _files(parquet_pointer(db).resolve()) == new


@pytest.mark.parametrize("edit", ["delete", "replace"])
def test_a_month_that_lost_or_changed_an_event_is_written_again_whole(
    tmp_path: Path, edit: str
) -> None:
    db = _new_db(tmp_path / "billrun.duckdb")
    _load(db, 1, [("E1", "2026-01-05"), ("E2", "2026-02-03")])
    _load(db, 2, [("E3", "2026-01-06"), ("E4", "2026-02-04")])
    publish_snapshot(db, "s1")
    first = _files(parquet_pointer(db).resolve())
    with duckdb.connect(str(db)) as con:
        if edit == "delete":
            con.execute("DELETE FROM usage WHERE event_id = 'E1'")
        else:  # corrected by a later run, stamped as that run stores it
            con.execute("INSERT INTO runs VALUES ('fix-3', 'load', ?)",
                        [START + timedelta(hours=3)])
            con.execute("UPDATE usage SET amount = 9, run_id = 'fix-3', loaded_at = ? "
                        "WHERE event_id = 'E1'", [START + timedelta(hours=3)])
    publish_snapshot(db, "s2")
    second = parquet_pointer(db).resolve()
    now = _files(second)
    january = [f for f in now if "month=2026-01" in f]
    february = [f for f in now if "month=2026-02" in f]
    assert all(now[f] != first.get(f) for f in january)  # every January file written anew
    assert {f: now[f] for f in february} == {f: first[f] for f in first if "2026-02" in f}
    want = {"delete": ["usage/month=2026-01/load-2_0.parquet"],
            "replace": ["usage/month=2026-01/fix-3_0.parquet",
                        "usage/month=2026-01/load-2_0.parquet"]}[edit]
    assert sorted(january) == want
    assert _published_usage(db) == _working_usage(db)


# A step: a load of events (month offset 0-3, day 1-28), an event deleted, or one replaced.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("load"),
                  st.lists(st.tuples(st.integers(0, 3), st.integers(1, 28)), max_size=4)),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("replace"), st.integers(0, 50)),
    ),
    min_size=1, max_size=6,
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps)
def test_the_published_usage_equals_the_table_and_only_changed_months_are_written(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple]
) -> None:
    db = _new_db(tmp_path_factory.mktemp("usage") / "billrun.duckdb")
    events = 0
    for n, (kind, arg) in enumerate(plan, start=1):
        before = parquet_pointer(db).resolve() if parquet_pointer(db).is_symlink() else None
        with duckdb.connect(str(db), read_only=True) as con:
            stored = [e for (e,) in con.execute(
                "SELECT event_id FROM usage ORDER BY event_id").fetchall()]
            month_of = dict(con.execute(
                "SELECT event_id, strftime(started_at, '%Y-%m') FROM usage").fetchall())
        changed: set[str] = set()  # months written again whole
        added: set[str] = set()  # months given a file of this step's load
        if kind == "load":
            batch = []
            for month, day in arg:
                events += 1
                batch.append((f"E{events}", f"2026-{month + 1:02d}-{day:02d}"))
                added.add(f"2026-{month + 1:02d}")
            _load(db, n, batch)
        elif stored:
            event = stored[arg % len(stored)]
            changed.add(month_of[event])
            with duckdb.connect(str(db)) as con:
                if kind == "delete":
                    con.execute("DELETE FROM usage WHERE event_id = ?", [event])
                else:
                    stamp = START + timedelta(hours=n)
                    con.execute("INSERT INTO runs VALUES (?, 'fix', ?)", [f"fix-{n}", stamp])
                    con.execute("UPDATE usage SET amount = amount + 1, run_id = ?, "
                                "loaded_at = ? WHERE event_id = ?", [f"fix-{n}", stamp, event])
        publish_snapshot(db, f"s{n}")
        assert _published_usage(db) == _working_usage(db)
        if before is None:
            continue
        old, now = _files(before), _files(parquet_pointer(db).resolve())
        for path, inode in now.items():
            month = path.split("month=")[1][:7]
            if month in changed:
                assert inode != old.get(path), path
            elif path in old:
                assert inode == old[path], path  # published before: linked
            else:  # a new file: the one this step's load added to its month
                assert month in added and path.endswith(f"load-{n}_0.parquet"), path
        for path in old:  # a file no longer published belongs to a month written again
            assert path in now or path.split("month=")[1][:7] in changed, path


def test_a_month_whose_files_cannot_be_linked_is_written_whole_with_the_new_events(
    tmp_path: Path,
) -> None:
    db = _new_db(tmp_path / "billrun.duckdb")
    _load(db, 1, [("E1", "2026-01-05"), ("E2", "2026-02-03")])
    publish_snapshot(db, "s1")
    first = parquet_pointer(db).resolve()
    (first / "usage/month=2026-01/load-1_0.parquet").unlink()  # its link will fail
    _load(db, 2, [("E3", "2026-01-06"), ("E4", "2026-02-04")])
    publish_snapshot(db, "s2")
    second = parquet_pointer(db).resolve()
    # January from the table, whole (a file per load); February linked, plus its new file.
    assert _months(second) == {
        "2026-01": ["usage/month=2026-01/load-1_0.parquet", "usage/month=2026-01/load-2_0.parquet"],
        "2026-02": ["usage/month=2026-02/load-1_0.parquet", "usage/month=2026-02/load-2_0.parquet"],
    }
    now = _files(second)
    assert now["usage/month=2026-02/load-1_0.parquet"] == (
        first / "usage/month=2026-02/load-1_0.parquet").stat().st_ino
    assert (second / "usage/month=2026-01/load-1_0.parquet").stat().st_nlink == 1
    assert _published_usage(db) == _working_usage(db)
