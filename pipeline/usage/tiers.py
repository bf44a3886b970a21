"""Step 5: tiers. An event's part in tier `k` is the overlap of `[c0, c1)` with
`[from_k, to_k)`; its discount is `amount × Σ overlap_k × pct_k / x` (`x` the counted quantity or
amount), computed in Int128 at 10^-12 of the currency and rounded once per line.
"""

from __future__ import annotations

import polars as pl

from pipeline.money import round_half_away
from pipeline.usage.entries import Entries
from pipeline.usage.keys import PCT_TO_PICO


def _tier_exprs(entries: Entries) -> dict[str, pl.Expr]:
    """Per-event tier maths over the entry's tiers, as expressions on `c0, c1, x`."""
    c0, c1, x = pl.col("c0"), pl.col("c1"), pl.col("x")
    i128 = pl.Int128
    weighted, discounted, lo, hi = [], [], [], []
    carry = pl.col("carry_units")  # SPEC §7.3: the free band and every later tier move by C
    for k, (start, end, pct) in enumerate(entries.tiers):
        s, e, p = entries.at(start) + (carry if k else 0), entries.at(end) + carry, entries.at(pct)
        overlap = (pl.min_horizontal(c1, e) - pl.max_horizontal(c0, s)).clip(lower_bound=0)
        holds_c0 = ((s <= c0) & (c0 < e)).cast(pl.Int64)
        part = pl.when(x > 0).then(overlap).otherwise(holds_c0)
        weighted.append(part.cast(i128) * p.cast(i128))
        discounted.append(pl.when(p > 0).then(part).otherwise(0).cast(i128))
        if k:
            lo.append((s <= c0).cast(pl.Int64))
            hi.append((s < c1).cast(pl.Int64))
    den = pl.when(x > 0).then(x).otherwise(1).cast(i128)
    zero = pl.lit(0, dtype=i128)
    amount = pl.col("amount_units").cast(i128)
    tier_lo = pl.sum_horizontal(lo) if lo else pl.lit(0, dtype=pl.Int64)
    tier_hi = pl.sum_horizontal(hi) if hi else pl.lit(0, dtype=pl.Int64)
    return {
        "discount_pico": round_half_away(
            amount * PCT_TO_PICO * (pl.sum_horizontal(weighted) if weighted else zero), den
        ),
        "discounted_units": round_half_away(
            pl.col("quantity_units").cast(i128)
            * (pl.sum_horizontal(discounted) if discounted else zero),
            den,
        ).cast(pl.Int64),
        "tier_lo": tier_lo,
        "tier_hi": pl.when(x > 0).then(tier_hi).otherwise(tier_lo),
    }


def discounted_events(counted: pl.DataFrame, entries: Entries) -> pl.DataFrame:
    """Counted events with `discount_pico`, `discounted_units` and their tier range."""
    return counted.lazy().with_columns(**_tier_exprs(entries)).collect(engine="streaming")
