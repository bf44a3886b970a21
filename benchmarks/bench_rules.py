"""Benchmark of `rules.decide` at scale: 1M accounts, 2.5M assignments, one period.

Builds the inputs in memory (vectorized, seeded) over the sample catalog, runs `decide` once and
prints the total time, the rules engine's share, the number of situations and facts asserted,
the decision rows and the peak RSS.

    .venv/bin/python benchmarks/bench_rules.py [--accounts N] [--assignments N] [--seed S]
        [--bill [--events N] [--settled]] [--runs R] [--stored-rows 2025-03,2026-03,2027-03]

`--bill` also times `billing.bill.bill` of the same period, with `--events` usage events per
account in it (48 by default, as at 1M accounts with ~48M events). `--runs` repeats each timed
step and keeps the best (the machine is shared). Peak RSS is sampled during each step.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TypeVar

import polars as pl
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing.bill import BillInputs, bill
from pipeline.catalog import Catalog, parse_catalog
from pipeline.contracts import COUNTER_INPUT_SCHEMA, first_billing_days
from pipeline.periods import period_start_expr
from rules import decide, engine

CATALOG = ROOT / "data" / "sample" / "catalog.yaml"
FIRST_DAY = date(2024, 1, 1)
T = TypeVar("T")


def _draw(n: int, seed: int, salt: int, modulo: int) -> pl.Expr:
    """Seeded pseudo-random integers in [0, modulo) for row indexes 0..n-1."""
    return (pl.int_range(0, n, dtype=pl.UInt64).hash(seed + salt) % modulo).cast(pl.Int64)


def _pick(options: list[str], draw: pl.Expr) -> pl.Expr:
    """The option at index `draw`."""
    return pl.lit(pl.Series(options)).get(draw)


def make_accounts(n: int, seed: int) -> pl.DataFrame:
    """`n` accounts; 10 % change main product once; 3 % are closed."""
    products = ["MP_BASIC", "MP_PLUS", "MP_BIZ"]
    base = pl.select(
        (pl.lit("AC") + pl.int_range(0, n).cast(pl.Utf8).str.zfill(7)).alias("account_id"),
        _pick(["USD"] * 17 + ["EUR"] * 2 + ["JPY"], _draw(n, seed, 1, 20)).alias("currency"),
        _pick(products, _draw(n, seed, 2, 3)).alias("main_product_id"),
        (_draw(n, seed, 3, 28) + 1).alias("billing_day"),
        (pl.lit(FIRST_DAY) + pl.duration(days=_draw(n, seed, 4, 760))).alias("opened_on"),
        (_draw(n, seed, 5, 100) < 3).alias("closes"),
        (_draw(n, seed, 6, 100) < 10).alias("changes"),
        _draw(n, seed, 7, 300).alias("close_after"),
        _draw(n, seed, 8, 200).alias("change_after"),
        _pick(products, _draw(n, seed, 9, 3)).alias("new_product"),
    )
    first = base.select(
        "account_id", "currency", "main_product_id", "billing_day",
        pl.when("closes").then(pl.lit("closed")).otherwise(pl.lit("active")).alias("status"),
        "opened_on",
        pl.when("closes").then(pl.col("opened_on") + pl.duration(days=pl.col("close_after") + 30))
        .alias("closed_on"),
        pl.col("opened_on").alias("effective_from"),
    )
    second = base.filter("changes").join(first.select("account_id", "status", "closed_on"),
                                         on="account_id").select(
        "account_id", "currency", pl.col("new_product").alias("main_product_id"),
        "billing_day", "status", "opened_on", "closed_on",
        (pl.col("opened_on") + pl.duration(days=pl.col("change_after") + 15))
        .alias("effective_from"),
    )
    return pl.concat([first, second]).sort("account_id", "effective_from")


def make_assignments(catalog: Catalog, accounts: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """`n` assignments on random accounts; mostly offered add-ons and fitting fee plans."""
    addons = [a.id for a in catalog.addons]
    offers = pl.DataFrame(
        {"main_product_id": [p.id for p in catalog.main_products],
         "offered": [p.available_addons for p in catalog.main_products]},
        schema={"main_product_id": pl.Utf8, "offered": pl.List(pl.Utf8)},
    )
    subs = {a.id: a.subscription for a in catalog.addons}
    plans = {s.id: [(fp.id, fp.currency) for fp in s.fee_plans] for s in catalog.subscriptions}
    every_plan = sorted(p for ps in plans.values() for p, _ in ps)
    # The add-on's plans in the account's currency (or all its plans when it has none in it).
    lookup = pl.DataFrame(
        [
            {"addon_id": a, "currency": cur,
             "plans": [p for p, c in plans.get(subs[a] or "", []) if c == cur]
             or [p for p, _ in plans.get(subs[a] or "", [])]}
            for a in addons
            for cur in catalog.currencies
        ],
        schema={"addon_id": pl.Utf8, "currency": pl.Utf8, "plans": pl.List(pl.Utf8)},
    )
    first = (
        accounts.sort("effective_from")
        .group_by("account_id")
        .agg(pl.col("opened_on").min(), pl.col("main_product_id").first(),
             pl.col("currency").first())
        .join(offers, on="main_product_id")
        .sort("account_id")
    )
    ids = first["account_id"]
    rows = pl.select(
        (pl.lit("AS") + pl.int_range(0, n).cast(pl.Utf8).str.zfill(8)).alias("assignment_id"),
        _draw(n, seed, 11, ids.len()).alias("account_no"),
        _pick(addons, _draw(n, seed, 12, len(addons))).alias("any_addon"),
        (_draw(n, seed, 21, 100) < 8).alias("odd_addon"),
        _draw(n, seed, 22, 1_000_003).alias("addon_draw"),
        _draw(n, seed, 13, 1_000_003).alias("plan_draw"),
        (_draw(n, seed, 14, 100) < 2).alias("odd_plan"),
        _pick(every_plan, _draw(n, seed, 15, len(every_plan))).alias("any_plan"),
        _draw(n, seed, 16, 700).alias("start_after"),
        (_draw(n, seed, 17, 100) < 30).alias("ends"),
        (_draw(n, seed, 18, 400) + 1).alias("length"),
        _draw(n, seed, 19, 2_000_000).alias("lead_minutes"),
        (_draw(n, seed, 20, 3) + 1).alias("quantity"),
    )
    starts = first.with_row_index("account_no").with_columns(pl.col("account_no").cast(pl.Int64))
    offered = pl.col("offered").list.get(pl.col("addon_draw") % pl.col("offered").list.len())
    rows = (
        rows.join(starts, on="account_no")
        .with_columns(
            pl.when("odd_addon").then(pl.col("any_addon")).otherwise(offered).alias("addon_id")
        )
        .join(lookup, on=["addon_id", "currency"])
    )
    plan = pl.col("plans").list.get(pl.col("plan_draw") % pl.col("plans").list.len().clip(1),
                                    null_on_oob=True)
    start = pl.col("opened_on") + pl.duration(days=pl.col("start_after"))
    return rows.select(
        "assignment_id", "account_id", "addon_id",
        pl.when("odd_plan").then(pl.col("any_plan")).otherwise(plan).alias("fee_plan_id"),
        start.alias("start_date"),
        pl.when("ends").then(start + pl.duration(days=pl.col("length"))).alias("end_date"),
        (start.cast(pl.Datetime("us")) - pl.duration(minutes=pl.col("lead_minutes")))
        .alias("assigned_at"),
        "quantity",
    ).sort("assignment_id")


# (service, destination_group, largest quantity in units of 10^-6, price per unit in 10^-6)
SERVICES = [
    ("voice", "US", 20_000_000, 100_000),
    ("voice", "INTL", 30_000_000, 250_000),
    ("voice", "ROAM", 15_000_000, 500_000),
    ("data", "ANY", 400_000_000, 10_000),
    ("sms", "ANY", 1_000_000, 50_000),
]


def make_usage(accounts: pl.DataFrame, period: str, per_account: int, seed: int) -> pl.DataFrame:
    """`per_account` events per account, each inside the account's `period` (USAGE_SCHEMA)."""
    kinds = pl.DataFrame(SERVICES, schema=["service", "destination_group", "most", "price"],
                         orient="row")
    starts = first_billing_days(accounts).select(
        "account_id", period_start_expr(period, pl.col("billing_day")).alias("period_start")
    ).sort("account_id")
    n = starts.height * per_account
    kind = _draw(n, seed, 31, kinds.height)
    quantity = _draw(n, seed, 32, 1 << 30) % pl.lit(kinds["most"]).gather(kind) + 1
    return pl.select(
        (pl.lit("EV") + pl.int_range(0, n).cast(pl.Utf8).str.zfill(10)).alias("event_id"),
        pl.lit(starts["account_id"]).gather(pl.int_range(0, n) // per_account).alias("account_id"),
        pl.lit(kinds["service"]).gather(kind).alias("service"),
        pl.lit(kinds["destination_group"]).gather(kind).alias("destination_group"),
        (pl.lit(starts["period_start"]).gather(pl.int_range(0, n) // per_account)
         .cast(pl.Datetime("us")) + pl.duration(seconds=_draw(n, seed, 33, 28 * 86400)))
        .alias("started_at"),
        quantity.alias("quantity_units"),
        (quantity * pl.lit(kinds["price"]).gather(kind) // 1_000_000).alias("amount_units"),
    )


class PeakRss:
    """Samples this process's RSS in a thread while the block runs; `peak` in MiB."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)


def best_of(runs: int, step: Callable[[], T]) -> tuple[T, float, float]:
    """Run `step` `runs` times: its last result, the best wall seconds, the highest peak RSS."""
    best, peak, result = float("inf"), 0.0, None
    for _ in range(runs):
        gc.collect()
        with PeakRss() as rss:
            began = time.perf_counter()
            result = step()
            best = min(best, time.perf_counter() - began)
        peak = max(peak, rss.peak)
    return result, best, peak  # type: ignore[return-value]


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Build the inputs, run decide (and bill) for one period, print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--assignments", type=int, default=2_500_000)
    parser.add_argument("--period", default="2026-03")
    parser.add_argument("--policy", default="replace", choices=["replace", "reject"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bill", action="store_true",
                        help="also time the whole pure unit of work, billing.bill.bill "
                             "(decide, then the fee and usage lines)")
    parser.add_argument("--events", type=int, default=48,
                        help="usage events per account in the period, for --bill")
    parser.add_argument("--runs", type=int, default=1, help="repeat each step, keep the best")
    parser.add_argument("--settled", action="store_true",
                        help="with --bill: also time bill on inputs settled once "
                             "(BillInputs.with_settlement), as each period after the first "
                             "of a catch-up can")
    parser.add_argument("--stored-rows", default="",
                        help="comma-separated periods: decision rows per period, every row "
                             "(decide) against the rows a run stores (stored_only)")
    args = parser.parse_args()

    catalog = parse_catalog(CATALOG.read_text())
    load = os.getloadavg()[0]
    began = time.perf_counter()
    accounts = make_accounts(args.accounts, args.seed)
    assignments = make_assignments(catalog, accounts, args.assignments, args.seed)
    built = time.perf_counter() - began
    print(f"inputs: {accounts.height:,} account rows, {assignments.height:,} assignments "
          f"built in {built:.1f} s; {pl.thread_pool_size()} Polars threads")

    engine.reset_stats()
    cpu_before = _cpu_seconds()
    result, total, peak = best_of(
        args.runs, lambda: decide(catalog, accounts, assignments, [args.period], args.policy)
    )
    cpu = (_cpu_seconds() - cpu_before) / args.runs
    stats = engine.STATS
    billable = result.lifecycles["billable"].sum()
    print(f"decide ({args.period}, {args.policy}): {total:.2f} s (best of {args.runs}; "
          f"{cpu:.1f} s CPU a run over all threads), peak RSS {peak:,.0f} MiB")
    print(f"  rules engine: {stats['seconds'] / args.runs:.2f} s a run in "
          f"{int(stats['sessions']) // args.runs} sessions, "
          f"{int(stats['situations']) // args.runs:,} situations, "
          f"{int(stats['facts']) // args.runs:,} facts asserted")
    print(f"  decisions: {result.decisions.height:,} rows; lifecycles: "
          f"{result.lifecycles.height:,} rows ({billable:,} billable)")
    print("  outcomes: " + ", ".join(
        f"{o}={n:,}" for o, n in result.decisions.group_by("outcome").len().sort("outcome").rows()
    ))
    ineligible = result.decisions.filter(pl.col("outcome") == "ineligible").group_by("rule").len()
    print("  ineligible by rule: " + "; ".join(
        f"{rule}={n:,}" for rule, n in ineligible.sort("len", descending=True).rows()
    ))
    for period in filter(None, args.stored_rows.split(",")):
        rows = [
            decide(catalog, accounts, assignments, [period], args.policy, stored_only=only)
            .decisions.group_by("outcome").len()
            for only in (False, True)
        ]
        both = rows[0].join(rows[1], on="outcome", how="left", suffix="_stored").fill_null(0)
        full, kept = int(both["len"].sum()), int(both["len_stored"].sum())
        print(f"decision rows {period}: {full:,} -> {kept:,} stored ({kept / full:.0%}); " +
              ", ".join(f"{o} {n:,} -> {k:,}" for o, n, k in both.sort("outcome").rows()))
    if args.bill:
        usage = make_usage(accounts, args.period, args.events, args.seed)
        inputs = BillInputs(catalog=catalog, policy=args.policy, accounts=accounts,
                            assignments=assignments, usage=usage)
        inputs = replace(inputs, frames=inputs.catalog_frames())
        billed, seconds, peak = best_of(
            args.runs,
            lambda: bill(inputs, args.period, None, pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)),
        )
        print(f"bill ({args.period}, {usage.height:,} events): {seconds:.2f} s (best of "
              f"{args.runs}), peak RSS {peak:,.0f} MiB; {billed.charges.height:,} lines, "
              f"{billed.invoices.height:,} invoices, {billed.decisions.height:,} decision rows "
              f"stored")
    if args.bill and args.settled:
        once, seconds, peak = best_of(args.runs, inputs.with_settlement)
        print(f"settle once: {seconds:.2f} s, peak RSS {peak:,.0f} MiB")
        _, seconds, peak = best_of(
            args.runs,
            lambda: bill(once, args.period, None, pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)),
        )
        print(f"bill on settled inputs ({args.period}): {seconds:.2f} s (best of {args.runs}), "
              f"peak RSS {peak:,.0f} MiB")
    high = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process high-water RSS {high:,.0f} MiB; load average before/after: {load:.2f}/"
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
