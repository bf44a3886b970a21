"""`billrun nightly --as-of D` (SPEC §5): load, settle, draft the open period, finalize the
ended ones, write everything in one transaction, publish the analyst copy.

The run is made of units of (period, shard) (flows/coordinator.py, flows/units.py): inputs are
staged as Parquet, each unit bills one shard of one period, and the commit ingests the units'
outputs in one DuckDB transaction (store/results.py). With `late_usage = "adjust"` the run also
has the reprocess units of every final period with late usage (flows/reprocess.py), committed
in the same transaction (docs/RUNS.md, "Late usage")."""

from __future__ import annotations

from datetime import date

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
from flows.reprocess import LateReprocessed, reprocess_late_periods
from flows.timings import RunTimings
from pipeline.schedule import nightly_plan, with_cutoffs
from store.clock import utc_now
from store.faults import checkpoint
from store.late_usage import late_adjusted, late_usage_by_period, reprocessed_periods
from store.results import ResultsBatch
from store.runlock import run_lock
from store.runs import RunRecord, new_run_id
from store.usage_state import usage_basis

LATE_USAGE_MODES = ("report", "adjust")  # the setting `late_usage` (billrun/config.py)


@flow(name="billrun-nightly", task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_CONCURRENCY))
def nightly_flow(
    as_of: date,
    db: str = "billrun.duckdb",
    input_dir: str | None = None,
    conflict_policy: str | None = None,
    grace_days: int | None = None,
    shards: int | None = None,
    memory_gb: float | None = None,
    staging: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    incremental: bool = True,
    late_usage: str = "report",
) -> RunSummary:
    """Load new inputs, recompute every non-final period up to `as_of`, finalize ended ones.

    `grace_days` overrides the catalog's `finalize_grace_days`: a period is finalized only by a
    night at least that many days after its end, and stays a draft until then (SPEC §8.3).
    `shards`: fixed shard count (tests); by default it follows from `memory_gb` (the budget,
    8 GB by default). `staging`: the staging root (path or fsspec URL; default beside `db`).
    `concurrency`: how many units run at once. `incremental`: drafts whose new events all come
    after what their last computation counted continue from it (docs/RUNS.md, "Incremental
    nightly"); False recomputes every group whole (the results are the same).
    `late_usage`: "report" counts the late usage of final periods in the summary; "adjust"
    also reprocesses those periods in this run (docs/RUNS.md, "Late usage")."""
    if late_usage not in LATE_USAGE_MODES:
        raise ValueError(f"late_usage {late_usage!r} is not one of {', '.join(LATE_USAGE_MODES)}")
    logger = get_run_logger()
    timings = RunTimings()  # where the run's time goes (`--json`, `billrun bench`)
    started = utc_now()  # the run's clock, read once, in UTC
    run_id = new_run_id("nightly", started)
    failed_run = RunRecord(run_id=run_id, kind="nightly", started_at=started, as_of=as_of)
    with run_lock(db), failures_recorded(db, failed_run), staged_run(staging, db, run_id) as stage:
        if input_dir:
            from flows.load import load_flow

            with timings.phase("start", "load"):
                load_flow(input_dir, db, publish=False)  # the night publishes once, at its end
        with timings.phase("start", "database"):
            con = store.connect(db, memory_limit=duckdb_memory_limit(memory_gb))
        try:
            with timings.phase("plan", "stored inputs"):
                stored = read_stored_inputs(con, conflict_policy)
            with timings.phase("plan", "plan"):
                basis = usage_basis(stored.catalog_text, stored.policy)
                grace = stored.catalog.finalize_grace_days if grace_days is None else grace_days
                plan = with_cutoffs(
                    nightly_plan(
                        stored.accounts, stored.first_activity, stored.finalized, as_of, grace
                    ),
                    as_of,
                )
            logger.info(
                "nightly as of %s: %d account-periods over %d period(s), policy %s, "
                "grace %d day(s)",
                as_of, plan.height, plan["period"].n_unique(), stored.policy, grace,
            )
            # On a Dask task runner (`billrun --cluster`), its workers' slots set how many
            # units run at once; on threads, `concurrency` does.
            with timings.phase("start", "cluster"):
                slots = dask_slots()
            if slots is not None:
                logger.info("units on a Dask cluster of %d worker slot(s)", slots)
            # The final periods with late usage, read before this night finalizes any other
            # (and after its own load): oldest first, each reprocessed for its final accounts.
            late = LateReprocessed({})
            if late_usage == "adjust":
                late = reprocess_late_periods(
                    con, stored, stage, late_usage_by_period(con), as_of=as_of, shards=shards,
                    memory_gb=memory_gb, concurrency=slots or concurrency,
                    on_cluster=slots is not None, timings=timings,
                )
            staged = stage_and_bill(
                con, stored, plan, stage, shards=shards, memory_gb=memory_gb,
                concurrency=slots or concurrency, lock_as_of=as_of, on_cluster=slots is not None,
                usage_basis=basis if incremental else None, timings=timings,
            )
            checkpoint("after-decisions")
            if late.moves_carry:
                logger.info("the next night recomputes this night's drafts whole: they were "
                            "billed from the counters and parcels before the late usage")
            batch = ResultsBatch(
                run=RunRecord(
                    run_id=run_id, kind="nightly", started_at=started, as_of=as_of,
                    period=reprocessed_periods(list(late.periods)),
                    rows_in=staged.assignments + staged.usage_events + late.usage_events,
                    rows_out=staged.lines_computed + late.adjustments, finished_at=utc_now(),
                ),
                stage=stage,
                # The drafts' state is kept for the next night unless the late periods moved
                # what the drafts were billed from (their counters or parcels before).
                usage_basis=None if late.moves_carry else basis,
            )
        except BaseException:
            con.close()
            raise
        changes, analyst, totals = finish_run(
            con, db, batch, stored, memory_limit=commit_memory_limit(memory_gb), timings=timings
        )
    changes = {**changes, "drafts_continued": staged.continued}
    summary = RunSummary.of(
        run_id, "nightly", plan, totals, changes, analyst, started,
        currencies=stored.frames.currencies,
    )
    summary.late_adjusted = late_adjusted(late.periods, totals.adjustments)
    with timings.phase("report", "artifacts and HTML report"):
        publish_artifacts(summary, totals.revenue)
    summary.timings = timings.finish()
    logger.info("nightly %s done in %.1fs: %s", run_id, summary.seconds, changes)
    return summary
