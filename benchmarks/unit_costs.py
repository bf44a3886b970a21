"""Per-unit costs of the bill runs of a `billrun bench` (issue 10: the input of the 10M-accounts
estimate): runs the bench with every step reporting to one Prefect server started here (so
the task runs outlive the steps), then reads each billing flow run's `bill-unit` task runs
from the API: how many units, their shard count, and the seconds each spent running.

    .venv/bin/python benchmarks/unit_costs.py --accounts 20000 [--cluster local:2]

Arguments are `billrun bench`'s. Unlike a plain bench, no step starts a Prefect server of its
own (they use this one, as with a user's PREFECT_API_URL): each step is ~1-2 s shorter.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flows import prefect_env, prefect_server  # noqa: E402

SHARDS = re.compile(r"(\d+) shard\(s\)")


def main() -> int:
    """Start a server, run the bench against it, print the units' costs per flow run."""
    home = prefect_env.configure()
    server = prefect_server.start(log_path=home / "unit-costs-server.log")
    try:
        env = {**os.environ, "PREFECT_API_URL": server.api_url}
        code = subprocess.run([sys.executable, "-m", "billrun.cli", "bench", *sys.argv[1:]],
                              env=env).returncode
        os.environ["PREFECT_API_URL"] = server.api_url
        report()
    finally:
        server.stop()
    return code


def _task_runs(client: object, flow_runs: object) -> list:
    """Every task run of the flow runs, 200 at a time (the API's page limit)."""
    found: list = []
    while page := client.read_task_runs(flow_run_filter=flow_runs, limit=200,  # type: ignore
                                        offset=len(found)):
        found += page
    return found


def report() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    print("\nper-unit costs (Prefect task runs `bill-unit`, seconds in the Running state)")
    print("| flow run | shards | units | median s/unit | mean s/unit | max s/unit | "
          "units' wall (first start to last end) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(sort=FlowRunSort.START_TIME_ASC):
            if not run.name or not (run.flow_id and run.start_time):
                continue
            flow = client.read_flow(run.flow_id).name
            if flow not in ("billrun-nightly", "billrun-reprocess"):
                continue
            tasks = [t for t in _task_runs(client, FlowRunFilter(id=FlowRunFilterId(
                any_=[run.id]))) if t.name.startswith("bill-unit")]
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            shards = next((m.group(1) for lg in logs if (m := SHARDS.search(lg.message))), "?")
            seconds = [t.total_run_time.total_seconds() for t in tasks]
            if not seconds:
                continue
            wall = (max(t.end_time for t in tasks if t.end_time)
                    - min(t.start_time for t in tasks if t.start_time)).total_seconds()
            label = f"{flow} {run.parameters.get('as_of') or run.parameters.get('period')}"
            print(f"| {label} | {shards} | {len(seconds)} | {statistics.median(seconds):.2f} "
                  f"| {statistics.mean(seconds):.2f} | {max(seconds):.2f} | {wall:.1f} s |")


if __name__ == "__main__":
    raise SystemExit(main())
