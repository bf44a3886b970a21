"""The commit's fast paths (store/results.py, `FAST_PATHS`; docs/RUNS.md, "Units of work",
"Commit"): what nothing stored holds yet (every group of a first night) is written straight
from the units' files, without fingerprints, comparisons or deletes, and the final invoices
are numbered before they are inserted. The tables must be those of the comparing path, night
after night, and a first night killed inside its commit must leave the loaded tables whole.

Real parts: generated data, real loads and nightly flows on real DuckDB files, a real
`billrun nightly` process killed with SIGKILL; the comparing path is the same code with the
fast paths off."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

import store.results
from data.generator import generate
from flows.load import load_flow
from flows.nightly import nightly_flow
from tests.flows.test_kills import dump, results
from tests.flows.test_unit_kills import AS_OF, kill_at, staging_root

FIRST, SECOND = date(2026, 3, 14), date.fromisoformat(AS_OF)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three months of generated inputs, loaded, never billed."""
    tmp = tmp_path_factory.mktemp("fast-path")
    generate(40, tmp / "in", seed=23, months=3)
    db = tmp / "base.duckdb"
    load_flow(str(tmp / "in"), str(db))
    return db


def copy(base: Path, folder: Path, name: str) -> Path:
    db = folder / name / "billrun.duckdb"
    db.parent.mkdir()
    db.write_bytes(base.read_bytes())
    return db


def test_first_and_second_nights_give_the_tables_of_the_comparing_path(
    loaded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, compared = copy(loaded, tmp_path, "fast"), copy(loaded, tmp_path, "compared")
    for night in (FIRST, SECOND, SECOND):  # a first night, an increment, the same night again
        quick = nightly_flow(as_of=night, db=str(fast))
        with monkeypatch.context() as patched:
            patched.setattr(store.results, "FAST_PATHS", False)
            slow = nightly_flow(as_of=night, db=str(compared))
        assert results(fast) == results(compared), f"as of {night}"
        assert quick.changes == slow.changes, f"as of {night}"
    tables = results(fast)
    # The first night wrote every kind of row the fast paths write: the catch-up's periods up
    # to February final and numbered, March drafted; counters, life cycles.
    statuses = {(p, status) for _, p, _, _, status, *_ in tables["invoices"]}
    assert {("2026-02", "final"), ("2026-03", "draft")} <= statuses
    assert len(tables["documents"]) == sum(1 for r in tables["invoices"] if r[4] == "final")
    assert tables["counter_periods"] and tables["discount_counters"]
    assert tables["assignment_lifecycles"]
    # The same night again rewrote nothing.
    assert quick.changes["charge_groups_rewritten"] == 0
    assert quick.changes["invoices_rewritten"] == 0
    assert quick.changes["invoices_issued"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-write", "mid-commit", "before-commit"])
def test_a_first_night_killed_in_its_commit_leaves_the_loaded_tables_whole(
    point: str, loaded: Path, tmp_path: Path
) -> None:
    db = copy(loaded, tmp_path, "killed")
    before = dump(db)
    kill_at(point, db, tmp_path)
    assert dump(db) == before, f"killed at {point}: the kill changed the tables"
    # The next run starts clean and gives the tables of a first night never killed.
    nightly_flow(as_of=SECOND, db=str(db))
    reference = copy(loaded, tmp_path, "reference")
    nightly_flow(as_of=SECOND, db=str(reference))
    assert results(db) == results(reference)
    assert not staging_root(db).exists()
