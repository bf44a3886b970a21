"""The units' own files in the Parquet set (issue 24; docs/RUNS.md, "What is published"): the
units write the charges and decisions as their tables hold them (store/unit_rows.py), the
commit inserts those files, and a period that holds exactly the rows one run staged takes the
run's files into the new set by hard link instead of a COPY out of DuckDB. The analyst file and
the set must be those of the COPY path (`store.parquet_set.TAKE_UNIT_FILES` off), night after
night, and a first night killed while it publishes must leave the previous set whole.

Real parts: generated data, real loads, nightly and reprocess flows on real DuckDB files, a
real `billrun nightly` process killed with SIGKILL."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

import store.parquet_set
from flows.nightly import nightly_flow
from flows.reprocess import reprocess_flow
from store.parquet_set import MANIFEST, parquet_pointer, place_file, sets_folder
from store.snapshot import analyst_path
from tests.flows import test_commit_fast_path as fast_path
from tests.flows.test_kills import VOLATILE, VOLATILE_IN_RUNS, results
from tests.flows.test_publication_by_period import assert_published
from tests.flows.test_unit_kills import kill_at, staging_root

FIRST, SECOND = date(2026, 3, 14), date(2026, 3, 15)
loaded = fast_path.loaded  # three months of generated inputs, loaded, never billed


def copy(base: Path, folder: Path, name: str) -> Path:
    """The loaded database in a folder of its own, with its own first set (a load publishes)."""
    from store.snapshot import publish_snapshot

    db = fast_path.copy(base, folder, name)
    publish_snapshot(db, "loaded")
    return db


def analyst_rows(db: Path) -> dict[str, list[tuple]]:
    """Every table and view of the analyst file, without the columns that differ between two
    correct runs (run ids, clocks), rows sorted."""
    out = {}
    with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
        names = [n for (n,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "ORDER BY 1").fetchall()]
        for name in names:
            cols = [c for c, *_ in con.execute(f'DESCRIBE "{name}"').fetchall()
                    if c not in VOLATILE and not (name == "runs" and c in VOLATILE_IN_RUNS)]
            listed = ", ".join(f'"{c}"' for c in cols)
            out[name] = con.execute(f'SELECT {listed} FROM "{name}" ORDER BY ALL').fetchall()
    return out


def manifest(db: Path) -> dict:
    return json.loads((parquet_pointer(db).resolve() / MANIFEST).read_text())["relations"]


def partition_rows(db: Path, table: str) -> dict[str, int]:
    return {v: p["rows"] for v, p in manifest(db)[table]["parts"].items()}


def test_sets_with_the_units_files_equal_the_copied_ones_night_after_night(
    loaded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken, copied = copy(loaded, tmp_path, "taken"), copy(loaded, tmp_path, "copied")

    def both(run: object) -> None:
        run(taken)  # type: ignore[operator]
        with monkeypatch.context() as patched:
            patched.setattr(store.parquet_set, "TAKE_UNIT_FILES", False)
            run(copied)  # type: ignore[operator]

    # A first night (a catch-up: January and February final, March a draft), the next night,
    # then a reprocess of a finalized period.
    steps = [("first night", lambda db: nightly_flow(as_of=FIRST, db=str(db))),
             ("increment", lambda db: nightly_flow(as_of=SECOND, db=str(db))),
             ("reprocess", lambda db: reprocess_flow("2026-01", db=str(db)))]
    for what, run in steps:
        both(run)
        assert results(taken) == results(copied), what
        assert analyst_rows(taken) == analyst_rows(copied), what
        for table in ("charges", "decisions", "invoices"):
            assert partition_rows(taken, table) == partition_rows(copied, table), (what, table)
        assert_published(taken)  # the set and the analyst file hold the working rows
        assert_published(copied)
        if what == "first night":
            first = parquet_pointer(taken).resolve()
            with duckdb.connect(str(taken), read_only=True) as con:
                (run_id,) = con.execute(
                    "SELECT run_id FROM runs WHERE kind = 'nightly'").fetchone()
            # Every period of the catch-up took the units' files: one per shard that had rows,
            # named by the run, and none was copied out of DuckDB.
            for table in ("charges", "decisions"):
                parts = manifest(taken)[table]["parts"]
                assert set(parts) >= {"2026-01", "2026-02", "2026-03"}, table
                for value, part in parts.items():
                    names = [Path(f).name for f in part["files"]]
                    assert names and all(n.startswith(f"{run_id}_") for n in names), (
                        table, value, names)
                    assert sum(_rows(first / f) for f in part["files"]) == part["rows"]
            # The invoices are numbered at the commit: copied out of DuckDB as before.
            assert all(Path(f).name.startswith("part_")
                       for f in manifest(taken)["invoices"]["files"])
            # The copy path wrote its own files.
            assert all(Path(f).name.startswith("part_")
                       for f in manifest(copied)["charges"]["files"])
            # The staging folder is gone; the set's files survived it (hard links).
            assert not staging_root(taken).exists()


def _rows(path: Path) -> int:
    with duckdb.connect() as con:
        return int(con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0])


@pytest.mark.slow
def test_a_first_night_killed_while_publishing_leaves_the_previous_set_whole(
    loaded: Path, tmp_path: Path
) -> None:
    db = copy(loaded, tmp_path, "killed")
    pointer = parquet_pointer(db)
    before = pointer.resolve()
    files = {p: p.stat().st_ino for p in before.rglob("*") if p.is_file()}
    before_rows = analyst_rows(db)
    kill_at("mid-publish", db, tmp_path, deadline=900)
    # The new set (with its links to the units' files) is written, nothing points at it.
    assert pointer.resolve() == before
    assert {p: p.stat().st_ino for p in before.rglob("*") if p.is_file()} == files
    assert analyst_rows(db) == before_rows
    killed_sets = set(sets_folder(pointer).iterdir()) - {before}
    assert len(killed_sets) == 1
    assert any((next(iter(killed_sets)) / "charges").rglob("*_0.parquet"))
    # The next night (two runs unpublished: the set copies) publishes the whole result.
    nightly_flow(as_of=SECOND, db=str(db))
    assert_published(db)
    assert set(sets_folder(pointer).iterdir()) == {before, pointer.resolve()}


def test_a_unit_file_on_another_file_system_is_copied(tmp_path: Path) -> None:
    import fsspec

    with fsspec.open("memory://unit-files/charges.rows.parquet", "wb") as out:
        out.write(b"PAR1 not really")
    place_file("memory://unit-files/charges.rows.parquet", tmp_path / "copied.parquet")
    assert (tmp_path / "copied.parquet").read_bytes() == b"PAR1 not really"
    local = tmp_path / "local.parquet"
    local.write_bytes(b"local")
    place_file(str(local), tmp_path / "linked.parquet")
    assert (tmp_path / "linked.parquet").stat().st_ino == local.stat().st_ino
