"""The rules coordinator (SPEC §3): settle every assignment once, then state it for each period.

Order of settlement, each step judged by its ruleset on distinct situations:
1. lifecycle: the activation-date lock fixes `start_date`;
2. eligibility: the checks at activation;
3. lifecycle: account closure and main product changes cut the eligible add-ons;
4. eligibility: once-per-account competitions between overlapping eligible add-ons;
5. conflicts: same-priority, shared-entry pairs among the add-ons still eligible;
6. lifecycle: pending, active or expired in each requested period.
Pure: frames in, frames out; no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from pipeline.catalog import Catalog
from pipeline.contracts import CHANGE_SCHEMA, DECISIONS_SCHEMA, LIFECYCLE_SCHEMA, OPEN_END
from pipeline.periods import period_end_expr, period_start_expr, shift_period
from rules import commitments, conflicts, eligibility, lifecycle, plan_changes
from rules.situations import (
    account_history,
    account_profile,
    activation_context,
    date_text,
    fill_reason,
    later_rows,
    overlapping_pairs,
    period_positions,
    settle_first_come,
    with_order,
)
from rules.versions import Versions, settle_versions

# The life cycle frame the charges read (one declaration, in pipeline.contracts).
LIFECYCLES_SCHEMA = LIFECYCLE_SCHEMA
# Which rule wins when several ends fall on one day: the customer's own end date first.
END_ORDER = ("until", "account_closed", "main_product_change", "replaced")
VERDICT_COLUMNS = ["seq", "rule", "outcome", "reason"]
# The rules that can make a decision row, in the order an analyst reads them for one add-on.
DECISION_RULES = (
    lifecycle.LOCKED, eligibility.AVAILABLE, eligibility.NOT_CLOSED, eligibility.FEE_PLAN,
    eligibility.CURRENCY, eligibility.ONCE_PER_ACCOUNT, eligibility.ELIGIBLE, conflicts.REJECTED,
    lifecycle.ACCOUNT_CLOSED, lifecycle.PRODUCT_CHANGE, conflicts.REPLACED, plan_changes.TIMING,
    commitments.EARLY_TERMINATION, lifecycle.PENDING, lifecycle.ACTIVE, lifecycle.EXPIRED,
)
# Rules whose decision rows carry their own dates (SPEC §8.5), not the period's state.
DATED_RULES = (plan_changes.TIMING, commitments.EARLY_TERMINATION)
Policy = Literal["replace", "reject"]


@dataclass(frozen=True)
class RulesResult:
    """What the rules settled: decision rows per period, and one life cycle per assignment."""

    decisions: pl.DataFrame
    lifecycles: pl.DataFrame


def _rows(work: pl.DataFrame, flag: str, *columns: str | pl.Expr) -> pl.DataFrame:
    """`columns` of the work rows where boolean column `flag` holds (narrow before filtering)."""
    return work.select(*columns, pl.col(flag).alias("_keep")).filter("_keep").drop("_keep")


def _activation_dates(
    catalog: Catalog, assignments: pl.DataFrame, locks: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The work frame (in assignment order, keyed by `seq`) with `start_date` after the lock,
    and the lock decision rows."""
    work = with_order(
        assignments.select(
            "assignment_id", "account_id", "addon_id", "fee_plan_id", "quantity", "assigned_at",
            "end_date",
            pl.col("start_date").alias("requested_start"),
            pl.col("addon_id").fill_null("").alias("addon"),
            pl.col("fee_plan_id").fill_null("").alias("fee_plan"),
        )
    )
    empty = pl.DataFrame(schema={"seq": pl.UInt32, "rule": pl.Utf8, "outcome": pl.Utf8,
                                 "reason": pl.Utf8})
    if locks is None or locks.height == 0:
        return work.with_columns(pl.col("requested_start").alias("start_date")), empty
    held = work.select("seq", "assignment_id", "requested_start").join(
        locks.select("assignment_id", pl.col("locked_start").cast(pl.Date)), on="assignment_id"
    )
    verdicts = lifecycle.judge_locks(
        catalog, held.select("seq", "requested_start", "locked_start")
    )
    refused = verdicts.filter(pl.col("outcome") == "locked").select(VERDICT_COLUMNS)
    kept = held.join(refused, on="seq", how="semi").select("seq", "locked_start")
    work = work.join(kept, on="seq", how="left", maintain_order="left").with_columns(
        pl.coalesce("locked_start", "requested_start").alias("start_date")
    ).drop("locked_start")
    return work, refused


