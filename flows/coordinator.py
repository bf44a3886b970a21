"""The coordinator shared by the nightly and reprocess flows (docs/RUNS.md, "Units of work").

It reads what the plan needs, exports each unit's inputs from DuckDB to the run's staging
folder (store/staging.py), and runs the units (flows/units.py): the settle round first (each
shard's rules settled once for the run), then period by period, at most
`concurrency` at a time, on the flow's task runner. It never holds a run's usage or lines:
those go from DuckDB to Parquet to the units and back to DuckDB in the commit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import polars as pl
from prefect import get_run_logger
from prefect.futures import PrefectFuture, as_completed

import store
from flows import progress
from flows.cluster import cluster_shards
from flows.timings import RunTimings
from flows.units import UnitDone, UnitSpec, bill_unit
from pipeline.catalog import Catalog, CatalogFrames, catalog_frames
from rules.promotions import with_verdicts
from store import staging, usage_state
from store.clock import utc_now
from store.duck import scalar
from store.faults import checkpoint
from store.results import (
    BILLED_LINES_SQL,
    COUNTER_VALUES_SQL,
    COUNTERS_BEFORE_SQL,
    PARCELS_BEFORE_SQL,
    parcels_before_params,
    read_final_periods,
    read_first_activity,
)
from store.runs import RunRecord, record_run
from store.staging import Stage

# The memory budget (docs/RUNS.md, "Units of work"): 8 GB fits a 16 GB machine.
DEFAULT_MEMORY_GB = 8.0
DEFAULT_CONCURRENCY = 2  # the cores of the standard machine
MIN_SHARDS = 2  # the shard count before budgets existed: small runs keep it
# Peak working set of one unit per staged usage event and per assignment of its shard,
# measured on one period of 20k accounts, rounded up (docs/RUNS.md, "Units of work").
BYTES_PER_EVENT = 500
BYTES_PER_ASSIGNMENT = 2_500
# Of the budget, DuckDB's buffer pool gets this share; the concurrent units get the rest.
DUCKDB_SHARE = 0.25
# A reprocess recomputes one period for the accounts it bills: it exports and settles only
# theirs, and records no life cycle of the accounts no period of it bills (the nightly that
# bills them does). Off only in the test that shows the tables are the same.
REPROCESS_PLAN_ONLY = True
# Once every unit is done their memory is free: the commit's change detection (EXCEPT ALL over
# a run's lines) gets most of the budget. At 1M accounts it ran out of 25 % (1.8 GiB of 8 GB).
COMMIT_SHARE = 0.75


@dataclass(frozen=True)
class StoredInputs:
    """What the coordinator reads to plan a run: the catalog (small) and the accounts' rows,
    first activity and finalized periods (what `nightly_plan` / `reprocess_plan` need)."""

    catalog: Catalog
    catalog_text: str
    policy: str
    frames: CatalogFrames
    accounts: pl.DataFrame
    first_activity: pl.DataFrame
    finalized: pl.DataFrame


def read_stored_inputs(con: Any, conflict_policy: str | None) -> StoredInputs:
    """Read the planning inputs of a run; the run's policy overrides the catalog's."""
    catalog = store.read_catalog(con)
    return StoredInputs(
        catalog=catalog,
        catalog_text=store.read_catalog_text(con) or "",
        policy=conflict_policy or catalog.conflict_policy,
        frames=with_verdicts(catalog_frames(catalog)),
        accounts=store.read_accounts(con),
        first_activity=read_first_activity(con),
        finalized=read_final_periods(con),
    )


def duckdb_memory_limit(memory_gb: float | None, share: float = DUCKDB_SHARE) -> str:
    """DuckDB's `share` of the run's budget (it spills to disk beyond it)."""
    budget = memory_gb or DEFAULT_MEMORY_GB
    return f"{max(0.25, budget * share):.2f}GB"


def commit_memory_limit(memory_gb: float | None) -> str:
    """DuckDB's share of the budget while the run commits (the units are done by then)."""
    return duckdb_memory_limit(memory_gb, COMMIT_SHARE)


