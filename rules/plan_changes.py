"""Plan and quantity changes (SPEC §8.1): which change holds, and from which day.

Catalog facts: `addon` (with its subscription) and `fee_plan` (with its subscription and
currency).
Situation facts, each reduced to its distinct values by `rules.versions`:
- `change_scope`: a change against the add-on's life: `eligible` (the base version passed §3),
  `before_start` (its `effective_from` is before the add-on's start), `open` (the add-on has no
  end) and `days_before_end` (from `effective_from` to the end, when there is one).
- `change_plan`: the add-on, the change's fee plan ("" for an add-on without subscription) and
  the account's currency. The fee plan must pass §3's checks, or the change is refused.
- `change_timing`: the subscription's `plan_change` policy, `at_start` (the change is effective
  on the add-on's start date), and the yearly price (`fee × quantity × 12 / term_months`, in
  minor units: a whole number, since a term divides 12) of the version in effect on its
  `effective_from` (`old_yearly`) and of the change (`new_yearly`). Comparing yearly prices is
  comparing §8.1's monthly prices exactly.
- `change_pending`: a change that waits for its day, and the next change of the same add-on:
  `pending_in_days` is from the next change's `effective_from` to the day the waiting one
  would take effect.
- `change_end`: a change that holds, against the add-on's end (`open`, `days_before_end` from the
  day it takes effect).
"""

from __future__ import annotations

import polars as pl
from durable.engine import Closure
from durable.lang import c, m, none, ruleset, when_all

from pipeline.catalog import Catalog
from rules import engine
from rules.engine import Fact, conclude
from rules.situations import distinct_situations

NAME = "billrun_plan_changes"

# The decision rule of every change (SPEC §8.5), and the rules behind its verdicts.
TIMING = "plan change timing"
INELIGIBLE_ADDON = "changes of an ineligible add-on are not in effect"
BEFORE_START = "a change before the add-on's start is not in effect"
FROM_END = "a change from the add-on's end or later is not in effect"
WITHIN_LIFE = "a change within the add-on's life is considered"
PLAN_OUTSIDE = "a change to a fee plan outside the add-on's subscription is refused"
PLAN_CURRENCY = "a change to a fee plan in another currency is refused"
PLAN_OK = "a change to a fee plan of the add-on's subscription is accepted"
NO_PLAN = "a quantity change of an add-on without subscription is accepted"
AT_START = "a change on the start date holds from the first day"
IMMEDIATE = "an immediate change takes effect on its date"
END_OF_TERM = "an end-of-term change waits for the term boundary"
UPGRADE_NOW = "an upgrade takes effect on its date"
DOWNGRADE_WAITS = "a change that is not an upgrade waits for the term boundary"
SUPERSEDED = "a later change supersedes one that has not taken effect"
TAKES_EFFECT_FIRST = "a waiting change takes effect before the next one starts"
IN_EFFECT = "a change that takes effect before the add-on's end is in effect"
AFTER_END = "a change that would take effect on or after the add-on's end is not in effect"
RULES = (INELIGIBLE_ADDON, BEFORE_START, FROM_END, WITHIN_LIFE, PLAN_OUTSIDE, PLAN_CURRENCY,
         PLAN_OK, NO_PLAN, AT_START, IMMEDIATE, END_OF_TERM, UPGRADE_NOW, DOWNGRADE_WAITS,
         SUPERSEDED, TAKES_EFFECT_FIRST, IN_EFFECT, AFTER_END)

# Verdict outcomes. Statuses are those of `assignment_history` (pipeline.contracts).
CONSIDERED, ACCEPTED = "considered", "accepted"
ON_ITS_DATE, AT_TERM_END = "on its date", "at term end"
TAKES_EFFECT = "takes effect"
NOT_IN_EFFECT, REFUSED, STATUS_SUPERSEDED, STATUS_IN_EFFECT = (
    "not in effect", "refused", "superseded", "in effect"
)


def _sit(kind: str) -> object:
    """A fresh pattern for one situation of `kind`, named `sit`."""
    return c.sit << (m.kind == kind)


