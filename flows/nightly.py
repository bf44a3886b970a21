"""`billrun nightly --as-of D` (SPEC §5): load, settle, draft the open period, finalize the
ended ones, write everything in one transaction, publish the analyst copy."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
from prefect import flow, get_run_logger

import store
from flows.billing import (
    bill_plan,
    failures_recorded,
    new_locks,
    read_stored_inputs,
    settle_decisions,
)
from flows.publish import RunSummary, finish_run, publish_artifacts, run_id_for
from pipeline.schedule import nightly_plan
from store.faults import checkpoint
from store.results import ResultsBatch, RunRecord
from store.runlock import run_lock


@flow(name="billrun-nightly")
def nightly_flow(
    as_of: date,
    db: str = "billrun.duckdb",
    input_dir: str | None = None,
    conflict_policy: str | None = None,
    shards: int = 2,
) -> RunSummary:
    """Load new inputs, recompute every non-final period up to `as_of`, finalize ended ones."""
    logger = get_run_logger()
    started = datetime.now()
    run_id = run_id_for("nightly", started)
    failed_run = RunRecord(run_id=run_id, kind="nightly", started_at=started, as_of=as_of)
    with run_lock(db), failures_recorded(db, failed_run):
        if input_dir:
            from flows.load import load_flow

            load_flow(input_dir, db)
        con = store.connect(db)
        try:
            stored = read_stored_inputs(con, conflict_policy)
            plan = nightly_plan(
                stored.accounts, stored.first_activity, stored.finalized, as_of
            ).with_columns(pl.lit(as_of).alias("cutoff"))
            periods = sorted(plan["period"].unique().to_list())
            logger.info(
                "nightly as of %s: %d account-periods over %d period(s), policy %s",
                as_of, plan.height, len(periods), stored.policy,
            )
            rules = settle_decisions(
                stored.catalog, stored.accounts, stored.assignments, periods, stored.policy,
                stored.locks,
            )
            checkpoint("after-decisions")
            bill = bill_plan(
                con, stored.frames, stored.accounts, rules.lifecycles, plan, shards
            )
            batch = ResultsBatch(
                run=RunRecord(
                    run_id=run_id, kind="nightly", started_at=started, as_of=as_of,
                    rows_in=stored.assignments.height + bill.usage_events,
                    rows_out=bill.charges.height,
                ),
                scope=plan.select("account_id", "period", "status"),
                charges=bill.charges,
                invoices=bill.invoices,
                decisions=rules.decisions.join(
                    plan.select("account_id", "period"), on=["account_id", "period"], how="semi"
                ),
                counters=bill.counters,
                parcels=bill.parcels,
                parcel_scope=bill.parcel_scope,
                locks=new_locks(rules.lifecycles, as_of),
                lifecycles=rules.lifecycles,
            )
        except BaseException:
            con.close()
            raise
        changes, analyst = finish_run(con, db, batch, stored.frames, stored.policy)
    summary = RunSummary.of(
        run_id, "nightly", plan, batch, changes, analyst, started, adjustments=0,
        currencies=stored.frames.currencies,
    )
    publish_artifacts(summary, batch.charges)
    logger.info("nightly %s done in %.1fs: %s", run_id, summary.seconds, changes)
    return summary