def choose_shards(
    events_per_period: int, assignments: int, memory_gb: float | None, concurrency: int
) -> int:
    """The fewest shards (at least MIN_SHARDS) such that `concurrency` units of the largest
    period fit the units' share of the memory budget."""
    budget = (memory_gb or DEFAULT_MEMORY_GB) * (1 - DUCKDB_SHARE) * 2**30
    need = concurrency * (events_per_period * BYTES_PER_EVENT + assignments * BYTES_PER_ASSIGNMENT)
    return max(MIN_SHARDS, math.ceil(need / budget))


def _windows(plan: pl.DataFrame) -> pl.DataFrame:
    """Each period's usage window: from its earliest start to its latest end (billing days)."""
    return plan.group_by("period").agg(
        pl.col("period_start").min().alias("start"), pl.col("period_end").max().alias("end")
    ).sort("period")


def largest_period_events(con: Any, windows: pl.DataFrame) -> int:
    """The most usage events any one period of the plan reads (one DuckDB range join)."""
    if windows.height == 0:
        return 0
    con.register("_windows", windows.to_arrow())
    try:
        return int(scalar(
            con,
            """SELECT coalesce(max(n), 0) FROM (
                   SELECT w.period, count(*) AS n FROM usage u JOIN _windows w
                   ON u.started_at >= CAST(w.start AS TIMESTAMP)
                      AND u.started_at < CAST(w."end" AS TIMESTAMP)
                   GROUP BY w.period)""",
        ))
    finally:
        con.unregister("_windows")


@dataclass(frozen=True)
class RunStaged:
    """What the units of a run did, in total (their outputs are in the staging folder)."""

    stage: Stage
    shards: int
    usage_events: int
    lines_computed: int
    assignments: int
    adjustments: int
    continued: int = 0  # draft groups continued from what their last computation counted


def stage_and_bill(
    con: Any,
    stored: StoredInputs,
    plan: pl.DataFrame,
    stage: Stage,
    *,
    shards: int | None,
    memory_gb: float | None,
    concurrency: int,
    lock_as_of: date | None,
    reprocess: str | None = None,
    on_cluster: bool = False,
    usage_basis: str | None = None,
    timings: RunTimings | None = None,
) -> RunStaged:
    """Export the run's inputs and run its units: the settle round (each shard's assignments
    settled once, staged for every period), then every period of `plan` (which carries each
    group's `cutoff`) in order, each period's units after the previous period's, so that
    never-reset counters carry from one period into the next.
    `reprocess`: the period a reprocess recomputes (its units split drafts from finals).
    `on_cluster`: `concurrency` is a Dask cluster's slots; the shards fill whole rounds.
    `usage_basis` (a nightly's catalog and policy, store/usage_state.py): draft groups last
    computed under it may continue from what they counted; None: every group is whole.
    `timings`: where the exports and each round of units are timed (flows/timings.py)."""
    logger = get_run_logger()
    timings = timings if timings is not None else RunTimings()
    usage_state.forget_plan_prints(con)  # the commit reuses the prints of this run's plan only
    windows = _windows(plan)
    assignments = int(scalar(con, "SELECT count(*) FROM assignments"))
    if shards is None:
        with timings.phase("plan", "shard count"):
            events = largest_period_events(con, windows)
        shards = choose_shards(events, assignments, memory_gb, concurrency)
        if on_cluster:
            shards = cluster_shards(shards, concurrency)
    logger.info("%d shard(s), %d unit(s) at a time", shards, concurrency)
    con.register("_plan", plan.to_arrow())
    try:
        with timings.phase("exports", "run inputs"):
            unplanned = _export_run_inputs(con, stage, stored, shards, reprocess)
        spec = UnitSpec(root=stage.root, run_id=stage.run_id, shard=0, period=None,
                        previous_period=None, policy=stored.policy, lock_as_of=lock_as_of,
                        reprocess=reprocess is not None)
        # The settle round: each shard's assignments settled once for the run and staged, for
        # every period unit of the shard; and the life cycles of the accounts no period bills.
        done = _run_round(spec, shards, concurrency, timings)
        logger.info("settled %d shard(s); %d account(s) no period bills", shards, unplanned)
        previous, continued = None, 0
        for index, (period, start, end) in enumerate(windows.iter_rows()):
            with timings.phase("exports", "period inputs"):
                events, resumed = _export_period(con, stage, period, start, end, shards,
                                                 usage_basis)
            continued += resumed
            done += _run_round(replace(spec, period=period, previous_period=previous,
                                       continues=resumed > 0), shards, concurrency, timings)
            with timings.phase("exports", "period inputs"):
                staging.remove(stage, f"inputs/usage/period={period}")  # done with: free disk
            previous = period
            logger.info("period %s: %d account(s), %d usage event(s) read, %d draft(s) "
                        "continued", period, plan.filter(pl.col("period") == period).height,
                        events, resumed)
            progress.advance("periods", index + 1, windows.height)
    finally:
        con.unregister("_plan")
    return RunStaged(
        stage=stage, shards=shards, usage_events=sum(d.usage_events for d in done),
        lines_computed=sum(d.lines_computed for d in done), assignments=assignments,
        adjustments=sum(d.rows["adjustments"] for d in done), continued=continued,
    )


