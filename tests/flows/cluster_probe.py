"""Tiny Prefect flows for the cluster tests, in a module the Dask workers can import (the test
puts this folder on sys.path before the cluster starts; spawned workers inherit sys.path).

Run as a coordinator in a subprocess: `python -c "...; cluster_probe.main()" SPEC FLOW ARG`
prints the flow's result as one JSON line."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from flows import prefect_env

if __name__ != "__main__" and "prefect" not in sys.modules:
    prefect_env.connect()  # a subprocess coordinator: the session's API from PREFECT_API_URL

from prefect import flow, task  # noqa: E402

from flows.cluster import task_runner  # noqa: E402


@task
def whoami(i: int) -> int:
    """The pid of the process that ran task `i`."""
    return os.getpid()


@task
def nap(seconds: float, started: str) -> int:
    """Leave `started/PID`, sleep, return the pid (a unit still running when its coordinator
    dies)."""
    (Path(started) / str(os.getpid())).touch()
    time.sleep(seconds)
    return os.getpid()


@task(retries=2, retry_delay_seconds=0)
def die_once(marker: str) -> int:
    """The first attempt SIGKILLs its own process (after leaving `marker`); later ones return
    their pid. Prefect's `retries=` stands for what a unit would declare."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@task
def always_die(i: int) -> int:
    """Kills every process that runs it."""
    os.kill(os.getpid(), signal.SIGKILL)
    return i


@flow
def pids_flow(n: int) -> list[int]:
    """Run `whoami` n times at once; the pids that ran them."""
    return [f.result() for f in [whoami.submit(i) for i in range(n)]]


@flow
def nap_flow(n: int, seconds: float, started: str) -> list[int]:
    """n naps at once."""
    return [f.result() for f in [nap.submit(seconds, started) for _ in range(n)]]


@flow
def die_once_flow(marker: str, retries: int = 2) -> list[int]:
    """One unit that kills its worker once, beside two that do not."""
    once = die_once.with_options(retries=retries)
    futures = [once.submit(marker), whoami.submit(1), whoami.submit(2)]
    return [f.result() for f in futures]


@flow
def always_die_flow() -> int:
    """A unit that kills every worker it lands on."""
    return always_die.submit(1).result()


FLOWS = {"pids": pids_flow, "nap": nap_flow, "die_once": die_once_flow,
         "always_die": always_die_flow}


def main() -> None:
    """`SPEC FLOW JSON_ARGS`: run a flow on that cluster spec, print its result as JSON."""
    spec, name, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps({"pid": os.getpid()}), flush=True)
    result = FLOWS[name].with_options(task_runner=task_runner(spec or None, 2))(*args)
    print(json.dumps({"result": result}), flush=True)
