"""History must not slow a night: the same kind of one-day drop on 2 and on 24 months of history.

    python benchmarks/bench_history.py --accounts 100000 [--out DIR] [--months 2 24]

For each history length H, one working folder holds:

1. `billrun generate --months H` ending in 2026-01 (Parquet, so the split below can stream);
2. its usage split by day: the drop of 2026-01-31 alone, and everything before it;
3. `billrun load` of everything before, then `billrun nightly --as-of 2026-01-30` (the
   catch-up of H months: not what is compared);
4. `billrun nightly --as-of 2026-01-31 --input DAY` (the night that is compared).

The generator is seeded, and the accounts, their add-ons and the rates of usage per day do not
depend on H, so the two nights have the same kind of work (their rows are printed beside them).
A night whose cost follows the work takes the same time on both: the ratio printed last should
be close to 1. Every step is its own process tree, measured as `billrun bench` measures them
(wall, peak RSS of the tree).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billrun.bench import (  # noqa: E402
    FIRST_AS_OF,
    LAST_DAY,
    MONTH,
    Bench,
    BenchFailed,
    machine,
    run_step,
)
from pipeline.periods import add_months, parse_period  # noqa: E402

SPLIT = """
import json, shutil, sys
from pathlib import Path
import polars as pl
src, before, day_dir, day = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
before.mkdir(parents=True, exist_ok=True)
day_dir.mkdir(parents=True, exist_ok=True)
for path in src.iterdir():
    if path.name != "usage.parquet":
        shutil.copy2(path, before / path.name)
on_day = pl.col("started_at").fill_null("").str.starts_with(day)
usage = pl.scan_parquet(src / "usage.parquet")
usage.filter(~on_day).sink_parquet(before / "usage.parquet")
usage.filter(on_day).sink_parquet(day_dir / "usage.parquet")
count = lambda p: pl.scan_parquet(p).select(pl.len()).collect().item()
print(json.dumps({"before": count(before / "usage.parquet"),
                  "day": count(day_dir / "usage.parquet")}))
"""


def first_month(months: int) -> str:
    """The first month of a history of `months` months that ends with MONTH."""
    year, month = parse_period(MONTH)
    start = add_months(date(year, month, 1), 1 - months)
    return f"{start.year:04d}-{start.month:02d}"


def split_off_day(bench: Bench, label: str, gen: Path, before: Path, day: Path) -> dict:
    """Stream the usage into the day's drop and everything before it (its own process)."""
    log = bench.work / "logs" / f"{len(bench.steps):02d}.log"
    log.parent.mkdir(exist_ok=True)
    argv = [sys.executable, "-c", SPLIT, str(gen), str(before), str(day), LAST_DAY]
    step = run_step(label, argv, log, bench.env)
    bench.steps.append(step)
    print(f"  {label:<44} {step.seconds:8.2f} s {step.gib:7.2f} GiB", flush=True)
    if step.code != 0:
        raise BenchFailed(f"{label} failed (exit {step.code}):\n{step.output[-3000:]}")
    return json.loads(step.output.strip().splitlines()[-1])


def one_history(bench: Bench, months: int, accounts: int, seed: int) -> dict[str, object]:
    """Build a database with `months` of history and measure the next day's night on it."""
    work = bench.work / f"h{months}"
    work.mkdir(parents=True, exist_ok=True)
    db = str(work / "billrun.duckdb")
    gen, before, day = work / "generated", work / "before", work / "day"
    bench.run(f"H={months}: generate {months} months", "generate", "--accounts", str(accounts),
              "--months", str(months), "--start", first_month(months), "--out", str(gen),
              "--format", "parquet", "--seed", str(seed))
    rows = split_off_day(bench, f"H={months}: split off {LAST_DAY}", gen, before, day)
    bench.run(f"H={months}: load", "load", str(before), "--db", db)
    catch_up = bench.run(f"H={months}: nightly --as-of {FIRST_AS_OF} (catch-up)", "nightly",
                         "--as-of", FIRST_AS_OF, "--db", db)
    night = bench.run(f"H={months}: nightly --as-of {LAST_DAY} --input day", "nightly",
                      "--as-of", LAST_DAY, "--input", str(day), "--db", db)
    return {"months": months, "before": rows["before"], "day": rows["day"],
            "catch_up": catch_up, "night": night}


def main(argv: list[str] | None = None) -> int:
    """Run both histories and print the comparison, then the Markdown rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, nargs=2, default=(2, 24), metavar=("SHORT", "LONG"))
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    work = Path(args.out or tempfile.mkdtemp(prefix="billrun-history-"))
    work.mkdir(parents=True, exist_ok=True)
    command = (f"python benchmarks/bench_history.py --accounts {args.accounts} "
               f"--months {args.months[0]} {args.months[1]}")
    print(f"{command}: working in {work}")
    print(f"machine: {machine()}", flush=True)
    bench = Bench(work, "parquet")
    try:
        results = [one_history(bench, m, args.accounts, args.seed) for m in args.months]
    except BenchFailed as exc:
        print(f"bench stopped: {exc}", file=sys.stderr)
        return 1
    short, long = results
    ratio = long["night"].seconds / max(short["night"].seconds, 1e-9)
    print("\nsummary: the same day's night on each history")
    for r in results:
        print(f"  {r['months']:>3} months: {r['before']:>12,} usage rows stored, "
              f"day {r['day']:>10,}: night {r['night'].seconds:8.2f} s "
              f"{r['night'].gib:6.2f} GiB")
    print(f"  {long['months']} months / {short['months']} months: x{ratio:.2f}")
    print("\nMarkdown (for benchmarks/RESULTS.md):\n")
    print(f"Command: `{command}`. Machine: {machine()}.\n")
    print("| history | usage rows stored | the day's rows | catch-up | the day's night "
          "| peak RSS, tree |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['months']} months | {r['before']:,} | {r['day']:,} "
              f"| {r['catch_up'].seconds:.1f} s | {r['night'].seconds:.1f} s "
              f"| {r['night'].gib:.2f} GiB |")
    print(f"| {long['months']} / {short['months']} months | | | | {ratio:.2f}× | |")
    left = sum(s.left_behind for s in bench.steps)
    print(f"\nprocesses left behind by the steps: {left} (ended by PID)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
