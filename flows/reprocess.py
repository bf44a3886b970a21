"""`billrun reprocess --period P` (SPEC §5): recompute P from the stored inputs. A draft P is
replaced; a finalized P is never rewritten: the difference becomes adjustment lines (each
unit splits its shard: flows/units.py)."""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

import store
from flows.cluster import dask_slots
from flows.coordinator import (
    DEFAULT_CONCURRENCY,
    commit_memory_limit,
    duckdb_memory_limit,
    failures_recorded,
    read_stored_inputs,
    stage_and_bill,
    staged_run,
)
from flows.publish import RunSummary, finish_run, publish_artifacts
from pipeline.schedule import reprocess_plan, with_cutoffs
from store.billed import require_billed
from store.clock import utc_now
from store.results import ResultsBatch, last_nightly_as_of
from store.runlock import run_lock
from store.runs import RunRecord, new_run_id


@flow(name="billrun-reprocess",
      task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_CONCURRENCY))
def reprocess_flow(
    period: str,
    db: str = "billrun.duckdb",
    conflict_policy: str | None = None,
    shards: int | None = None,
    memory_gb: float | None = None,
    staging: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> RunSummary:
    """Recompute `period` for every account; adjust finalized ones, replace drafts (see
    `nightly_flow` for `shards`, `memory_gb`, `staging` and `concurrency`)."""
    logger = get_run_logger()
    started = utc_now()  # the run's clock, read once, in UTC
    run_id = new_run_id("reprocess", started)
    failed_run = RunRecord(run_id=run_id, kind="reprocess", started_at=started, period=period)
    with run_lock(db), failures_recorded(db, failed_run), staged_run(staging, db, run_id) as stage:
        con = store.connect(db, memory_limit=duckdb_memory_limit(memory_gb))
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
            # On a Dask task runner (`billrun --cluster`), its workers' slots set how many
            # units run at once; on threads, `concurrency` does.
            slots = dask_slots()
            if slots is not None:
                logger.info("units on a Dask cluster of %d worker slot(s)", slots)
            staged = stage_and_bill(
                con, stored, plan, stage, shards=shards, memory_gb=memory_gb,
                concurrency=slots or concurrency, lock_as_of=as_of, reprocess=period,
                on_cluster=slots is not None,
            )
            batch = ResultsBatch(
                run=RunRecord(
                    run_id=run_id, kind="reprocess", started_at=started, period=period,
                    rows_in=staged.assignments + staged.usage_events,
                    rows_out=staged.lines_computed + staged.adjustments, finished_at=utc_now(),
                ),
                stage=stage,
            )
        except BaseException:
            con.close()
            raise
        changes, analyst, totals = finish_run(
            con, db, batch, stored, memory_limit=commit_memory_limit(memory_gb)
        )
    summary = RunSummary.of(
        run_id, "reprocess", plan, totals, changes, analyst, started,
        currencies=stored.frames.currencies,
    )
    publish_artifacts(summary, totals.revenue)
    logger.info("reprocess %s done in %.1fs: %s", period, summary.seconds, changes)
    return summary
