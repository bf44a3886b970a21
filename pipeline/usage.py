"""Usage lines and discounts (SPEC §4 "Usage discounts"): entry selection, counters, tiers.

1. **Candidates**: every billable add-on assignment whose discount plan has entries, and every
   main-product version (`[effective_from, next effective_from)`) whose product has a plan, as
   day ranges clipped to the period's included days.
2. **Timeline**: for each `(account, service, destination_group)` the included days are cut into
   elementary intervals at every candidate start and end; each interval takes its winning
   candidate: add-ons before the main product, then the higher `priority`, then the later
   `(assigned_at, assignment_id)`. Each event joins its key's intervals and keeps the one that
   holds its day, so no per-event ranking is needed.
3. **Counters**: events with an entry are sorted by counter window and `(started_at, event_id)`;
   one cumulative sum gives each event's counter before (`c0`) and after (`c1`) it. Counters are
   keyed by account, service, destination group, threshold type and window, never by add-on.
4. **Tiers**: an event's part in tier `k` is the overlap of `[c0, c1)` with `[from_k, to_k)`;
   its discount is `amount × Σ overlap_k × pct_k / x` (`x` the counted quantity or amount),
   computed in Int128 at 10^-12 of the currency and rounded once per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from pipeline.catalog import CatalogFrames
from pipeline.invoices import as_lines
from pipeline.money import MICRO, micro_to_minor, pico_to_minor, round_half_away

KEY = ["account_id", "service", "destination_group"]
COUNTER_KIND = ["service", "destination_group", "threshold_type"]
WINDOW = ["account_id", *COUNTER_KIND, "window_start"]
NEVER_START = date(1970, 1, 1)
OPEN_END = date(9999, 12, 1)
# Stands in for an open top tier (and for a missing tier: an empty range far above any counter).
OPEN = 2**62
PAIR = ["service", "destination_group"]
# Up to this many discounted (service, destination group) pairs are matched by comparisons.
MAX_COMPARED_PAIRS = 16
# Bit widths of the packed keys: (account, pair) and (account, pair, day).
SDG_BITS = 12
DAY_BITS = 20
RESET_CODES = {"billing_period": 0, "daily": 1, "never": 2}
# Converts (10^-6 currency) × (10^-4 percent-hundredths → fraction) into 10^-12 of the currency.
PCT_TO_PICO = 100

COUNTER_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "threshold_type": pl.Utf8(),
    "window_start": pl.Date(),
    "value_units": pl.Int64(),
    "reset": pl.Utf8(),
}

DETAIL_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "account_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "started_at": pl.Datetime("us"),
    "assignment_id": pl.Utf8(),
    "addon_id": pl.Utf8(),
    "threshold_type": pl.Utf8(),
    "reset": pl.Utf8(),
    "window_start": pl.Date(),
    "tier_no": pl.Int64(),
    "pct": pl.Int64(),
    "counter_from_units": pl.Int64(),
    "counter_to_units": pl.Int64(),
    "quantity_units": pl.Int64(),
    "amount_pico": pl.Int128(),
    "discount_pico": pl.Int128(),
}


@dataclass(frozen=True)
class UsageResult:
    """Usage and discount lines, counters after the period, and per-event parts."""

    lines: pl.DataFrame
    counters_after: pl.DataFrame
    detail: pl.DataFrame


@dataclass(frozen=True)
class Entries:
    """Catalog discount entries keyed by a dense `entry_key`, with tiers as arrays by key."""

    table: pl.DataFrame  # discount_plan_id, entry_no, entry_key, service, ..., reset, ckey, sdg
    pairs: pl.DataFrame  # sdg, service, destination_group: the pairs that some entry discounts
    tiers: list[tuple[pl.Series, pl.Series, pl.Series]]  # (from, to, pct) for tier 0..K-1
    is_amount: pl.Series  # Boolean by entry_key
    reset_code: pl.Series  # Int8 by entry_key

    def at(self, series: pl.Series) -> pl.Expr:
        """`series[entry_key]` for each row."""
        return pl.lit(series).gather(pl.col("entry_key"))


def discount_entries(catalog: CatalogFrames) -> Entries:
    """Number the catalog's discount entries and lay their tiers out as arrays by entry."""
    kinds = [*PAIR, "threshold_type", "reset"]
    table = catalog.discount_entries.sort("discount_plan_id", "entry_no").with_row_index(
        "entry_key"
    )
    ckeys = table.select(kinds).unique().sort(kinds).with_row_index("ckey")
    sdgs = table.select(PAIR).unique().sort(PAIR).with_row_index("sdg")
    table = table.join(ckeys, on=kinds).join(sdgs, on=PAIR).sort("entry_key")
    tiers = catalog.discount_tiers.join(
        table.select("discount_plan_id", "entry_no", "entry_key"),
        on=["discount_plan_id", "entry_no"],
    )
    depth = int(tiers["tier_no"].max() or 0) + 1 if tiers.height else 0
    arrays = []
    for k in range(depth):
        tier = table.select("entry_key").join(
            tiers.filter(pl.col("tier_no") == k), on="entry_key", how="left"
        ).sort("entry_key")
        arrays.append((
            tier["from_units"].fill_null(OPEN),
            tier["to_units"].fill_null(OPEN),
            tier["pct"].fill_null(0),
        ))
    return Entries(
        table=table,
        pairs=sdgs,
        tiers=arrays,
        is_amount=table["threshold_type"] == "amount",
        reset_code=table["reset"].replace_strict(RESET_CODES, return_dtype=pl.Int8),
    )


