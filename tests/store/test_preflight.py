"""The read-only looks a command takes before it starts anything (store/preflight.py and
store.runlock.held_by): they judge the file and the lock without creating or changing either."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from store.preflight import database_kind, has_catalog, staging_problem
from store.runlock import held_by, run_lock


def test_the_kind_of_a_db_path(tmp_path: Path) -> None:
    db = tmp_path / "billrun.duckdb"
    assert database_kind(db) == "missing"
    duckdb.connect(str(db)).close()
    assert database_kind(db) == "duckdb"
    (tmp_path / "empty.duckdb").write_bytes(b"")
    (tmp_path / "text.duckdb").write_text("account_id\nA1\n")
    (tmp_path / "folder.duckdb").mkdir()
    for name in ("empty.duckdb", "text.duckdb", "folder.duckdb"):
        assert database_kind(tmp_path / name) == "other", name


def test_a_database_without_a_catalog(tmp_path: Path) -> None:
    db = tmp_path / "billrun.duckdb"
    duckdb.connect(str(db)).close()
    assert has_catalog(db) is False
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE catalog_versions (version INTEGER, text VARCHAR)")
    assert has_catalog(db) is False
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO catalog_versions VALUES (1, 'currencies: {USD: 2}')")
    assert has_catalog(db) is True


def test_the_lock_is_looked_at_not_taken(tmp_path: Path) -> None:
    db = tmp_path / "billrun.duckdb"
    assert held_by(db) is None
    assert not Path(f"{db}.lock").exists()  # the look creates no lock file
    with run_lock(db):
        reason = held_by(db)
    assert reason is not None and f"(pid {os.getpid()}) is writing {db}" in reason
    assert held_by(db) is None  # released with the run; the look left it free
    with run_lock(db):  # and the look did not keep it
        pass


def test_a_staging_root_fsspec_cannot_open() -> None:
    assert staging_problem("/tmp/stage") is None
    assert staging_problem("file:///tmp/stage") is None
    assert staging_problem("memory://stage") is None
    assert "Protocol not known: nope" in (staging_problem("nope://bucket/x") or "")
