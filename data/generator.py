"""Realistic synthetic inputs (SPEC §2) of any size: seeded, reproducible, streamed.

Accounts are made in fixed chunks; each chunk's accounts, assignments and usage are built with
vectorized Polars expressions and appended to the output files, so memory is bounded by one chunk.
Randomness is counter-based: every value is a hash of (seed, stream, key), where the key is the
account number, assignment slot or event number. Output therefore depends only on the arguments
(and the pinned Polars version), never on threads or timing: the same arguments give
byte-identical files.

What the data holds, on purpose:
- three main products, currencies USD/EUR/JPY, ~2.5 add-ons per account, ~50 events per account
  and month over voice (US/INTL/ROAM), data (ANY) and sms (ANY);
- main product changes (a second account row with a later effective_from), closed and suspended
  accounts, accounts suspended for a few days (a suspended row, then an active row: §7.2),
  removals (end_date), same-priority conflicts (ADD_VOICE100 with ADD_VOICE200),
  ineligible assignments (an add-on the product does not offer, a fee plan in another currency,
  a second once-per-account subscription);
- ~0.5 % bad rows in each file, of every kind the loader must reject;
- SPEC §8: the catalog is the sample's with §8 keys added (`generated_catalog_text`: subscriptions
  with `plan_change: end_of_term` and `upgrades_now`, fee plans with `minimum_terms` and an
  `early_termination_fee`; no `finalize_grace_days`), and, unless `changes=False`, change rows
  (SPEC §8.1): ~5 % of assignments get a later row changing the fee plan (to another plan of
  the same subscription and currency; a few to a plan of another currency or subscription,
  which the rules refuse), ~5 % one changing the quantity, and a few get a second change a few
  days after the first, which supersedes it where the first waits for a term's end. A change row
  repeats its base row (`assignment_id, account_id, addon_id, start_date, end_date,
  assigned_at`) with the new `fee_plan_id` or `quantity` and an `effective_from` after the start
  and before the end; base rows leave `effective_from` empty (a nullable DATE in Parquet).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalog import Catalog, parse_catalog
from pipeline.contracts import INPUT_COLUMNS
from pipeline.periods import add_months, parse_period

# The columns the generator writes: every input column but assignments' `effective_from`
# (SPEC §8.1, optional): it makes no change rows, so its files read as they did before.
COLUMNS: dict[str, tuple[str, ...]] = {
    kind: tuple(c for c in columns if (kind, c) != ("assignments", "effective_from"))
    for kind, columns in INPUT_COLUMNS.items()
}

# Fixed, so that the row order of the files does not depend on anything but the arguments.
CHUNK_ACCOUNTS = 20_000
BAD_SHARE = 0.005

_SHIFT32 = 1 << 32
VOICE_GROUP = ("ADD_VOICE100", "ADD_VOICE200", "ADD_VOICE100R")

# SPEC §8.1 change rows: the share of assignments that get a change of fee plan, and of quantity;
# of the fee plan changes, the share that target a plan the rules refuse, and the share of those
# to a plan that waits for its term's end that get a second change a few days later.
PLAN_CHANGE_SHARE = 0.05
QUANTITY_CHANGE_SHARE = 0.05
REFUSED_CHANGE_SHARE = 0.10
SECOND_CHANGE_SHARE = 0.25
# The assignments file with change rows: the SPEC §2 columns plus `effective_from` (SPEC §8.5).
CHANGE_COLUMN = "effective_from"


@dataclass
class GenerateReport:
    """What was written: rows per file and deliberately bad rows per file."""

    out: Path
    accounts: int
    seed: int
    months: int
    start: str
    rows: dict[str, int] = field(default_factory=dict)
    bad: dict[str, int] = field(default_factory=dict)
    changes: int = 0  # SPEC §8.1 change rows in the assignments file (among its rows)


# ---------------------------------------------------------------------------------------------
# Counter-based randomness in Polars (no per-row Python, no global state)


def _salt(seed: int, stream: str) -> int:
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rand32(key: pl.Expr, seed: int, stream: str) -> pl.Expr:
    """A uniform integer in [0, 2^32) for each key, fixed by (seed, stream).

    Polars' own hash is fast and deterministic, though only guaranteed stable within one
    Polars version (pinned in pyproject.toml); the top 32 bits are kept.
    """
    return key.cast(pl.UInt64).hash(seed=_salt(seed, stream)) // _SHIFT32


def below(key: pl.Expr, seed: int, stream: str, n: int | pl.Expr) -> pl.Expr:
    """A uniform integer in [0, n) (Int64)."""
    n_expr = n if isinstance(n, pl.Expr) else pl.lit(n)
    return ((rand32(key, seed, stream) * n_expr.cast(pl.UInt64)) // _SHIFT32).cast(pl.Int64)


def chance(key: pl.Expr, seed: int, stream: str, p: float) -> pl.Expr:
    """True with probability `p`."""
    return rand32(key, seed, stream) < int(p * _SHIFT32)


# ---------------------------------------------------------------------------------------------
# Formatting helpers


def _padded(prefix: str, n: pl.Expr, width: int) -> pl.Expr:
    return pl.concat_str([pl.lit(prefix), n.cast(pl.String).str.pad_start(width, "0")])


def _decimal_text(units: pl.Expr, scale: int) -> pl.Expr:
    """An exact decimal text of `units / 10^scale` (non-negative)."""
    base = 10**scale
    return pl.concat_str(
        [
            (units // base).cast(pl.String),
            pl.lit("."),
            (units % base).cast(pl.String).str.pad_start(scale, "0"),
        ]
    )


def _day_text(d: pl.Expr) -> pl.Expr:
    return d.dt.strftime("%Y-%m-%d")


# ---------------------------------------------------------------------------------------------
# Catalog-derived choices


def sample_catalog_text() -> str:
    """The sample catalog that generated data sets use."""
    return resources.files("data").joinpath("sample/catalog.yaml").read_text(encoding="utf-8")


# SPEC §8 keys the generated catalog adds to the sample's: (a line of the sample, that line
# with them). Each must be found exactly once, so that a change to the sample fails loudly here.
_SECTION_8_KEYS = (
    ("# The sample catalog:",
     "# Generated by `billrun generate`: the sample catalog with SPEC 8 keys (plan_change,\n"
     "# minimum_terms, early_termination_fee).\n# The sample catalog:"),
    ("  - id: SUB_VOICE\n    charge_mode: in_advance\n",
     "  - id: SUB_VOICE\n    charge_mode: in_advance\n"
     "    plan_change: end_of_term  # SPEC 8.1: a change waits for the term's end\n"),
    ("  - id: SUB_VOICE200\n",
     "  - id: SUB_VOICE200\n"
     "    plan_change: upgrades_now  # SPEC 8.1: an upgrade now, the rest at the term's end\n"),
    ("  - id: SUB_SEATS\n", "  - id: SUB_SEATS\n    plan_change: upgrades_now\n"),
    ('{id: V200_12, term_months: 12, fee: "80.00", currency: USD}',
     '{id: V200_12, term_months: 12, fee: "80.00", currency: USD, minimum_terms: 1, '
     'early_termination_fee: "20.00"}'),
    ('{id: TV1, term_months: 1, fee: "30.00", currency: USD}',
     '{id: TV1, term_months: 1, fee: "30.00", currency: USD, minimum_terms: 12, '
     'early_termination_fee: "100.00"}'),
    ('{id: TV1E, term_months: 1, fee: "28.00", currency: EUR}',
     '{id: TV1E, term_months: 1, fee: "28.00", currency: EUR, minimum_terms: 12, '
     'early_termination_fee: "90.00"}'),
    ('{id: D5_3, term_months: 3, fee: "20.00", currency: USD}',
     '{id: D5_3, term_months: 3, fee: "20.00", currency: USD, minimum_terms: 2, '
     'early_termination_fee: "15.00"}'),
    ('{id: SEAT6, term_months: 6, fee: "21.00", currency: USD}',
     '{id: SEAT6, term_months: 6, fee: "21.00", currency: USD, minimum_terms: 2, '
     'early_termination_fee: "10.00"}'),
    ('{id: S1J, term_months: 1, fee: "300", currency: JPY}',
     '{id: S1J, term_months: 1, fee: "300", currency: JPY, minimum_terms: 6, '
     'early_termination_fee: "1000"}'),
)


def generated_catalog_text() -> str:
    """The catalog generated data sets use: the sample's, with SPEC §8's `plan_change`,
    `minimum_terms` and `early_termination_fee` on some subscriptions and fee plans. It sets no
    `finalize_grace_days` (a period is finalized on the first night after it ends, as before)."""
    text = sample_catalog_text()
    for old, new in _SECTION_8_KEYS:
        if text.count(old) != 1:
            raise RuntimeError(f"the sample catalog no longer has exactly one {old!r}")
        text = text.replace(old, new)
    return text


def _change_plans(cat: Catalog) -> pl.DataFrame:
    """For each (add-on, currency) of a subscription: `alts`, its subscription's fee plans in
    that currency (a change picks one other than the current plan); `wrong`, a plan the rules
    refuse for it (of the same subscription in another currency, else of another subscription);
    `deferred`, whether a change may wait for the term's end (`plan_change` not immediate)."""
    subs = list(cat.subscriptions)
    rows = []
    for addon in cat.addons:
        if addon.subscription is None:
            continue
        index = next(i for i, s in enumerate(subs) if s.id == addon.subscription)
        sub, other = subs[index], subs[(index + 1) % len(subs)]
        for currency in cat.currencies:
            alts = [fp.id for fp in sub.fee_plans if fp.currency == currency]
            elsewhere = [fp.id for fp in sub.fee_plans if fp.currency != currency]
            rows.append({
                "addon_id": addon.id, "currency": currency, "alts": alts,
                "wrong": (elsewhere or [fp.id for fp in other.fee_plans])[0],
                "deferred": sub.plan_change != "immediate",
            })
    return pl.DataFrame(rows, schema={
        "addon_id": pl.String, "currency": pl.String, "alts": pl.List(pl.String),
        "wrong": pl.String, "deferred": pl.Boolean,
    })


