"""History must not slow a night: the same day's drop on 2 and on 24 months of history.

    python benchmarks/bench_history.py --accounts 100000 [--out DIR] [--months 2 24]

One generation, `billrun generate --months 24` ending in 2026-01 (Parquet, so the cuts below
stream), gives both databases, so the two nights have exactly the same work:

A second run with `--again` (same `--out`) runs only step 3 again, on the state the first left
after its catch-ups (kept in `saved/`): a change to the night measured on the same databases.

1. its usage is cut in three (one streaming process): the drop of 2026-01-31 alone (the same
   file for both databases), every earlier event (the long history) and the events of the last
   SHORT months before that day (the short history). Rows whose `started_at` is not a date
   (spoiled copies, rejected at the load anyway) go to both histories. The accounts, the
   assignments and the catalog are the same files in both;
2. for each history: `billrun load` of it, then `billrun nightly --as-of 2026-01-30` (the
   catch-up: not what is compared);
3. `billrun nightly --as-of 2026-01-31 --input DAY` on each (the night that is compared).

So the two databases differ in the usage events stored and billed before the day (SHORT months
against LONG months), and in nothing else: the same accounts, assignments, periods and the same
day's events. Why not `generate --months 2` and `--months 24` apart: the generator draws each
month's events from the month's index in its horizon, and the accounts' dates from the horizon's
start, so two horizons give two different 2026-01-31s.

Every step is its own process tree, measured as `billrun bench` measures them (wall, peak RSS of
the tree), plus its CPU seconds (user + sys of the step's process and every child it waited
for, from getrusage) and the flow's own step lines (`commit steps: ...`, `publish steps:
...`). Compare CPU seconds on a shared machine: its walls are noisy. The ratio printed last is
the long history's night over the short one's: a night whose cost follows its work gives 1.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billrun.bench import (  # noqa: E402
    FIRST_AS_OF,
    LAST_DAY,
    MONTH,
    Bench,
    BenchFailed,
    Step,
    machine,
    run_step,
)
from pipeline.periods import add_months, parse_period  # noqa: E402

SPLIT = """
import json, shutil, sys
from pathlib import Path
import polars as pl
src, long_dir, short_dir, day_dir = (Path(a) for a in sys.argv[1:5])
day, short_from = sys.argv[5], sys.argv[6]
for folder in (long_dir, short_dir, day_dir):
    folder.mkdir(parents=True, exist_ok=True)
for path in src.iterdir():
    if path.name != "usage.parquet":
        shutil.copy2(path, long_dir / path.name)
        shutil.copy2(path, short_dir / path.name)
at = pl.col("started_at").fill_null("")
on_day = at.str.starts_with(day)
dated = at.str.contains(r"^\\d{4}-\\d{2}-\\d{2}")
usage = pl.scan_parquet(src / "usage.parquet")
usage.filter(~on_day).sink_parquet(long_dir / "usage.parquet")
usage.filter(~on_day & (~dated | (at >= short_from))).sink_parquet(short_dir / "usage.parquet")
usage.filter(on_day).sink_parquet(day_dir / "usage.parquet")
count = lambda p: pl.scan_parquet(p).select(pl.len()).collect().item()
print(json.dumps({"long": count(long_dir / "usage.parquet"),
                  "short": count(short_dir / "usage.parquet"),
                  "day": count(day_dir / "usage.parquet")}))
"""

STEP_LINES = re.compile(r"(commit steps: .*|publish steps: .*|nightly \S+ done in .*)")


@dataclass
class Measured:
    """A step with its CPU seconds (user + sys of the process and the children it waited)."""

    step: Step
    cpu: float

    @property
    def lines(self) -> list[str]:
        """The flow's own step-time lines from its log."""
        return [m.group(1).strip() for m in STEP_LINES.finditer(self.step.output)]


def first_month(months: int) -> str:
    """The first month of a history of `months` months that ends with MONTH."""
    year, month = parse_period(MONTH)
    start = add_months(date(year, month, 1), 1 - months)
    return f"{start.year:04d}-{start.month:02d}"


def children_cpu() -> float:
    """User + sys seconds of every child this process has waited for, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(bench: Bench, label: str, *args: str) -> Measured:
    """One `billrun` step, with its CPU seconds."""
    before = children_cpu()
    step = bench.run(label, *args)
    measured = Measured(step, children_cpu() - before)
    print(f"    cpu {measured.cpu:8.2f} s", flush=True)
    for line in measured.lines:
        print(f"    {line}", flush=True)
    return measured


def cut(bench: Bench, gen: Path, long_dir: Path, short_dir: Path, day: Path,
        short_from: str) -> dict[str, int]:
    """Stream the usage into the day's drop, the long and the short history (one process)."""
    log = bench.work / "logs" / f"{len(bench.steps):02d}.log"
    log.parent.mkdir(exist_ok=True)
    argv = [sys.executable, "-c", SPLIT, str(gen), str(long_dir), str(short_dir), str(day),
            LAST_DAY, short_from]
    step = run_step("cut the usage", argv, log, bench.env)
    bench.steps.append(step)
    print(f"  {'cut: the day, the long and the short history':<44} {step.seconds:8.2f} s "
          f"{step.gib:7.2f} GiB", flush=True)
    if step.code != 0:
        raise BenchFailed(f"cut failed (exit {step.code}):\n{step.output[-3000:]}")
    return json.loads(step.output.strip().splitlines()[-1])


def database_files(work: Path, months: int) -> list[Path]:
    """A history's database, its analyst link, analyst file and Parquet sets."""
    return sorted(work.glob(f"h{months}.duckdb*")) + sorted(work.glob(f"h{months}.analyst*"))


