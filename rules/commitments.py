"""Commitments (SPEC §8.2): does a fee plan's segment that ends owe its early-termination fee?

Catalog facts: none; the situation carries what the rule reads.
Situation fact `commitment_end`, one per distinct (cause, days_short, next_committed) of the
plan segments that end and whose fee plan sets `minimum_terms`:
- `cause`: what ended the segment: the add-on's own end date (`until`), the account's closing
  (`account_closed`), a main-product change (`main_product_change`), a replacement by another
  add-on (`replaced`), or a change to another fee plan (`plan_change`);
- `days_short`: days from the segment's end to the end of its M-th term (> 0: the commitment
  was not met);
- `next_committed`: the segment ends by a change to a fee plan with its own `minimum_terms`.
"""

from __future__ import annotations

import polars as pl
from durable.engine import Closure
from durable.lang import c, m, ruleset, when_all

from rules import engine
from rules.engine import conclude
from rules.situations import distinct_situations

NAME = "billrun_commitments"

# The decision rule of every early termination (SPEC §8.5).
EARLY_TERMINATION = "early termination"
MET = "a commitment is met once active through the last day of its last term"
OWES_FEE = "ending before the commitment is met charges the early-termination fee"
NEW_COMMITMENT = "a change to a plan with its own commitment replaces the old commitment"
RULES = (MET, OWES_FEE, NEW_COMMITMENT)

CHARGED, WAIVED, KEPT = "fee charged", "fee waived", "met"
CAUSES = {
    "until": "its end date",
    "account_closed": "the account's closing",
    "main_product_change": "a main product change",
    "replaced": "its replacement by another add-on",
    "plan_change": "a change to another fee plan",
}


def _ending() -> object:
    """A fresh pattern for one commitment-end situation, named `sit`."""
    return c.sit << (m.kind == "commitment_end")


def _declare() -> None:
    """Declare the commitments ruleset (called once per process by engine.declare)."""
    with ruleset(NAME):

        @when_all(_ending() & (m.days_short <= 0))
        def commitment_met_when_active_through_last_term(c: Closure) -> None:
            """SPEC §8.2: the commitment is met once the add-on has been active through the
            last day of its M-th term of that plan."""
            conclude(c, MET, KEPT, "")

        @when_all(_ending() & (m.days_short > 0)
                  & ((m.cause != "plan_change") | (m.next_committed == False)))  # noqa: E712
        def ending_before_commitment_owes_fee(c: Closure) -> None:
            """SPEC §8.2: ending before the commitment is met, for any cause, charges
            `early_termination_fee × quantity` in the period of the end."""
            cause = CAUSES.get(c.sit.cause, c.sit.cause)
            conclude(c, OWES_FEE, CHARGED, f"fee plan {{plan}} ends on {{end}} by {cause}, "
                     "before its commitment of {terms} term(s) is met on {met}: the "
                     "early-termination fee is charged")

        @when_all(_ending() & (m.days_short > 0) & (m.cause == "plan_change")
                  & (m.next_committed == True))  # noqa: E712
        def new_commitment_replaces_old(c: Closure) -> None:
            """SPEC §8.2: a change to a fee plan with its own minimum_terms charges no fee: the
            new commitment replaces the old one."""
            conclude(c, NEW_COMMITMENT, WAIVED, "fee plan {plan} ends on {end}, before its "
                     "commitment is met on {met}, by a change to fee plan {next_plan}, whose "
                     "own commitment replaces it: no early-termination fee")


engine.declare(NAME, _declare)


def judge_ends(frame: pl.DataFrame) -> pl.DataFrame:
    """Verdict of each row of `frame` (cause, days_short, next_committed): rule, outcome,
    reason joined back on every row."""
    keys = ["cause", "days_short", "next_committed"]
    if frame.height == 0:
        return frame.with_columns(
            pl.lit(None, pl.Utf8).alias("rule"), pl.lit(None, pl.Utf8).alias("outcome"),
            pl.lit(None, pl.Utf8).alias("reason"),
        )
    tagged, distinct_rows = distinct_situations(frame, keys, "commitment_end")
    verdicts = engine.judge(NAME, [], engine.facts(distinct_rows, "commitment_end"))
    return tagged.join(verdicts, on="situation").drop("situation")