def _declare() -> None:
    """Declare the plan-change ruleset (called once per process by engine.declare)."""
    with ruleset(NAME):

        # --- scope: is the change inside a life that can change? -----------------------------
        @when_all(_sit("change_scope") & (m.eligible == False))  # noqa: E712
        def changes_of_ineligible_addon_are_not_in_effect(c: Closure) -> None:
            """SPEC §8.1: eligibility is settled on the base version; the changes of an
            ineligible assignment, one on start_date included, are not in effect."""
            conclude(c, INELIGIBLE_ADDON, NOT_IN_EFFECT,
                     "the add-on is not eligible (see its eligibility decision), so none of its "
                     "changes is in effect")

        @when_all(_sit("change_scope") & (m.eligible == True) & (m.before_start == True))  # noqa: E712
        def change_before_start_is_not_in_effect(c: Closure) -> None:
            """SPEC §8.1: a change cannot hold before the add-on's start date."""
            conclude(c, BEFORE_START, NOT_IN_EFFECT,
                     "it is effective before the add-on's start date {start}")

        @when_all(_sit("change_scope") & (m.eligible == True) & (m.before_start == False)  # noqa: E712
                  & (m.open == False) & (m.days_before_end <= 0))  # noqa: E712
        def change_from_end_is_not_in_effect(c: Closure) -> None:
            """SPEC §8.1: a change that would take effect on or after the add-on's end is not
            in effect."""
            conclude(c, FROM_END, NOT_IN_EFFECT,
                     "it is effective on or after the add-on's end {end}")

        @when_all(_sit("change_scope") & (m.eligible == True) & (m.before_start == False)  # noqa: E712
                  & ((m.open == True) | (m.days_before_end > 0)))  # noqa: E712
        def change_within_life_is_considered(c: Closure) -> None:
            """SPEC §8.1: a change effective during the add-on's life goes on to its checks."""
            conclude(c, WITHIN_LIFE, CONSIDERED, "")

        # --- refusal: the new fee plan must pass §3 --------------------------------------------
        @when_all(_sit("change_plan") & (m.fee_plan != ""),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon),
                  none((m.kind == "fee_plan") & (m.fee_plan == c.sit.fee_plan)
                       & (m.subscription == c.addon.subscription)))
        def change_to_plan_outside_subscription_is_refused(c: Closure) -> None:
            """SPEC §8.1 and §3: the new fee plan must belong to the add-on's subscription."""
            conclude(c, PLAN_OUTSIDE, REFUSED, f"fee plan {c.sit.fee_plan} is not a plan of "
                     f"the add-on's subscription: the version before it stays")

        @when_all(_sit("change_plan") & (m.fee_plan != ""),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon),
                  c.plan << (m.kind == "fee_plan") & (m.fee_plan == c.sit.fee_plan)
                  & (m.subscription == c.addon.subscription) & (m.currency != c.sit.currency))
        def change_to_plan_in_other_currency_is_refused(c: Closure) -> None:
            """SPEC §8.1 and §3: the new fee plan's currency must be the account's currency."""
            conclude(c, PLAN_CURRENCY, REFUSED, f"fee plan {c.sit.fee_plan} is in "
                     f"{c.plan.currency}, the account pays in {c.sit.currency}: the version "
                     "before it stays")

        @when_all(_sit("change_plan") & (m.fee_plan != ""),
                  c.addon << (m.kind == "addon") & (m.addon == c.sit.addon),
                  c.plan << (m.kind == "fee_plan") & (m.fee_plan == c.sit.fee_plan)
                  & (m.subscription == c.addon.subscription) & (m.currency == c.sit.currency))
        def change_to_plan_of_subscription_is_accepted(c: Closure) -> None:
            """SPEC §8.1: a fee plan of the add-on's subscription, in the account's currency."""
            conclude(c, PLAN_OK, ACCEPTED, "")

        @when_all(_sit("change_plan") & (m.fee_plan == ""))
        def quantity_change_without_subscription_is_accepted(c: Closure) -> None:
            """SPEC §8.1: an add-on without subscription has no fee plan to check."""
            conclude(c, NO_PLAN, ACCEPTED, "")

        # --- timing: the subscription's plan_change policy ------------------------------------
        @when_all(_sit("change_timing") & (m.at_start == True))  # noqa: E712
        def change_on_start_date_holds_from_first_day(c: Closure) -> None:
            """SPEC §8.1: a change effective on start_date replaces the base version from the
            first day, whatever the subscription's plan_change."""
            conclude(c, AT_START, ON_ITS_DATE, "effective on the start date, it replaces the "
                     "base version from the first day")

        @when_all(_sit("change_timing") & (m.at_start == False)  # noqa: E712
                  & (m.policy == "immediate"))
        def immediate_change_takes_effect_on_its_date(c: Closure) -> None:
            """SPEC §8.1: plan_change immediate (the default) takes effect on effective_from."""
            conclude(c, IMMEDIATE, ON_ITS_DATE, "plan_change immediate: it takes effect on its "
                     "date, {on}")

        @when_all(_sit("change_timing") & (m.at_start == False)  # noqa: E712
                  & (m.policy == "end_of_term"))
        def end_of_term_change_waits_for_term_boundary(c: Closure) -> None:
            """SPEC §8.1: plan_change end_of_term waits for the first term boundary of the plan
            in effect on or after effective_from."""
            conclude(c, END_OF_TERM, AT_TERM_END, "plan_change end_of_term: requested from "
                     "{from}, it takes effect at the end of the term, {on}")

        @when_all(_sit("change_timing") & (m.at_start == False)  # noqa: E712
                  & (m.policy == "upgrades_now") & (m.new_yearly > m.old_yearly))
        def upgrade_takes_effect_on_its_date(c: Closure) -> None:
            """SPEC §8.1: under upgrades_now, a change that raises the monthly price
            (fee × quantity / term_months) takes effect on effective_from."""
            conclude(c, UPGRADE_NOW, ON_ITS_DATE, "plan_change upgrades_now: it raises the "
                     "monthly price, so it takes effect on its date, {on}")

        @when_all(_sit("change_timing") & (m.at_start == False)  # noqa: E712
                  & (m.policy == "upgrades_now") & (m.new_yearly <= m.old_yearly))
        def non_upgrade_waits_for_term_boundary(c: Closure) -> None:
            """SPEC §8.1: under upgrades_now, anything but an upgrade waits as end_of_term."""
            conclude(c, DOWNGRADE_WAITS, AT_TERM_END, "plan_change upgrades_now: it does not "
                     "raise the monthly price, so it waits for the end of the term, {on}")

        # --- supersession ---------------------------------------------------------------------
        @when_all(_sit("change_pending") & (m.pending_in_days >= 0))
        def later_change_supersedes_waiting_change(c: Closure) -> None:
            """SPEC §8.1: a later change whose effective_from is on or before the day a change
            would take effect supersedes it."""
            conclude(c, SUPERSEDED, STATUS_SUPERSEDED, "superseded by the change from {next} "
                     "before it took effect on {on}")

        @when_all(_sit("change_pending") & (m.pending_in_days < 0))
        def waiting_change_takes_effect_first(c: Closure) -> None:
            """SPEC §8.1: a change takes effect when no later change starts on or before its
            day."""
            conclude(c, TAKES_EFFECT_FIRST, TAKES_EFFECT, "")

        # --- the add-on's end -------------------------------------------------------------------
        @when_all(_sit("change_end") & ((m.open == True) | (m.days_before_end > 0)))  # noqa: E712
        def change_before_end_is_in_effect(c: Closure) -> None:
            """SPEC §8.1: a change that takes effect before the add-on's end holds until the
            next change takes effect."""
            conclude(c, IN_EFFECT, STATUS_IN_EFFECT, "in effect from {on}")

        @when_all(_sit("change_end") & (m.open == False) & (m.days_before_end <= 0))  # noqa: E712
        def change_after_end_is_not_in_effect(c: Closure) -> None:
            """SPEC §8.1: a change that would take effect on or after the add-on's end is not
            in effect."""
            conclude(c, AFTER_END, NOT_IN_EFFECT, "it would take effect on {on}, on or after "
                     "the add-on's end {end}")


