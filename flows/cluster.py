"""Where a run's units execute: threads here, a LocalCluster of worker processes, or a Dask
scheduler's workers, all behind one Prefect task runner (issue 10).

The cluster spec is one string (`--cluster`, `BILLRUN_CLUSTER`, `cluster` in billrun.toml):

- none: bounded threads in this process (Prefect's ThreadPoolTaskRunner), as before;
- `local:N`: a temporary `distributed.LocalCluster` of N worker processes, started with the
  flow and closed with it (prefect-dask's DaskTaskRunner owns it);
- `tcp://host:port` or `tls://host:port` (a bare `host:port` means tcp): an existing Dask
  scheduler; its workers run the units.

`parse_cluster` is the one parser: billrun/config.py validates the setting with it. It imports
nothing heavy, so validating a setting does not import Prefect or Dask; `task_runner` imports
them when a run asks for a runner.

No orphans: LocalCluster's scheduler and Nannies live in this process; each worker is a child
process that Dask ties to us with a pipe (distributed.process.AsyncProcess: the child exits the
moment the pipe closes, which the kernel does when we die, by SIGKILL too). On Linux a worker
also asks for PR_SET_PDEATHSIG (the same guarantee flows/prefect_server.py uses), through a
Dask worker plugin run at start (flows/cluster_worker.py).

The Prefect API: Prefect serializes the flow's settings context (PREFECT_API_URL included) into
every task it sends to Dask, so a worker reports the task run to the coordinator's API. Local
workers also inherit our environment, with the API URL set explicitly (see `_worker_env`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

LOCAL_PREFIX = "local:"
SCHEMES = ("tcp", "tls")
# One thread per worker process: a unit's Polars and DuckDB are multi-threaded themselves, and
# the memory budget is per unit, so N workers x 1 thread holds N units at once, not 2N.
THREADS_PER_WORKER = 1


class ClusterSpecError(ValueError):
    """A cluster spec billrun cannot use; the message names the value."""


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed cluster spec: `threads`, `local` (with `workers`), or `address`."""

    kind: Literal["threads", "local", "address"]
    workers: int | None = None
    address: str | None = None

    def describe(self) -> str:
        """How a progress line or an error names it."""
        if self.kind == "local":
            return f"local:{self.workers} (a LocalCluster of {self.workers} worker processes)"
        if self.kind == "address":
            return f"the Dask scheduler at {self.address}"
        return "threads in this process"


def parse_cluster(value: str | None) -> ClusterSpec:
    """None -> threads; `local:N` (N >= 1); `[tcp|tls://]host:port`. Else ClusterSpecError."""
    if value is None:
        return ClusterSpec("threads")
    text = value.strip()
    if text.startswith(LOCAL_PREFIX):
        count = text.removeprefix(LOCAL_PREFIX)
        if not count.isdigit() or int(count) < 1:
            raise ClusterSpecError(
                f"{value!r}: local:N needs a whole number of worker processes N >= 1, "
                "e.g. local:2"
            )
        return ClusterSpec("local", workers=int(count))
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in SCHEMES or not parts.hostname or port is None or parts.path:
        raise ClusterSpecError(
            f"{value!r} is not local:N or a Dask scheduler address host:port "
            "(e.g. tcp://10.0.0.5:8786, tls://host:8786)"
        )
    return ClusterSpec("address", address=f"{parts.scheme}://{parts.netloc}")


def _worker_env() -> dict[str, str]:
    """What local workers need to reach our Prefect API: our environment already reaches
    them (spawn inherits it); the API URL is set from Prefect's resolved settings too, in case
    it came from a profile rather than the environment."""
    from prefect.settings import get_current_settings

    env = {}
    url = get_current_settings().api.url
    if url:
        env["PREFECT_API_URL"] = str(url)
    return env


LOOPBACK = ("127.", "localhost", "::1")
# How long a run waits for a scheduler's first worker before it fails (a cluster with no
# worker would otherwise hold the run forever).
WORKER_WAIT_SECONDS = 120


def unreachable_api(spec: ClusterSpec, api_url: str) -> str | None:
    """Why the workers of `spec` cannot report to `api_url`, or None. Remote workers report to
    the API URL the coordinator uses (Prefect sends its settings with every task): a loopback
    URL is then this machine for us and their own for them. Imports nothing: a command checks
    it before it starts a server (billrun/guards.py)."""
    if spec.kind != "address":
        return None
    api = urlsplit(api_url).hostname or ""
    scheduler = urlsplit(spec.address or "").hostname or ""
    if api.startswith(LOOPBACK) and not scheduler.startswith(LOOPBACK):
        return (
            f"the workers of {spec.address} cannot reach the Prefect API at {api_url} (this "
            "machine only): run a Prefect server they reach and set PREFECT_API_URL to its "
            "address"
        )
    return None


def _check_reachable(spec: ClusterSpec) -> None:
    reason = unreachable_api(spec, _worker_env()["PREFECT_API_URL"])
    if reason is not None:
        raise ClusterSpecError(reason)


def _no_api_error(spec: ClusterSpec) -> ClusterSpecError:
    return ClusterSpecError(
        f"{spec.describe()} needs a Prefect API server that its workers report to "
        "(PREFECT_API_URL); none is set"
    )


def task_runner(spec: ClusterSpec | str | None, concurrency: int) -> TaskRunner:
    """The Prefect task runner for a spec: threads (at most `concurrency` at once), a
    LocalCluster of N processes for the flow's lifetime, or an existing Dask scheduler."""
    if not isinstance(spec, ClusterSpec):
        spec = parse_cluster(spec)
    if spec.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max(1, concurrency))
    from prefect_dask import DaskTaskRunner

    from flows.cluster_worker import DieWithParent

    if not _worker_env().get("PREFECT_API_URL"):
        # Without an API each worker would start its own temporary Prefect server.
        raise _no_api_error(spec)
    if spec.kind == "address":
        _check_reachable(spec)
        return DaskTaskRunner(address=spec.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": spec.workers,
            "processes": True,
            "threads_per_worker": THREADS_PER_WORKER,
            "dashboard_address": None,  # no web server (nor its port) for a batch run
            "env": _worker_env(),
            "plugins": {DieWithParent()},
        },
    )



def dask_slots() -> int | None:
    """Inside a flow: how many units its Dask cluster runs at once (the workers' threads), or
    None when the flow runs on threads. It starts the runner's client (and a LocalCluster)
    now rather than at the first submit, and waits for the workers: all of a LocalCluster's,
    at least one of a scheduler's."""
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if not isinstance(runner, DaskTaskRunner):
        return None
    client = runner.client
    wanted = runner.cluster_kwargs.get("n_workers") if runner.cluster_kwargs else None
    client.wait_for_workers(wanted or 1, timeout=WORKER_WAIT_SECONDS)
    return max(1, sum(client.nthreads().values()))


def cluster_shards(fewest: int, slots: int) -> int:
    """Shards of a run on a cluster: every Prefect task costs about 1 s of orchestration on
    Dask, so fewer, larger units: at least one per worker slot, and whole rounds of `slots`
    (20 units on 16 slots would leave 12 idle in the second round; 32 smaller ones do not)."""
    return math.ceil(max(fewest, slots) / slots) * slots
