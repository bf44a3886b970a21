"""Prefect tasks shared by the nightly and reprocess flows: read the inputs, bill shards.

Thin on purpose: the one task calls the one pure function, `pipeline.billing.bill`. Shards are
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
from pipeline.billing import Bill, BillInputs, bill, settle
from pipeline.catalog import Catalog, CatalogFrames, catalog_frames
from pipeline.contracts import (
    COUNTER_KEY,
    COUNTER_SCHEMA,
    DECISIONS_SCHEMA,
    INVOICE_SCHEMA,
    LIFECYCLE_SCHEMA,
    LINE_SCHEMA,
    typed,
)
from pipeline.counters import carry_counters, carry_parcels
from pipeline.schedule import shard_of
from pipeline.usage.rollover import PARCEL_SCHEMA
from rules.promotions import with_verdicts
from store.clock import utc_now
from store.results import (
    read_counters_before,
    read_final_periods,
    read_first_activity,
    read_locks,
    read_parcels_before,
)
from store.runs import RunRecord, record_run


@task(name="bill-shard", cache_policy=NO_CACHE)
def bill_shard(
    inputs: BillInputs,
    counters_before: pl.DataFrame,
    period: str,
    cutoff: date | None,
    parcels_before: pl.DataFrame,
) -> Bill:
    """Decisions and charges of one shard of accounts for one period (no per-event detail:
    `explain` recomputes it for the one account it shows)."""
    return bill(inputs, period, cutoff, counters_before, parcels_before=parcels_before)


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

    def bill_inputs(self) -> BillInputs:
        """The inputs of `bill` for every account (usage is read period by period)."""
        return BillInputs(
            catalog=self.catalog, policy=self.policy, accounts=self.accounts,
            assignments=self.assignments, locks=self.locks, frames=self.frames,
        )


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


def _in_shard(frame: pl.DataFrame, shard: int, shards: int) -> pl.DataFrame:
    return frame.filter(shard_of(pl.col("account_id"), shards) == shard)


def bill_period(
    inputs: BillInputs,
    counters_before: pl.DataFrame,
    period: str,
    cutoff: date | None,
    shards: int,
    parcels_before: pl.DataFrame,
) -> list[Bill]:
    """Map `bill_shard` over account shards; the bills, in shard order."""
    futures = []
    for shard in range(shards):
        ids = _in_shard(inputs.accounts.select("account_id").unique(), shard, shards)
        futures.append(
            bill_shard.submit(
                inputs.of_accounts(ids), _in_shard(counters_before, shard, shards), period, cutoff,
                _in_shard(parcels_before, shard, shards),
            )
        )
    return [f.result() for f in futures]


@dataclass
class PlanBill:
    """The results of billing a whole plan, every period of it."""

    decisions: pl.DataFrame  # of the plan's (account, period) groups
    lifecycles: pl.DataFrame  # one per assignment of the accounts billed
    charges: pl.DataFrame
    invoices: pl.DataFrame
    counters: pl.DataFrame  # counters_after with the `period` that produced them
    usage_events: int
    parcels: pl.DataFrame = field(default_factory=pl.DataFrame)  # SPEC §7.3, every period
    parcel_scope: pl.DataFrame = field(default_factory=pl.DataFrame)  # account_id, window_start


def bill_plan(
    con: Any, inputs: BillInputs, plan: pl.DataFrame, shards: int
) -> PlanBill:
    """Bill every (account, period) of `plan` (which carries each group's `cutoff`), period by
    period, so that never-reset counters carry from one period into the next."""
    logger = get_run_logger()
    bills: list[Bill] = []
    counters = []
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
            scoped = replace(inputs, usage=usage).of_accounts(ids)
            for part in bill_period(
                scoped, before.join(ids, on="account_id", how="semi"), period, cutoff, shards,
                parcels_before.join(ids, on="account_id", how="semi"),
            ):
                bills.append(part)
                carried_parts.append(part.counters_after)
                parcel_parts.append(part.parcels)
        carried = concat_frames(carried_parts)
        if carried.width:
            carried = carried.sort(COUNTER_KEY)
            counters.append(carried.with_columns(pl.lit(period).alias("period")))
        carried_parcels = concat_frames(parcel_parts)
        events += usage.height
        logger.info("period %s: %d account(s), %d usage event(s) read",
                    period, in_period.height, usage.height)
        progress.advance("periods", index + 1, len(periods))

    def gather(name: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        # Typed even when nothing was billed (a run before any activity writes no line).
        return concat_frames([getattr(b, name) for b in bills]) if bills else typed(
            pl.DataFrame(), schema
        )

    lines = gather("charges", LINE_SCHEMA)
    check_unique_line_keys(lines)
    invoices = gather("invoices", INVOICE_SCHEMA)
    lifecycles = gather("lifecycles", LIFECYCLE_SCHEMA)
    # The assignments of accounts the plan does not bill (their activity starts later) are
    # settled all the same, so the run records every life cycle, as it always has.
    unplanned = inputs.assignments.join(plan, on="account_id", how="anti")
    if unplanned.height:
        rest = inputs.of_accounts(unplanned.select("account_id").unique())
        lifecycles = concat_frames([lifecycles, settle(rest)])
    return PlanBill(
        decisions=gather("decisions", DECISIONS_SCHEMA),
        lifecycles=lifecycles.unique("assignment_id", keep="first", maintain_order=True)
        if lifecycles.height else lifecycles,
        charges=lines,
        invoices=invoices.sort("period", "account_id") if invoices.height else invoices,
        counters=concat_frames(counters) if counters else typed(
            pl.DataFrame(), {**COUNTER_SCHEMA, "period": pl.Utf8()}
        ),
        usage_events=events,
        parcels=gather("parcels", PARCEL_SCHEMA),
        parcel_scope=plan.select("account_id", pl.col("period_start").alias("window_start")),
    )


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


def concat_frames(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate non-empty frames (an empty list gives an empty frame)."""
    frames = [f for f in frames if f.width]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
