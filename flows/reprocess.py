"""`billrun reprocess --period P` (SPEC §5): recompute P from the stored inputs. A draft P is
replaced; a finalized P is never rewritten: the difference becomes adjustment lines (each
unit splits its shard: flows/units.py).

The same units bill the late usage of a nightly with `late_usage = "adjust"`
(`reprocess_late_periods`, docs/RUNS.md "Late usage"): each period with late usage is
reprocessed for its final accounts inside the night's run, and the night commits its adjustment
lines with everything else, in its one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

import store
from flows.cluster import dask_slots
from flows.coordinator import (
    DEFAULT_CONCURRENCY,
    RunStaged,
    StoredInputs,
    commit_memory_limit,
    duckdb_memory_limit,
    failures_recorded,
    read_stored_inputs,
    stage_and_bill,
    staged_run,
)
from flows.publish import RunSummary, finish_run, publish_artifacts
from flows.timings import RunTimings
from pipeline.contracts import PARCEL_KEY
from pipeline.schedule import reprocess_plan, with_cutoffs
from store.billed import require_billed
from store.clock import utc_now
from store.duck import scalar
from store.faults import checkpoint
from store.results import ResultsBatch, last_nightly_as_of
from store.runlock import run_lock
from store.runs import RunRecord, new_run_id
from store.staging import Stage, duck_url, move, remove


def reprocess_units(
    con: Any,
    stored: StoredInputs,
    period: str,
    stage: Stage,
    *,
    as_of: date | None,
    finals_only: bool = False,
    shards: int | None,
    memory_gb: float | None,
    concurrency: int,
    on_cluster: bool,
    timings: RunTimings | None = None,
) -> tuple[pl.DataFrame, RunStaged]:
    """Plan `period` for every account (`finals_only`: its final accounts only) and run its
    reprocess units in `stage`; drafts are cut off at `as_of`. Returns the plan and what the
    units did (`timings`: where its phases and rounds are timed)."""
    timings = timings if timings is not None else RunTimings()
    with timings.phase("plan", "plan"):
        plan = with_cutoffs(
            reprocess_plan(stored.accounts, stored.first_activity, stored.finalized, period),
            as_of,
        )
        if finals_only:
            plan = plan.filter(pl.col("status") == "final")
    get_run_logger().info(
        "reprocess %s: %d final and %d draft account(s)",
        period,
        plan.filter(pl.col("status") == "final").height,
        plan.filter(pl.col("status") == "draft").height,
    )
    staged = stage_and_bill(
        con, stored, plan, stage, shards=shards, memory_gb=memory_gb,
        concurrency=concurrency, lock_as_of=as_of, reprocess=period, on_cluster=on_cluster,
        timings=timings,
    )
    return plan, staged


@dataclass(frozen=True)
class LateReprocessed:
    """What the late-usage units of a night did (their outputs are in the night's stage)."""

    periods: dict[str, int]  # period -> the late events it had before the run, oldest first
    usage_events: int = 0
    lines_computed: int = 0
    adjustments: int = 0
    # The periods moved never-reset counters or changed rollover parcels: the drafts this night
    # bills from the stored ones are not continued by the next night (docs/RUNS.md, "Late
    # usage").
    moves_carry: bool = False


LATE_FOLDER = "late-{period}"  # the units folder (below `units/`) of a late period's units


def reprocess_late_periods(
    con: Any,
    stored: StoredInputs,
    stage: Stage,
    late: dict[str, int],
    *,
    as_of: date,
    shards: int | None,
    memory_gb: float | None,
    concurrency: int,
    on_cluster: bool,
    timings: RunTimings | None = None,
) -> LateReprocessed:
    """Reprocess each period of `late` (period -> late events), oldest first, for its final
    accounts, as `billrun reprocess --period P` does, inside a nightly's run.

    Each period's units run in a staging folder of their own below the night's (its inputs
    never mix with the night's, which may bill other accounts of the same period as drafts or
    catch-up); their outputs then move to `units/late-<period>/`, where the night's one commit
    reads them with its own: adjustment lines, counters and their roll-forward, parcels.
    `timings`: its rounds are labelled `late <period>: ...`."""
    timings = timings if timings is not None else RunTimings()
    periods = dict(sorted(late.items()))
    events = lines = adjustments = 0
    moved = False
    for period in periods:
        folder = LATE_FOLDER.format(period=period)
        timings.label_prefix = f"late {period}: "
        plan, staged = reprocess_units(
            con, stored, period, Stage(stage.base, folder), as_of=as_of, finals_only=True,
            shards=shards, memory_gb=memory_gb, concurrency=concurrency, on_cluster=on_cluster,
            timings=timings,
        )
        timings.label_prefix = ""
        if plan.height:  # (late usage is in final account-periods: never empty in practice)
            move(stage, f"{folder}/units/{period}", f"units/{folder}")
            moved = True
        remove(stage, folder)  # its inputs, and its settle round (the night settles its own)
        events += staged.usage_events
        lines += staged.lines_computed
        adjustments += staged.adjustments
    shifted = parcels = 0
    if moved:
        shifted, parcels = _late_counters_shifted(con, stage), _late_parcels_changed(con, stage)
    if shifted or parcels:
        get_run_logger().info(
            "late usage moved %d never-reset counter(s) and %d rollover parcel(s)",
            shifted, parcels,
        )
    checkpoint("after-late-units")
    return LateReprocessed(periods, events, lines, adjustments,
                           moves_carry=bool(shifted or parcels))


def _late_output(con: Any, stage: Stage, name: str) -> str:
    """`read_parquet(...)` of one output over the late periods' units."""
    folder = LATE_FOLDER.format(period="*")
    return f"read_parquet('{duck_url(con, stage.url(f'units/{folder}/*/{name}.parquet'))}')"


def _late_counters_shifted(con: Any, stage: Stage) -> int:
    """How many never-reset counters the late periods moved (the shift rolls them forward)."""
    return int(scalar(con, f"SELECT count(*) FROM {_late_output(con, stage, 'counter_shift')}"))


def _late_parcels_changed(con: Any, stage: Stage) -> int:
    """How many rollover parcels the late periods leave that differ from the stored ones of
    the same (account, window): added, removed or changed."""
    columns = f"{', '.join(PARCEL_KEY)}, expires_after_window_start"
    return int(scalar(con, f"""
        WITH new AS (SELECT {columns}, remaining_units FROM {_late_output(con, stage, 'parcels')}),
        old AS (SELECT {columns}, CAST(remaining * 1000000 AS BIGINT) AS remaining_units
                FROM quota_rollovers
                SEMI JOIN {_late_output(con, stage, 'parcel_scope')} s
                  USING (account_id, window_start))
        SELECT count(*) FROM ((FROM new EXCEPT ALL FROM old) UNION ALL
                              (FROM old EXCEPT ALL FROM new))"""))


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
    timings = RunTimings()  # where the run's time goes (`--json`, `billrun bench`)
    started = utc_now()  # the run's clock, read once, in UTC
    run_id = new_run_id("reprocess", started)
    failed_run = RunRecord(run_id=run_id, kind="reprocess", started_at=started, period=period)
    with run_lock(db), failures_recorded(db, failed_run), staged_run(staging, db, run_id) as stage:
        with timings.phase("start", "database"):
            con = store.connect(db, memory_limit=duckdb_memory_limit(memory_gb))
        try:
            with timings.phase("plan", "stored inputs"):
                require_billed(con, period)
                stored = read_stored_inputs(con, conflict_policy)
            # On a Dask task runner (`billrun --cluster`), its workers' slots set how many
            # units run at once; on threads, `concurrency` does.
            with timings.phase("start", "cluster"):
                slots = dask_slots()
            if slots is not None:
                logger.info("units on a Dask cluster of %d worker slot(s)", slots)
            plan, staged = reprocess_units(
                con, stored, period, stage, as_of=last_nightly_as_of(con), shards=shards,
                memory_gb=memory_gb, concurrency=slots or concurrency,
                on_cluster=slots is not None, timings=timings,
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
            con, db, batch, stored, memory_limit=commit_memory_limit(memory_gb), timings=timings
        )
    summary = RunSummary.of(
        run_id, "reprocess", plan, totals, changes, analyst, started,
        currencies=stored.frames.currencies,
    )
    with timings.phase("report", "artifacts and HTML report"):
        publish_artifacts(summary, totals.revenue)
    summary.timings = timings.finish()
    logger.info("reprocess %s done in %.1fs: %s", period, summary.seconds, changes)
    return summary
