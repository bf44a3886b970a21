"""Prefect tasks shared by the nightly and reprocess flows: settle decisions, bill shards.

Thin on purpose: each task calls one pure function of `rules/` or `pipeline/`. Shards are
submitted to the flow's task runner (threads here, since Polars releases the GIL; a Dask task
runner can take the same tasks unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import store
from flows import progress
from pipeline.adjust import check_unique_line_keys
from pipeline.catalog import Catalog, CatalogFrames, catalog_frames
from pipeline.charges import ChargesResult, compute_charges
from pipeline.contracts import COUNTER_KEY
from pipeline.schedule import shard_of
from rules import RulesResult, decide
from rules.promotions import with_verdicts
from store.results import (
    RunRecord,
    read_counters_before,
    read_final_periods,
    read_first_activity,
    read_locks,
    read_parcels_before,
    record_failed_run,
)


@task(name="settle-decisions", cache_policy=NO_CACHE)
def settle_decisions(
    catalog: Catalog,
    accounts: pl.DataFrame,
    assignments: pl.DataFrame,
    periods: list[str],
    policy: str,
    locks: pl.DataFrame,
) -> RulesResult:
    """Run the rulesets once for every period of the run."""
    return decide(catalog, accounts, assignments, periods, policy, locks)  # type: ignore[arg-type]


@task(name="bill-shard", cache_policy=NO_CACHE)
def bill_shard(
    frames: CatalogFrames,
    accounts: pl.DataFrame,
    lifecycles: pl.DataFrame,
    usage: pl.DataFrame,
    counters_before: pl.DataFrame,
    period: str,
    cutoff: date | None,
    parcels_before: pl.DataFrame | None = None,
) -> ChargesResult:
    """Charges of one shard of accounts for one period (no per-event detail: `explain`
    recomputes it for the one account it shows)."""
    return compute_charges(
        frames, accounts, lifecycles, usage, counters_before, period, cutoff, detail=False,
        parcels_before=parcels_before,
    )


@dataclass(frozen=True)
class StoredInputs:
    """What every billing run reads first: the current catalog, accounts and assignments."""

    catalog: Catalog
    policy: str
    frames: CatalogFrames
    accounts: pl.DataFrame
    assignments: pl.DataFrame
    first_activity: pl.DataFrame
    finalized: pl.DataFrame
    locks: pl.DataFrame


def read_stored_inputs(con: Any, conflict_policy: str | None) -> StoredInputs:
    """Read the stored inputs of a run; the run's policy overrides the catalog's."""
    catalog = store.read_catalog(con)
    return StoredInputs(
        catalog=catalog,
        policy=conflict_policy or catalog.conflict_policy,
        frames=with_verdicts(catalog_frames(catalog)),
        accounts=store.read_accounts(con),
        assignments=store.read_assignments(con),
        first_activity=read_first_activity(con),
        finalized=read_final_periods(con),
        locks=read_locks(con),
    )


@dataclass
class PeriodBill:
    """The concatenated result of every shard of one period."""

    charges: pl.DataFrame
    invoices: pl.DataFrame
    counters_after: pl.DataFrame
    usage_detail: pl.DataFrame
    parcels: pl.DataFrame


def _in_shard(frame: pl.DataFrame, shard: int, shards: int) -> pl.DataFrame:
    return frame.filter(shard_of(pl.col("account_id"), shards) == shard)


def bill_period(
    frames: CatalogFrames,
    accounts: pl.DataFrame,
    lifecycles: pl.DataFrame,
    usage: pl.DataFrame,
    counters_before: pl.DataFrame,
    period: str,
    cutoff: date | None,
    shards: int,
    parcels_before: pl.DataFrame | None = None,
) -> PeriodBill:
    """Map `bill_shard` over account shards and concatenate; sorted, so shard count is moot."""
    futures = [
        bill_shard.submit(
            frames,
            _in_shard(accounts, shard, shards),
            _in_shard(lifecycles, shard, shards),
            _in_shard(usage, shard, shards),
            _in_shard(counters_before, shard, shards),
            period,
            cutoff,
            None if parcels_before is None else _in_shard(parcels_before, shard, shards),
        )
        for shard in range(shards)
    ]
    results: list[ChargesResult] = [f.result() for f in futures]

    def gather(name: str) -> pl.DataFrame:
        return pl.concat([getattr(r, name) for r in results], how="vertical_relaxed")

    return PeriodBill(
        charges=gather("charges"),
        invoices=gather("invoices").sort("account_id", "period"),
        counters_after=gather("counters_after").sort(COUNTER_KEY),
        usage_detail=gather("usage_detail"),
        parcels=gather("parcels"),
    )


@dataclass
class PlanBill:
    """The results of billing a whole plan, every period of it."""

    charges: pl.DataFrame
    invoices: pl.DataFrame
    counters: pl.DataFrame  # counters_after with the `period` that produced them
    usage_events: int
    parcels: pl.DataFrame = field(default_factory=pl.DataFrame)  # SPEC §7.3, every period
    parcel_scope: pl.DataFrame = field(default_factory=pl.DataFrame)  # account_id, window_start


def bill_plan(
    con: Any,
    frames: CatalogFrames,
    accounts: pl.DataFrame,
    lifecycles: pl.DataFrame,
    plan: pl.DataFrame,
    shards: int,
) -> PlanBill:
    """Bill every (account, period) of `plan` (which carries each group's `cutoff`), period by
    period, so that never-reset counters carry from one period into the next."""
    logger = get_run_logger()
    charges, invoices, counters, parcels = [], [], [], []
    carried = pl.DataFrame()
    carried_parcels = pl.DataFrame()
    events = 0
    periods = sorted(plan["period"].unique().to_list())
    for index, period in enumerate(periods):
        in_period = plan.filter(pl.col("period") == period)
        usage = store.read_usage(
            con, in_period["period_start"].min(), in_period["period_end"].max()
        )
        before = read_counters_before(con, period)
        if carried.height:
            before = carry_counters(before, carried)
        parcels_before = carry_parcels(read_parcels_before(con, period), carried_parcels)
        carried_parts, parcel_parts = [], []
        for (cutoff,), scope in in_period.group_by(["cutoff"], maintain_order=True):
            ids = scope.select("account_id")
            bill = bill_period(
                frames,
                accounts.join(ids, on="account_id", how="semi"),
                lifecycles.join(ids, on="account_id", how="semi"),
                usage.join(ids, on="account_id", how="semi"),
                before.join(ids, on="account_id", how="semi"),
                period,
                cutoff,
                shards,
                parcels_before.join(ids, on="account_id", how="semi"),
            )
            charges.append(bill.charges)
            parcel_parts.append(bill.parcels)
            invoices.append(bill.invoices)
            counters.append(bill.counters_after.with_columns(pl.lit(period).alias("period")))
            carried_parts.append(bill.counters_after)
        carried = concat_frames(carried_parts)
        carried_parcels = concat_frames(parcel_parts)
        parcels += parcel_parts
        events += usage.height
        logger.info("period %s: %d account(s), %d usage event(s) read",
                    period, in_period.height, usage.height)
        progress.advance("periods", index + 1, len(periods))
    lines = concat_frames(charges)
    check_unique_line_keys(lines)
    scope = plan.select("account_id", pl.col("period_start").alias("window_start"))
    return PlanBill(lines, concat_frames(invoices), concat_frames(counters), events,
                    concat_frames(parcels), scope)


@contextmanager
def failures_recorded(db: str, run: RunRecord) -> Iterator[None]:
    """Record a failed run in `runs` (its own transaction: the results were rolled back)."""
    try:
        yield
    except Exception as exc:
        try:
            con = store.connect(db)
            try:
                record_failed_run(con, replace(run, message=f"{type(exc).__name__}: {exc}"))
            finally:
                con.close()
        except Exception as also:  # never hide the run's own error behind this one
            get_run_logger().warning("could not record the failed run: %s", also)
        raise


def concat_frames(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate non-empty frames (an empty list gives an empty frame)."""
    frames = [f for f in frames if f.width]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def carry_counters(stored: pl.DataFrame, carried: pl.DataFrame) -> pl.DataFrame:
    """Counters before a period: those carried from the previous period of this run win over
    the stored ones (which are older)."""
    columns = [*COUNTER_KEY, "value_units"]
    never = carried.filter(pl.col("reset") == "never").select(columns)
    return pl.concat([never, stored.select(columns)], how="vertical_relaxed").unique(
        subset=COUNTER_KEY, keep="first", maintain_order=True
    )


def carry_parcels(stored: pl.DataFrame, carried: pl.DataFrame) -> pl.DataFrame:
    """Parcels before a period: those the previous period of this run left replace the stored
    ones of the same account and window (older)."""
    if carried.width == 0:
        return stored
    fresh = carried.select("account_id", "window_start").unique()
    kept = stored.join(fresh, on=["account_id", "window_start"], how="anti")
    return pl.concat([carried.select(stored.columns), kept], how="vertical_relaxed")


def new_locks(lifecycles: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Activation dates that are now active in a billed period, and so may no longer move."""
    return lifecycles.filter(pl.col("billable") & (pl.col("eff_start") <= as_of)).select(
        "assignment_id", pl.col("start_date").alias("locked_start")
    )