def discount_candidates(
    catalog: CatalogFrames,
    entries: Entries,
    account_rows: pl.DataFrame,
    lifecycles: pl.DataFrame,
    accounts: pl.DataFrame,
) -> pl.LazyFrame:
    """Add-on assignments and main-product versions with an entry, clipped to included days."""
    addons = (
        lifecycles.lazy()
        .filter(pl.col("billable") & pl.col("eff_start").is_not_null())
        .join(
            catalog.addons.lazy()
            .filter(pl.col("discount_plan_id").is_not_null())
            .select("addon_id", "priority", "discount_plan_id", pl.col("name").alias("owner")),
            on="addon_id",
        )
        .select(
            "account_id", "assignment_id", "addon_id",
            pl.col("assigned_at").cast(pl.Datetime("us")),
            pl.col("eff_start").alias("start"), pl.col("eff_end").alias("end"),
            pl.col("priority").cast(pl.Int64), "discount_plan_id", "owner",
            pl.lit(True).alias("is_addon"),
        )
    )
    mains = (
        account_rows.lazy()
        .select("account_id", "main_product_id", "effective_from")
        .sort("account_id", "effective_from")
        .with_columns(end=pl.col("effective_from").shift(-1).over("account_id"))
        .join(
            catalog.main_products.lazy()
            .filter(pl.col("discount_plan_id").is_not_null())
            .select("main_product_id", "discount_plan_id", pl.col("name").alias("owner")),
            on="main_product_id",
        )
        .select(
            "account_id",
            pl.lit(None, dtype=pl.Utf8).alias("assignment_id"),
            pl.col("main_product_id").alias("addon_id"),
            pl.lit(None, dtype=pl.Datetime("us")).alias("assigned_at"),
            pl.col("effective_from").alias("start"), "end",
            pl.lit(None, dtype=pl.Int64).alias("priority"), "discount_plan_id", "owner",
            pl.lit(False).alias("is_addon"),
        )
    )
    return (
        pl.concat([addons, mains])
        .join(entries.table.lazy(), on="discount_plan_id")
        .join(
            accounts.lazy().select("account_id", "acct_idx", "period_start", "day_limit"),
            on="account_id",
        )
        .with_columns(
            start=pl.max_horizontal("start", "period_start"),
            end=pl.min_horizontal(pl.col("end").fill_null(OPEN_END), "day_limit"),
        )
        .filter(pl.col("start") < pl.col("end"))
    )


