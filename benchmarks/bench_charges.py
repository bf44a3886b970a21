"""Benchmark `compute_charges` for one period over N synthetic accounts, beside a DuckDB floor.

The frames are built in memory, vectorized and seeded (a hash of the row number stands in for a
random generator): N accounts on the sample catalog, 2 or 3 add-ons each (2.5 on average), 50
usage events per account in the period. The floor is a plain DuckDB `GROUP BY account_id,
service, destination_group` over the same usage frame. Peak RSS is sampled every 20 ms during
each step (and the process high-water mark is printed too). `compute_charges` runs first, so
its peak is not inflated by memory DuckDB keeps after the floor query.

    /tmp/venv/bin/python benchmarks/bench_charges.py --accounts 100000
    /tmp/venv/bin/python benchmarks/bench_charges.py --accounts 1000000 --no-detail
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
from datetime import date, datetime
from pathlib import Path
from typing import Any, Self

import duckdb
import polars as pl
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.catalog import UNIT, catalog_frames, parse_catalog
from pipeline.charges import compute_charges
from rules.promotions import with_verdicts

CATALOG = Path(__file__).resolve().parents[1] / "data" / "sample" / "catalog.yaml"
EVENTS_PER_ACCOUNT = 50
# (service, destination_group, quantity range in units, price per unit of quantity in 10^-6)
SERVICES = [
    ("voice", "US", 20 * UNIT, 0.10),
    ("voice", "INTL", 30 * UNIT, 0.25),
    ("voice", "ROAM", 15 * UNIT, 0.50),
    ("data", "ANY", 400 * UNIT, 0.01),
    ("sms", "ANY", 1 * UNIT, 0.05),
]


def rand(column: str | pl.Expr, salt: int, modulo: int) -> pl.Expr:
    """A seeded pseudo-random integer in `[0, modulo)` derived from `column`."""
    expr = pl.col(column) if isinstance(column, str) else column
    return (expr.hash(seed=salt) % modulo).cast(pl.Int64)


def make_accounts(n: int, period: tuple[int, int], seed: int) -> pl.DataFrame:
    """N accounts on three main products; 5 % change main product on day 10 of the period."""
    products = pl.Series(["MP_BASIC", "MP_PLUS", "MP_BIZ"])
    base = pl.DataFrame({"i": pl.int_range(0, n, eager=True)}).select(
        pl.format("A{}", pl.col("i").cast(pl.Utf8).str.zfill(7)).alias("account_id"),
        pl.lit("USD").alias("currency"),
        pl.lit(products).gather(rand("i", seed, 3)).alias("main_product_id"),
        (rand("i", seed + 1, 28) + 1).alias("billing_day"),
        pl.lit("active").alias("status"),
        pl.lit(date(2024, 1, 1)).alias("opened_on"),
        pl.lit(None, dtype=pl.Date).alias("closed_on"),
        pl.lit(date(2024, 1, 1)).alias("effective_from"),
        (rand("i", seed + 2, 100) < 5).alias("changes"),
        pl.col("i"),
    )
    changed = base.filter("changes").with_columns(
        pl.lit(products).gather((rand("i", seed, 3) + 1) % 3).alias("main_product_id"),
        (pl.date(*period, pl.col("billing_day")) + pl.duration(days=9)).alias("effective_from"),
    )
    return pl.concat([base, changed]).drop("changes", "i")


def make_lifecycles(catalog: Any, accounts: pl.DataFrame, seed: int) -> pl.DataFrame:
    """2 or 3 add-ons per account, picked from the main product's offer, USD fee plans."""
    offers = catalog.offers.with_columns(
        pl.int_range(pl.len()).over("main_product_id").alias("pick"),
        pl.len().over("main_product_id").alias("offered"),
    )
    plans = (
        catalog.addons.select("addon_id", "subscription_id")
        .join(catalog.fee_plans.filter(pl.col("currency") == "USD"), on="subscription_id",
              how="left")
        .sort("addon_id", "fee_plan_id")
        .with_columns(
            pl.int_range(pl.len()).over("addon_id").alias("plan_pick"),
            pl.len().over("addon_id").alias("plans"),
        )
        .select("addon_id", "fee_plan_id", "plan_pick", "plans")
    )
    first = accounts.unique("account_id", keep="first").sort("account_id").with_row_index("i")
    rows = (
        first.select("i", "account_id", "main_product_id")
        .with_columns(pl.int_ranges(0, rand("i", seed + 3, 2) + 2).alias("n"))
        .explode("n")
        .with_row_index("j")
        .join(offers.select("main_product_id", "offered").unique(), on="main_product_id")
        .with_columns(pick=rand("j", seed + 4, 1 << 30) % pl.col("offered"))
        .join(offers.select("main_product_id", "pick", "addon_id"), on=["main_product_id", "pick"])
        .join(plans.select("addon_id", "plans").unique(), on="addon_id")
        .with_columns(plan_pick=rand("j", seed + 5, 1 << 30) % pl.col("plans"))
        .join(plans.select("addon_id", "plan_pick", "fee_plan_id"), on=["addon_id", "plan_pick"])
    )
    start = pl.lit(date(2025, 6, 1)) + pl.duration(days=rand("j", seed + 6, 390))
    ends = rand("j", seed + 7, 100) < 15
    return rows.select(
        pl.format("S{}", pl.col("j").cast(pl.Utf8).str.zfill(9)).alias("assignment_id"),
        "account_id",
        "addon_id",
        "fee_plan_id",
        pl.when(pl.col("addon_id") == "ADD_SEATS").then(rand("j", seed + 8, 5) + 1)
        .otherwise(1).alias("quantity"),
        start.cast(pl.Datetime("us")).alias("assigned_at"),
        start.alias("start_date"),
        pl.lit(None, dtype=pl.Date).alias("end_date"),
        start.alias("eff_start"),
        pl.when(ends).then(start + pl.duration(days=rand("j", seed + 9, 400) + 1))
        .otherwise(None).alias("eff_end"),
        (rand("j", seed + 10, 100) >= 8).alias("billable"),
        pl.lit(None, dtype=pl.Utf8).alias("end_reason"),
    )


