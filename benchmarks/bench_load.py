"""Benchmark `billrun generate` and `billrun load`: wall time and peak memory (RSS).

Each command runs as its own process, exactly as a user would type it; psutil samples the
resident memory of the process and of its children (Prefect's ephemeral server is one) every
50 ms. It also measures the fixed start-up cost of a Prefect flow run in a fresh process, with a
brand-new Prefect home (database migrations) and again with the persistent one.

    python benchmarks/bench_load.py --accounts 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

FLOW_PROBE = """
import time
start = time.perf_counter()
from flows import prefect_env
prefect_env.configure()
from prefect import flow

@flow
def probe() -> int:
    return 1

probe()
print(f"{time.perf_counter() - start:.2f}")
"""


@dataclass
class Measure:
    """One command's wall time and peak memory."""

    command: str
    seconds: float
    peak_main_mib: float
    peak_tree_mib: float
    code: int


def measure(argv: list[str], env: dict[str, str] | None = None) -> Measure:
    """Run `argv` and sample its memory until it exits."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        try:
            main_rss = watched.memory_info().rss
            tree = main_rss + sum(
                c.memory_info().rss for c in watched.children(recursive=True) if c.is_running()
            )
        except psutil.Error:
            break
        peak_main, peak_tree = max(peak_main, main_rss), max(peak_tree, tree)
        time.sleep(0.05)
    code = proc.wait()
    seconds = time.perf_counter() - started
    if code != 0:
        sys.stderr.write(proc.stderr.read().decode() if proc.stderr else "")
    return Measure(" ".join(argv), seconds, peak_main / 2**20, peak_tree / 2**20, code)


def flow_startup(home: Path) -> tuple[float, float]:
    """Seconds to a finished trivial flow run (in-process) and the whole process's wall time."""
    env = {**os.environ, "BILLRUN_PREFECT_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", FLOW_PROBE], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def main() -> int:
    """Run the benchmark and print a Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, help="where to write (default: a temp folder)")
    parser.add_argument("--skip-prefect", action="store_true", help="skip the start-up probe")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="billrun-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data, db = work / "input", work / "billrun.duckdb"
    db.unlink(missing_ok=True)
    billrun = [sys.executable, "-m", "billrun.cli"]
    runs = [
        measure([*billrun, "generate", "--accounts", str(args.accounts), "--out", str(data)]),
        measure([*billrun, "load", str(data), "--db", str(db)]),
        measure([*billrun, "load", str(data), "--db", str(db)]),
    ]
    sizes = {p.name: p.stat().st_size for p in sorted(data.iterdir())}

    print(f"## billrun generate / load, {args.accounts:,} accounts\n")
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB\n")
    print("| command | wall (s) | peak RSS main (MiB) | peak RSS with children (MiB) | exit |")
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = ["generate", "load (first)", "load (again, all unchanged)"]
    for label, m in zip(labels, runs, strict=True):
        print(
            f"| {label} | {m.seconds:.1f} | {m.peak_main_mib:.0f} | {m.peak_tree_mib:.0f} "
            f"| {m.code} |"
        )
    print("\ninput files: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()))
    print(f"database: {db.stat().st_size / 2**20:.1f} MiB")

    if not args.skip_prefect:
        home = Path(tempfile.mkdtemp(prefix="billrun-bench-prefect-"))
        try:
            cold = flow_startup(home)
            warm = [flow_startup(home) for _ in range(3)]
        finally:
            shutil.rmtree(home, ignore_errors=True)
        print("\n## Prefect start-up cost (a trivial flow in a fresh process)\n")
        print("| Prefect home | to flow done (s) | process wall (s) |")
        print("| --- | ---: | ---: |")
        print(f"| new (migrations run) | {cold[0]:.1f} | {cold[1]:.1f} |")
        for i, (flow_s, wall_s) in enumerate(warm, 1):
            print(f"| persistent, run {i} | {flow_s:.1f} | {wall_s:.1f} |")
    return 0 if all(m.code == 0 for m in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
