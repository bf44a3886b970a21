"""Promotional fees (SPEC §7.1): the fee of each term, from the rules' term-price verdicts.

The rules (rules.promotions) decide, for each fee plan with promotions and each term number up
to one past its last promotion, which promotion prices it. Here each term joins that verdict
(term numbers past the last row take the last row, the plan's own fee) and its `fee_minor`
becomes the promotional fee; everything in §4 then applies to it unchanged.
"""

from __future__ import annotations

import polars as pl

from pipeline.catalog import CatalogFrames


class MissingVerdicts(ValueError):
    """The catalog has promotions or rollover but the rules' verdicts were not joined in."""


def term_price_verdicts(catalog: CatalogFrames, terms: pl.LazyFrame) -> pl.DataFrame:
    """The rules' term prices; an error if a term's plan has promotions and no verdicts."""
    if catalog.term_prices is None:
        promoted = catalog.promotions.select("fee_plan_id").unique()
        if promoted.height and terms.join(promoted.lazy(), on="fee_plan_id", how="semi").select(
            pl.len()
        ).collect().item():
            raise MissingVerdicts(
                "a fee plan has promotions: run rules.promotions.with_verdicts on the catalog"
            )
        return pl.DataFrame(schema={"fee_plan_id": pl.Utf8, "term_no": pl.Int64,
                                    "promotion_no": pl.Int64, "promo_fee_minor": pl.Int64,
                                    "promo_fee": pl.Utf8})
    return catalog.term_prices


def promotional_fees(terms: pl.LazyFrame, catalog: CatalogFrames) -> pl.LazyFrame:
    """Terms with `fee_minor` replaced by the promotional fee where a promotion prices the term,
    `promotion_no` (null at the plan's fee) and a `promotion_label` for the description.

    A term of a segment whose `promotions` is false (its plan was had before on the same
    assignment, SPEC §8.1) is at the plan's own fee."""
    prices = term_price_verdicts(catalog, terms)
    last = prices.group_by("fee_plan_id").agg(pl.col("term_no").max().alias("last_priced"))
    label = pl.format(" promotion {} at {}", pl.col("promotion_no") + 1, "promo_fee")
    return (
        terms.join(last.lazy(), on="fee_plan_id", how="left")
        .with_columns(
            priced_term=pl.min_horizontal("term_no", pl.col("last_priced").fill_null(1))
        )
        .join(prices.lazy(), left_on=["fee_plan_id", "priced_term"],
              right_on=["fee_plan_id", "term_no"], how="left")
        .with_columns(
            pl.when(pl.col("promotions")).then(pl.col(name)).otherwise(None).alias(name)
            for name in ("promotion_no", "promo_fee_minor", "promo_fee")
        )
        .with_columns(
            fee_minor=pl.coalesce("promo_fee_minor", "fee_minor"),
            promotion_label=pl.when(pl.col("promotion_no").is_not_null()).then(label)
            .otherwise(pl.lit("")),
        )
        .drop("last_priced", "priced_term", "promo_fee_minor", "promo_fee")
    )
