"""`billrun bench`: load, the first nightly (catch-up), a one-day increment, an idempotent
re-run and a full-period reprocess, timed on generated data.

    billrun bench --accounts 100000 [--out DIR]
    python benchmarks/bench_runs.py --accounts 100000 [--out DIR] [--format parquet]

Every step runs the real Prefect flow in this process (Prefect starts once, inside the load
step); peak RSS is sampled while each step runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import psutil


class PeakRss:
    """Sample this process's RSS every 50 ms while the block runs."""

    def __enter__(self) -> PeakRss:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, me.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(label: str, step: Callable[[], Any], rows: list[tuple[str, float, float]]) -> Any:
    """Run `step`, print and record its wall time and peak RSS."""
    with PeakRss() as rss:
        started = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - started
    gib = rss.peak / 2**30
    rows.append((label, seconds, gib))
    print(f"{label:<58} {seconds:8.1f} s {gib:7.2f} GiB", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Generate, load, and time the nightly, increment and reprocess runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    work = Path(args.out or tempfile.mkdtemp(prefix="billrun-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.duckdb"
    for stale in work.glob("bench*.duckdb*"):
        stale.unlink()
    print(f"billrun bench: {args.accounts:,} accounts in {work}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")

    rows: list[tuple[str, float, float]] = []
    from data.generator import generate

    measure(
        "generate (2 months, 2026-01..02)",
        lambda: generate(args.accounts, work / "in", seed=args.seed, fmt=args.format),
        rows,
    )
    started = time.perf_counter()
    from flows.load import load_flow
    from flows.nightly import nightly_flow
    from flows.reprocess import reprocess_flow

    print(f"{'import flows (Prefect, Polars, rules)':<58} {time.perf_counter() - started:8.1f} s")
    measure("load (first Prefect flow run: includes server start)",
            lambda: load_flow(str(work / "in"), str(db)), rows)
    first = measure(
        "nightly --as-of 2026-02-27 (first run: catch-up)",
        lambda: nightly_flow(as_of=date(2026, 2, 27), db=str(db)),
        rows,
    )
    print(f"    {first.account_periods:,} account-periods over {len(first.periods)} periods, "
          f"{first.charge_lines:,} lines")
    measure("nightly --as-of 2026-02-28 (one-day increment)",
            lambda: nightly_flow(as_of=date(2026, 2, 28), db=str(db)), rows)
    measure("nightly --as-of 2026-02-28 again (idempotent no-op)",
            lambda: nightly_flow(as_of=date(2026, 2, 28), db=str(db)), rows)
    measure("reprocess --period 2026-01 (one full period, finalized)",
            lambda: reprocess_flow(period="2026-01", db=str(db)), rows)
    print(f"database {db.stat().st_size / 2**20:,.0f} MiB, analyst copy beside it")
    return 0


