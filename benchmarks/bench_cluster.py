"""What the Dask task runner costs (issue 10): LocalCluster start and stop, and the overhead per
Prefect task on `local:N` against threads, with a tiny task (returns its argument) x M.

Each flow times its own submit-to-last-result section, so the cluster's start and stop are not
in the per-task figure; they are timed apart, with the same kwargs billrun uses. Starts its own
tied Prefect server unless PREFECT_API_URL is set.

    .venv/bin/python benchmarks/bench_cluster.py --tasks 50 --workers 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the project, and this module for the workers

from flows import prefect_env  # noqa: E402

if __name__ == "__main__":
    prefect_env.connect()

from prefect import flow, task  # noqa: E402


def plain(i: int) -> int:
    """The same, as a plain function for Dask alone."""
    return i


@task
def tiny(i: int) -> int:
    """The smallest unit: its argument back."""
    return i


@flow
def tiny_flow(count: int) -> float:
    """Seconds from the first submit to the last result of `count` tiny tasks."""
    started = time.perf_counter()
    results = [f.result() for f in [tiny.submit(i) for i in range(count)]]
    assert results == list(range(count))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import bench_cluster  # by module name, so that workers import the task, not __main__
    from distributed import Client, LocalCluster

    from flows.cluster import THREADS_PER_WORKER, task_runner

    started = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, processes=True,
                           threads_per_worker=THREADS_PER_WORKER, dashboard_address=None)
    up = time.perf_counter() - started
    # Dask alone, without Prefect: the same tiny function, as a plain Dask task.
    with Client(cluster) as client:
        client.gather(client.map(bench_cluster.plain, range(args.workers * 4)))  # warm up
        started = time.perf_counter()
        client.gather(client.map(bench_cluster.plain, range(args.tasks), pure=False))
        plain_s = time.perf_counter() - started
    started = time.perf_counter()
    cluster.close()
    down = time.perf_counter() - started
    print(f"LocalCluster of {args.workers} processes: start {up:.2f} s, close {down:.2f} s")
    print(f"   dask alone: {args.tasks} tiny tasks in {plain_s:.2f} s "
          f"({1000 * plain_s / args.tasks:.1f} ms per task)")

    for spec in (None, f"local:{args.workers}"):
        runner = task_runner(spec, args.workers)
        started = time.perf_counter()
        inside = bench_cluster.tiny_flow.with_options(task_runner=runner)(args.tasks)
        whole = time.perf_counter() - started
        print(f"{spec or 'threads':>8}: {args.tasks} tiny tasks in {inside:.2f} s "
              f"({1000 * inside / args.tasks:.0f} ms per task); whole flow {whole:.2f} s")


if __name__ == "__main__":
    main()
