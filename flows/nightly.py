"""`billrun nightly --as-of D` (SPEC §5): load, settle, draft the open period, finalize the
ended ones, write everything in one transaction, publish the analyst copy."""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger

import store
from flows.billing import bill_plan, failures_recorded, read_stored_inputs
from flows.publish import RunSummary, finish_run, publish_artifacts
from pipeline.schedule import nightly_plan, with_cutoffs
from rules.lifecycle import new_locks
from store.clock import utc_now
from store.faults import checkpoint
from store.results import ResultsBatch
from store.runlock import run_lock
from store.runs import RunRecord, new_run_id


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
    started = utc_now()  # the run's clock, read once, in UTC
    run_id = new_run_id("nightly", started)
    failed_run = RunRecord(run_id=run_id, kind="nightly", started_at=started, as_of=as_of)
    with run_lock(db), failures_recorded(db, failed_run):
        if input_dir:
            from flows.load import load_flow

            load_flow(input_dir, db)
        con = store.connect(db)
        try:
            stored = read_stored_inputs(con, conflict_policy)
            plan = with_cutoffs(
                nightly_plan(stored.accounts, stored.first_activity, stored.finalized, as_of),
                as_of,
            )
            periods = sorted(plan["period"].unique().to_list())
            logger.info(
                "nightly as of %s: %d account-periods over %d period(s), policy %s",
                as_of, plan.height, len(periods), stored.policy,
            )
            bill = bill_plan(con, stored.bill_inputs(), plan, shards)
            checkpoint("after-decisions")
            batch = ResultsBatch(
                run=RunRecord(
                    run_id=run_id, kind="nightly", started_at=started, as_of=as_of,
                    rows_in=stored.assignments.height + bill.usage_events,
                    rows_out=bill.charges.height, finished_at=utc_now(),
                ),
                scope=plan.select("account_id", "period", "status"),
                charges=bill.charges,
                invoices=bill.invoices,
                decisions=bill.decisions,
                counters=bill.counters,
                parcels=bill.parcels,
                parcel_scope=bill.parcel_scope,
                locks=new_locks(bill.lifecycles, as_of),
                lifecycles=bill.lifecycles,
            )
        except BaseException:
            con.close()
            raise
        changes, analyst = finish_run(con, db, batch, stored)
    summary = RunSummary.of(
        run_id, "nightly", plan, batch, changes, analyst, started, adjustments=0,
        currencies=stored.frames.currencies,
    )
    publish_artifacts(summary, batch.charges)
    logger.info("nightly %s done in %.1fs: %s", run_id, summary.seconds, changes)
    return summary