def _flag(work: pl.DataFrame, keys: pl.DataFrame, name: str) -> pl.DataFrame:
    """Add boolean column `name`: the row's `seq` is among those of `keys`."""
    return work.with_columns(pl.col("seq").is_in(keys.get_column("seq").implode()).alias(name))


def _natural_ends(catalog: Catalog, work: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """Add closure_end/closure_reason and change_end/change_reason for the eligible ones."""
    ok = _rows(work, "basic_ok", "seq", "addon", "start_date", "end_date", "close_date")
    closing = ok.filter(
        (pl.col("close_date") > pl.col("start_date"))
        & (pl.col("close_date") < pl.col("end_date").fill_null(OPEN_END))
    )
    closed = lifecycle.judge_closures(catalog, closing.select("seq", "addon"))
    closed = closed.filter(pl.col("outcome") == "ends").join(
        closing.select("seq", "close_date"), on="seq"
    ).select(
        "seq", pl.col("close_date").alias("closure_end"), pl.col("reason").alias("closure_reason")
    )
    work = work.join(closed, on="seq", how="left", maintain_order="left")
    cut = _rows(work, "basic_ok", "seq", "account_id", "addon", "start_date",
                pl.min_horizontal("end_date", "closure_end").alias("end_cut"))
    changed = lifecycle.judge_product_changes(catalog, later_rows(cut, history))
    first_end = (
        changed.filter(pl.col("outcome") == "ends")
        .sort("seq", "change_date")
        .group_by("seq")
        .agg(pl.col("change_date").first().alias("change_end"),
             pl.col("reason").first().alias("change_reason"))
    )
    return work.join(first_end, on="seq", how="left", maintain_order="left").with_columns(
        pl.min_horizontal("end_date", "closure_end", "change_end").alias("end_cut")
    )


def _first_come(
    work: pl.DataFrame, verdicts: pl.DataFrame, outcome: str, placeholder: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Settle pair verdicts where the later one loses: (losers, their decision rows)."""
    edges = verdicts.filter(pl.col("outcome") == outcome)
    losers = settle_first_come(edges.select("first_seq", "later_seq"))
    ids = work.get_column("assignment_id")
    rows = losers.join(
        edges.select(
            pl.col("first_seq").alias("winner_seq"), pl.col("later_seq").alias("seq"),
            "rule", "outcome", "reason",
        ),
        on=["seq", "winner_seq"],
    ).with_columns(
        fill_reason(pl.col("reason"), {placeholder: pl.lit(ids).gather(pl.col("winner_seq"))})
    )
    return losers, rows.select(VERDICT_COLUMNS)


def _replacements(work: pl.DataFrame, verdicts: pl.DataFrame) -> pl.DataFrame:
    """Per replaced assignment: replaced_end (the earliest later start) and its reason."""
    ids = work.get_column("assignment_id")
    replaced = verdicts.filter(pl.col("outcome") == "replaced").sort("later_start", "later_seq")
    return (
        replaced.group_by("first_seq")
        .agg(pl.all().first())
        .select(
            pl.col("first_seq").alias("seq"),
            pl.col("later_start").alias("replaced_end"),
            fill_reason(pl.col("reason"), {
                "by": pl.lit(ids).gather(pl.col("later_seq")),
                "end": date_text(pl.col("later_start")),
            }).alias("replaced_reason"),
        )
    )


def _settled_ends(work: pl.DataFrame) -> pl.DataFrame:
    """Add eff_start, eff_end, end_reason and billable from the candidate ends."""
    candidates = {
        "until": "end_date",
        "account_closed": "closure_end",
        "main_product_change": "change_end",
        "replaced": "replaced_end",
    }
    earliest = pl.min_horizontal(*candidates.values())
    reason = pl.lit(None, pl.Utf8)
    for name in reversed(END_ORDER):
        reason = pl.when(pl.col(candidates[name]) == earliest).then(pl.lit(name)).otherwise(reason)
    takes_part = pl.col("eligible") & ~pl.col("rejected")
    eff_end = pl.when(earliest.is_not_null()).then(pl.max_horizontal(earliest, "start_date"))
    return work.with_columns(
        pl.col("start_date").alias("eff_start"),
        pl.when(takes_part).then(eff_end).otherwise(pl.col("start_date")).alias("eff_end"),
        pl.when(takes_part).then(reason).otherwise(None).alias("end_reason"),
        (takes_part & (earliest.is_null() | (earliest > pl.col("start_date")))).alias("billable"),
        takes_part.alias("takes_part"),
    )


def _end_rows(work: pl.DataFrame) -> pl.DataFrame:
    """Decision rows of the rule that ended each add-on (closure, product change, replacement).

    A closure or product-change row takes the add-on's state in the period as its outcome.
    """
    taking_part = _rows(work, "takes_part", "seq", "end_reason", "eff_end", "closure_reason",
                        "change_reason", "replaced_reason")
    parts = [
        taking_part.filter(pl.col("end_reason") == "account_closed").select(
            "seq", pl.lit(lifecycle.ACCOUNT_CLOSED).alias("rule"),
            pl.lit(None, pl.Utf8).alias("outcome"), pl.col("closure_reason").alias("reason"),
            "eff_end",
        ),
        taking_part.filter(pl.col("end_reason") == "main_product_change").select(
            "seq", pl.lit(lifecycle.PRODUCT_CHANGE).alias("rule"),
            pl.lit(None, pl.Utf8).alias("outcome"), pl.col("change_reason").alias("reason"),
            "eff_end",
        ),
        taking_part.filter(pl.col("end_reason") == "replaced").select(
            "seq", pl.lit(conflicts.REPLACED).alias("rule"),
            pl.lit("replaced").alias("outcome"), pl.col("replaced_reason").alias("reason"),
            "eff_end",
        ),
    ]
    ends = pl.concat(parts)
    end = {"end": date_text(pl.col("eff_end"))}
    return ends.with_columns(fill_reason(pl.col("reason"), end)).select(
        VERDICT_COLUMNS
    )


def _settle(
    catalog: Catalog, history: pl.DataFrame, assignments: pl.DataFrame, policy: Policy,
    locks: pl.DataFrame | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Settle every assignment once: (work frame with its life cycle, period-free rows)."""
    work, lock_rows = _activation_dates(catalog, assignments, locks)
    work = activation_context(work, history, account_profile(history))
    checks = eligibility.judge_activations(
        catalog, work.select("seq", *eligibility.ACTIVATION_KEYS)
    )
    failed = checks.filter(pl.col("outcome") == "ineligible")
    work = _flag(work, failed, "failed").with_columns((~pl.col("failed")).alias("basic_ok"))
    work = _natural_ends(catalog, work, history)

    pairs = overlapping_pairs(
        _rows(work, "basic_ok", "seq", "acct", "addon", "start_date", "end_cut")
    )
    competitions = eligibility.judge_competitions(catalog, pairs)
    once_losers, once_rows = _first_come(work, competitions, "ineligible", "winner")
    work = _flag(work, once_losers, "lost_once")
    work = work.with_columns((pl.col("basic_ok") & ~pl.col("lost_once")).alias("eligible"))

    still = _rows(work, "eligible", "seq")
    contest = pairs.join(still, left_on="first_seq", right_on="seq", how="semi").join(
        still, left_on="later_seq", right_on="seq", how="semi"
    )
    verdicts = conflicts.judge_pairs(catalog, contest, policy)
    rejected, rejected_rows = _first_come(work, verdicts, "rejected", "by")
    work = _flag(work, rejected, "rejected")
    work = work.join(_replacements(work, verdicts), on="seq", how="left", maintain_order="left")
    work = _settled_ends(work)

    passed = checks.filter(pl.col("outcome") == "eligible").join(
        _rows(work, "eligible", "seq"), on="seq", how="semi"
    )
    rows = pl.concat(
        [
            lock_rows.select(VERDICT_COLUMNS),
            failed.select(VERDICT_COLUMNS),
            once_rows,
            passed.select(VERDICT_COLUMNS),
            rejected_rows,
            _end_rows(work),
        ]
    )
    return work, rows


def still_told(period: str) -> pl.Expr:
    """True for the assignments whose rows a run stores in `period` (docs/RULES.md, "Stored
    rows"): those whose life does not end before the previous period starts.

    An assignment's end is `eff_end` (open: never), and for one that never takes part its
    start (`eff_end` is set to it). Its rows are stored in every period up to the first one
    that starts on or after that end: there it is expired, or past its start, for the first
    time. Later periods would only repeat those rows, word for word: `billrun explain` reads
    the latest rows of each assignment at or before the period it shows.
    """
    previous_start = period_start_expr(shift_period(period, -1), pl.col("billing_day"))
    return pl.col("eff_end").is_null() | (pl.col("eff_end") > previous_start)


def _period_rows(
    catalog: Catalog, work: pl.DataFrame, static: pl.DataFrame, period: str,
    stored_only: bool = False,
) -> pl.DataFrame:
    """Every decision row of one period, keyed by seq: the settled rows, plus the state.

    The period's bounds are those of `pipeline.periods.account_periods` (the billing day of the
    account's earliest row), computed on the billing day already joined to each assignment.
    `stored_only`: only the rows of the assignments `still_told` in the period.
    """
    if stored_only:
        told = work.select("seq", still_told(period).alias("_told")).filter("_told")
        work = work.join(told.select("seq"), on="seq", how="semi", maintain_order="left")
        static = static.join(told.select("seq"), on="seq", how="semi", maintain_order="left")
    frame = _rows(
        work, "takes_part", "seq", "eff_start", "eff_end",
        period_start_expr(period, pl.col("billing_day")).alias("period_start"),
        period_end_expr(period, pl.col("billing_day")).alias("period_end"),
    )
    states = lifecycle.judge_periods(catalog, period_positions(frame))
    active = pl.col("outcome") == "active"
    states = states.with_columns(
        pl.when(active).then(pl.max_horizontal("eff_start", "period_start"))
        .alias("effective_start"),
        pl.when(active).then(pl.min_horizontal("eff_end", "period_end")).alias("effective_end"),
    ).with_columns(
        fill_reason(pl.col("reason"), {
            "start": date_text(pl.col("eff_start")),
            "end": date_text(pl.col("eff_end")),
            "from": date_text(pl.col("effective_start")),
            "until": date_text(pl.col("effective_end")),
        })
    )
    state_cols = states.select(
        "seq", pl.col("outcome").alias("state"), "effective_start", "effective_end"
    )
    dated = pl.col("rule").is_in(DATED_RULES)
    settled = static.join(state_cols, on="seq", how="left").select(
        "seq", "rule", pl.coalesce("outcome", "state").alias("outcome"), "reason",
        pl.when(dated).then("fixed_start").otherwise("effective_start").alias("effective_start"),
        pl.when(dated).then("fixed_end").otherwise("effective_end").alias("effective_end"),
    )
    lived = states.select(
        "seq", "rule", "outcome", "reason", "effective_start", "effective_end"
    )
    # Stable order whatever the input order: assignment order, then the order rules are read in.
    return pl.concat([settled, lived]).sort(
        "seq", pl.col("rule").cast(pl.Enum(DECISION_RULES)), "effective_start", "reason",
        nulls_last=True,
    )


@dataclass(frozen=True)
class Settlement:
    """Every assignment settled once, before any period: what `state_periods` states per period.

    `work` is the rules' work frame (one row per assignment, in seq order), `static` the
    period-free decision rows keyed by seq. Settling does not depend on the period, so a caller
    that bills several periods of the same inputs may settle once (`BillInputs.settlement`).
    """

    work: pl.DataFrame
    static: pl.DataFrame
    versions: Versions  # SPEC §8.1-§8.2: changes, plan segments, quantity steps

    @property
    def lifecycles(self) -> pl.DataFrame:
        """One settled life cycle per assignment (LIFECYCLE_SCHEMA), in assignment order."""
        return self.work.select(list(LIFECYCLES_SCHEMA)).cast(LIFECYCLES_SCHEMA)

    def of_accounts(self, ids: pl.DataFrame) -> Settlement:
        """The settlement of the accounts of `ids` (`account_id`) alone: what settling only
        their assignments gives, since every rule judges one account's assignments together
        and never across accounts. `seq` is a row index (`state_periods` gathers by it), so
        the kept rows are numbered again from 0, in the same order."""
        kept = self.work.join(ids.select("account_id"), on="account_id", how="semi",
                              maintain_order="left")
        renumber = kept.select("seq", pl.int_range(pl.len(), dtype=pl.UInt32).alias("_new"))

        def renumbered(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.join(renumber, on="seq", how="inner", maintain_order="left").with_columns(
                pl.col("_new").alias("seq")).drop("_new")

        assignments = kept.select("assignment_id")
        versions = self.versions
        return Settlement(
            work=renumbered(kept),
            static=renumbered(self.static),
            versions=Versions(
                changes=versions.changes.join(assignments, on="assignment_id", how="semi",
                                              maintain_order="left"),
                segments=versions.segments.join(assignments, on="assignment_id", how="semi",
                                                maintain_order="left"),
                quantity_steps=versions.quantity_steps.join(
                    assignments, on="assignment_id", how="semi", maintain_order="left"),
                decisions=renumbered(versions.decisions),
            ),
        )

    def as_frames(self) -> dict[str, pl.DataFrame]:
        """Every frame of the settlement by name (to stage it, e.g. as Parquet files)."""
        return {
            "work": self.work, "static": self.static,
            "plan_changes": self.versions.changes, "segments": self.versions.segments,
            "quantity_steps": self.versions.quantity_steps,
            "version_decisions": self.versions.decisions,
        }

    @classmethod
    def of_frames(cls, frames: dict[str, pl.DataFrame]) -> Settlement:
        """The settlement `as_frames` gave (the same frames, in the same row order)."""
        return cls(
            work=frames["work"], static=frames["static"],
            versions=Versions(
                changes=frames["plan_changes"], segments=frames["segments"],
                quantity_steps=frames["quantity_steps"],
                decisions=frames["version_decisions"],
            ),
        )


# The work columns that stating a period reads (the rest only serve the settlement).
_STATE_COLUMNS = ["seq", "assignment_id", "account_id", "takes_part", "eff_start", "eff_end",
                  "billing_day"]


def settle(
    catalog: Catalog,
    accounts: pl.DataFrame,
    assignments: pl.DataFrame,
    policy: Policy,
    locks: pl.DataFrame | None = None,
    changes: pl.DataFrame | None = None,
) -> Settlement:
    """Settle eligibility, ends and conflicts (SPEC §3) of every assignment, once, then its
    changes of fee plan and quantity (SPEC §8.1) and commitments (§8.2)."""
    if policy not in ("replace", "reject"):
        raise ValueError(f"conflict policy {policy!r} is not replace or reject")
    if assignments.get_column("assignment_id").n_unique() != assignments.height:
        raise ValueError("assignments hold more than one row for an assignment_id")
    history = account_history(accounts)
    work, static = _settle(catalog, history, assignments, policy, locks)
    if not work.get_column("seq").equals(pl.Series("seq", range(work.height), pl.UInt32)):
        raise RuntimeError("rules work frame is not in seq order")  # seq is used as row index
    versions = settle_versions(
        catalog, work, changes if changes is not None else pl.DataFrame(schema=CHANGE_SCHEMA)
    )
    static = pl.concat([
        static.with_columns(pl.lit(None, pl.Date).alias("fixed_start"),
                            pl.lit(None, pl.Date).alias("fixed_end")),
        versions.decisions.rename({"effective_start": "fixed_start",
                                   "effective_end": "fixed_end"}),
    ])
    keep = dict.fromkeys([*_STATE_COLUMNS, *LIFECYCLES_SCHEMA])
    return Settlement(work=work.select(list(keep)), static=static, versions=versions)


def state_periods(
    catalog: Catalog, settlement: Settlement, periods: list[str], *, stored_only: bool = False
) -> pl.DataFrame:
    """The decision rows (DECISIONS_SCHEMA) of each of `periods`: the settled rows and the
    state of each assignment in the period (`stored_only`: see `decide`)."""
    work, static = settlement.work, settlement.static
    ids, owners = work.get_column("assignment_id"), work.get_column("account_id")
    frames = [
        _period_rows(catalog, work, static, p, stored_only).with_columns(pl.lit(p).alias("period"))
        for p in periods
    ]
    if not frames:
        return pl.DataFrame(schema=DECISIONS_SCHEMA)
    return pl.concat(frames).with_columns(
        pl.lit(ids).gather(pl.col("seq")).alias("assignment_id"),
        pl.lit(owners).gather(pl.col("seq")).alias("account_id"),
    ).select(list(DECISIONS_SCHEMA)).cast(DECISIONS_SCHEMA)


def decide(
    catalog: Catalog,
    accounts: pl.DataFrame,
    assignments: pl.DataFrame,
    periods: list[str],
    policy: Policy,
    locks: pl.DataFrame | None = None,
    *,
    stored_only: bool = False,
    changes: pl.DataFrame | None = None,
) -> RulesResult:
    """Settle eligibility, ends, conflicts and life cycle (SPEC §3) for each of `periods`.

    Every row of every period by default; `stored_only`: only those a run stores (`still_told`),
    which leaves out the rows an earlier period already holds word for word.
    """
    settlement = settle(catalog, accounts, assignments, policy, locks, changes)
    return RulesResult(
        decisions=state_periods(catalog, settlement, periods, stored_only=stored_only),
        lifecycles=settlement.lifecycles,
    )
