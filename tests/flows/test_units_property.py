"""Runs made of staged (period, shard) units give the same tables whatever the shard count, and
the same as billing everything in memory with the one pure function (issue 9, "Done when").

Generated data (data/generator.py, every scenario kind), a catch-up of several periods, few
examples: each example loads once and bills two ways."""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import store
from billing.bill import BillInputs, bill
from data.generator import generate
from flows.load import load_flow
from flows.nightly import nightly_flow
from pipeline.catalog import catalog_frames
from pipeline.contracts import COUNTER_KEY
from pipeline.counters import carry_counters, carry_parcels
from pipeline.schedule import nightly_plan, with_cutoffs
from rules.promotions import with_verdicts
from store.results import (
    read_counters_before,
    read_final_periods,
    read_first_activity,
    read_locks,
    read_parcels_before,
)

VOLATILE = {"run_id", "loaded_at", "rejected_at", "catalog_version", "started_at", "finished_at"}
# Two examples each, no shrinking: one example is a load and two runs of a catch-up.
EXAMPLES = settings(max_examples=2, deadline=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow])
data_sets = st.tuples(st.integers(0, 10**6), st.integers(4, 10), st.integers(2, 3))


def results(db: Path) -> dict[str, list[tuple]]:
    """Every table without the columns that differ between two correct runs (ids, clocks)."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        names = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY ALL").fetchall()
        for schema, t in names:  # the run state (schema run_state) too
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                "AND table_name = ? ORDER BY ordinal_position", [schema, t]).fetchall()]
            # A table of clocks only (run_state.first_usage_mark): its row count.
            keep = ", ".join(f'"{c}"' for c in cols if c not in VOLATILE) or "count(*)"
            name = t if schema == "main" else f"{schema}.{t}"
            out[name] = con.execute(
                f'SELECT {keep} FROM "{schema}"."{t}" ORDER BY ALL').fetchall()
    return out


def loaded(folder: Path, seed: int, accounts: int, months: int) -> tuple[Path, date]:
    """A generated drop of `months` months, loaded; and an as-of in the last month."""
    generate(accounts, folder / "in", seed=seed, months=months)
    db = folder / "base.duckdb"
    load_flow(str(folder / "in"), str(db))
    return db, date(2026, months, 15)


def copy(db: Path, name: str) -> Path:
    target = db.with_name(name)
    shutil.copyfile(db, target)
    return target


@EXAMPLES
@given(data_sets)
def test_one_shard_and_many_shards_give_identical_tables(data: tuple[int, int, int]) -> None:
    seed, accounts, months = data
    with tempfile.TemporaryDirectory() as tmp:
        generate(accounts, Path(tmp) / "in", seed=seed, months=months)
        drop, as_of = str(Path(tmp) / "in"), date(2026, months, 15)
        one, many = Path(tmp) / "one.duckdb", Path(tmp) / "many.duckdb"
        # Each night loads the drop itself (`nightly --input`): two flows, not a load and two
        # nightlies
        nightly_flow(as_of=as_of, db=str(one), input_dir=drop, shards=1)
        # ... and staged through an fsspec URL rather than a plain path
        stage = f"file://{tmp}/stage"
        summary = nightly_flow(as_of=as_of, db=str(many), input_dir=drop, shards=3,
                               concurrency=3, staging=stage)
        assert len(summary.periods) >= months  # a catch-up of several periods
        assert results(one) == results(many)
        assert not Path(f"{tmp}/stage").exists()  # the run removed its staging folder


def in_memory(db: Path, as_of: date) -> dict[str, pl.DataFrame]:
    """The run computed without units, staging or shards: `bill` over every account, period by
    period, never-reset counters and parcels carried with pipeline.counters."""
    con = store.connect(db, read_only=True)
    try:
        catalog = store.read_catalog(con)
        accounts, assignments = store.read_accounts(con), store.read_assignments(con)
        inputs = BillInputs(
            catalog=catalog, policy=catalog.conflict_policy, accounts=accounts,
            assignments=assignments, locks=read_locks(con), changes=store.read_changes(con),
            frames=with_verdicts(catalog_frames(catalog)),
        )
        plan = with_cutoffs(nightly_plan(
            accounts, read_first_activity(con), read_final_periods(con), as_of), as_of)
        out: dict[str, list[pl.DataFrame]] = {"charges": [], "invoices": [], "counters": []}
        carried, carried_parcels = pl.DataFrame(), pl.DataFrame()
        for period in sorted(plan["period"].unique().to_list()):
            in_period = plan.filter(pl.col("period") == period)
            usage = store.read_usage(
                con, in_period["period_start"].min(), in_period["period_end"].max())
            before = read_counters_before(con, period)
            if carried.height:
                before = carry_counters(before, carried)
            parcels_before = carry_parcels(read_parcels_before(con, period), carried_parcels)
            counters, parcels = [], []
            for (cutoff,), scope in in_period.group_by(["cutoff"], maintain_order=True):
                ids = scope.select("account_id")
                part = bill(
                    BillInputs(**{**inputs.__dict__, "usage": usage}).of_accounts(ids), period,
                    cutoff, before.join(ids, on="account_id", how="semi"),
                    parcels_before=parcels_before.join(ids, on="account_id", how="semi"),
                )
                out["charges"].append(part.charges)
                out["invoices"].append(part.invoices)
                counters.append(part.counters_after)
                parcels.append(part.parcels)
            carried = pl.concat(counters, how="vertical_relaxed")
            out["counters"].append(carried.with_columns(pl.lit(period).alias("period")))
            carried_parcels = pl.concat(parcels, how="vertical_relaxed")
        return {k: pl.concat(v, how="vertical_relaxed") for k, v in out.items()}
    finally:
        con.close()


def stored(db: Path) -> dict[str, list[tuple]]:
    """The run's charges, invoices and counters, back in pipeline units."""
    with duckdb.connect(str(db), read_only=True) as con:
        minor = "(SELECT minor_units FROM catalog_currencies m WHERE m.currency = t.currency)"
        return {
            "charges": con.execute(
                f"""SELECT account_id, period, line_type, assignment_id, addon_id, service,
                       destination_group, CAST(quantity * 1000000 AS BIGINT),
                       CAST(amount * pow(10, {minor}) AS BIGINT), currency, description,
                       term_start, line_date FROM charges t ORDER BY ALL""").fetchall(),
            "invoices": con.execute(
                f"""SELECT account_id, period, currency, CAST(total * pow(10, {minor}) AS BIGINT)
                    FROM invoices t ORDER BY ALL""").fetchall(),
            "counters": con.execute(
                f"""SELECT {', '.join(COUNTER_KEY)}, period, CAST(value * 1000000 AS BIGINT)
                    FROM counter_periods ORDER BY ALL""").fetchall(),
        }