def _offers(cat: Catalog) -> pl.DataFrame:
    """Every (main product, currency, add-on) an account may hold, with the eligible fee plans."""
    subs = {s.id: s for s in cat.subscriptions}
    rows = []
    addon_index = {a.id: i for i, a in enumerate(cat.addons)}
    for mp in cat.main_products:
        for currency in cat.currencies:
            for addon_id in mp.available_addons:
                addon = cat.addon(addon_id)
                plans = (
                    [fp.id for fp in subs[addon.subscription].fee_plans if fp.currency == currency]
                    if addon.subscription
                    else [None]
                )
                if plans:
                    rows.append(
                        {
                            "main_product_id": mp.id,
                            "currency": currency,
                            "addon_id": addon_id,
                            "addon_no": addon_index[addon_id],
                            "group": "VOICE" if addon_id in VOICE_GROUP else addon_id,
                            "plans": plans,
                        }
                    )
    return pl.DataFrame(
        rows,
        schema={
            "main_product_id": pl.String, "currency": pl.String, "addon_id": pl.String,
            "addon_no": pl.Int64, "group": pl.String, "plans": pl.List(pl.String),
        },
    )


def _plan_for(addon: str, currency: pl.Expr, cat: Catalog, *, wrong: bool = False) -> pl.Expr:
    """The add-on's first fee plan in the account's currency, or (wrong=True) in another one."""
    sub = next(s for s in cat.subscriptions if s.id == cat.addon(addon).subscription)
    by_currency: dict[str, str] = {}
    for fp in sub.fee_plans:
        by_currency.setdefault(fp.currency, fp.id)
    if wrong:
        other = {c: next(p for k, p in by_currency.items() if k != c) for c in cat.currencies}
        return currency.replace_strict(other, default=None)
    return currency.replace_strict(by_currency, default=next(iter(by_currency.values())))


