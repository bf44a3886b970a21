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
