"""The tied Prefect server launcher (flows/prefect_server.py): dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from flows import prefect_server

pytestmark = pytest.mark.slow

PARENT = """
import sys, time
from flows import prefect_server
server = prefect_server.start()
print(server.pid, server.api_url, flush=True)
time.sleep(600)
"""


def _gone(pid: int, wait: float = 15.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_started_server_answers_and_stop_ends_it() -> None:
    server = prefect_server.start()
    try:
        assert prefect_server.healthy(server.api_url)
        assert os.getsid(server.pid) == server.pid  # its own session: Ctrl-C reaches us, not it
    finally:
        server.stop()
    assert not server.alive()
    assert not prefect_server.healthy(server.api_url)


def test_the_server_dies_when_its_parent_is_sigkilled() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        pid_text, api_url = parent.stdout.readline().split()
        server_pid = int(pid_text)
        assert prefect_server.healthy(api_url)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    assert _gone(server_pid), f"the server {server_pid} outlived its SIGKILLed parent"


def test_launch_returns_at_once_and_an_early_request_waits_for_the_server() -> None:
    # The URL is final at launch: the socket is bound before the child starts. A health check
    # sent before the server serves waits in the backlog and is answered, not refused.
    server = prefect_server.launch()
    try:
        assert server.alive()
        answered = prefect_server.healthy(server.api_url, timeout=120)
        assert answered
        server.wait_ready(timeout=120)
    finally:
        server.stop()
    assert not server.alive()
    assert not prefect_server.healthy(server.api_url, timeout=2)  # refused: nobody listens


def test_a_server_that_dies_at_start_is_reported_not_waited_for(tmp_path) -> None:
    log = tmp_path / "server.log"
    server = prefect_server.launch(log_path=log, extra_env={"PREFECT_API_DATABASE_TIMEOUT":
                                                            "not a number"})
    try:
        with pytest.raises(prefect_server.ServerStartError, match="exited with code"):
            server.wait_ready(timeout=120)
    finally:
        server.stop()
    assert log.read_text()  # the cause is in the server's log


def test_the_supervisor_restarts_a_dead_server_on_the_same_socket() -> None:
    supervisor = prefect_server.Supervisor(log_path=None)
    try:
        first = supervisor.server
        url = first.api_url
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait()
        # A request sent while no server runs waits in the backlog for the restarted one.
        assert prefect_server.healthy(url, timeout=120)
        assert supervisor.restarts == 1
        assert supervisor.server.pid != first.pid and supervisor.server.api_url == url
    finally:
        supervisor.stop()
    assert not supervisor.server.alive()


CONNECT = """
import os, sys
from flows import prefect_env, prefect_server
prefect_env.connect()
prefect_env.ready()
server = prefect_server.own_server()
import psutil
print(psutil.Process(server.pid).environ().get("PREFECT_API_DATABASE_MIGRATE_ON_START", "-"))
"""


def test_the_first_start_in_a_home_migrates_and_the_next_ones_skip_it(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["BILLRUN_PREFECT_HOME"] = str(tmp_path / "home")

    def start() -> str:
        done = subprocess.run([sys.executable, "-c", CONNECT], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    from importlib.metadata import version

    marker = tmp_path / "home" / "billrun-migrated"
    assert start() == "-"  # a new home: Prefect's default, the migrations run
    assert marker.read_text().strip() == version("prefect")
    assert start() == "false"  # migrated by this Prefect version: skipped
    marker.write_text("0.0.1\n")  # another Prefect version migrated it: migrate again
    assert start() == "-"
    assert marker.read_text().strip() == version("prefect")
    (tmp_path / "home" / "prefect.db").unlink()  # the database is gone: migrate again
    assert start() == "-"


def _listens(pid: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN for c in psutil.Process(pid).net_connections())


def test_a_held_child_is_no_server_until_released(tmp_path) -> None:
    # Launched before a command's checks: it builds the app but binds no port and writes no
    # log; released, it serves on the socket it is handed, and logs from then on.
    log = tmp_path / "server.log"
    server = prefect_server.launch(log_path=log, hold=True)
    try:
        assert server.held and server.alive()
        time.sleep(1.0)
        assert not _listens(server.pid) and not log.exists()
        server.release()
        assert not server.held and server.port > 0
        server.wait_ready(timeout=120)
        assert prefect_server.healthy(server.api_url) and _listens(server.pid)
        assert log.exists()
    finally:
        server.stop()
    assert not server.alive()


def test_a_held_child_never_released_ends_without_a_trace(tmp_path) -> None:
    # What a refused command does with it: stop() closes its channel, ends it by its PID.
    log = tmp_path / "server.log"
    server = prefect_server.launch(log_path=log, hold=True)
    server.stop()
    assert _gone(server.pid) and not log.exists()


def test_a_held_child_whose_app_fails_reports_it_once_released(tmp_path) -> None:
    log = tmp_path / "server.log"
    server = prefect_server.launch(log_path=log, hold=True, app="billrun_no_such_module:app")
    try:
        server.release()
        with pytest.raises(prefect_server.ServerStartError, match="exited with code 1"):
            server.wait_ready(timeout=120)
    finally:
        server.stop()
    assert "No module named 'billrun_no_such_module'" in log.read_text()