def _export_run_inputs(
    con: Any, stage: Stage, stored: StoredInputs, shards: int, reprocess: str | None
) -> int:
    """What every unit of the run reads, exported once: the catalog, the shards' accounts,
    assignments, locks and changes, the accounts no period bills (returns how many), and what
    a reprocess compares with. A reprocess exports the plan's accounts only, and no account
    no period bills (`REPROCESS_PLAN_ONLY`)."""
    shard = staging.shard_sql(shards)
    only = reprocess is not None and REPROCESS_PLAN_ONLY
    of_plan = " WHERE {id} IN (SELECT account_id FROM _plan)" if only else ""
    staging.write_text(stage, staging.CATALOG_FILE, stored.catalog_text)
    staging.export(con, stage, "accounts", staging.ACCOUNTS_SQL.format(shard=shard)
                   + of_plan.format(id="account_id"), shards)
    staging.export(con, stage, "assignments", staging.ASSIGNMENTS_SQL.format(shard=shard)
                   + of_plan.format(id="account_id"), shards)
    staging.export(con, stage, "locks", staging.LOCKS_SQL.format(shard=staging.shard_sql(
        shards, "a.account_id")) + of_plan.format(id="a.account_id"), shards)
    staging.export(con, stage, "changes", staging.CHANGES_SQL.format(
        shard=staging.shard_sql(shards, "a.account_id")) + of_plan.format(id="a.account_id"),
        shards)
    unplanned = staging.export(con, stage, "unplanned", f"""SELECT DISTINCT account_id,
        {shard} AS shard FROM assignments ANTI JOIN _plan USING (account_id)"""
        + (" LIMIT 0" if only else ""), shards)
    if reprocess:
        _export_reprocess(con, stage, stored, reprocess, shards)
    return unplanned