# ---------------------------------------------------------------------------------------------
# One chunk


@dataclass(frozen=True)
class _Horizon:
    start: date
    end: date
    months: list[date]

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def _accounts(n0: int, n1: int, seed: int, h: _Horizon) -> pl.DataFrame:
    """One row per account of the chunk, with its scenario columns (not yet file rows)."""
    n = pl.col("n")
    scenario = below(n, seed, "scenario", 1000)
    opened_before = pl.lit(h.start) - pl.duration(days=1 + below(n, seed, "opened", 730))
    opened_during = pl.lit(h.start) + pl.duration(days=below(n, seed, "opened2", h.days - 1))
    frame = pl.DataFrame({"n": pl.int_range(n0, n1, eager=True, dtype=pl.Int64)})
    frame = frame.with_columns(
        _padded("A", n + 1, 8).alias("account_id"),
        pl.when(below(n, seed, "currency", 1000) < 850)
        .then(pl.lit("USD"))
        .when(below(n, seed, "currency", 1000) < 970)
        .then(pl.lit("EUR"))
        .otherwise(pl.lit("JPY"))
        .alias("currency"),
        below(n, seed, "product", 100).alias("_mp"),
        pl.when(chance(n, seed, "day1", 0.6))
        .then(1)
        .otherwise(2 + below(n, seed, "day", 27))
        .alias("billing_day"),
        pl.when(chance(n, seed, "new", 0.08))
        .then(opened_during)
        .otherwise(opened_before)
        .alias("opened_on"),
        scenario.alias("scenario"),
    ).with_columns(
        pl.when(pl.col("_mp") < 45)
        .then(pl.lit("MP_BASIC"))
        .when(pl.col("_mp") < 80)
        .then(pl.lit("MP_PLUS"))
        .otherwise(pl.lit("MP_BIZ"))
        .alias("main_product_id"),
    )
    # A day within the horizon, after the opening: for product changes and closings.
    later = pl.max_horizontal(pl.col("opened_on") + pl.duration(days=1), pl.lit(h.start)) + (
        pl.duration(days=below(n, seed, "later", max(h.days - 2, 1)))
    )
    products = ["MP_BASIC", "MP_PLUS", "MP_BIZ"]
    return frame.with_columns(
        pl.when(pl.col("scenario") < 30).then(later).alias("changed_on"),
        pl.when(pl.col("scenario") < 30)
        .then(
            pl.col("main_product_id").replace_strict(
                {p: products[(i + 1) % 3] for i, p in enumerate(products)}
            )
        )
        .alias("new_product_id"),
        pl.when(pl.col("scenario").is_between(30, 49)).then(later).alias("closed_on"),
        # SPEC §7.2: suspended for 3 to 20 days from a day in the horizon, then active again.
        pl.when(pl.col("scenario").is_between(70, 84)).then(later).alias("suspended_on"),
        pl.when(pl.col("scenario").is_between(70, 84))
        .then(later + pl.duration(days=3 + below(n, seed, "suspended_days", 18)))
        .alias("resumed_on"),
        pl.when(pl.col("scenario").is_between(30, 49))
        .then(pl.lit("closed"))
        .when(pl.col("scenario").is_between(50, 69))
        .then(pl.lit("suspended"))
        .otherwise(pl.lit("active"))
        .alias("status"),
    )


