"""The versions of each assignment over its life (SPEC §8.1, §8.2): which changes hold and from
when, the plan segments and quantity steps the charges price, and the early-termination verdicts.

The rules decide (`rules.plan_changes`, `rules.commitments`); this module only gathers their
situations and applies their verdicts, vectorized. Changes depend on the ones before them (the
version in effect on a change's `effective_from` sets its term grid and its price), so they are
settled in rounds: round r judges the r-th accepted change of every assignment at once, on the
distinct situations of that round. There are as many rounds as the most changes any one
assignment has (a handful), never one per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.catalog import Catalog, CatalogFrames, catalog_frames
from pipeline.contracts import (
    PLAN_CHANGE_SCHEMA,
    QUANTITY_STEP_SCHEMA,
    SEGMENT_SCHEMA,
)
from pipeline.periods import days_between_expr, first_boundary_index_expr, index_date_expr
from rules import commitments, plan_changes
from rules.plan_changes import (
    AT_TERM_END,
    CONSIDERED,
    STATUS_IN_EFFECT,
    STATUS_SUPERSEDED,
    TAKES_EFFECT,
    TIMING,
)
from rules.situations import date_text, fill_reason

# The decision rows this module adds, keyed by the rules' `seq`, with their own dates.
DECISION_COLUMNS = ["seq", "rule", "outcome", "reason", "effective_start", "effective_end"]
_DECISION_SCHEMA = {"seq": pl.UInt32, "rule": pl.Utf8, "outcome": pl.Utf8, "reason": pl.Utf8,
                    "effective_start": pl.Date, "effective_end": pl.Date}


@dataclass(frozen=True)
class Versions:
    """What the rules settled of the versions of every assignment."""

    changes: pl.DataFrame  # PLAN_CHANGE_SCHEMA: one verdict per change row
    segments: pl.DataFrame  # SEGMENT_SCHEMA: what the fees are charged on
    quantity_steps: pl.DataFrame  # QUANTITY_STEP_SCHEMA
    decisions: pl.DataFrame  # DECISION_COLUMNS: `plan change timing`, `early termination`


def _plan_prices(frames: CatalogFrames) -> pl.DataFrame:
    """fee_plan_id, term_months, `fee_units` (the plan's own fee in minor units, as the
    catalog frames carry it), minimum_terms, and the subscription's `policy` (plan_change)."""
    return frames.fee_plans.join(frames.subscriptions, on="subscription_id").select(
        "fee_plan_id", "term_months", pl.col("fee_minor").alias("fee_units"), "minimum_terms",
        pl.col("plan_change").alias("policy"),
    )


def _addon_policies(frames: CatalogFrames) -> pl.DataFrame:
    """addon_id -> its subscription's plan_change (immediate without subscription)."""
    return frames.addons.join(frames.subscriptions, on="subscription_id", how="left").select(
        "addon_id", pl.col("plan_change").fill_null("immediate").alias("policy"))


