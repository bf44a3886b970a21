"""`billrun reprocess --period P` (SPEC §5): recompute P from the stored inputs. A draft P is
replaced; a finalized P is never rewritten: the difference becomes adjustment lines."""

from __future__ import annotations

from datetime import datetime

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
from pipeline.adjust import adjustment_lines
from pipeline.contracts import COUNTER_KEY
from pipeline.schedule import reprocess_plan
from store.results import (
    ResultsBatch,
    RunRecord,
    last_nightly_as_of,
    read_billed_lines,
    read_counter_values,
)
from store.runlock import run_lock


def _counter_shift(old: pl.DataFrame, new: pl.DataFrame, period: str) -> pl.DataFrame:
    """How much each never-reset counter moved at the end of `period`: later periods move too."""
    never = pl.col("reset") == "never"
    joined = new.filter(never).join(
        old.filter(never), on=COUNTER_KEY, how="full", coalesce=True, suffix="_old"
    )
    return (
        joined.with_columns(
            (pl.col("value_units").fill_null(0) - pl.col("value_units_old").fill_null(0)).alias(
                "delta_units"
            )
        )
        .filter(pl.col("delta_units") != 0)
        .select(*COUNTER_KEY, pl.lit(period).alias("period"), "delta_units")
    )


@flow(name="billrun-reprocess")
def reprocess_flow(
    period: str,
    db: str = "billrun.duckdb",
    conflict_policy: str | None = None,
    shards: int = 2,
) -> RunSummary:
    """Recompute `period` for every account; adjust finalized ones, replace drafts."""
    logger = get_run_logger()
    started = datetime.now()
    run_id = run_id_for("reprocess", started)
    failed_run = RunRecord(run_id=run_id, kind="reprocess", started_at=started, period=period)
    with run_lock(db), failures_recorded(db, failed_run):
        con = store.connect(db)
        try:
            stored = read_stored_inputs(con, conflict_policy)
            as_of = last_nightly_as_of(con)
            # Drafts keep the horizon of the last nightly run; finals are whole periods.
            plan = reprocess_plan(
                stored.accounts, stored.first_activity, stored.finalized, period
            ).with_columns(
                pl.when(pl.col("status") == "final")
                .then(pl.lit(None, dtype=pl.Date))
                .otherwise(pl.lit(as_of, dtype=pl.Date))
                .alias("cutoff")
            )
            logger.info(
                "reprocess %s: %d final and %d draft account(s)",
                period,
                plan.filter(pl.col("status") == "final").height,
                plan.filter(pl.col("status") == "draft").height,
            )
            rules = settle_decisions(
                stored.catalog, stored.accounts, stored.assignments, [period], stored.policy,
                stored.locks,
            )
            bill = bill_plan(
                con, stored.frames, stored.accounts, rules.lifecycles, plan, shards
            )
            final_ids = plan.filter(pl.col("status") == "final").select("account_id")
            draft_scope = plan.filter(pl.col("status") == "draft")
            recomputed_final = bill.charges.join(final_ids, on="account_id", how="semi")
            billed = read_billed_lines(con, period, stored.frames.currencies)
            adjustments = adjustment_lines(billed, recomputed_final)
            old_counters = read_counter_values(con, period)
            batch = ResultsBatch(
                run=RunRecord(
                    run_id=run_id, kind="reprocess", started_at=started, period=period,
                    rows_in=stored.assignments.height + bill.usage_events,
                    rows_out=bill.charges.height + adjustments.height,
                ),
                scope=draft_scope.select("account_id", "period", "status"),
                charges=bill.charges.join(draft_scope, on="account_id", how="semi"),
                invoices=bill.invoices.join(draft_scope, on="account_id", how="semi"),
                decisions=rules.decisions.join(
                    draft_scope.select("account_id", "period"),
                    on=["account_id", "period"],
                    how="semi",
                ),
                counters=bill.counters,
                parcels=bill.parcels,
                parcel_scope=bill.parcel_scope,
                adjustments=adjustments,
                locks=new_locks(rules.lifecycles, as_of) if as_of else pl.DataFrame(),
                counter_shift=_counter_shift(old_counters, bill.counters, period),
                lifecycles=rules.lifecycles,
            )
        except BaseException:
            con.close()
            raise
        changes, analyst = finish_run(con, db, batch, stored.frames, stored.policy)
    summary = RunSummary.of(
        run_id, "reprocess", plan, batch, changes, analyst, started,
        adjustments=adjustments.height, currencies=stored.frames.currencies,
    )
    publish_artifacts(summary, batch.charges)
    logger.info("reprocess %s done in %.1fs: %s", period, summary.seconds, changes)
    return summary
