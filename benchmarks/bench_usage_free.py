"""CPU of `bill` for one usage-free (period, shard): what each of a catch-up's periods without
usage costs a unit (docs/RUNS.md, "usage-free periods").

Reads the accounts, assignments and catalog of a `billrun generate` folder, keeps one shard
of the accounts (every `--shards`-th account id), settles it once (as the settle round does),
bills `--warm` periods before `--period` to carry their parcels and counters, then bills
`--period` with no usage `--repeat` times and prints the CPU seconds (user + system, this
process) of each. `--profile` prints the cProfile of one more bill; `--full` forces the path
that builds the usage state (the one a period with events takes), for the comparison.

    .venv/bin/python benchmarks/bench_usage_free.py GEN --shards 4 --period 2025-06
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.bill import BillInputs, bill  # noqa: E402
from pipeline.catalog import parse_catalog  # noqa: E402
from pipeline.contracts import COUNTER_INPUT_SCHEMA, LOCK_SCHEMA  # noqa: E402
from pipeline.periods import shift_period  # noqa: E402


def shard_inputs(folder: Path, shards: int) -> BillInputs:
    """The generated inputs of one shard (account ids whose rank is 0 modulo `shards`)."""
    # The generated files hold deliberately bad rows (what `billrun load` rejects): keep the
    # accounts whose every row reads, and the assignments that read.
    accounts = pl.read_parquet(folder / "accounts.parquet").with_columns(
        pl.col("billing_day").cast(pl.Int64, strict=False),
        pl.col("opened_on", "closed_on").str.to_date(strict=False),
    )
    bad = accounts.filter(~pl.col("billing_day").is_between(1, 28).fill_null(False)
                          | pl.col("opened_on").is_null())
    accounts = accounts.join(bad.select("account_id"), on="account_id", how="anti")
    ids = (accounts.select("account_id").unique().sort("account_id")
           .gather_every(shards))
    assignments = pl.read_parquet(folder / "assignments.parquet").with_columns(
        pl.col("start_date", "end_date").str.to_date(strict=False),
        pl.col("assigned_at").str.to_datetime(strict=False),
        pl.col("quantity").cast(pl.Int64, strict=False),
    ).filter(pl.col("start_date").is_not_null(), pl.col("assigned_at").is_not_null())
    # the current version of each assignment (the load keeps the latest effective_from)
    assignments = (
        assignments.sort("effective_from", nulls_last=False)
        .unique("assignment_id", keep="last", maintain_order=True)
        .drop("effective_from").join(ids, on="account_id", how="semi").sort("assignment_id")
    )
    return BillInputs(
        catalog=parse_catalog((folder / "catalog.yaml").read_text()), policy="replace",
        accounts=accounts.join(ids, on="account_id", how="semi")
        .sort("account_id", "effective_from"),
        assignments=assignments, locks=pl.DataFrame(schema=LOCK_SCHEMA),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--period", default="2025-06")
    parser.add_argument("--warm", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    start = time.process_time()
    inputs = shard_inputs(args.folder, args.shards).with_settlement()
    # the catalog frames once, as a unit's worker keeps them (flows/units.py)
    inputs = replace(inputs, frames=inputs.catalog_frames())
    print(f"{inputs.accounts['account_id'].n_unique()} accounts, "
          f"{inputs.assignments.height} assignments; inputs and settlement "
          f"{time.process_time() - start:.2f} CPU-s")
    options = {"_full": True} if args.full else {}
    counters = pl.DataFrame(schema=COUNTER_INPUT_SCHEMA)
    parcels = None
    for back in range(args.warm, 0, -1):
        warm = bill(inputs, shift_period(args.period, -back), None, counters,
                    parcels_before=parcels, **options)
        counters = warm.counters_after.drop("reset").filter(pl.col("value_units") != 0)
        parcels = warm.parcels
    print(f"before {args.period}: {counters.height} counters, "
          f"{0 if parcels is None else parcels.height} parcels")
    seconds = []
    for _ in range(args.repeat):
        start = time.process_time()
        result = bill(inputs, args.period, None, counters, parcels_before=parcels, **options)
        seconds.append(time.process_time() - start)
    print(f"bill {args.period} ({'full' if args.full else 'default'} path): "
          + ", ".join(f"{s:.3f}" for s in seconds)
          + f" CPU-s; min {min(seconds):.3f}; {result.charges.height} lines, "
          f"{result.counters_after.height} counters, {result.parcels.height} parcels")
    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU, not wall
        profiler.enable()
        bill(inputs, args.period, None, counters, parcels_before=parcels, **options)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
