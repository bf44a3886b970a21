"""`billrun bench`: each step of a bill run, side by side with DuckDB's own floor, in one run.

    billrun bench --accounts 20000 [--out DIR] [--format csv|parquet]
    python benchmarks/bench_runs.py --accounts 20000 ...

Every step is the real command a user types, run as its own `billrun` process (so the
measured tree includes Prefect's ephemeral server and anything else the command starts), and
every floor is its own small DuckDB process (`billrun.bench_floor`) over the same files or the
same stored table. psutil samples, every 50 ms, the summed RSS of the whole process tree: this
process and all its descendants. This process itself imports neither Polars, DuckDB nor
Prefect, so its share of the tree is small. Any process of a step still alive after the step
(an orphaned server, say) is ended by its PID and reported.

The data: one month (2026-01) of generated inputs, its usage split by day. The first drop
holds everything but the usage of 2026-01-31; the second, that day's usage alone.

1. generate the month (no floor);
2. `billrun load DROP1` against `CREATE TABLE ... AS SELECT * FROM read_csv(...)` of the same
   files into a scratch DuckDB file;
3. `billrun nightly --as-of 2026-01-30` (the first run: catch-up of every period since the
   earliest assignment) against the in-DuckDB GROUP BY account_id, service, destination_group
   of the stored usage;
4. `billrun nightly --as-of 2026-01-31 --input DROP2` (a one-day increment) against DuckDB's
   read of the day's file plus the GROUP BY of that day's usage;
5. `billrun reprocess --period 2025-12`, finalized for every account by then, against the
   GROUP BY of the usage any account's 2025-12 can hold (billing days 1-28: Dec 1 to Jan 28);
Each billing step (3 to 5) runs with `--json`: its summary carries the run's own profile
(flows/timings.py), printed under the step's row and written to `DIR/breakdown.json`: the
coordinator's wall by phase (start, plan, exports, its waits on the units, each commit step,
the publication, the report) and each round of units as the units timed themselves where they
ran (wall and CPU summed, and the longest unit: the round's critical path).

6. the fixed start-up cost: `billrun --version` (three times, the median: the interpreter and
   billrun's own imports), beside each flow command's time from its process start to its
   flow's first step. That moment is the run's own `runs.started_at`: the clock each flow reads
   once, at its first step (a load: once its database is open), in UTC; the process start is
   the wall clock read just before the bench launches the command. So the number holds the
   interpreter, the imports, the checks before the run, the Prefect server's start and the flow
   run's creation, and none of the run's work. The bench reads the `runs` rows in a small
   process of its own (`billrun.bench_floor runs`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil

from billrun.bench_breakdown import breakdown_lines, markdown_rows

MONTH = "2026-01"
LAST_DAY = "2026-01-31"
FIRST_AS_OF = "2026-01-30"
REPROCESS = "2025-12"
# Every account's 2025-12 period lies in [2025-12-01, 2026-01-29) (billing days 1 to 28).
REPROCESS_WINDOW = ("2025-12-01", "2026-01-29")
LIBRARIES = ("polars", "duckdb", "prefect", "durable-rules", "psutil")
SAMPLE_SECONDS = 0.05


@dataclass
class Step:
    """One measured process: its wall time, its tree's peak RSS and what it printed."""

    label: str
    command: str
    seconds: float
    peak_bytes: int
    code: int
    output: str
    left_behind: int
    pids: dict[int, float]
    coordinator_bytes: int = 0  # peak RSS of the step's own process
    launched: float = 0.0  # wall clock (epoch seconds) just before the process was started
    worker_bytes: dict[int, int] | None = None  # pid -> peak RSS of each Dask worker process
    summary: dict | None = None  # a billing step's `--json` summary (its stdout)

    @property
    def gib(self) -> float:
        """Peak RSS of the tree in GiB."""
        return self.peak_bytes / 2**30