def pair_key(acct_idx: pl.Expr, sdg: pl.Expr) -> pl.Expr:
    """`(account, service/destination pair)` packed into one UInt64 (pairs < 2^12)."""
    return acct_idx.cast(pl.UInt64) * (1 << SDG_BITS) + sdg.cast(pl.UInt64)


def _day_key(key: pl.Expr, day: pl.Expr) -> pl.Expr:
    """A pair key and a day packed into one UInt64, ordered like `(key, day)`."""
    return key * (1 << DAY_BITS) + day.cast(pl.Int32).cast(pl.UInt64)


def _winner_columns(frame: pl.DataFrame | pl.LazyFrame, blank: bool) -> list[pl.Expr]:
    """The winner's identity and entry, or typed nulls for an interval nobody covers."""
    names = ["rank", *KEY, "assignment_id", "addon_id", "owner", "entry_key", "ckey"]
    schema = frame.collect_schema()
    return [
        pl.lit(None, dtype=schema[n]).alias(n) if blank else pl.col(n) for n in names
    ]


def _lone_intervals(lone: pl.DataFrame) -> pl.DataFrame:
    """Intervals of keys with one candidate: the gap before it, the candidate, the gap after."""
    def part(start: str, end: str, blank: bool) -> pl.DataFrame:
        return lone.select(
            "key", pl.col(start).alias("b"), pl.col(end).alias("b_end"),
            *_winner_columns(lone, blank),
        ).filter(pl.col("b") < pl.col("b_end"))

    return pl.concat([
        part("period_start", "start", True),
        part("start", "end", False),
        part("end", "day_limit", True),
    ])