def _export_period(
    con: Any, stage: Stage, period: str, start: date, end: date, shards: int,
    usage_basis: str | None,
) -> tuple[int, int]:
    """Just before a period's units run: its plan rows, usage, counters and parcels before,
    and what its continued drafts counted so far. Returns the usage events exported and the
    drafts continued."""
    shard = staging.shard_sql(shards)
    continued = usage_state.plan_continued(con, "_plan", period, usage_basis)
    if continued:  # else the units stage nothing of it (UnitSpec.continues)
        for name, sql in (("continued", usage_state.CONTINUED_SQL),
                          ("sums_so_far", usage_state.SUMS_SO_FAR_SQL),
                          ("windows_so_far", usage_state.WINDOWS_SO_FAR_SQL)):
            staging.export(con, stage, name, sql.format(shard=shard), shards,
                           None if name == "continued" else [period], period=period)
    staging.export(con, stage, "plan", f"SELECT *, {shard} AS shard FROM _plan WHERE period = ?",
                   shards, [period], period=period)
    staging.export(con, stage, "counters_before",
                   f"SELECT *, {shard} AS shard FROM ({COUNTERS_BEFORE_SQL})", shards, [period],
                   period=period)
    staging.export(con, stage, "parcels_before",
                   f"SELECT *, {shard} AS shard FROM ({PARCELS_BEFORE_SQL})", shards,
                   parcels_before_params(period), period=period)
    source = usage_state.USAGE_AFTER if continued else "usage"
    return staging.export_usage(con, stage, period, start, end, shards, source), continued


def _export_reprocess(
    con: Any, stage: Stage, stored: StoredInputs, period: str, shards: int
) -> None:
    """What a reprocess compares with: the billed lines and stored counters of its period."""
    shard = staging.shard_sql(shards)
    con.register("_currencies",
                 stored.frames.currencies.select("currency", "minor_units").to_arrow())
    try:
        staging.export(con, stage, "billed",
                       f"SELECT *, {shard} AS shard FROM ({BILLED_LINES_SQL})", shards,
                       [period, period])
    finally:
        con.unregister("_currencies")
    # Only the plan's accounts: a night's late-usage units reprocess the final accounts of a
    # period whose drafts the night bills itself, and must shift no counter of those.
    staging.export(con, stage, "counter_values",
                   f"SELECT *, {shard} AS shard FROM ({COUNTER_VALUES_SQL}) "
                   "SEMI JOIN _plan USING (account_id)", shards, [period], period=period)


def _run_round(
    spec: UnitSpec, shards: int, concurrency: int, timings: RunTimings
) -> list[UnitDone]:
    """Run the units of one period (every shard), at most `concurrency` in flight; the
    coordinator's wait and each unit's own seconds go to `timings`."""
    started, cpu = time.perf_counter(), time.process_time()
    done: list[UnitDone] = []
    in_flight: list[PrefectFuture] = []
    for shard in range(shards):
        if len(in_flight) >= concurrency:
            done.append(_first_done(in_flight))
        in_flight.append(bill_unit.submit(replace(spec, shard=shard)))
    while in_flight:
        done.append(_first_done(in_flight))
    timings.add_round(spec.period or "settle", time.perf_counter() - started, done,
                      cpu=time.process_time() - cpu)
    if spec.period is not None:
        checkpoint("mid-units")
    return done


def _first_done(in_flight: list[PrefectFuture]) -> UnitDone:
    future = next(iter(as_completed(in_flight)))
    in_flight.remove(future)
    return future.result()


@contextmanager
def failures_recorded(db: str, run: RunRecord) -> Iterator[None]:
    """Record a failed run in `runs` (its own transaction: the results were rolled back); the
    end is read from the one UTC clock, the start is the run's."""
    try:
        yield
    except Exception as exc:
        try:
            con = store.connect(db)
            try:
                failed = replace(
                    run, message=f"{type(exc).__name__}: {exc}", finished_at=utc_now()
                )
                record_run(con, failed, "failed")
            finally:
                con.close()
        except Exception as also:  # never hide the run's own error behind this one
            get_run_logger().warning("could not record the failed run: %s", also)
        raise


@contextmanager
def staged_run(root: str | None, db: str, run_id: str) -> Iterator[Stage]:
    """The run's staging folder: leftovers of earlier (killed) runs removed first, this run's
    folder removed when it ends, whether it succeeds or fails."""
    stage = Stage(root or staging.default_root(db), run_id)
    staging.start_clean(stage.root)
    try:
        yield stage
    finally:
        staging.remove_run(stage)
