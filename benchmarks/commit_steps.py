"""CPU seconds of each step of a nightly's commit (store/results.py `write_results`).

    python benchmarks/commit_steps.py --db DB --as-of YYYY-MM-DD [--input DIR]

Runs the nightly in this process and adds, to the wall seconds the flow logs for each commit
step, the process's CPU seconds in the step (`time.process_time`: every thread, DuckDB's
included). Prints one JSON object: `{"wall": {...}, "cpu": {...}}`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import store.results as results

CPU: dict[str, float] = {}
_wall_timed = results.timed


@contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    start = time.process_time()
    try:
        with _wall_timed(seconds, step):
            yield
    finally:
        CPU[step] = CPU.get(step, 0.0) + time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--input")
    args = parser.parse_args()
    results.timed = _timed
    from flows.nightly import nightly_flow

    summary = nightly_flow(as_of=date.fromisoformat(args.as_of), db=args.db,
                           input_dir=args.input)
    timings = summary.timings.as_json() if summary.timings else {}
    print(json.dumps({"wall": timings.get("coordinator", {}).get("commit", {}),
                      "cpu": {k: round(v, 2) for k, v in CPU.items()},
                      "changes": summary.changes}))


if __name__ == "__main__":
    main()