class TreeSampler:
    """Sample the summed RSS of this process and all its descendants while a block runs."""

    def __init__(self) -> None:
        self.peak = 0
        self.seen: dict[int, float] = {}  # pid -> create_time, to end leftovers safely
        self.peaks: dict[int, int] = {}  # pid -> its own peak RSS
        self.workers: set[int] = set()  # pids of Dask worker processes (spawned by a Nanny)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            try:
                tree = [me, *me.children(recursive=True)]
            except psutil.Error:
                tree = [me]
            for proc in tree:
                try:
                    rss = proc.memory_info().rss
                    total += rss
                    self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)
                    if proc.pid != me.pid and proc.pid not in self.seen:
                        self.seen[proc.pid] = proc.create_time()
                        if is_dask_worker(proc):
                            self.workers.add(proc.pid)
                except psutil.Error:
                    continue  # it ended between the listing and the read
            self.peak = max(self.peak, total)
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def is_dask_worker(proc: psutil.Process) -> bool:
    """A LocalCluster worker: a multiprocessing spawn child (not the resource tracker)."""
    line = " ".join(proc.cmdline())
    return "spawn_main" in line and "resource_tracker" not in line


def end_leftovers(seen: dict[int, float]) -> int:
    """End (by PID) every process seen in a step that is still alive; return how many."""
    alive = []
    for pid, created in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    for proc in alive:
        proc.terminate()
    _, still = psutil.wait_procs(alive, timeout=10)
    for proc in still:
        proc.kill()
    return len(alive)


def run_step(label: str, argv: list[str], log: Path, env: dict[str, str],
             stdout: Path | None = None) -> Step:
    """Run `argv` as a child process, measuring wall time and the tree's peak RSS. `stdout`:
    its standard output goes there (a `--json` summary), apart from its log."""
    with log.open("w") as out, TreeSampler() as sampler:
        doc = stdout.open("w") if stdout else None
        launched = time.time()
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=doc or out,
                                 stderr=out if doc else subprocess.STDOUT, env=env)
        code = child.wait()
        seconds = time.perf_counter() - started
        if doc:
            doc.close()
    left = end_leftovers(sampler.seen)
    shown = " ".join(argv[2:] if argv[1:2] == ["-m"] else argv)
    summary = None
    if stdout and code == 0:
        try:
            summary = json.loads(stdout.read_text())
        except json.JSONDecodeError:
            summary = None  # no profile for this step; its row and floors still stand
    return Step(label, shown, seconds, sampler.peak, code, log.read_text(), left, sampler.seen,
                coordinator_bytes=sampler.peaks.get(child.pid, 0),
                worker_bytes={p: sampler.peaks[p] for p in sampler.workers}, launched=launched,
                summary=summary)


class Bench:
    """The run's folders, its environment and the steps measured so far."""

    def __init__(self, work: Path, fmt: str) -> None:
        self.work, self.fmt = work, fmt
        self.db = work / "billrun.duckdb"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.steps: list[Step] = []
        self.pids: dict[int, float] = {}

    def run(self, label: str, *args: str, module: str = "billrun.cli",
            profiled: bool = False) -> Step:
        """Run one `python -m module args` step, print its row, stop the bench if it failed.
        `profiled`: a billing command, run with `--json`; its run's profile is printed."""
        log = self.work / "logs" / f"{len(self.steps):02d}.log"
        log.parent.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", module, *args, *(["--json"] if profiled else [])]
        step = run_step(label, argv, log, self.env,
                        stdout=log.with_suffix(".json") if profiled else None)
        self.steps.append(step)
        self.pids.update(step.pids)
        # Every process the steps started (pid -> create time), for a check that none is left.
        (self.work / "pids.json").write_text(json.dumps(self.pids))
        print(f"  {label:<44} {step.seconds:8.2f} s {step.gib:7.2f} GiB", flush=True)
        if step.worker_bytes:
            print(f"    coordinator {step.coordinator_bytes / 2**30:.2f} GiB; "
                  f"{len(step.worker_bytes)} worker process(es): "
                  f"{each_worker(step.worker_bytes)}", flush=True)
        if step.left_behind:
            print(f"    ended {step.left_behind} process(es) the step left behind", flush=True)
        if profiled and step.code == 0:
            timings = (step.summary or {}).get("timings")
            print("\n".join(breakdown_lines(timings)) if timings
                  else "    (no profile: the step printed no --json summary)", flush=True)
        if step.code != 0:
            raise BenchFailed(f"{label} failed (exit {step.code}):\n{step.output[-3000:]}")
        return step

    def floor(self, label: str, *args: str) -> tuple[Step, dict[str, float]]:
        """Run one DuckDB floor process; return it with its in-DuckDB result."""
        step = self.run(label, *args, module="billrun.bench_floor")
        return step, json.loads(step.output.strip().splitlines()[-1])