engine.declare(NAME, _declare)


def catalog_facts(catalog: Catalog) -> list[Fact]:
    """The catalog facts the plan-change rules join: add-ons and fee plans."""
    out: list[Fact] = [
        {"kind": "addon", "id": f"addon:{a.id}", "addon": a.id,
         "subscription": a.subscription or ""}
        for a in catalog.addons
    ]
    return out + [
        {"kind": "fee_plan", "id": f"fee_plan:{fp.id}", "fee_plan": fp.id,
         "subscription": s.id, "currency": fp.currency}
        for s in catalog.subscriptions
        for fp in s.fee_plans
    ]


def judge(catalog: Catalog, frame: pl.DataFrame, keys: list[str], kind: str) -> pl.DataFrame:
    """Reduce `frame` to its distinct `keys`, judge them, and join the one verdict of each back
    on every row (columns rule, outcome, reason)."""
    if frame.height == 0:
        return frame.with_columns(
            pl.lit(None, pl.Utf8).alias("rule"), pl.lit(None, pl.Utf8).alias("outcome"),
            pl.lit(None, pl.Utf8).alias("reason"),
        )
    tagged, distinct_rows = distinct_situations(frame, keys, kind)
    verdicts = engine.judge(NAME, catalog_facts(catalog), engine.facts(distinct_rows, kind))
    return tagged.join(verdicts, on="situation").drop("situation")
