"""The incremental nightly hashes each draft's inputs once per run (docs/RUNS.md, "Incremental
nightly"): the commit stores the print the plan computed when the run wrote none of its inputs.
Such a print is the one the next night computes: after every night, each stored print equals a
print of what the database then holds, so a draft continues exactly when it would if every
print were hashed at the commit. Real loads and nightly flows on generated data."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

from data.generator import generate
from flows.load import load_flow
from flows.nightly import nightly_flow
from store import connect, usage_state
from tests.flows.test_incremental import write_drops


def test_prints_kept_from_the_plan_let_every_later_night_continue() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(25, folder / "gen", seed=11, months=2)
        nights = [date(2026, 1, 20), date(2026, 1, 27), date(2026, 1, 31)]
        db = str(folder / "inc.duckdb")
        marked, continued = [], []
        for drop, as_of in zip(write_drops(folder / "gen", folder, nights, 0, 0), nights,
                               strict=True):
            load_flow(str(drop), db)
            changes = nightly_flow(as_of=as_of, db=db, shards=2).changes
            marked.append(changes["drafts_marked"])
            continued.append(changes["drafts_continued"])
            con = connect(db, read_only=True)
            try:
                stored = {(a, p): v for a, p, v in con.execute(
                    f"SELECT account_id, period, inputs_print FROM {usage_state.MARKS}"
                ).fetchall()}
                assert len(stored) == marked[-1] > 0
                # kept from the plan or hashed at the commit: what the database holds now
                assert usage_state.inputs_prints(con, usage_state.MARKS) == stored
            finally:
                con.close()
    # Night 2 continues drafts of night 1 (prints hashed at its commit: a first run has no plan
    # prints); night 3 drafts of night 2, most with prints kept from its plan.
    assert continued[0] == 0 and 0 < continued[1] <= marked[0] and 0 < continued[2] <= marked[1]