def rows(frame: pl.DataFrame, columns: list[str]) -> list[tuple]:
    return sorted(frame.select(columns).rows(), key=lambda r: tuple((v is None, v) for v in r))


@EXAMPLES
@given(data_sets)
def test_a_staged_run_equals_billing_everything_in_memory(data: tuple[int, int, int]) -> None:
    seed, accounts, months = data
    with tempfile.TemporaryDirectory() as tmp:
        base, as_of = loaded(Path(tmp), seed, accounts, months)
        want = in_memory(base, as_of)
        db = copy(base, "staged.duckdb")
        nightly_flow(as_of=as_of, db=str(db), shards=3)
        got = stored(db)
    line_columns = ["account_id", "period", "line_type", "assignment_id", "addon_id", "service",
                    "destination_group", "quantity_units", "amount_minor", "currency",
                    "description", "term_start", "line_date"]
    assert want["charges"].height > 0
    assert sorted(got["charges"], key=_key) == rows(want["charges"], line_columns)
    assert sorted(got["invoices"], key=_key) == rows(
        want["invoices"], ["account_id", "period", "currency", "total_minor"])
    assert sorted(got["counters"], key=_key) == rows(
        want["counters"], [*COUNTER_KEY, "period", "value_units"])


def _key(row: tuple) -> tuple:
    return tuple((v is None, v) for v in row)
