"""A run settles each shard's assignments once (flows/units.py, the settle round) and every period
unit restricts that settlement to its groups of accounts. The bills are the same, bit for bit,
as settling each group again for each period; and they do not depend on the shard count or on
the order of the input rows (docs/RUNS.md, "Units of work").

Generated data (data/generator.py, every scenario kind: conflicts, closures, product changes,
plan and quantity changes, commitments), loaded through the real load flow and read back with
the store's readers; the shard settlement goes through the real staging folder (Parquet)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import store
from billing.bill import Bill, BillInputs, Settlement, bill, settlement
from data.generator import generate
from flows.load import load_flow
from pipeline.catalog import catalog_frames
from pipeline.contracts import COUNTER_INPUT_SCHEMA
from pipeline.schedule import nightly_plan, with_cutoffs
from rules.promotions import with_verdicts
from store import staging
from store.results import read_final_periods, read_first_activity, read_locks

# The outputs of one bill that a run stores or carries on.
OUTPUTS = ("decisions", "lifecycles", "charges", "invoices", "counters_after", "parcels",
           "usage_sums", "plan_changes")
# Outputs whose row order `bill` does not fix (two calls on the same inputs may differ): the
# commit keys them, so they are compared as sets of rows.
UNORDERED = ("usage_sums",)
EXAMPLES = settings(max_examples=2, deadline=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow])
cases = st.tuples(
    st.integers(0, 10**6),  # generator seed
    st.integers(5, 12),  # accounts
    st.integers(1, 4),  # shards
    st.integers(0, 2**32 - 1),  # the shuffle of the input rows
)


def _read_inputs(folder: Path, seed: int, accounts: int) -> tuple[BillInputs, pl.DataFrame]:
    """Generated inputs of two months, loaded; and the nightly plan as of 2026-02-15."""
    generate(accounts, folder / "in", seed=seed, months=2)
    db = folder / "base.duckdb"
    load_flow(str(folder / "in"), str(db), publish=False)
    con = store.connect(db, read_only=True)
    try:
        catalog = store.read_catalog(con)
        accounts_frame = store.read_accounts(con)
        inputs = BillInputs(
            catalog=catalog, policy=catalog.conflict_policy, accounts=accounts_frame,
            assignments=store.read_assignments(con), locks=read_locks(con),
            changes=store.read_changes(con), frames=with_verdicts(catalog_frames(catalog)),
            usage=store.read_usage(con, date(2024, 1, 1), date(2026, 4, 1)),
        )
        as_of = date(2026, 2, 15)
        plan = with_cutoffs(nightly_plan(
            accounts_frame, read_first_activity(con), read_final_periods(con), as_of), as_of)
    finally:
        con.close()
    return inputs, plan


def _shuffled(inputs: BillInputs, seed: int) -> BillInputs:
    def shuffle(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.sample(fraction=1.0, shuffle=True, seed=seed) if frame.height else frame

    return replace(inputs, accounts=shuffle(inputs.accounts),
                   assignments=shuffle(inputs.assignments), locks=shuffle(inputs.locks),
                   changes=shuffle(inputs.changes), usage=shuffle(inputs.usage))


def _groups(plan: pl.DataFrame) -> list[tuple[str, date | None, pl.DataFrame]]:
    """(period, cutoff, accounts) of every cutoff group of the plan, as a unit takes them."""
    return [
        (period, cutoff, scope.select("account_id"))
        for (period, cutoff), scope in plan.sort("period").group_by(
            ["period", "cutoff"], maintain_order=True)
    ]


def _bill(inputs: BillInputs, period: str, cutoff: date | None) -> Bill:
    return bill(inputs, period, cutoff, pl.DataFrame(schema=COUNTER_INPUT_SCHEMA))


def _rows(bills: list[Bill], name: str) -> list[tuple]:
    frames = [getattr(b, name) for b in bills if getattr(b, name).width]
    if not frames:
        return []
    rows = pl.concat(frames, how="vertical_relaxed").rows()
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


@EXAMPLES
@given(cases)
def test_a_shard_settled_once_bills_as_settling_each_group_for_each_period(
    case: tuple[int, int, int, int],
) -> None:
    seed, accounts, shards, order = case
    with tempfile.TemporaryDirectory() as tmp:
        inputs, plan = _read_inputs(Path(tmp), seed, accounts)
        groups = _groups(plan)
        assert len({p for p, _, _ in groups}) >= 2  # a catch-up of several periods
        # The reference: one shard, the store's row order, settled again for every group.
        want = [_bill(inputs.of_accounts(ids), p, c) for p, c, ids in groups]

        stage = staging.Stage(tmp, "run")
        shuffled = _shuffled(inputs, order)
        ids = shuffled.accounts.select("account_id").unique(maintain_order=True)
        shard_of = ids.with_columns((pl.int_range(pl.len()) % shards).alias("shard"))
        got = []
        for shard in range(shards):
            members = shard_of.filter(pl.col("shard") == shard).select("account_id")
            of_shard = shuffled.of_accounts(members)
            # The settle round: settled once, staged as Parquet, read back by every unit.
            staging.write_settlement(stage, shard, settlement(of_shard).as_frames())
            settled = Settlement.of_frames(staging.read_settlement(stage, shard))
            for period, cutoff, group in groups:
                part = group.join(members, on="account_id", how="semi")
                if part.height == 0:
                    continue
                shared = _bill(replace(of_shard.of_accounts(part),
                                       settlement=settled.of_accounts(part)), period, cutoff)
                again = _bill(of_shard.of_accounts(part), period, cutoff)
                for name in OUTPUTS:  # shared or settled again: the same frames, bit for bit
                    if name in UNORDERED:
                        assert _rows([shared], name) == _rows([again], name), (period, name)
                    else:
                        assert getattr(shared, name).equals(getattr(again, name)), (period, name)
                got.append(shared)
    assert sum(b.charges.height for b in want) > 0
    for name in OUTPUTS:  # any shard count, any row order: the same rows
        assert _rows(got, name) == _rows(want, name), name