class BenchFailed(Exception):
    """A step exited non-zero."""


def machine() -> str:
    """Cores, RAM, Python and library versions, and the load average now."""
    versions = []
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} ?")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, Python "
        f"{platform.python_version()}, {', '.join(versions)}; load average {load}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print the side-by-side table and Markdown rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cluster", help="local:N or a Dask scheduler, for the billing steps")
    parser.add_argument("--no-changes", action="store_true",
                        help="generate no SPEC §8.1 change rows (to compare a run without them)")
    args = parser.parse_args(argv)
    work = Path(args.out or tempfile.mkdtemp(prefix="billrun-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob("*.duckdb*"):
        stale.unlink()
    command = f"billrun bench --accounts {args.accounts} --format {args.format}"
    if args.cluster:
        command += f" --cluster {args.cluster}"
    print(f"{command}: working in {work}")
    print(f"machine: {machine()}", flush=True)
    bench = Bench(work, args.format)
    try:
        rows = _steps(bench, args)
        startup = _startup(bench, rows)
    except BenchFailed as exc:
        print(f"bench stopped: {exc}", file=sys.stderr)
        return 1
    _print_table(rows, command, startup)
    _record_breakdown(rows, command, work)
    left = sum(s.left_behind for s in bench.steps)
    print(f"\nprocesses left behind by the steps: {left} (ended by PID)")
    return 0


@dataclass
class Floor:
    """One DuckDB floor: the statement's own time and the process that ran it."""

    name: str
    seconds: float
    process: Step


Row = tuple[str, Step, list[Floor]]


def _steps(bench: Bench, args: argparse.Namespace) -> list[Row]:
    work, fmt, db = bench.work, bench.fmt, str(bench.db)
    # The billing steps (nightly, reprocess) run their units on the cluster, if one is given.
    cluster = ["--cluster", args.cluster] if args.cluster else []
    gen, first, second = work / "generated", work / "drop1", work / "drop2"
    print("\nsteps (each one process tree: wall, peak RSS of the tree)")
    generate = bench.run(
        f"generate {MONTH} (1 month)", "generate", "--accounts", str(args.accounts),
        "--months", "1", "--start", MONTH, "--out", str(gen), "--format", fmt,
        "--seed", str(args.seed), *(["--no-changes"] if args.no_changes else []),
    )
    _, split = bench.floor("split usage by day (bench prep)", "split", str(gen), str(first),
                           str(second), LAST_DAY)
    print(f"    drop1: all but {LAST_DAY}, {split['first']:,} usage rows; "
          f"drop2: {LAST_DAY}, {split['second']:,}")

    files = [str(first / f"{k}.{fmt}") for k in ("accounts", "assignments", "usage")]
    load = bench.run("load drop1", "load", str(first), "--db", db)
    read_step, read = bench.floor(f"floor: DuckDB read_{fmt} of drop1", "read",
                                  str(work / "floor.duckdb"), *files)

    nightly = bench.run(f"nightly --as-of {FIRST_AS_OF} (first, catch-up)", "nightly",
                        "--as-of", FIRST_AS_OF, "--db", db, *cluster, profiled=True)
    group_step, group = bench.floor("floor: DuckDB GROUP BY of all usage", "group", db)

    increment = bench.run(f"nightly --as-of {LAST_DAY} --input drop2", "nightly",
                          "--as-of", LAST_DAY, "--input", str(second), "--db", db, *cluster,
                          profiled=True)
    day_read_step, day_read = bench.floor(f"floor: DuckDB read_{fmt} of drop2", "read",
                                          str(work / "floor.duckdb"),
                                          str(second / f"usage.{fmt}"))
    day_step, day = bench.floor(f"floor: DuckDB GROUP BY of {LAST_DAY}", "group", db,
                                LAST_DAY, "2026-02-01")

    reprocess = bench.run(f"reprocess --period {REPROCESS} (finalized)", "reprocess",
                          "--period", REPROCESS, "--db", db, *cluster, profiled=True)
    window_step, window = bench.floor(f"floor: DuckDB GROUP BY of {REPROCESS}'s usage", "group",
                                      db, *REPROCESS_WINDOW)
    print(f"    usage rows stored: {group['rows']:,} in {group['groups']:,} groups; "
          f"{LAST_DAY}: {day['rows']:,}; {REPROCESS} window: {window['rows']:,}")
    return [
        ("generate", generate, []),
        ("load", load, [_floor(f"read_{fmt} of the same files", read, read_step)]),
        ("first nightly (catch-up)", nightly,
         [_floor("GROUP BY of the stored usage", group, group_step)]),
        ("one-day increment", increment,
         [_floor(f"read_{fmt} of the day's file", day_read, day_read_step),
          _floor("GROUP BY of the day's usage", day, day_step)]),
        (f"reprocess {REPROCESS} (finalized)", reprocess,
         [_floor(f"GROUP BY of {REPROCESS}'s usage window", window, window_step)]),
    ]


VERSION_RUNS = 3


@dataclass
class Startup:
    """The fixed start-up cost: `billrun --version`, and each flow step's time from its process
    start to its flow's first step (its `runs.started_at`)."""

    version: float  # median wall of VERSION_RUNS `billrun --version`
    to_first_step: dict[str, float]  # row name -> seconds

    @property
    def median(self) -> float:
        """The median over the flow steps."""
        return statistics.median(self.to_first_step.values())


def _startup(bench: Bench, rows: list[Row]) -> Startup:
    """Step 6: time `billrun --version`, and read each flow step's first `runs` row."""
    print("\nfixed start-up cost (docs/RUNS.md, \"Start-up\")")
    version = statistics.median(
        bench.run(f"billrun --version ({i + 1} of {VERSION_RUNS})", "--version").seconds
        for i in range(VERSION_RUNS)
    )
    _, started = bench.floor("read runs.started_at (bench prep)", "runs", str(bench.db))
    firsts: dict[str, float] = {}
    for name, step, _ in rows:
        if name == "generate":
            continue
        # The first run this step's process started: a nightly --input records its load too.
        mine = [t for t in started["started"] if step.launched <= t <= step.launched
                + step.seconds]
        if not mine:
            raise BenchFailed(f"{name}: no runs row started while the step ran")
        firsts[name] = min(mine) - step.launched
    return Startup(version, firsts)


def _floor(name: str, result: dict[str, float], step: Step) -> Floor:
    return Floor(name, float(result["seconds"]), step)


def _print_table(rows: list[Row], command: str, startup: Startup) -> None:
    """The side-by-side summary, then the same rows as Markdown for benchmarks/RESULTS.md."""
    nightly_seconds = next(s.seconds for name, s, _ in rows if name.startswith("first nightly"))
    print("\nsummary: billrun step | wall | peak RSS (tree) | DuckDB floor | floor time | ratio")
    for name, step, floors in rows:
        print(f"  {name:<34} {step.seconds:8.2f} s {step.gib:6.2f} GiB")
        for f in floors:
            print(f"    floor: {f.name:<46} {f.seconds:8.3f} s"
                  f"   x{step.seconds / max(f.seconds, 1e-9):,.1f}")
    increment = next(s for name, s, _ in rows if name == "one-day increment")
    print(f"  one-day increment / first nightly: {increment.seconds / nightly_seconds:.2f}")
    print("  fixed start-up cost (process start to the flow's first step):")
    print(f"    billrun --version (median of {VERSION_RUNS}) {startup.version:28.2f} s")
    for name, seconds in startup.to_first_step.items():
        print(f"    {name:<46} {seconds:8.2f} s")
    print(f"    {'flow commands, median':<46} {startup.median:8.2f} s")

    print("\nMarkdown (for benchmarks/RESULTS.md):\n")
    print(f"Command: `{command}`. Machine: {machine()}.\n")
    print("| step | wall | peak RSS, process tree | DuckDB floor (same run) | floor, in DuckDB "
          "| floor process wall, peak RSS | step / floor |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for name, step, floors in rows:
        if not floors:
            print(f"| {name} | {step.seconds:.1f} s | {step.gib:.2f} GiB | – | – | – | – |")
        for f in floors:
            print(f"| {name} | {step.seconds:.1f} s | {step.gib:.2f} GiB | {f.name} "
                  f"| {f.seconds:.2f} s | {f.process.seconds:.1f} s, {f.process.gib:.2f} GiB "
                  f"| {step.seconds / max(f.seconds, 1e-9):.1f}× |")
    print(f"| one-day increment / first nightly | {increment.seconds / nightly_seconds:.2f} "
          "| | | | | |")
    print(f"| fixed start-up: `billrun --version` (median of {VERSION_RUNS}) "
          f"| {startup.version:.2f} s | | | | | |")
    print("| fixed start-up: flow command, process start to the flow's first step (median) "
          f"| {startup.median:.2f} s | | | | | |")
    print("\n| step | wall | peak RSS, tree | peak RSS, coordinator | Dask workers | peak RSS, "
          "each worker |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, step, _ in rows:
        workers = step.worker_bytes or {}
        print(f"| {name} | {step.seconds:.1f} s | {step.gib:.2f} GiB "
              f"| {step.coordinator_bytes / 2**30:.2f} GiB | {len(workers)} "
              f"| {each_worker(workers)} |")
    print("\n| fixed start-up cost | process start to the flow's first step |")
    print("| --- | ---: |")
    print(f"| `billrun --version` (median of {VERSION_RUNS}; no flow) | {startup.version:.2f} s |")
    for name, seconds in startup.to_first_step.items():
        print(f"| {name} | {seconds:.2f} s |")


def _record_breakdown(rows: list[Row], command: str, work: Path) -> None:
    """Each billing step's profile: Markdown rows, and `DIR/breakdown.json` (the profiles as
    the runs gave them)."""
    profiles = [(name, step.summary["timings"]) for name, step, _ in rows
                if step.summary and step.summary.get("timings")]
    if not profiles:
        return
    print("\nwhere each billing step's time went (the run's own profile; Markdown):\n")
    print("\n".join(markdown_rows(profiles)))
    target = work / "breakdown.json"
    target.write_text(json.dumps({"command": command, "machine": machine(),
                                  "steps": dict(profiles)}, indent=2))
    print(f"\nprofiles written to {target}")


def each_worker(peaks: dict[int, int]) -> str:
    """Each Dask worker's own peak RSS, in the order the workers started (pid order), or –."""
    if not peaks:
        return "–"
    return ", ".join(f"{peaks[pid] / 2**30:.2f}" for pid in sorted(peaks)) + " GiB"


if __name__ == "__main__":
    raise SystemExit(main())