def make_usage(n: int, period: tuple[int, int], seed: int) -> pl.DataFrame:
    """50 events per account, each inside the account's billing period."""
    kinds = pl.DataFrame(
        {
            "service": [s[0] for s in SERVICES],
            "destination_group": [s[1] for s in SERVICES],
            "max_units": [s[2] for s in SERVICES],
            "price_micro": [int(s[3] * UNIT) for s in SERVICES],
        }
    )
    year, month = period
    i = pl.col("e") // EVENTS_PER_ACCOUNT
    kind = rand("e", seed + 11, len(SERVICES))
    billing_day = rand(i, seed + 1, 28) + 1
    started = pl.datetime(year, month, billing_day) + pl.duration(
        seconds=rand("e", seed + 12, 28 * 86400)
    )
    quantity = rand("e", seed + 13, 1 << 30) % pl.lit(kinds["max_units"]).gather(kind) + 1
    events = pl.DataFrame({"e": pl.int_range(0, n * EVENTS_PER_ACCOUNT, eager=True)})
    return events.select(
        pl.format("E{}", pl.col("e").cast(pl.Utf8).str.zfill(11)).alias("event_id"),
        pl.format("A{}", i.cast(pl.Utf8).str.zfill(7)).alias("account_id"),
        pl.lit(kinds["service"]).gather(kind).alias("service"),
        pl.lit(kinds["destination_group"]).gather(kind).alias("destination_group"),
        started.cast(pl.Datetime("us")).alias("started_at"),
        quantity.alias("quantity_units"),
        (quantity * pl.lit(kinds["price_micro"]).gather(kind) // UNIT).alias("amount_units"),
    )


class PeakRss:
    """Samples this process's RSS in a thread; `peak` is the highest seen (bytes)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def __enter__(self) -> Self:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def timed(step: Callable[[], Any]) -> tuple[Any, float, int]:
    """Run `step`; return its result, seconds and peak RSS in bytes."""
    gc.collect()
    with PeakRss() as rss:
        began = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - began
    return result, seconds, rss.peak


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    """Build the frames, time the DuckDB floor and `compute_charges`, print one summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--period", default="2026-06")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-detail", action="store_true", help="skip usage_detail")
    parser.add_argument("--skip-floor", action="store_true")
    args = parser.parse_args()

    catalog = with_verdicts(catalog_frames(parse_catalog(CATALOG.read_text())))
    year, month = (int(p) for p in args.period.split("-"))
    began = time.perf_counter()
    accounts = make_accounts(args.accounts, (year, month), args.seed)
    lifecycles = make_lifecycles(catalog, accounts, args.seed)
    usage = make_usage(args.accounts, (year, month), args.seed)
    counters_before = pl.DataFrame(
        schema={"account_id": pl.Utf8, "service": pl.Utf8, "destination_group": pl.Utf8,
                "threshold_type": pl.Utf8, "window_start": pl.Date, "value_units": pl.Int64}
    )
    built = time.perf_counter() - began
    base_rss = psutil.Process().memory_info().rss
    print(f"built {accounts.height:,} account rows, {lifecycles.height:,} assignments, "
          f"{usage.height:,} events in {built:.1f} s; RSS {gib(base_rss)} "
          f"(usage frame {gib(usage.estimated_size())})", flush=True)

    result, seconds, peak = timed(
        lambda: compute_charges(catalog, accounts, lifecycles, usage, counters_before,
                                args.period, None, detail=not args.no_detail)
    )
    high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"compute_charges {args.period}: {seconds:.2f} s, peak RSS {gib(peak)} "
        f"(process high-water {gib(high_water)}); {result.charges.height:,} lines, "
        f"{result.invoices.height:,} invoices, {result.counters_after.height:,} counters, "
        f"{result.usage_detail.height:,} detail rows; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs at {datetime.now():%H:%M}",
        flush=True,
    )
    del result

    if not args.skip_floor:
        con = duckdb.connect()
        con.register("usage", usage)
        query = (
            "CREATE OR REPLACE TEMP TABLE floor AS SELECT account_id, service, destination_group,"
            " sum(quantity_units) AS q, sum(amount_units) AS a, count(*) AS n FROM usage"
            " GROUP BY account_id, service, destination_group"
        )
        _, floor_s, floor_rss = timed(lambda: con.execute(query))
        groups = con.execute("SELECT count(*) FROM floor").fetchone()[0]  # type: ignore[index]
        con.close()
        print(f"duckdb GROUP BY floor: {floor_s:.2f} s, {groups:,} groups, "
              f"peak RSS {gib(floor_rss)} (after compute_charges, so not its own); load "
              f"average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
