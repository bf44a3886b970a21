"""Polars reductions around the rules: assignments in, distinct situations out, verdicts back.

Nothing here decides a business outcome. These functions look up the account's state at a date,
pair up assignments whose life cycles overlap, number distinct situations, clip dates to a period
and settle chains of pairwise verdicts. All of them are vectorized: no Python loop over rows.
"""

from __future__ import annotations

import polars as pl

from pipeline.contracts import OPEN_END, close_date, first_billing_day


def distinct_situations(
    frame: pl.DataFrame, keys: list[str], prefix: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Number the distinct `keys` of `frame` (in sorted order, so ids are stable).

    Returns `frame` with a `situation` column, and one row per situation: situation, *keys.
    """
    distinct = (
        frame.select(keys)
        .unique()
        .sort(keys, nulls_last=True)
        .with_row_index("n")
        .select((pl.lit(f"{prefix}:") + pl.col("n").cast(pl.Utf8)).alias("situation"), *keys)
    )
    tagged = frame.join(distinct, on=keys, how="left", nulls_equal=True)
    return tagged, distinct


def account_history(accounts: pl.DataFrame) -> pl.DataFrame:
    """The account rows with `effective_from` defaulted to `opened_on`, sorted by it."""
    return accounts.with_columns(
        pl.coalesce("effective_from", "opened_on").alias("effective_from")
    ).sort("account_id", "effective_from")


def account_profile(history: pl.DataFrame) -> pl.DataFrame:
    """One row per account: acct (an integer key), billing_day (earliest row, as
    `pipeline.periods.account_periods` takes it), close_date, first_currency.

    `close_date` as `pipeline.contracts.close_date` declares it.
    """
    return (
        history.group_by("account_id")
        .agg(
            first_billing_day(),
            close_date().alias("close_date"),
            pl.col("currency").sort_by("effective_from").first().alias("first_currency"),
        )
        .sort("account_id")
        .with_row_index("acct")
    )


def activation_context(
    work: pl.DataFrame, history: pl.DataFrame, profile: pl.DataFrame
) -> pl.DataFrame:
    """Add to each assignment (`work` in seq order) the account's state at `start_date`.

    Adds product (main product of the latest row with effective_from <= start_date, "" when
    the account has no row yet), currency, close_date, closed_at_activation, and the account's
    acct key and billing_day (null, and billing day 1, for an account without rows).
    """
    rows = history.select(
        "account_id",
        pl.col("effective_from").alias("row_from"),
        pl.col("main_product_id").alias("row_product"),
        pl.col("currency").alias("row_currency"),
    ).sort("row_from")
    narrow = (
        work.select("seq", "account_id", "start_date")
        .sort("start_date")
        .join_asof(
            rows,
            left_on="start_date",
            right_on="row_from",
            by="account_id",
            strategy="backward",
            check_sortedness=False,
        )
        .join(profile, on="account_id", how="left")
        .sort("seq")
    )
    context = narrow.select(
        "acct",
        pl.col("billing_day").fill_null(1),
        "close_date",
        pl.col("row_product").fill_null("").alias("product"),
        pl.coalesce("row_currency", "first_currency", pl.lit("")).alias("currency"),
        (pl.col("close_date") <= pl.col("start_date")).fill_null(False).alias(
            "closed_at_activation"
        ),
    )
    return work.hstack(context)


def later_rows(work: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """The account rows that take effect after each assignment's activation and before its
    provisional end. `work`: seq, account_id, addon, start_date, end_cut (null = open).
    Returns seq, addon, change_date, product."""
    rows = history.select(
        "account_id",
        pl.col("effective_from").alias("change_date"),
        pl.col("main_product_id").alias("product"),
    )
    return (
        work.select("seq", "account_id", "addon", "start_date", "end_cut")
        .join(rows, on="account_id")
        .filter(
            (pl.col("change_date") > pl.col("start_date"))
            & (pl.col("change_date") < pl.col("end_cut").fill_null(OPEN_END))
        )
        .select("seq", "addon", "change_date", "product")
    )


def with_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by (assigned_at, assignment_id) and add `seq`, the rank in that order (first = 0).

    `seq` is the row key of the rules' work frames: it is dense, so `seq` is also the row index.
    """
    return frame.sort("assigned_at", "assignment_id").with_row_index("seq")


def overlapping_pairs(frame: pl.DataFrame) -> pl.DataFrame:
    """Pairs of assignments on one account whose life cycles [start, cut) overlap.

    `frame`: seq, acct (the account's integer key), addon, start_date, end_cut (null = open).
    Returns first_seq < later_seq, first_addon, later_addon, later_start.
    """
    side = frame.select(
        "acct", "seq", "addon", "start_date",
        pl.col("end_cut").fill_null(OPEN_END).alias("cut"),
    ).filter(pl.col("start_date") < pl.col("cut"))
    busy = side.group_by("acct").len().filter(pl.col("len") > 1).select("acct")
    side = side.join(busy, on="acct", how="semi")
    return (
        side.join(side, on="acct", suffix="_later")
        .filter(
            (pl.col("seq") < pl.col("seq_later"))
            & (pl.col("start_date") < pl.col("cut_later"))
            & (pl.col("start_date_later") < pl.col("cut"))
        )
        .select(
            pl.col("seq").alias("first_seq"),
            pl.col("seq_later").alias("later_seq"),
            pl.col("addon").alias("first_addon"),
            pl.col("addon_later").alias("later_addon"),
            pl.col("start_date_later").alias("later_start"),
        )
    )


def settle_first_come(edges: pl.DataFrame, max_rounds: int = 10_000) -> pl.DataFrame:
    """Settle chains of "the later one loses to the earlier one" in assignment order.

    `edges`: first_seq, later_seq — each says the later assignment loses if the first one still
    stands. An assignment that lost takes nothing from anyone after it. Returns the losers: seq,
    winner_seq (the earliest standing assignment it lost to).
    """
    schema = {"seq": pl.UInt32, "winner_seq": pl.UInt32}
    if edges.height == 0:
        return pl.DataFrame(schema=schema)
    edges = edges.select(
        pl.col("first_seq").cast(pl.UInt32), pl.col("later_seq").cast(pl.UInt32)
    ).unique()
    nodes = pl.concat([edges.select(pl.col("first_seq").alias("seq")),
                       edges.select(pl.col("later_seq").alias("seq"))]).unique()
    state = nodes.with_columns(pl.lit(None, pl.Boolean).alias("kept"))
    winners = pl.DataFrame(schema=schema)
    for _ in range(max_rounds):
        undecided = state.filter(pl.col("kept").is_null())
        if undecided.height == 0:
            return winners.sort("seq")
        incoming = edges.join(
            state.rename({"seq": "first_seq", "kept": "first_kept"}), on="first_seq"
        )
        per = incoming.group_by("later_seq").agg(
            pl.col("first_kept").fill_null(False).any().alias("beaten"),
            pl.col("first_kept").is_not_null().all().alias("all_decided"),
            pl.col("first_seq").filter(pl.col("first_kept").fill_null(False)).min()
            .alias("winner_seq"),
        )
        step = undecided.join(per, left_on="seq", right_on="later_seq", how="left").with_columns(
            pl.when(pl.col("beaten").fill_null(False)).then(pl.lit(False))
            .when(pl.col("all_decided").fill_null(True)).then(pl.lit(True))
            .otherwise(None).alias("now_kept")
        )
        winners = pl.concat(
            [winners, step.filter(~pl.col("now_kept")).select("seq", "winner_seq")]
        )
        state = state.join(
            step.select("seq", "now_kept"), on="seq", how="left"
        ).select("seq", pl.coalesce("kept", "now_kept").alias("kept"))
    raise RuntimeError("settle_first_come: chains did not settle (a cycle in the edges?)")


def period_positions(frame: pl.DataFrame) -> pl.DataFrame:
    """Day numbers of each life cycle relative to its period: start, end, period_end.

    `frame`: eff_start, eff_end (null = open), period_start, period_end. Days count from the
    period's first day (0) and are clipped to one day outside the period on each side (-1 and
    period_end + 1), which keeps every comparison with the period and between start and end.
    """
    length = (pl.col("period_end") - pl.col("period_start")).dt.total_days()
    return frame.with_columns(
        length.alias("pos_period_end"),
        (pl.col("eff_start") - pl.col("period_start")).dt.total_days()
        .clip(-1, length + 1).alias("pos_start"),
        (pl.col("eff_end").fill_null(OPEN_END) - pl.col("period_start")).dt.total_days()
        .clip(-1, length + 1).alias("pos_end"),
    )


def date_text(day: pl.Expr) -> pl.Expr:
    """A date as ISO text for a reason ("open" when null)."""
    return day.dt.strftime("%Y-%m-%d").fill_null("open")


def fill_reason(reason: pl.Expr, values: dict[str, pl.Expr]) -> pl.Expr:
    """Replace each `{name}` placeholder of a reason template by its value."""
    for name, value in values.items():
        reason = reason.str.replace_all("{" + name + "}", value, literal=True)
    return reason
