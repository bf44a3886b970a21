"""A reprocess exports and settles only the accounts it bills (flows/coordinator.py
`REPROCESS_PLAN_ONLY`; docs/RUNS.md, "Reprocess"): the tables are those of a reprocess that
exported every account and settled the ones no period of it bills too.

Real parts: generated data, real load, nightly and reprocess flows on real DuckDB files; the
other path is the same code with the switch off."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

import flows.coordinator
from data.generator import generate
from flows.load import load_flow
from flows.nightly import nightly_flow
from flows.reprocess import reprocess_flow
from tests.flows.test_commit_fast_path import copy
from tests.flows.test_kills import results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three months of generated inputs, billed as of March 14: January and February final."""
    tmp = tmp_path_factory.mktemp("reprocess-scope")
    generate(60, tmp / "in", seed=29, months=3)
    db = tmp / "base.duckdb"
    load_flow(str(tmp / "in"), str(db))
    nightly_flow(as_of=date(2026, 3, 14), db=str(db))
    return db


def test_a_reprocess_of_the_plan_only_gives_the_tables_of_one_over_every_account(
    billed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with duckdb.connect(str(billed), read_only=True) as con:
        # Some accounts hold assignments and no January: the other path settles them.
        (later,) = con.execute(
            """SELECT count(DISTINCT account_id) FROM assignments WHERE account_id NOT IN (
                   SELECT account_id FROM invoices WHERE period = '2026-01')""").fetchone()
    assert later > 0
    scoped, every = copy(billed, tmp_path, "scoped"), copy(billed, tmp_path, "every")
    for period in ("2026-01", "2026-02"):
        quick = reprocess_flow(period, db=str(scoped))
        with monkeypatch.context() as patched:
            patched.setattr(flows.coordinator, "REPROCESS_PLAN_ONLY", False)
            slow = reprocess_flow(period, db=str(every))
        assert results(scoped) == results(every), period
        assert quick.changes == slow.changes, period
        assert quick.account_periods == slow.account_periods, period