def _shared_intervals(shared: pl.DataFrame) -> pl.DataFrame:
    """Elementary intervals of keys with several candidates, each with its best candidate."""
    kb = pl.concat([
        shared.select(_day_key(pl.col("key"), pl.col(c)).alias("kb"))
        for c in ("start", "end", "period_start", "day_limit")
    ]).sort("kb")
    kb = kb.filter((pl.col("kb") != pl.col("kb").shift(1)).fill_null(True))
    days = pl.col("kb") % (1 << DAY_BITS)
    bounds = kb.select(
        "kb",
        (pl.col("kb") // (1 << DAY_BITS)).alias("key"),
        days.cast(pl.Int32).cast(pl.Date).alias("b"),
    )
    intervals = bounds.with_columns(
        b_end=pl.when(pl.col("key") == pl.col("key").shift(-1)).then(pl.col("b").shift(-1))
    ).filter(pl.col("b_end").is_not_null())
    best = (
        intervals.lazy()
        .join(shared.lazy().select("key", "start", "end", "rank"), on="key")
        .filter((pl.col("start") <= pl.col("b")) & (pl.col("b") < pl.col("end")))
        .group_by("kb")
        .agg(pl.col("rank").max())
    )
    return (
        intervals.lazy()
        .join(best, on="kb", how="left")
        .join(shared.lazy().drop("key"), on="rank", how="left")
        .select("key", "b", "b_end", *_winner_columns(shared, False))
        .collect()
    )


def winner_timeline(candidates: pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Elementary day intervals `[b, b_end)` tiling each key's included days, with the winner.

    Keyed by `key` (account and service/destination pair, see `pair_key`). The winner columns
    are null on intervals that no candidate covers. A key with one candidate (most keys) gives
    at most three intervals directly; keys with several are cut at every bound and each piece
    goes to the covering candidate of highest `rank`, the candidates' order by precedence
    (add-on before main product, then priority, then `(assigned_at, assignment_id)`). Each
    winning identity (key, assignment, add-on or main product) gets a `line_no`, described by
    the second frame.
    """
    precedence = ["is_addon", "priority", "assigned_at", "assignment_id"]
    key = pl.col("key")
    cands = (
        candidates.with_columns(key=pair_key(pl.col("acct_idx"), pl.col("sdg")))
        .collect()
        .sort("key")
        .with_columns(
            alone=(key != key.shift(1)).fill_null(True) & (key != key.shift(-1)).fill_null(True)
        )
    )
    lone = cands.filter("alone").with_columns(rank=pl.lit(0, dtype=pl.UInt32))
    shared = (
        cands.filter(~pl.col("alone"))
        .sort("key", *precedence, nulls_last=False)
        .with_row_index("rank")
    )
    timeline = pl.concat([_lone_intervals(lone), _shared_intervals(shared)])
    owners = ["key", "assignment_id", "addon_id"]
    line_nos = (
        timeline.filter(pl.col("rank").is_not_null())
        .select(*owners, *KEY, "owner")
        .unique(subset=owners)
        .with_row_index("line_no")
    )
    timeline = timeline.join(
        line_nos.select(*owners, "line_no"), on=owners, how="left", nulls_equal=True
    ).select("key", "b", "b_end", "entry_key", "ckey", "line_no")
    return timeline, line_nos.drop("key")


def with_pair_index(frame: pl.LazyFrame, pairs: pl.DataFrame) -> pl.LazyFrame:
    """Add `sdg`, the index of the row's (service, destination group) among the discounted
    pairs, or null. A few pairs are matched by comparisons (cheaper than a join on two strings
    over every event); many pairs by a join."""
    if pairs.height > MAX_COMPARED_PAIRS:
        return frame.join(pairs.lazy(), on=PAIR, how="left")
    index: pl.Expr = pl.lit(None, dtype=pl.UInt32)
    for sdg, service, group in reversed(pairs.select("sdg", *PAIR).rows()):
        match = (pl.col("service") == service) & (pl.col("destination_group") == group)
        index = pl.when(match).then(pl.lit(sdg, dtype=pl.UInt32)).otherwise(index)
    return frame.with_columns(sdg=index)


def rated_events(
    usage: pl.DataFrame, accounts: pl.DataFrame, entries: Entries, timeline: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The period's events before the day limit, split by whether an entry discounts them.

    Returns the sums of the events without an entry by `(acct_idx, service,
    destination_group)`, and the events with one (lean: ids, time, quantity, amount, entry).
    Both come from one streaming pass over the usage.
    """
    day = pl.col("started_at").dt.date()
    events = (
        usage.lazy()
        .select("event_id", *KEY, "started_at", "quantity_units", "amount_units")
        .join(
            accounts.lazy().select("account_id", "acct_idx", "period_start", "day_limit"),
            on="account_id",
        )
        .filter((day >= pl.col("period_start")) & (day < pl.col("day_limit")))
        .pipe(with_pair_index, entries.pairs)
        .with_columns(key=pair_key(pl.col("acct_idx"), pl.col("sdg")))
        .join(timeline.lazy(), on="key", how="left")
        .filter(pl.col("b").is_null() | ((day >= pl.col("b")) & (day < pl.col("b_end"))))
    )
    sums = [pl.col("quantity_units").sum(), pl.col("amount_units").sum()]
    no_entry = events.filter(pl.col("entry_key").is_null())
    known = no_entry.filter(pl.col("sdg").is_not_null()).group_by("acct_idx", "sdg").agg(*sums)
    other = no_entry.filter(pl.col("sdg").is_null()).group_by(
        "acct_idx", "service", "destination_group"
    ).agg(*sums)
    with_entry = events.filter(pl.col("entry_key").is_not_null()).select(
        "event_id", "acct_idx", "started_at", "quantity_units", "amount_units", "period_start",
        "entry_key", "ckey", "line_no",
    )
    known_sums, other_sums, discountable = pl.collect_all(
        [known, other, with_entry], engine="streaming"
    )
    plain_sums = pl.concat([
        known_sums.join(entries.pairs, on="sdg").select(
            "acct_idx", "service", "destination_group", "quantity_units", "amount_units"
        ),
        other_sums,
    ])
    return plain_sums, discountable


def counted_events(events: pl.DataFrame, entries: Entries, accounts: pl.DataFrame,
                   counters_before: pl.DataFrame) -> pl.DataFrame:
    """Events with an entry, sorted by counter window and time, with counters `c0` and `c1`.

    `head` marks the first event of each window; the window's stored value (a `never` window
    continued from `counters_before`) is added on it before one cumulative sum.
    """
    reset = entries.at(entries.reset_code)
    window = (
        pl.when(reset == RESET_CODES["daily"]).then(pl.col("started_at").dt.date())
        .when(reset == RESET_CODES["never"]).then(pl.lit(NEVER_START))
        .otherwise(pl.col("period_start"))
    )
    x = pl.when(entries.at(entries.is_amount)).then("amount_units").otherwise("quantity_units")
    order = ["acct_idx", "ckey", "window_start", "started_at", "event_id"]
    frame = (
        events.lazy()
        .with_columns(window_start=window, x=x)
        .drop("period_start")
        .sort(order)
        .collect(engine="streaming")
    )
    changed = [pl.col(c) != pl.col(c).shift(1) for c in ("acct_idx", "ckey", "window_start")]
    frame = frame.with_columns(head=pl.any_horizontal(changed).fill_null(True))
    base = _counter_base(frame, entries, accounts, counters_before)
    y = pl.col("x") + pl.lit(base)
    running = y.cum_sum()
    offset = pl.when(pl.col("head")).then(running - y).forward_fill()
    return frame.with_columns(c1=running - offset).with_columns(c0=pl.col("c1") - pl.col("x"))


def _counter_base(frame: pl.DataFrame, entries: Entries, accounts: pl.DataFrame,
                  counters_before: pl.DataFrame) -> pl.Series:
    """Stored counter values, placed on the first event of each window they continue.

    Only `never` windows (starting 1970-01-01) open before a period; billing-period and daily
    windows are recomputed from the period's own events, so a stored value for them is ignored.
    """
    base = pl.zeros(frame.height, dtype=pl.Int64, eager=True).alias("base")
    if counters_before.height == 0 or frame.height == 0:
        return base
    heads = (
        frame.lazy()
        .with_row_index("row")
        .filter(pl.col("head"))
        .select("row", "acct_idx", "window_start", "entry_key")
        .join(accounts.lazy().select("acct_idx", "account_id"), on="acct_idx")
        .join(entries.table.lazy().select("entry_key", *COUNTER_KIND), on="entry_key")
        .join(
            counters_before.lazy()
            .filter(pl.col("window_start") == NEVER_START)
            .select(*WINDOW, "value_units"),
            on=WINDOW,
        )
        .collect()
    )
    return base.scatter(heads["row"], heads["value_units"])


def _tier_exprs(entries: Entries) -> dict[str, pl.Expr]:
    """Per-event tier maths over the entry's tiers, as expressions on `c0, c1, x`."""
    c0, c1, x = pl.col("c0"), pl.col("c1"), pl.col("x")
    i128 = pl.Int128
    weighted, discounted, lo, hi = [], [], [], []
    for k, (start, end, pct) in enumerate(entries.tiers):
        s, e, p = entries.at(start), entries.at(end), entries.at(pct)
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


def usage_lines(plain_sums: pl.DataFrame, discounted: pl.DataFrame, line_nos: pl.DataFrame,
                accounts: pl.DataFrame, period: str) -> pl.DataFrame:
    """`usage` lines (undiscounted amounts) and `discount` lines (minus the discount)."""
    plain = plain_sums.lazy().join(
        accounts.lazy().select("acct_idx", "account_id"), on="acct_idx"
    ).select(
        *KEY, "quantity_units", "amount_units",
        pl.lit(None, dtype=pl.Utf8).alias("assignment_id"),
        pl.lit(None, dtype=pl.Utf8).alias("addon_id"),
        pl.lit(None, dtype=pl.Utf8).alias("owner"),
        pl.lit(0, dtype=pl.Int128).alias("discount_pico"),
        pl.lit(0, dtype=pl.Int64).alias("discounted_units"),
    )
    with_entry = (
        discounted.lazy()
        .group_by("line_no")
        .agg(
            pl.col("quantity_units").sum(), pl.col("amount_units").sum(),
            pl.col("discount_pico").sum(), pl.col("discounted_units").sum(),
        )
        .join(line_nos.lazy(), on="line_no")
        .select(plain.collect_schema().names())
    )
    sums = pl.concat([plain, with_entry]).join(
        accounts.lazy().select("account_id", "currency", "minor_factor", "day_limit"),
        on="account_id",
    )
    label = pl.format("{} {}", "service", "destination_group")
    owner = pl.when(pl.col("assignment_id").is_null()).then(
        pl.format("{} (main product)", "owner")
    ).otherwise(pl.col("owner"))
    common = [
        pl.lit(period).alias("period"),
        pl.lit(None, dtype=pl.Date).alias("term_start"),
        pl.col("day_limit").dt.offset_by("-1d").alias("line_date"),
    ]
    usage = sums.with_columns(
        *common,
        pl.lit("usage").alias("line_type"),
        micro_to_minor(pl.col("amount_units"), pl.col("minor_factor")).alias("amount_minor"),
        pl.when(pl.col("owner").is_null()).then(pl.format("Usage {}", label))
        .otherwise(pl.format("Usage {}: {}", label, owner)).alias("description"),
    )
    discount = sums.filter(pl.col("addon_id").is_not_null()).with_columns(
        *common,
        pl.lit("discount").alias("line_type"),
        (0 - pico_to_minor(pl.col("discount_pico"), pl.col("minor_factor"))).alias(
            "amount_minor"
        ),
        pl.col("discounted_units").alias("quantity_units"),
        pl.format("Discount {}: {}", label, owner).alias("description"),
    )
    return pl.concat([as_lines(usage), as_lines(discount)]).collect()


def counters_after(discounted: pl.DataFrame, entries: Entries, counters_before: pl.DataFrame,
                   accounts: pl.DataFrame) -> pl.DataFrame:
    """One row per window touched (its value after the last event) or carried (`never`)."""
    last = pl.col("head").shift(-1).fill_null(True)
    touched = (
        discounted.lazy()
        .filter(last)
        .select("acct_idx", "entry_key", "window_start", pl.col("c1").alias("value_units"))
        .join(accounts.lazy().select("acct_idx", "account_id"), on="acct_idx")
        .join(entries.table.lazy().select("entry_key", *COUNTER_KIND, "reset"), on="entry_key")
        .select(*WINDOW, "value_units", "reset")
    )
    carried = (
        counters_before.lazy()
        .filter(pl.col("window_start") == NEVER_START)
        .join(accounts.lazy().select("account_id"), on="account_id", how="semi")
        .select(*WINDOW, pl.col("value_units").cast(pl.Int64), pl.lit("never").alias("reset"))
        .join(touched, on=WINDOW, how="anti")
    )
    return (
        pl.concat([touched, carried])
        .select([pl.col(n).cast(t) for n, t in COUNTER_SCHEMA.items()])
        .sort(*WINDOW, "reset")
        .collect()
    )


def usage_detail(discounted: pl.DataFrame, entries: Entries, line_nos: pl.DataFrame,
                 accounts: pl.DataFrame) -> pl.DataFrame:
    """One row per event part: the tier it fell in, its counter range, quantity, amount, discount.

    Parts of a split event are rounded cumulatively (at 10^-12), so they add up exactly to the
    event's quantity, amount and discount.
    """
    if discounted.height == 0 or not entries.tiers:
        return pl.DataFrame(schema=DETAIL_SCHEMA)
    flat = [pl.concat([t[i] for t in entries.tiers]) for i in range(3)]  # index: k * E + key

    def tier_value(series: pl.Series) -> pl.Expr:
        index = pl.col("tier_no") * len(entries.table) + pl.col("entry_key").cast(pl.Int64)
        return pl.lit(series).gather(index)

    keep = ["event_id", "acct_idx", "started_at", "line_no", "entry_key", "window_start", "c0",
            "c1", "x", "quantity_units", "amount_units", "discount_pico"]
    single = discounted.lazy().filter(pl.col("tier_lo") == pl.col("tier_hi")).select(
        *keep, pl.col("tier_lo").cast(pl.Int64).alias("tier_no")
    ).with_columns(
        pct=tier_value(flat[2]),
        counter_from_units=pl.col("c0"),
        counter_to_units=pl.col("c1"),
        part_quantity=pl.col("quantity_units"),
        amount_pico=pl.col("amount_units").cast(pl.Int128) * MICRO,
        part_discount=pl.col("discount_pico"),
    )
    i128 = pl.Int128
    x = pl.col("x").cast(i128)
    lower = pl.max_horizontal(pl.col("c0"), tier_value(flat[0]))
    upper = pl.min_horizontal(pl.col("c1"), tier_value(flat[1]))
    before, through = (lower - pl.col("c0")).cast(i128), (upper - pl.col("c0")).cast(i128)
    in_tier = (upper - lower).cast(i128) * pl.col("pct")
    amount = pl.col("amount_units").cast(i128)

    def share(total: pl.Expr, upto: pl.Expr) -> pl.Expr:
        return round_half_away(total * upto, x)

    split = (
        discounted.lazy()
        .filter(pl.col("tier_lo") != pl.col("tier_hi"))
        .select(*keep, pl.int_ranges("tier_lo", pl.col("tier_hi") + 1, dtype=pl.Int64)
                .alias("tier_no"))
        .explode("tier_no")
        .with_columns(pct=tier_value(flat[2]))
        .with_columns(weighted=in_tier.cum_sum().over("event_id"))
        .with_columns(
            counter_from_units=lower,
            counter_to_units=upper,
            part_quantity=(
                share(pl.col("quantity_units").cast(i128), through)
                - share(pl.col("quantity_units").cast(i128), before)
            ).cast(pl.Int64),
            amount_pico=share(amount * MICRO, through) - share(amount * MICRO, before),
            part_discount=share(amount * PCT_TO_PICO, pl.col("weighted"))
            - share(amount * PCT_TO_PICO, pl.col("weighted") - in_tier),
        )
        .drop("weighted")
    )
    return (
        pl.concat([single, split])
        .join(line_nos.lazy().select("line_no", *KEY, "assignment_id", "addon_id"),
              on="line_no")
        .join(entries.table.lazy().select("entry_key", "threshold_type", "reset"), on="entry_key")
        .select(
            "event_id", *KEY, "started_at", "assignment_id", "addon_id", "threshold_type",
            "reset", "window_start", "tier_no", "pct", "counter_from_units", "counter_to_units",
            pl.col("part_quantity").alias("quantity_units"), "amount_pico",
            pl.col("part_discount").alias("discount_pico"),
        )
        .select([pl.col(n).cast(t) for n, t in DETAIL_SCHEMA.items()])
        .sort("account_id", "started_at", "event_id", "tier_no")
        .collect(engine="streaming")
    )


def usage_charges(
    catalog: CatalogFrames,
    account_rows: pl.DataFrame,
    lifecycles: pl.DataFrame,
    usage: pl.DataFrame,
    counters_before: pl.DataFrame,
    accounts: pl.DataFrame,
    period: str,
    detail: bool = True,
) -> UsageResult:
    """Usage and discount lines, counters and per-event detail of one period.

    `account_rows` are the raw account versions (for the main product at a date); `accounts`
    is the coordinator's context, one row per account with `acct_idx` and the day limit.
    """
    entries = discount_entries(catalog)
    candidates = discount_candidates(catalog, entries, account_rows, lifecycles, accounts)
    timeline, line_nos = winner_timeline(candidates)
    plain_sums, discountable = rated_events(usage, accounts, entries, timeline)
    counted = counted_events(discountable, entries, accounts, counters_before)
    del discountable
    discounted = discounted_events(counted, entries)
    del counted
    lines = usage_lines(plain_sums, discounted, line_nos, accounts, period)
    return UsageResult(
        lines=lines,
        counters_after=counters_after(discounted, entries, counters_before, accounts),
        detail=usage_detail(discounted, entries, line_nos, accounts) if detail
        else pl.DataFrame(schema=DETAIL_SCHEMA),
    )