def save_state(work: Path, months: int) -> None:
    """Copy the history's database and published sets as the catch-up left them (`saved/`)."""
    saved = work / "saved"
    saved.mkdir(exist_ok=True)
    for path in database_files(saved, months):
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for path in database_files(work, months):
        if path.suffix != ".staging" and path.suffix != ".lock":
            subprocess.run(["cp", "-a", str(path), str(saved)], check=True)


def restore_state(work: Path, months: int) -> None:
    """Put back the state `save_state` kept, so that the night runs again on the same state."""
    for path in database_files(work, months):
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for path in database_files(work / "saved", months):
        subprocess.run(["cp", "-a", str(path), str(work)], check=True)


def one_history(bench: Bench, months: int, inputs: Path, day: Path,
                again: bool) -> dict[str, object]:
    """Load one history, bill it up to the day before, then measure the day's night on it.
    `again`: the load and the catch-up were done by an earlier run (kept in `saved/`)."""
    db = str(bench.work / f"h{months}.duckdb")
    if again:
        restore_state(bench.work, months)
        load = catch_up = None
    else:
        load = timed(bench, f"H={months}: load", "load", str(inputs), "--db", db)
        catch_up = timed(bench, f"H={months}: nightly --as-of {FIRST_AS_OF} (catch-up)",
                         "nightly", "--as-of", FIRST_AS_OF, "--db", db)
        save_state(bench.work, months)
    night = timed(bench, f"H={months}: nightly --as-of {LAST_DAY} --input day", "nightly",
                  "--as-of", LAST_DAY, "--input", str(day), "--db", db)
    return {"months": months, "load": load, "catch_up": catch_up, "night": night}


def main(argv: list[str] | None = None) -> int:
    """Generate once, run both histories and print the comparison, then Markdown rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, nargs=2, default=(2, 24), metavar=("SHORT", "LONG"))
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--again", action="store_true",
                        help="only the nights again, on the state an earlier run of this "
                             "bench left in --out (after its catch-ups)")
    args = parser.parse_args(argv)
    short_months, long_months = args.months
    if not 1 <= short_months < long_months:
        parser.error("--months SHORT LONG: 1 <= SHORT < LONG")
    work = Path(args.out or tempfile.mkdtemp(prefix="billrun-history-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.again and not (work / "saved").is_dir():
        parser.error("--again: no saved state in --out")
    if not args.again:
        for months in args.months:
            for path in database_files(work, months):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    command = (f"python benchmarks/bench_history.py --accounts {args.accounts} "
               f"--months {short_months} {long_months}" + (" --again" if args.again else ""))
    print(f"{command}: working in {work}")
    print(f"machine: {machine()}", flush=True)
    bench = Bench(work, "parquet")
    # The flows' INFO lines (their step times) on the console, so in each step's log.
    bench.env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"
    gen, day = work / "generated", work / "day"
    dirs = {short_months: work / f"h{short_months}", long_months: work / f"h{long_months}"}
    try:
        if not (gen / "usage.parquet").exists():
            bench.run(f"generate {long_months} months", "generate", "--accounts",
                      str(args.accounts), "--months", str(long_months), "--start",
                      first_month(long_months), "--out", str(gen), "--format", "parquet",
                      "--seed", str(args.seed))
        if (work / "rows.json").exists() and all(d.is_dir() for d in dirs.values()):
            rows = json.loads((work / "rows.json").read_text())  # cut by an earlier run
        else:
            rows = cut(bench, gen, dirs[long_months], dirs[short_months], day,
                       f"{first_month(short_months)}-01")
            (work / "rows.json").write_text(json.dumps(rows))
        print(f"    usage rows: {rows['long']:,} in {long_months} months, {rows['short']:,} in "
              f"{short_months}, the day {rows['day']:,}", flush=True)
        results = [one_history(bench, m, dirs[m], day, args.again)
                   for m in (short_months, long_months)]
    except BenchFailed as exc:
        print(f"bench stopped: {exc}", file=sys.stderr)
        return 1
    stored = {short_months: rows["short"], long_months: rows["long"]}
    short, long = results
    wall = long["night"].step.seconds / max(short["night"].step.seconds, 1e-9)
    cpu = long["night"].cpu / max(short["night"].cpu, 1e-9)
    print(f"\nsummary: the same day's night ({rows['day']:,} events) on each history")
    for r in results:
        night = r["night"]
        print(f"  {r['months']:>3} months ({stored[r['months']]:>12,} events before): "
              f"night {night.step.seconds:8.2f} s wall, {night.cpu:8.2f} s CPU, "
              f"{night.step.gib:6.2f} GiB")
        for line in night.lines:
            print(f"      {line}")
    print(f"  {long_months} months / {short_months} months: CPU x{cpu:.2f}, wall x{wall:.2f}")
    print("\nMarkdown (for benchmarks/RESULTS.md):\n")
    print(f"Command: `{command}`. Machine: {machine()}.\n")
    print("| history | usage rows before the day | load, CPU | catch-up, CPU | the day's night, "
          "wall | the day's night, CPU | peak RSS, tree |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        load, catch_up = (f"{r[k].cpu:.1f} s" if r[k] else "(earlier)"
                          for k in ("load", "catch_up"))
        print(f"| {r['months']} months | {stored[r['months']]:,} | {load} "
              f"| {catch_up} | {r['night'].step.seconds:.1f} s "
              f"| {r['night'].cpu:.1f} s | {r['night'].step.gib:.2f} GiB |")
    print(f"| {long_months} / {short_months} months | | | | {wall:.2f}× | {cpu:.2f}× | |")
    left = sum(s.left_behind for s in bench.steps)
    print(f"\nprocesses left behind by the steps: {left} (ended by PID)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
