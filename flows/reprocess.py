"""`billrun reprocess --period P` (SPEC §5): recompute P from the stored inputs. A draft P is
replaced; a finalized P is never rewritten: the difference becomes adjustment lines."""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

import store
from flows.billing import bill_plan, failures_recorded, read_stored_inputs
from flows.publish import RunSummary, finish_run, publish_artifacts
from pipeline.adjust import split_reprocess
from pipeline.counters import counter_shift
from pipeline.schedule import reprocess_plan, with_cutoffs
from rules.lifecycle import new_locks
from store.billed import require_billed
from store.clock import utc_now
from store.results import (
    ResultsBatch,
    last_nightly_as_of,
    read_billed_lines,
    read_counter_values,
)
from store.runlock import run_lock
from store.runs import RunRecord, new_run_id


@flow(name="billrun-reprocess")
def reprocess_flow(
    period: str,
    db: str = "billrun.duckdb",
    conflict_policy: str | None = None,
    shards: int = 2,
) -> RunSummary:
    """Recompute `period` for every account; adjust finalized ones, replace drafts."""
    logger = get_run_logger()
    started = utc_now()  # the run's clock, read once, in UTC
    run_id = new_run_id("reprocess", started)
    failed_run = RunRecord(run_id=run_id, kind="reprocess", started_at=started, period=period)
    with run_lock(db), failures_recorded(db, failed_run):
        con = store.connect(db)
        try:
            require_billed(con, period)
            stored = read_stored_inputs(con, conflict_policy)
            as_of = last_nightly_as_of(con)
            plan = with_cutoffs(
                reprocess_plan(stored.accounts, stored.first_activity, stored.finalized, period),
                as_of,
            )
            logger.info(
                "reprocess %s: %d final and %d draft account(s)",
                period,
                plan.filter(pl.col("status") == "final").height,
                plan.filter(pl.col("status") == "draft").height,
            )
            bill = bill_plan(con, stored.bill_inputs(), plan, shards)
            split = split_reprocess(
                plan, bill.charges, bill.invoices, bill.decisions,
                read_billed_lines(con, period, stored.frames.currencies),
            )
            adjustments = split.adjustments
            batch = ResultsBatch(
                run=RunRecord(
                    run_id=run_id, kind="reprocess", started_at=started, period=period,
                    rows_in=stored.assignments.height + bill.usage_events,
                    rows_out=bill.charges.height + adjustments.height, finished_at=utc_now(),
                ),
                scope=split.scope,
                charges=split.charges,
                invoices=split.invoices,
                decisions=split.decisions,
                counters=bill.counters,
                parcels=bill.parcels,
                parcel_scope=bill.parcel_scope,
                adjustments=adjustments,
                locks=new_locks(bill.lifecycles, as_of) if as_of else pl.DataFrame(),
                counter_shift=counter_shift(
                    read_counter_values(con, period), bill.counters, period
                ),
                lifecycles=bill.lifecycles,
            )
        except BaseException:
            con.close()
            raise
        changes, analyst = finish_run(con, db, batch, stored)
    summary = RunSummary.of(
        run_id, "reprocess", plan, batch, changes, analyst, started,
        adjustments=adjustments.height, currencies=stored.frames.currencies,
    )
    publish_artifacts(summary, batch.charges)
    logger.info("reprocess %s done in %.1fs: %s", period, summary.seconds, changes)
    return summary
