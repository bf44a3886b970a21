"""Which price and which allowance apply (SPEC §7.1, §7.3): promotions and quota rollover.

Catalog facts: `promotion` (fee plan, promotion_no, first and last term it prices), `entry`
(a discount entry with its `rollover`).
Situation facts:
- `term`: the distinct (fee plan, term number) of the plans with promotions, for every term a
  promotion covers and one more, which stands for every later term. A promotion whose range
  holds the term prices it; a term no promotion covers is priced at the plan's own fee.
- `rollover`: each discount entry. An entry with `rollover >= 1` carries unused allowance and
  uses carried parcels; any other entry does neither (its period's parcels still expire).
The engine runs on these few catalog-sized situations; the charges join the verdicts back.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl
from durable.engine import Closure
from durable.lang import c, m, none, ruleset, when_all

from pipeline.catalog import CatalogFrames
from rules import engine
from rules.engine import Fact, conclude

NAME = "billrun_promotions"

PROMOTION = "a promotion prices the terms it covers"
PLAN_FEE = "a term after every promotion is priced at the plan's fee"
ROLLOVER = "an entry with rollover carries its unused allowance"
NO_ROLLOVER = "an entry without rollover neither carries nor uses allowance"

TERM_PRICE_SCHEMA: dict[str, pl.DataType] = {
    "fee_plan_id": pl.Utf8(), "term_no": pl.Int64(), "promotion_no": pl.Int64(),
    "promo_fee_minor": pl.Int64(), "promo_fee": pl.Utf8(),
}
ROLLOVER_SCHEMA: dict[str, pl.DataType] = {
    "discount_plan_id": pl.Utf8(), "entry_no": pl.Int64(), "rollover": pl.Int64(),
}


def _declare() -> None:
    """Declare the promotions ruleset (called once per process by engine.declare)."""
    with ruleset(NAME):

        @when_all(c.sit << (m.kind == "term"),
                  c.promo << (m.kind == "promotion") & (m.fee_plan == c.sit.fee_plan)
                  & (m.first_term <= c.sit.term_no) & (m.last_term >= c.sit.term_no))
        def term_priced_by_promotion(c: Closure) -> None:
            """SPEC §7.1: terms first_term..last_term are charged the promotion's fee."""
            conclude(c, PROMOTION, str(int(c.promo.promotion_no)),
                     f"term {int(c.sit.term_no)} of {c.sit.fee_plan} is in promotion "
                     f"{int(c.promo.promotion_no) + 1}")

        @when_all(c.sit << (m.kind == "term"),
                  none((m.kind == "promotion") & (m.fee_plan == c.sit.fee_plan)
                       & (m.first_term <= c.sit.term_no) & (m.last_term >= c.sit.term_no)))
        def term_priced_at_plan_fee(c: Closure) -> None:
            """SPEC §7.1: every term after the promotions is charged the plan's own fee."""
            conclude(c, PLAN_FEE, "plan_fee",
                     f"term {int(c.sit.term_no)} of {c.sit.fee_plan} is after every promotion")

        @when_all(c.sit << (m.kind == "rollover") & (m.rollover >= 1))
        def unused_allowance_rolls_over(c: Closure) -> None:
            """SPEC §7.3: an entry with rollover N >= 1 carries unused allowance N periods."""
            conclude(c, ROLLOVER, "rollover", f"unused allowance carries {int(c.sit.rollover)} "
                     "period(s)")

        @when_all(c.sit << (m.kind == "rollover") & (m.rollover < 1))
        def allowance_does_not_roll_over(c: Closure) -> None:
            """SPEC §7.3: an entry without rollover uses no carried parcel and grants none."""
            conclude(c, NO_ROLLOVER, "none", "no rollover")


engine.declare(NAME, _declare)


def _promotion_facts(promotions: pl.DataFrame) -> list[Fact]:
    return [
        {"kind": "promotion", "id": f"promotion:{r['fee_plan_id']}:{r['promotion_no']}",
         "fee_plan": r["fee_plan_id"], "promotion_no": r["promotion_no"],
         "first_term": r["first_term"], "last_term": r["last_term"]}
        for r in promotions.to_dicts()
    ]


def term_prices(frames: CatalogFrames) -> pl.DataFrame:
    """For each plan with promotions, the promotion (or none) that prices each term number.

    The last row of a plan (term number = its promotions' last term + 1) prices every later term.
    """
    if frames.promotions.height == 0:
        return pl.DataFrame(schema=TERM_PRICE_SCHEMA)
    ends = frames.promotions.group_by("fee_plan_id").agg(pl.col("last_term").max() + 1)
    terms = ends.select(
        "fee_plan_id", pl.int_ranges(1, pl.col("last_term") + 1).alias("term_no")
    ).explode("term_no").sort("fee_plan_id", "term_no").with_columns(
        situation=pl.format("term:{}:{}", "fee_plan_id", "term_no")
    )
    situations = [
        {"kind": "term", "id": r["situation"], "fee_plan": r["fee_plan_id"],
         "term_no": r["term_no"]}
        for r in terms.to_dicts()
    ]
    verdicts = engine.judge(NAME, _promotion_facts(frames.promotions), situations, expect="one")
    return (
        terms.join(verdicts, on="situation")
        .with_columns(
            promotion_no=pl.when(pl.col("rule") == PROMOTION).then(
                pl.col("outcome").cast(pl.Int64, strict=False)
            )
        )
        .join(
            frames.promotions.select("fee_plan_id", "promotion_no",
                                     pl.col("fee_minor").alias("promo_fee_minor"),
                                     pl.col("fee").alias("promo_fee")),
            on=["fee_plan_id", "promotion_no"], how="left",
        )
        .select([pl.col(n).cast(t) for n, t in TERM_PRICE_SCHEMA.items()])
        .sort("fee_plan_id", "term_no")
    )


def rollover_entries(frames: CatalogFrames) -> pl.DataFrame:
    """The discount entries that carry unused allowance, with their `rollover` N."""
    entries = frames.discount_entries.filter(pl.col("rollover") > 0)
    if entries.height == 0:
        return pl.DataFrame(schema=ROLLOVER_SCHEMA)
    tagged = entries.with_columns(
        situation=pl.format("rollover:{}:{}", "discount_plan_id", "entry_no")
    )
    situations = [
        {"kind": "rollover", "id": r["situation"], "rollover": r["rollover"]}
        for r in tagged.select("situation", "rollover").to_dicts()
    ]
    verdicts = engine.judge(NAME, [], situations, expect="one")
    return (
        tagged.join(verdicts.filter(pl.col("outcome") == "rollover"), on="situation")
        .select([pl.col(n).cast(t) for n, t in ROLLOVER_SCHEMA.items()])
        .sort("discount_plan_id", "entry_no")
    )


def with_verdicts(frames: CatalogFrames) -> CatalogFrames:
    """The catalog frames with the rules' term prices and rollover entries filled in."""
    return replace(frames, term_prices=term_prices(frames),
                   rollover_entries=rollover_entries(frames))