def _yearly(plan: str, qty: str, prices: pl.DataFrame) -> pl.Expr:
    """`fee × quantity × 12 / term_months` of the plan in column `plan` (0 without a plan)."""
    fee = pl.col(plan).replace_strict(
        prices.get_column("fee_plan_id"), prices.get_column("fee_units"), default=0,
        return_dtype=pl.Int64)
    months = pl.col(plan).replace_strict(
        prices.get_column("fee_plan_id"), prices.get_column("term_months"), default=12,
        return_dtype=pl.Int64)
    return (fee.cast(pl.Int128) * pl.col(qty) * 12 // months).cast(pl.Int64).fill_null(0)


def _next_boundary(grid_start: pl.Expr, day: pl.Expr, months: pl.Expr) -> pl.Expr:
    """The first term boundary on or after `day` of a plan whose terms start at `grid_start`
    (SPEC §4: boundaries on the billing day, the first on or after the plan's start)."""
    d = pl.col("billing_day").cast(pl.Int32)
    b0 = first_boundary_index_expr(grid_start, d)
    f = first_boundary_index_expr(day, d)
    m = months.cast(pl.Int32)
    k = pl.max_horizontal(pl.lit(0, pl.Int32), -((b0 - f) // m))
    return index_date_expr(b0 + k * m, d)


def settle_versions(catalog: Catalog, work: pl.DataFrame, changes: pl.DataFrame) -> Versions:
    """Settle every change of `changes` (CHANGE_SCHEMA) against the settled life cycles of
    `work` (the rules' work frame), and cut each billable life into segments and steps."""
    frames = catalog_frames(catalog)
    prices = _plan_prices(frames)
    life = work.select(
        "seq", "assignment_id", "account_id", "addon_id", "currency", "start_date",
        "eff_start", "eff_end", "takes_part", "billable", "end_reason", "billing_day",
        pl.col("fee_plan_id").alias("base_plan"), pl.col("quantity").fill_null(1).alias("base_qty"),
    )
    verdicts, in_effect = _settle_changes(catalog, life, changes, prices,
                                          _addon_policies(frames))
    segments, steps = _segments(life, in_effect)
    segments, ends = _early_terminations(segments, life, prices)
    return Versions(
        changes=verdicts.select(list(PLAN_CHANGE_SCHEMA)).cast(PLAN_CHANGE_SCHEMA).sort(
            "assignment_id", "effective_from"),
        segments=segments.select(list(SEGMENT_SCHEMA)).cast(SEGMENT_SCHEMA),
        quantity_steps=steps.select(list(QUANTITY_STEP_SCHEMA)).cast(QUANTITY_STEP_SCHEMA),
        decisions=pl.concat([
            verdicts.select(
                "seq", pl.lit(TIMING).alias("rule"), pl.col("status").alias("outcome"),
                "reason", pl.col("takes_effect_on").alias("effective_start"),
                pl.lit(None, pl.Date).alias("effective_end"),
            ).cast(_DECISION_SCHEMA),
            ends.cast(_DECISION_SCHEMA),
        ]),
    )


def _settle_changes(
    catalog: Catalog, life: pl.DataFrame, changes: pl.DataFrame, prices: pl.DataFrame,
    policies: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one verdict per change with status, takes_effect_on and reason; the changes in
    effect: seq, on, fee_plan_id, quantity)."""
    empty_effect = pl.DataFrame(schema={"seq": pl.UInt32, "on": pl.Date, "fee_plan_id": pl.Utf8,
                                        "quantity": pl.Int64})
    ch = changes.select(
        "assignment_id", "effective_from", "fee_plan_id", pl.col("quantity").fill_null(1)
    ).join(life, on="assignment_id", how="inner").sort("seq", "effective_from")
    ch = ch.with_row_index("cid")
    if ch.height == 0:
        return ch.with_columns(
            pl.lit(None, pl.Date).alias("takes_effect_on"), pl.lit(None, pl.Utf8).alias("status"),
            pl.lit(None, pl.Utf8).alias("reason")), empty_effect

    # 1. scope: is the change within a life that can change?
    scope = plan_changes.judge(catalog, ch.select(
        "cid",
        pl.col("takes_part").alias("eligible"),
        (pl.col("effective_from") < pl.col("start_date")).alias("before_start"),
        pl.col("eff_end").is_null().alias("open"),
        days_between_expr(pl.col("effective_from"), pl.col("eff_end")).fill_null(0)
        .alias("days_before_end"),
    ), ["eligible", "before_start", "open", "days_before_end"], "change_scope")
    final = [scope.filter(pl.col("outcome") != CONSIDERED).select(
        "cid", pl.lit(None, pl.Date).alias("takes_effect_on"),
        pl.col("outcome").alias("status"), "reason")]
    considered = ch.join(scope.filter(pl.col("outcome") == CONSIDERED).select("cid"), on="cid")

    # 2. refusal: the change's fee plan must pass §3's checks.
    plan = plan_changes.judge(catalog, considered.select(
        "cid", pl.col("addon_id").fill_null("").alias("addon"),
        pl.col("fee_plan_id").fill_null("").alias("fee_plan"), "currency",
    ), ["addon", "fee_plan", "currency"], "change_plan")
    final.append(plan.filter(pl.col("outcome") != plan_changes.ACCEPTED).select(
        "cid", pl.lit(None, pl.Date).alias("takes_effect_on"),
        pl.col("outcome").alias("status"), "reason"))
    accepted = considered.join(
        plan.filter(pl.col("outcome") == plan_changes.ACCEPTED).select("cid"), on="cid"
    ).with_columns(pl.col("cid").rank("ordinal").over("seq").cast(pl.Int64).alias("round"))

    # 3. rounds: supersession, then the timing of the round's change on the version in effect.
    state = accepted.select("seq").unique().join(
        life.select("seq", pl.col("base_plan").alias("cur_plan"),
                    pl.col("base_qty").alias("cur_qty"), pl.col("start_date").alias("cur_grid")),
        on="seq",
    ).with_columns(
        pl.lit(None, pl.UInt32).alias("p_cid"), pl.lit(None, pl.Date).alias("p_on"),
        pl.lit(None, pl.Utf8).alias("p_plan"), pl.lit(None, pl.Int64).alias("p_qty"),
        pl.lit(None, pl.Date).alias("p_from"),
    )
    took_effect: list[pl.DataFrame] = []
    timed: list[pl.DataFrame] = []
    rounds = int(accepted.get_column("round").max() or 0)
    for r in range(1, rounds + 1):
        now = accepted.filter(pl.col("round") == r).join(state, on="seq")
        waiting = now.filter(pl.col("p_cid").is_not_null())
        pend = plan_changes.judge(catalog, waiting.select(
            "seq", "p_cid", "p_on", "effective_from",
            days_between_expr(pl.col("effective_from"), pl.col("p_on")).alias("pending_in_days"),
        ), ["pending_in_days"], "change_pending")
        final.append(pend.filter(pl.col("outcome") == STATUS_SUPERSEDED).select(
            pl.col("p_cid").alias("cid"), pl.lit(None, pl.Date).alias("takes_effect_on"),
            pl.col("outcome").alias("status"),
            fill_reason(pl.col("reason"), {"next": date_text(pl.col("effective_from")),
                                     "on": date_text(pl.col("p_on"))})))
        first = pend.filter(pl.col("outcome") == TAKES_EFFECT).select("seq")
        took_effect.append(state.join(first, on="seq").select(
            "seq", pl.col("p_cid").alias("cid"), pl.col("p_on").alias("on"),
            pl.col("p_plan").alias("fee_plan_id"), pl.col("p_qty").alias("quantity")))
        moved = pl.col("seq").is_in(first.get_column("seq").implode())
        state = state.with_columns(
            pl.when(moved & pl.col("p_plan").ne_missing(pl.col("cur_plan")))
            .then(pl.col("p_on")).otherwise(pl.col("cur_grid")).alias("cur_grid"),
            pl.when(moved).then(pl.col("p_plan")).otherwise(pl.col("cur_plan")).alias("cur_plan"),
            pl.when(moved).then(pl.col("p_qty")).otherwise(pl.col("cur_qty")).alias("cur_qty"),
        )
        now = accepted.filter(pl.col("round") == r).join(
            state.select("seq", "cur_plan", "cur_qty", "cur_grid"), on="seq"
        ).join(policies, on="addon_id", how="left").join(
            prices.select("fee_plan_id", pl.col("term_months").alias("cur_months")),
            left_on="cur_plan", right_on="fee_plan_id", how="left",
        )
        timing = plan_changes.judge(catalog, now.select(
            "cid", "seq", "effective_from", "fee_plan_id", "quantity", "cur_grid", "cur_months",
            "billing_day",
            pl.col("policy").fill_null("immediate"),
            (pl.col("effective_from") == pl.col("start_date")).alias("at_start"),
            _yearly("cur_plan", "cur_qty", prices).alias("old_yearly"),
            _yearly("fee_plan_id", "quantity", prices).alias("new_yearly"),
        ), ["policy", "at_start", "old_yearly", "new_yearly"], "change_timing")
        timing = timing.with_columns(
            pl.when(pl.col("outcome") == AT_TERM_END)
            .then(_next_boundary(pl.col("cur_grid"), pl.col("effective_from"),
                                 pl.col("cur_months").fill_null(1)))
            .otherwise(pl.col("effective_from")).alias("on"),
        )
        timed.append(timing.select("cid", "on", pl.col("reason").alias("timing_reason")))
        # The round's change waits for its day; the other assignments keep what waited.
        pending = ["p_cid", "p_on", "p_plan", "p_qty", "p_from"]
        state = state.join(
            timing.select("seq", pl.col("cid").alias("p_cid"), pl.col("on").alias("p_on"),
                          pl.col("fee_plan_id").alias("p_plan"), pl.col("quantity").alias("p_qty"),
                          pl.col("effective_from").alias("p_from")),
            on="seq", how="left", suffix="_new",
        ).with_columns(
            pl.when(pl.col("p_cid_new").is_not_null()).then(pl.col(f"{name}_new"))
            .otherwise(pl.col(name)).alias(name)
            for name in pending
        ).drop(f"{name}_new" for name in pending)
    took_effect.append(state.filter(pl.col("p_cid").is_not_null()).select(
        "seq", pl.col("p_cid").alias("cid"), pl.col("p_on").alias("on"),
        pl.col("p_plan").alias("fee_plan_id"), pl.col("p_qty").alias("quantity")))

    # 4. the add-on's end: a change that would take effect on or after it is not in effect.
    candidates = pl.concat(took_effect).join(life.select("seq", "eff_end"), on="seq")
    ended = plan_changes.judge(catalog, candidates.with_columns(
        pl.col("eff_end").is_null().alias("open"),
        days_between_expr(pl.col("on"), pl.col("eff_end")).fill_null(0).alias("days_before_end"),
    ), ["open", "days_before_end"], "change_end")
    final.append(ended.select(
        "cid", pl.when(pl.col("outcome") == STATUS_IN_EFFECT).then(pl.col("on"))
        .alias("takes_effect_on"), pl.col("outcome").alias("status"), "reason"))
    in_effect = ended.filter(pl.col("outcome") == STATUS_IN_EFFECT).select(
        "seq", "on", "fee_plan_id", "quantity")

    timing_reasons = pl.concat(timed) if timed else pl.DataFrame(
        schema={"cid": pl.UInt32, "on": pl.Date, "timing_reason": pl.Utf8})
    told = pl.concat(final).join(timing_reasons, on="cid", how="left")
    verdicts = ch.join(told, on="cid", how="left").with_columns(
        pl.format(
            "change from {} to fee plan {} x{}: {}", date_text(pl.col("effective_from")),
            pl.col("fee_plan_id").fill_null("-"), "quantity",
            pl.when(pl.col("timing_reason").is_not_null()
                    & (pl.col("status") != STATUS_SUPERSEDED))
            .then(pl.format("{}; {}", "timing_reason", "reason"))
            .otherwise(pl.col("reason")),
        ).alias("reason")
    ).with_columns(
        fill_reason(pl.col("reason"), {
            "on": date_text(pl.coalesce("takes_effect_on", "on")),
            "from": date_text(pl.col("effective_from")), "start": date_text(pl.col("start_date")),
            "end": date_text(pl.col("eff_end")),
        })
    )
    return verdicts, in_effect


def _segments(life: pl.DataFrame, in_effect: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The plan segments and quantity steps of every billable life: the base version from the
    start, then each change in effect from its day; a version with no day of its own is gone.

    A life without a change in effect (nearly all) is one segment at one quantity, built
    directly; only the others are cut, and only segments whose quantity varies get steps.
    """
    billable = life.filter(pl.col("billable") & pl.col("eff_start").is_not_null())
    changed = in_effect.join(billable.select("seq"), on="seq").select("seq").unique()
    plain = billable.join(changed, on="seq", how="anti").select(
        "seq", pl.lit(0, pl.Int64).alias("seg_no"), "assignment_id", "account_id", "addon_id",
        pl.col("base_plan").alias("fee_plan_id"), "eff_start", "eff_end",
        pl.col("base_qty").alias("quantity"), pl.lit(True).alias("promotions"),
        pl.lit(None, pl.Utf8).alias("next_plan"), pl.col("end_reason").alias("cause"),
    )
    cut = billable.join(changed, on="seq")
    versions = pl.concat([
        cut.select("seq", pl.lit(0, pl.Int8).alias("kind"), pl.col("eff_start").alias("on"),
                   pl.col("base_plan").alias("fee_plan_id"), pl.col("base_qty").alias("quantity")),
        in_effect.join(changed, on="seq").select(
            "seq", pl.lit(1, pl.Int8).alias("kind"), "on", "fee_plan_id", "quantity"),
    ]).join(
        cut.select("seq", "assignment_id", "account_id", "addon_id", "eff_end", "end_reason"),
        on="seq").sort("seq", "on", "kind")
    steps = versions.with_columns(
        pl.col("on").shift(-1).over("seq").alias("next_on"),
    ).with_columns(
        pl.coalesce("next_on", "eff_end").alias("until")
    ).filter(pl.col("until").is_null() | (pl.col("on") < pl.col("until")))
    steps = steps.with_columns(
        (pl.col("fee_plan_id").ne_missing(pl.col("fee_plan_id").shift(1).over("seq"))
         .fill_null(True)).cast(pl.Int64).cum_sum().over("seq").sub(1).alias("seg_no")
    )
    segments = steps.group_by("seq", "seg_no", maintain_order=True).agg(
        pl.col("assignment_id", "account_id", "addon_id", "fee_plan_id", "end_reason").first(),
        pl.col("on").min().alias("eff_start"),
        pl.col("until").last().alias("eff_end"),
        pl.when(pl.col("quantity").n_unique() == 1).then(pl.col("quantity").first())
        .alias("quantity"),
    ).sort("seq", "seg_no").with_columns(
        # SPEC §8.1: a plan the assignment has had before, for a day at least, has no promotion.
        (pl.col("seg_no") == pl.col("seg_no").min().over("seq", "fee_plan_id"))
        .alias("promotions"),
        pl.col("fee_plan_id").shift(-1).over("seq").alias("next_plan"),
    ).with_columns(
        pl.when(pl.col("seg_no") < pl.col("seg_no").max().over("seq"))
        .then(pl.lit("plan_change")).otherwise(pl.col("end_reason")).alias("cause"),
    )
    varying = segments.filter(pl.col("quantity").is_null()).select("seq", "seg_no")
    steps = steps.join(varying, on=["seq", "seg_no"]).select(
        "assignment_id", "seg_no", pl.col("on").alias("q_from"), pl.col("until").alias("q_until"),
        "quantity")
    segments = pl.concat([plain, segments.select(plain.columns)]).sort("seq", "seg_no")
    return segments, steps


def _early_terminations(
    segments: pl.DataFrame, life: pl.DataFrame, prices: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Segments with `owes_termination_fee`, and the `early termination` decision rows."""
    committed = prices.filter(pl.col("minimum_terms").is_not_null())
    ends = pl.col("eff_end").is_not_null() & pl.col("fee_plan_id").is_in(
        committed.get_column("fee_plan_id").implode())
    work = segments.filter(ends).join(life.select("seq", "billing_day"), on="seq").join(
        committed.select("fee_plan_id", "term_months", "minimum_terms"), on="fee_plan_id",
        how="left",
    ).join(
        committed.select(pl.col("fee_plan_id").alias("next_plan"),
                         pl.lit(True).alias("next_committed")), on="next_plan", how="left",
    )
    d = pl.col("billing_day").cast(pl.Int32)
    b0 = first_boundary_index_expr(pl.col("eff_start"), d)
    partial = (pl.col("eff_start") != index_date_expr(b0, d)).cast(pl.Int32)
    ending = work.filter(pl.col("minimum_terms").is_not_null() & pl.col("eff_end").is_not_null())
    ending = ending.with_columns(
        index_date_expr(b0 + (pl.col("minimum_terms").cast(pl.Int32) - partial)
                        * pl.col("term_months").cast(pl.Int32), d).alias("met_on"),
    ).with_columns(
        days_between_expr(pl.col("eff_end"), pl.col("met_on")).alias("days_short"),
        pl.col("next_committed").fill_null(False),
        pl.col("cause").fill_null("until"),
    )
    judged = commitments.judge_ends(ending.select(
        "seq", "seg_no", "fee_plan_id", "next_plan", "eff_end", "met_on", "minimum_terms",
        "cause", "days_short", "next_committed"))
    owes = judged.filter(pl.col("outcome") == commitments.CHARGED).select(
        "seq", "seg_no", pl.lit(True).alias("owes_termination_fee"))
    if owes.height:
        segments = segments.join(owes, on=["seq", "seg_no"], how="left").with_columns(
            pl.col("owes_termination_fee").fill_null(False))
    else:
        segments = segments.with_columns(pl.lit(False).alias("owes_termination_fee"))
    rows = judged.filter(pl.col("outcome") != commitments.KEPT).select(
        "seq", pl.lit(commitments.EARLY_TERMINATION).alias("rule"), "outcome",
        fill_reason(pl.col("reason"), {
            "plan": pl.col("fee_plan_id"), "end": date_text(pl.col("eff_end")),
            "met": date_text(pl.col("met_on")), "terms": pl.col("minimum_terms").cast(pl.Utf8),
            "next_plan": pl.col("next_plan").fill_null(""),
        }),
        pl.col("eff_end").alias("effective_start"), pl.lit(None, pl.Date).alias("effective_end"),
    )
    return segments, rows