def _account_rows(acc: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The accounts file rows: one per account, a second one for product changes."""
    n = pl.col("n")
    first = acc.select(
        "n", "account_id", "currency", "main_product_id",
        pl.col("billing_day").cast(pl.String),
        "status",
        _day_text(pl.col("opened_on")).alias("opened_on"),
        _day_text(pl.col("closed_on")).alias("closed_on"),
        # effective_from is optional and defaults to opened_on: leave it out now and then.
        pl.when(chance(n, seed, "eff_blank", 0.3))
        .then(pl.lit(None, pl.String))
        .otherwise(_day_text(pl.col("opened_on")))
        .alias("effective_from"),
        pl.lit(0).alias("_v"),
    )
    second = acc.filter(pl.col("changed_on").is_not_null()).select(
        "n", "account_id", "currency", pl.col("new_product_id").alias("main_product_id"),
        pl.col("billing_day").cast(pl.String),
        "status",
        _day_text(pl.col("opened_on")).alias("opened_on"),
        _day_text(pl.col("closed_on")).alias("closed_on"),
        _day_text(pl.col("changed_on")).alias("effective_from"),
        pl.lit(1).alias("_v"),
    )
    paused = acc.filter(pl.col("suspended_on").is_not_null())

    def status_row(status: str, day: str, version: int) -> pl.DataFrame:
        return paused.select(
            "n", "account_id", "currency", "main_product_id",
            pl.col("billing_day").cast(pl.String),
            pl.lit(status).alias("status"),
            _day_text(pl.col("opened_on")).alias("opened_on"),
            _day_text(pl.col("closed_on")).alias("closed_on"),
            _day_text(pl.col(day)).alias("effective_from"),
            pl.lit(version).alias("_v"),
        )

    return pl.concat([
        first, second, status_row("suspended", "suspended_on", 2),
        status_row("active", "resumed_on", 3),
    ]).sort("n", "_v")


def _assignment_rows(
    acc: pl.DataFrame, offers: pl.DataFrame, cat: Catalog, seed: int, h: _Horizon,
    change_plans: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The assignments file rows of the chunk, regular ones and the ineligible scenarios, and
    with `change_plans` (`_change_plans`) their change rows (SPEC §8.1) after each base row."""
    n = pl.col("n")
    acc = acc.with_columns(
        below(n, seed, "asg_scenario", 1000).alias("asc"),
        below(n, seed, "addons", 6).alias("k"),
    ).with_columns(
        # Scenario accounts keep their scenario's add-on out of the random picks.
        pl.when(
            (pl.col("asc") < 50)
            & (pl.col("main_product_id") != "MP_BIZ")
            & (pl.col("currency") != "JPY")
        )
        .then(pl.lit("conflict"))
        .when(pl.col("asc").is_between(50, 59))
        .then(pl.lit("not_offered"))
        .when(pl.col("asc").is_between(60, 69))
        .then(pl.lit("wrong_currency"))
        .when(pl.col("asc").is_between(70, 79))
        .then(pl.lit("second_once"))
        .alias("asg_case")
    )
    key = n * 16 + pl.col("addon_no")
    picks = (
        acc.join(offers, on=["main_product_id", "currency"], how="inner")
        .filter(
            ~(
                ((pl.col("asg_case") == "conflict") & (pl.col("group") == "VOICE"))
                | (
                    (pl.col("asg_case") == "wrong_currency")
                    & pl.col("addon_id").is_in(["ADD_TV", "ADD_VOICE200"])
                )
            ).fill_null(False)
        )
        .with_columns(rand32(key, seed, "pick").alias("_r"))
        .sort("n", "_r")
        .filter(pl.int_range(pl.len()).over("n", "group") == 0)
        .filter(pl.int_range(pl.len()).over("n") < pl.col("k"))
        .with_columns(
            pl.int_range(pl.len()).over("n").alias("slot"),
            pl.col("plans")
            .list.get(below(key, seed, "plan", pl.col("plans").list.len()), null_on_oob=True)
            .alias("fee_plan_id"),
        )
    )
    regular = picks.select(
        "n", "account_id", "currency", "opened_on", "slot", "addon_id", "fee_plan_id",
        pl.lit(0).alias("_late"),
    )
    extras = _scenario_assignments(acc, regular, cat)
    rows = pl.concat([regular, extras], how="vertical_relaxed")
    return _dated_assignments(rows, seed, h, change_plans)


def _scenario_assignments(acc: pl.DataFrame, regular: pl.DataFrame, cat: Catalog) -> pl.DataFrame:
    """Extra assignments that the rules must settle: conflicts and ineligible ones."""
    base = ["n", "account_id", "currency", "opened_on"]
    cur = pl.col("currency")
    conflict = acc.filter(pl.col("asg_case") == "conflict")
    voice100 = conflict.select(
        *base, pl.lit(10).alias("slot"), pl.lit("ADD_VOICE100").alias("addon_id"),
        _plan_for("ADD_VOICE100", cur, cat).alias("fee_plan_id"), pl.lit(0).alias("_late"),
    )
    voice200 = conflict.select(
        *base, pl.lit(11).alias("slot"), pl.lit("ADD_VOICE200").alias("addon_id"),
        _plan_for("ADD_VOICE200", cur, cat).alias("fee_plan_id"), pl.lit(1).alias("_late"),
    )
    off = acc.filter(pl.col("asg_case") == "not_offered")
    is_biz = pl.col("main_product_id") == "MP_BIZ"
    not_offered = off.select(
        *base, pl.lit(12).alias("slot"),
        pl.when(is_biz).then(pl.lit("ADD_TV")).otherwise(pl.lit("ADD_ROAM")).alias("addon_id"),
        pl.when(is_biz)
        .then(_plan_for("ADD_TV", cur, cat))
        .otherwise(pl.lit("R12"))
        .alias("fee_plan_id"),
        pl.lit(1).alias("_late"),
    )
    wrong = acc.filter(pl.col("asg_case") == "wrong_currency")
    wrong_currency = wrong.select(
        *base, pl.lit(13).alias("slot"),
        pl.when(is_biz).then(pl.lit("ADD_VOICE200")).otherwise(pl.lit("ADD_TV")).alias("addon_id"),
        pl.when(is_biz)
        .then(_plan_for("ADD_VOICE200", cur, cat, wrong=True))
        .otherwise(_plan_for("ADD_TV", cur, cat, wrong=True))
        .alias("fee_plan_id"),
        pl.lit(1).alias("_late"),
    )
    once_subs = {s.id for s in cat.subscriptions if s.once_per_account}
    once_addons = [a.id for a in cat.addons if a.subscription in once_subs]
    second_once = (
        regular.join(
            acc.filter(pl.col("asg_case") == "second_once").select("n"), on="n", how="semi"
        )
        .filter((pl.col("slot") == 0) & pl.col("addon_id").is_in(once_addons))
        .with_columns(pl.lit(14).alias("slot"), pl.lit(1).alias("_late"))
    )
    return pl.concat(
        [voice100, voice200, not_offered, wrong_currency, second_once], how="vertical_relaxed"
    )


def _dated_assignments(
    rows: pl.DataFrame, seed: int, h: _Horizon, change_plans: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Give each assignment its dates, quantity and text form; with `change_plans`, add its
    change rows (`_change_rows`) and the `effective_from` column."""
    key = pl.col("n") * 16 + pl.col("slot")
    early = pl.lit(h.start) - pl.duration(days=400)
    start = pl.max_horizontal(
        pl.col("opened_on"),
        early + pl.duration(days=below(key, seed, "start", 400 + h.days - 1)),
    )
    # Late scenario rows start well after the first ones, so life cycles overlap and conflict.
    start = pl.when(pl.col("_late") == 1).then(
        pl.max_horizontal(start, pl.lit(h.start) + pl.duration(days=below(key, seed, "late", 20)))
    ).otherwise(start)
    removed = chance(key, seed, "removed", 0.10) & (pl.col("_late") == 0)
    frame = rows.with_columns(start.alias("_start")).with_columns(
        pl.when(removed)
        .then(pl.col("_start") + pl.duration(days=1 + below(key, seed, "length", 120)))
        .alias("_end"),
        (
            pl.col("_start").cast(pl.Datetime("us"))
            - pl.duration(seconds=below(key, seed, "assigned", 5 * 86400))
        ).alias("_assigned"),
        pl.when(pl.col("addon_id") == "ADD_SEATS")
        .then((1 + below(key, seed, "seats", 5)).cast(pl.String))
        .when(chance(key, seed, "qty_blank", 0.5))
        .then(pl.lit(None, pl.String))
        .otherwise(pl.lit("1"))
        .alias("quantity"),
    )
    iso = chance(key, seed, "iso", 0.1)
    frame = frame.sort("n", "slot")
    extra: list[pl.Expr] = []
    if change_plans is not None:
        base = frame.with_columns(
            pl.lit(None, pl.Date).alias(CHANGE_COLUMN), pl.lit(0).alias("_v")
        )
        frame = pl.concat([base, _change_rows(base, change_plans, seed, h)]).sort(
            "n", "slot", "_v"
        )
        extra = [pl.col(CHANGE_COLUMN)]
    return frame.select(
        "n",
        pl.concat_str([pl.lit("S"), pl.col("account_id").str.slice(1), pl.lit("-"),
                       pl.col("slot").cast(pl.String)]).alias("assignment_id"),
        "account_id", "addon_id", "fee_plan_id",
        _day_text(pl.col("_start")).alias("start_date"),
        _day_text(pl.col("_end")).alias("end_date"),
        pl.when(iso)
        .then(pl.col("_assigned").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .otherwise(pl.col("_assigned").dt.strftime("%Y-%m-%d %H:%M:%S"))
        .alias("assigned_at"),
        "quantity",
        *extra,
    )


def _change_rows(
    base: pl.DataFrame, change_plans: pl.DataFrame, seed: int, h: _Horizon
) -> pl.DataFrame:
    """The change rows (SPEC §8.1) of the chunk's base assignment rows (module doc), in the
    base rows' internal columns, with `effective_from` and `_v` (1, or 2 for a second change).

    Each assignment draws one uniform number: below PLAN_CHANGE_SHARE's threshold it changes
    its fee plan, in a disjoint band its quantity. The thresholds are scaled by the share of
    rows that can have the change (another plan in their currency; a fee plan at all), so that
    each is about 5 % of all assignments."""
    key = pl.col("n") * 16 + pl.col("slot")
    day = pl.duration(days=1)
    # A day strictly after the start and before the end (or the horizon's end when open),
    # within the horizon where it can be.
    hi = pl.coalesce(pl.col("_end"), pl.lit(h.end))
    lo = pl.max_horizontal(pl.col("_start") + day, pl.lit(h.start))
    lo = pl.when(lo < hi).then(lo).otherwise(pl.col("_start") + day)
    hi = pl.when(pl.col("_end").is_null()).then(pl.max_horizontal(hi, lo + day)).otherwise(hi)
    frame = base.join(change_plans, on=["addon_id", "currency"], how="left").with_columns(
        lo.alias("_lo"), hi.alias("_hi"),
        pl.col("alts").list.set_difference(pl.concat_list(pl.col("fee_plan_id"))).alias("_other"),
        rand32(key, seed, "change").alias("_u"),
    ).with_columns(
        (pl.col("_lo") < pl.col("_hi")).alias("_room"),
        (pl.col("_hi") - pl.col("_lo")).dt.total_days().alias("_span"),
    )
    can_plan = pl.col("_room") & (pl.col("_other").list.len() > 0).fill_null(False)
    can_quantity = pl.col("_room") & pl.col("fee_plan_id").is_not_null()
    counts = frame.select(can_plan.sum().alias("plan"), can_quantity.sum().alias("qty"))
    total = base.height

    def threshold(share: float, eligible: int) -> int:
        return int(min(0.5, share * total / max(eligible, 1)) * _SHIFT32)

    plan_below = threshold(PLAN_CHANGE_SHARE, counts["plan"].item())
    qty_band = threshold(QUANTITY_CHANGE_SHARE, counts["qty"].item())
    half = _SHIFT32 // 2
    frame = frame.with_columns(
        (can_plan & (pl.col("_u") < plan_below)).alias("_plan"),
        (can_quantity & (pl.col("_u") >= half) & (pl.col("_u") < half + qty_band)).alias("_qty"),
    ).filter(pl.col("_plan") | pl.col("_qty"))
    effective = pl.col("_lo") + pl.duration(
        days=below(key, seed, "change_day", pl.max_horizontal(pl.col("_span"), pl.lit(1)))
    )
    # (not where the base row already has that plan, as ineligible scenario rows may)
    refused = chance(key, seed, "change_refused", REFUSED_CHANGE_SHARE) & (
        pl.col("wrong") != pl.col("fee_plan_id")
    ).fill_null(True)
    new_plan = pl.col("_other").list.get(
        below(key, seed, "change_plan", pl.col("_other").list.len()), null_on_oob=True
    )
    old_qty = pl.col("quantity").cast(pl.Int64).fill_null(1)
    new_qty = pl.when((old_qty > 1) & chance(key, seed, "change_down", 0.4)).then(
        old_qty - 1
    ).otherwise(old_qty + 1 + below(key, seed, "change_up", 2))
    first = frame.with_columns(
        effective.alias(CHANGE_COLUMN),
        pl.when(pl.col("_qty")).then(pl.col("fee_plan_id"))
        .when(refused).then(pl.col("wrong"))
        .otherwise(new_plan).alias("fee_plan_id"),
        pl.when(pl.col("_qty")).then(new_qty.cast(pl.String))
        .otherwise(pl.col("quantity")).alias("quantity"),
        pl.when(pl.col("_plan") & ~refused).then(new_plan).alias("_new_plan"),
        pl.lit(1).alias("_v"),
    )
    # A second change of plan, 1 to 3 days after a first that may wait for its term's end.
    second_day = pl.col(CHANGE_COLUMN) + pl.duration(days=1 + below(key, seed, "change_gap", 3))
    others = pl.col("alts").list.set_difference(pl.concat_list(pl.col("_new_plan")))
    second = first.filter(
        pl.col("_new_plan").is_not_null() & pl.col("deferred")
        & chance(key, seed, "change_twice", SECOND_CHANGE_SHARE)
        & (second_day < pl.col("_hi"))
    ).with_columns(
        second_day.alias(CHANGE_COLUMN),
        others.list.get(below(key, seed, "change_plan2", others.list.len()), null_on_oob=True)
        .alias("fee_plan_id"),
        pl.lit(2).alias("_v"),
    )
    return pl.concat([first, second]).select(base.columns)


# Rates in 10^-4 of the currency per unit of quantity (minute, MB, message).
_RATES = {("voice", "US"): 200, ("voice", "INTL"): 1500, ("voice", "ROAM"): 5000,
          ("data", "ANY"): 100, ("sms", "ANY"): 500}


def _usage_rows(acc: pl.DataFrame, seed: int, month_no: int, month: date) -> pl.DataFrame:
    """One month of usage events for the chunk's accounts (~50 each while the account is open)."""
    month_end = add_months(month, 1)
    seconds = (month_end - month).days * 86400
    n = pl.col("n")
    acct_key = n * 32 + month_no
    events = (
        acc.select("n", "account_id", "currency", "opened_on", "closed_on")
        .with_columns((30 + below(acct_key, seed, "events", 41)).alias("_count"))
        .with_columns(pl.int_ranges(0, pl.col("_count")).alias("seq"))
        .explode("seq")
    )
    key = acct_key * 128 + pl.col("seq")
    service_roll = below(key, seed, "service", 100)
    dest_roll = below(key, seed, "dest", 100)
    events = events.with_columns(
        pl.when(service_roll < 50)
        .then(pl.lit("voice"))
        .when(service_roll < 80)
        .then(pl.lit("data"))
        .otherwise(pl.lit("sms"))
        .alias("service"),
        (
            pl.lit(datetime(month.year, month.month, month.day))
            + pl.duration(seconds=below(key, seed, "at", seconds))
        ).alias("_at"),
    ).with_columns(
        pl.when(pl.col("service") != "voice")
        .then(pl.lit("ANY"))
        .when(dest_roll < 70)
        .then(pl.lit("US"))
        .when(dest_roll < 90)
        .then(pl.lit("INTL"))
        .otherwise(pl.lit("ROAM"))
        .alias("destination_group"),
    )
    # Only while the account is open.
    events = events.filter(
        (pl.col("_at").dt.date() >= pl.col("opened_on"))
        & (pl.col("closed_on").is_null() | (pl.col("_at").dt.date() < pl.col("closed_on")))
    )
    # Quantities in 10^-6 units: voice in tenths of a minute (short calls more common), data in
    # thousandths of a MB, sms one message.
    tenths = 1 + pl.min_horizontal(below(key, seed, "q1", 600), below(key, seed, "q2", 600))
    milli_mb = 1 + below(key, seed, "mb", 500_000)
    units = (
        pl.when(pl.col("service") == "voice")
        .then(tenths * 100_000)
        .when(pl.col("service") == "data")
        .then(milli_mb * 1000)
        .otherwise(pl.lit(1_000_000))
    )
    rate = pl.concat_str(["service", "destination_group"], separator="/").replace_strict(
        {f"{s}/{d}": r for (s, d), r in _RATES.items()}, return_dtype=pl.Int64
    ) * pl.when(pl.col("currency") == "JPY").then(100).otherwise(1)
    amount4 = units * rate // 1_000_000
    iso = chance(key, seed, "iso", 0.05)
    return events.with_columns(units.alias("_units"), amount4.alias("_amount4")).sort(
        "_at", "n", "seq"
    ).select(
        "n",
        pl.concat_str(
            [pl.lit(f"E{month:%Y%m}-"), pl.col("account_id").str.slice(1), pl.lit("-"),
             pl.col("seq").cast(pl.String).str.pad_start(3, "0")]
        ).alias("event_id"),
        "account_id", "service", "destination_group",
        pl.when(iso)
        .then(pl.col("_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .otherwise(pl.col("_at").dt.strftime("%Y-%m-%d %H:%M:%S"))
        .alias("started_at"),
        pl.when(pl.col("service") == "voice")
        .then(_decimal_text(pl.col("_units") // 100_000, 1))
        .when(pl.col("service") == "data")
        .then(_decimal_text(pl.col("_units") // 1000, 3))
        .otherwise(pl.lit("1"))
        .alias("quantity"),
        _decimal_text(pl.col("_amount4"), 4).alias("amount"),
    )


# ---------------------------------------------------------------------------------------------
# Bad rows: copies of good rows with one defect each, appended after the good rows


def _bad_rows(rows: pl.DataFrame, kind: str, seed: int, tag: str, force: bool) -> pl.DataFrame:
    """~0.5 % of `rows`, each spoiled in one way chosen among the kind's six defects; with
    `force`, six more rows spread over the frame get one defect each, so that even a small data
    set holds every kind."""
    key = pl.col("n") * 256 + pl.int_range(pl.len()).over("n")
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    spots = [(i + 1) * rows.height // 7 for i in range(6)] if force and rows.height >= 7 else []
    forced = index.is_in(spots)
    picked = rows.with_columns(
        pl.when(forced)
        .then(index.replace_strict({s: i for i, s in enumerate(spots)}, default=0))
        .otherwise(below(pl.col("n"), seed, f"defect/{kind}/{tag}", 6))
        .alias("_defect")
    ).filter(forced | chance(key, seed, f"bad/{kind}/{tag}", BAD_SHARE))
    d = pl.col("_defect")

    def fresh(col: str, suffix: str) -> pl.Expr:
        # A new key for every defect but the duplicate one, so that only the copy is bad.
        return pl.when(d == 4).then(pl.col(col)).otherwise(pl.col(col) + suffix).alias(col)

    if kind == "accounts":
        spoiled = picked.with_columns(
            pl.when(d == 4).then(pl.col("account_id")).otherwise(
                pl.concat_str([pl.lit("X"), pl.col("account_id").str.slice(1)])
            ).alias("account_id"),
            pl.when(d == 0).then(pl.lit("XYZ")).otherwise(pl.col("currency")).alias("currency"),
            pl.when(d == 1).then(pl.lit("2025-13-40")).otherwise(pl.col("opened_on"))
            .alias("opened_on"),
            pl.when(d == 2).then(pl.lit("MP_GOLD")).when(d == 4).then(pl.lit("MP_BIZ"))
            .otherwise(pl.col("main_product_id")).alias("main_product_id"),
            pl.when(d == 3).then(pl.lit("31")).otherwise(pl.col("billing_day"))
            .alias("billing_day"),
            pl.when(d == 5).then(pl.lit("frozen")).otherwise(pl.col("status")).alias("status"),
            # The duplicate copies the key exactly, effective_from included.
            pl.when(d == 4).then(pl.col("effective_from")).otherwise(pl.col("opened_on"))
            .alias("effective_from"),
        )
    elif kind == "assignments":
        spoiled = picked.with_columns(
            fresh("assignment_id", "-B"),
            pl.when(d == 0).then(pl.lit("A_UNKNOWN")).otherwise(pl.col("account_id"))
            .alias("account_id"),
            pl.when(d == 1).then(pl.lit("ADD_BOGUS")).otherwise(pl.col("addon_id"))
            .alias("addon_id"),
            pl.when(d == 2)
            .then(_day_text(pl.col("start_date").str.to_date() - pl.duration(days=3)))
            .otherwise(pl.col("end_date"))
            .alias("end_date"),
            pl.when(d == 3).then(pl.lit("two")).when(d == 4).then(pl.lit("2"))
            .otherwise(pl.col("quantity")).alias("quantity"),
            pl.when(d == 5).then(pl.lit("FP_NOPE")).otherwise(pl.col("fee_plan_id"))
            .alias("fee_plan_id"),
        )
    else:
        spoiled = picked.with_columns(
            fresh("event_id", "-B"),
            pl.when(d == 0).then(pl.lit("1.2.3")).when(d == 4).then(pl.lit("9.9999"))
            .otherwise(pl.col("amount")).alias("amount"),
            pl.when(d == 1).then(pl.lit("A_UNKNOWN")).otherwise(pl.col("account_id"))
            .alias("account_id"),
            pl.when(d == 2).then(pl.lit("2026-01-32 25:00:00")).otherwise(pl.col("started_at"))
            .alias("started_at"),
            pl.when(d == 3).then(pl.lit("-3")).otherwise(pl.col("quantity")).alias("quantity"),
            pl.when(d == 5).then(pl.lit(None, pl.String)).otherwise(pl.col("service"))
            .alias("service"),
        )
    return spoiled.drop("_defect")


# ---------------------------------------------------------------------------------------------
# Writers


class _Writer:
    """Appends chunks to one CSV or Parquet file with a fixed all-string schema."""

    def __init__(self, path: Path, columns: tuple[str, ...], fmt: str) -> None:
        self.path, self.columns, self.fmt = path, list(columns), fmt
        self.rows = 0
        self._csv: IO[bytes] | None = None
        self._parquet: pq.ParquetWriter | None = None
        # Text, but SPEC §8.1's `effective_from`: a nullable DATE (in CSV, YYYY-MM-DD or empty).
        self._schema = pa.schema(
            [(c, pa.date32() if c == CHANGE_COLUMN else pa.string()) for c in self.columns]
        )

    def write(self, frame: pl.DataFrame) -> None:
        frame = frame.select(self.columns)
        if self.fmt == "csv":
            if self._csv is None:
                self._csv = self.path.open("wb")
                frame.write_csv(self._csv, include_header=True)
            else:
                frame.write_csv(self._csv, include_header=False)
        else:
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, self._schema, compression="zstd")
            self._parquet.write_table(frame.to_arrow().cast(self._schema))
        self.rows += frame.height

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        elif self._parquet is not None:
            self._parquet.close()
        elif self.fmt == "csv":
            self.path.write_text(",".join(self.columns) + "\n")
        else:
            pq.write_table(self._schema.empty_table(), self.path)


# ---------------------------------------------------------------------------------------------
# Entry point


def generate(
    accounts: int,
    out: str | Path,
    *,
    seed: int = 42,
    months: int = 2,
    start: str = "2026-01",
    fmt: str = "csv",
    progress: Callable[[int], None] | None = None,
    changes: bool = True,
) -> GenerateReport:
    """Write `catalog.yaml`, `accounts`, `assignments` and `usage` for `accounts` accounts.
    `changes`: add SPEC §8.1 change rows to the assignments (and their `effective_from`
    column); False writes the SPEC §2 columns only, as a loader without §8.1 expects."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format {fmt!r} is not csv or parquet")
    year, month = parse_period(start)
    first = date(year, month, 1)
    month_starts = [add_months(first, i) for i in range(months)]
    horizon = _Horizon(first, add_months(first, months), month_starts)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("accounts", "assignments", "usage"):
        for other in ("csv", "parquet"):
            (folder / f"{kind}.{other}").unlink(missing_ok=True)
    text = generated_catalog_text()
    (folder / "catalog.yaml").write_text(text, encoding="utf-8")
    cat = parse_catalog(text)
    offers = _offers(cat)
    change_plans = _change_plans(cat) if changes else None
    report = GenerateReport(folder, accounts, seed, months, start)
    columns = dict(COLUMNS)
    if changes:
        columns["assignments"] = (*COLUMNS["assignments"], CHANGE_COLUMN)
    writers = {k: _Writer(folder / f"{k}.{fmt}", columns[k], fmt) for k in columns}
    bad = dict.fromkeys(COLUMNS, 0)
    try:
        for n0 in range(0, accounts, CHUNK_ACCOUNTS):
            n1 = min(n0 + CHUNK_ACCOUNTS, accounts)
            acc = _accounts(n0, n1, seed, horizon)
            tables = {
                "accounts": [_account_rows(acc, seed)],
                "assignments": [
                    _assignment_rows(acc, offers, cat, seed, horizon, change_plans)
                ],
                "usage": [
                    _usage_rows(acc, seed, i, m) for i, m in enumerate(horizon.months)
                ],
            }
            for kind, frames in tables.items():
                for i, frame in enumerate(frames):
                    # Bad rows are spoiled copies of base rows (change rows are good ones).
                    good = frame
                    if kind == "assignments" and changes:
                        good = frame.filter(pl.col(CHANGE_COLUMN).is_null())
                        report.changes += frame.height - good.height
                    spoiled = _bad_rows(good, kind, seed, str(i), force=n0 == 0 and i == 0)
                    bad[kind] += spoiled.height
                    writers[kind].write(pl.concat([frame, spoiled]))
            if progress is not None:
                progress(n1)
    finally:
        for w in writers.values():
            w.close()
    report.rows = {w.path.name: w.rows for w in writers.values()}
    report.bad = {writers[k].path.name: v for k, v in bad.items()}
    return report

