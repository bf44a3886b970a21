"""The Dask task runner through Prefect (issue 10, phase 1): the cluster spec, a real
LocalCluster of 2 worker processes running real Prefect tasks that report to the session's
Prefect server, no process left when the coordinator is SIGKILLed, and a worker killed in the
middle of a unit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import psutil
import pytest
from distributed.scheduler import KilledWorker
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from billrun import config
from flows.cluster import ClusterSpec, ClusterSpecError, parse_cluster, task_runner

HERE = Path(__file__).resolve().parent
# The probe flows' module must be importable by the workers: spawned workers inherit sys.path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import cluster_probe  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def stop_the_resource_tracker() -> Iterator[None]:
    """Spawning workers starts multiprocessing's resource tracker, a helper that lives as long
    as its parent (it exits when its pipe closes: it is no orphan, the SIGKILL test shows it).
    Here the parent is the test process, so end it with the module, for the session's check."""
    yield
    from multiprocessing import resource_tracker

    resource_tracker._resource_tracker._stop()  # closes the pipe and waits for it to exit


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        (None, ClusterSpec("threads")),
        ("local:1", ClusterSpec("local", workers=1)),
        ("local:2", ClusterSpec("local", workers=2)),
        ("tcp://10.0.0.5:8786", ClusterSpec("address", address="tcp://10.0.0.5:8786")),
        ("10.0.0.5:8786", ClusterSpec("address", address="tcp://10.0.0.5:8786")),
        ("tls://sched.example.com:8786", ClusterSpec("address",
                                                     address="tls://sched.example.com:8786")),
    ],
)
def test_a_cluster_spec_parses(value: str | None, spec: ClusterSpec) -> None:
    assert parse_cluster(value) == spec


@pytest.mark.parametrize(
    "value",
    ["local:0", "local:", "local:two", "local:-1", "no-port", "tcp://host", "http://h:8786",
     "tcp://:8786", "tcp://h:99999", "tcp://h:8786/path"],
)
def test_a_bad_cluster_spec_is_one_line_naming_it(value: str) -> None:
    with pytest.raises(ClusterSpecError) as caught:
        parse_cluster(value)
    assert repr(value) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_configuration_checks_the_cluster_with_the_same_parser(monkeypatch) -> None:
    monkeypatch.delenv("BILLRUN_CLUSTER", raising=False)
    assert config.load_settings({"cluster": "local:2"}).settings.cluster == "local:2"
    with pytest.raises(config.ConfigError) as caught:
        config.load_settings({"cluster": "local:0"})
    assert "cluster (flag --cluster) = 'local:0'" in str(caught.value)


def test_no_cluster_is_bounded_threads_in_this_process() -> None:
    runner = task_runner(None, 3)
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert runner._max_workers == 3
    pids = cluster_probe.pids_flow.with_options(task_runner=runner)(4)
    assert pids == [os.getpid()] * 4


def test_an_address_connects_to_that_scheduler() -> None:
    # The session's API listens on 127.0.0.1: a scheduler on this machine can use it.
    runner = task_runner("tcp://127.0.0.1:8786", 2)
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://127.0.0.1:8786"
    assert runner.cluster_kwargs == {}  # nothing is started: the cluster is the operator's


def test_remote_workers_cannot_report_to_a_loopback_prefect_api() -> None:
    with pytest.raises(ClusterSpecError) as caught:
        task_runner("tls://sched.example.com:8786", 2)
    assert "cannot reach the Prefect API at http://127.0.0.1:" in str(caught.value)


def task_runs_of(flow_run_name: str) -> tuple[str, dict[str, tuple[str, int]]]:
    """The flow run's state and, per task run name, (state, run_count), read from the API."""
    with get_client(sync_client=True) as client:
        # By name: the session's server holds every flow run of the suite, more than one page.
        (flow_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])))
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        )
    return flow_run.state_type.value, {
        t.name: (t.state_type.value, t.run_count) for t in task_runs
    }


def test_local_2_runs_the_tasks_in_two_worker_processes_that_report_to_our_api() -> None:
    me = psutil.Process()
    name = f"pids-{time.monotonic_ns()}"
    flow = cluster_probe.pids_flow.with_options(
        task_runner=task_runner("local:2", 2), flow_run_name=name
    )
    pids = flow(6)
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2
    # The workers were our own children (LocalCluster's Nannies live here) and closed with the
    # flow: none of them is still running.
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
               for p in set(pids)), me.children()
    state, runs = task_runs_of(name)
    assert state == "COMPLETED"
    assert len(runs) == 6
    assert {s for s, _ in runs.values()} == {"COMPLETED"}


def test_a_worker_killed_in_the_middle_of_a_unit_is_rerun_by_dask(tmp_path: Path) -> None:
    """The unit's first attempt SIGKILLs its worker. Prefect's task retries do not see a dead
    process (retries=0 here); Dask's scheduler reschedules the task on another worker
    (`distributed.scheduler.allowed-failures`), and the Nanny restarts the dead worker."""
    marker = tmp_path / "first-attempt"
    name = f"die-once-{time.monotonic_ns()}"
    flow = cluster_probe.die_once_flow.with_options(
        task_runner=task_runner("local:2", 2), flow_run_name=name
    )
    pids = flow(str(marker), 0)
    killed = int(marker.read_text())
    assert killed not in pids  # the unit's result came from another worker process
    assert os.getpid() not in pids
    state, runs = task_runs_of(name)
    assert state == "COMPLETED"
    # The rerun is the same Prefect task run (same id), now completed.
    assert sorted(s for s, _ in runs.values()) == ["COMPLETED"] * 3


def test_a_unit_that_kills_every_worker_fails_the_flow_cleanly() -> None:
    """Past Dask's allowed failures (1 here, 3 by default: a unit that kills workers is not
    retried forever) the flow raises KilledWorker and its run is recorded as failed."""
    name = f"always-die-{time.monotonic_ns()}"
    flow = cluster_probe.always_die_flow.with_options(
        task_runner=task_runner("local:2", 2), flow_run_name=name
    )
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with pytest.raises(KilledWorker):
            flow()
    state, _ = task_runs_of(name)
    assert state == "FAILED"


def test_sigkill_of_the_coordinator_leaves_no_process(tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import cluster_probe; "
            "cluster_probe.main()")
    coordinator = subprocess.Popen(
        [sys.executable, "-c", code, "local:2", "nap", json.dumps([2, 120, str(started)])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(started.iterdir())) < 2:  # both units are running, one per worker
            assert coordinator.poll() is None, "the coordinator ended before its units ran"
            assert time.monotonic() < deadline, "the units did not start"
            time.sleep(0.2)
        tree = [coordinator.pid, *(p.pid for p in
                                   psutil.Process(coordinator.pid).children(recursive=True))]
        workers = {int(p.name) for p in started.iterdir()}
        assert workers <= set(tree) and len(workers) == 2
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (alive := [p for p in tree if running(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive == []
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
        for pid in locals().get("alive") or []:  # a survivor is a failure: end it, by PID
            psutil.Process(pid).kill()


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its parent's wait is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
