"""`billrun nightly --as-of D` (SPEC §5): load, settle, draft the open period, finalize the
ended ones, write everything in one transaction, publish the analyst copy."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
from prefect import flow, get_run_logger

from billrun import store
from billrun.faults import checkpoint
from billrun.runlock import run_lock
from billrun.store.results import (
    ResultsBatch,
    RunRecord,
    read_final_periods,
    read_first_activity,
    read_locks,
    write_results,
)
from billrun.store.snapshot import publish_snapshot
from flows.billing import failures_recorded, bill_plan, new_locks, settle_decisions
from flows.publish import RunSummary, catalog_and_views, publish_artifacts, run_id_for
from pipeline.catalog import catalog_frames
from pipeline.schedule import nightly_plan


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
            catalog = store.read_catalog(con)
            policy = conflict_policy or catalog.conflict_policy
            frames = catalog_frames(catalog)
            accounts = store.read_accounts(con)
            assignments = store.read_assignments(con)
            plan = nightly_plan(
                accounts, read_first_activity(con), read_final_periods(con), as_of
            ).with_columns(pl.lit(as_of).alias("cutoff"))
            periods = sorted(plan["period"].unique().to_list())
            logger.info(
                "nightly as of %s: %d account-periods over %d period(s), policy %s",
                as_of, plan.height, len(periods), policy,
            )
            rules = settle_decisions(
                catalog, accounts, assignments, periods, policy, read_locks(con)
            )
            checkpoint("after-decisions")
            bill = bill_plan(con, frames, accounts, rules.lifecycles, plan, shards)
            batch = ResultsBatch(
                run=RunRecord(
                    run_id=run_id, kind="nightly", started_at=started, as_of=as_of,
                    rows_in=assignments.height + bill.usage_events, rows_out=bill.charges.height,
                ),
                scope=plan.select("account_id", "period", "status"),
                charges=bill.charges,
                invoices=bill.invoices,
                decisions=rules.decisions.join(
                    plan.select("account_id", "period"), on=["account_id", "period"], how="semi"
                ),
                counters=bill.counters,
                locks=new_locks(rules.lifecycles, as_of),
                lifecycles=rules.lifecycles,
            )
            changes = write_results(
                con, batch, frames.currencies, also=catalog_and_views(frames, policy)
            )
        finally:
            con.close()
        analyst = publish_snapshot(db)
    summary = RunSummary.of(
        run_id, "nightly", plan, batch, changes, analyst, started, adjustments=0
    )
    publish_artifacts(summary, batch.charges)
    logger.info("nightly %s done in %.1fs: %s", run_id, summary.seconds, changes)
    return summary
