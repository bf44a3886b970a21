"""A real Prefect API server as a child process whose life is tied to its parent's.

Prefect's own temporary server (`SubprocessASGIServer`) is a plain child: when billrun dies by
SIGKILL it is orphaned and runs forever (~180 MB each). This launcher starts the same uvicorn
app, but the child

- asks Linux for `PR_SET_PDEATHSIG = SIGKILL` (prctl), so the kernel kills it the moment its
  parent dies, by any signal, SIGKILL included;
- checks right after that its parent is still the one that started it (the parent may have died
  between fork and prctl), and exits if not;
- also watches `getppid()` once a second (a watchdog thread: the same guarantee where prctl is
  missing, e.g. macOS);
- runs in its own session, so a terminal's Ctrl-C reaches billrun, which stops it cleanly.

Nothing here imports prefect: the launcher runs before Prefect reads its settings.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

APP = "prefect.server.api.server:create_app"

# The child's first lines: tie its life to the parent, then serve the app in this process.
_CHILD = """
import ctypes, os, sys, threading, time
parent, host, port, app = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
except (OSError, AttributeError):
    pass  # no prctl here: the watchdog below still applies
if os.getppid() != parent:
    os._exit(1)  # the parent died before prctl took effect
def watchdog():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)
threading.Thread(target=watchdog, daemon=True).start()
import uvicorn
uvicorn.run(app, factory=True, host=host, port=port, log_level="error", lifespan="on")
"""


class ServerStartError(RuntimeError):
    """The Prefect server did not answer its health check in time."""


@dataclass
class PrefectServer:
    """A running Prefect API server child; `stop()` ends it by its PID."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path | None = None
    scheduler: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def api_url(self) -> str:
        """The value for PREFECT_API_URL."""
        return f"http://127.0.0.1:{self.port}/api"

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (uvicorn shuts down cleanly), SIGKILL it if it lingers."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> PrefectServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(api_url: str) -> bool:
    """Whether the server at `api_url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_env(*, scheduler: bool) -> dict[str, str]:
    """The child's environment: ours, without an API URL, and the services it needs.

    Without the scheduler the server runs like Prefect's own temporary one (no background
    services, quickest start); with it, the full set of services, the scheduler among them."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_UI_ENABLED"] = "false"
    env.pop("PREFECT__SERVER_EPHEMERAL", None)
    if scheduler:
        env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "true"
    else:
        env["PREFECT__SERVER_EPHEMERAL"] = "1"
    return env


def start(
    *,
    scheduler: bool = False,
    log_path: Path | None = None,
    timeout: float = 120.0,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> PrefectServer:
    """Start a Prefect API server tied to this process and wait until it is healthy.

    On `port` if given (a restart keeps its clients' URL), else on a free port."""
    env = {**server_env(scheduler=scheduler), **(extra_env or {})}
    deadline = time.monotonic() + timeout
    fixed = port
    while True:
        port = fixed or free_port()
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(os.getpid()), "127.0.0.1", str(port), APP],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        server = PrefectServer(process, port, log_path, scheduler)
        while process.poll() is None and time.monotonic() < deadline:
            if healthy(server.api_url):
                return server
            time.sleep(0.1)
        if process.poll() is None:  # timed out
            server.stop()
            raise ServerStartError(f"the Prefect server did not start within {timeout:.0f} s")
        if time.monotonic() >= deadline or fixed:
            raise ServerStartError(f"the Prefect server exited with code {process.returncode}")
        # It exited early, most likely because another process took the port: try another.


_OWN: PrefectServer | None = None


def ensure_api(*, log_path: Path | None = None) -> str | None:
    """Make sure this process reports to a Prefect API; start a tied server if none is set.

    A user's own PREFECT_API_URL wins. Must run before prefect is imported (it reads the URL
    at import); if it already is, nothing is started and Prefect falls back to its own server.
    Returns the API URL in use, or None."""
    global _OWN
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect" in sys.modules:
        return None
    _OWN = start(log_path=log_path)
    atexit.register(_OWN.stop)
    os.environ["PREFECT_API_URL"] = _OWN.api_url
    return _OWN.api_url


class Supervisor:
    """Keeps one scheduler-enabled server running for `billrun serve`: restarts it on its port
    if it dies, so the runner's PREFECT_API_URL stays valid."""

    CHECK_SECONDS = 2.0

    def __init__(self, log_path: Path | None) -> None:
        self.log_path = log_path
        self.server = start(scheduler=True, log_path=log_path)
        self.restarts = 0
        self._done = threading.Event()
        # The watcher restarts the server, so the new child's PDEATHSIG is tied to this thread:
        # it lives as long as serve does (it ends only in stop()).
        self._thread = threading.Thread(target=self._watch, name="prefect-server", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(self.CHECK_SECONDS):
            if self.server.alive():
                continue
            self.restarts += 1
            try:
                self.server = start(scheduler=True, log_path=self.log_path, port=self.server.port)
            except ServerStartError:
                continue  # try again at the next check

    def stop(self) -> None:
        """Stop watching, then stop the server."""
        self._done.set()
        self._thread.join(timeout=30)
        self.server.stop()


@contextmanager
def scheduler_api(log_path: Path | None) -> Iterator[str]:
    """A Prefect API that runs a scheduler, for `billrun serve`: the user's PREFECT_API_URL if
    set (their `prefect server start` runs one), else a supervised local server, for the block.

    Must be entered before prefect is imported. Raises ServerStartError if none starts."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    supervisor = Supervisor(log_path)
    os.environ["PREFECT_API_URL"] = supervisor.server.api_url
    try:
        yield supervisor.server.api_url
    finally:
        supervisor.stop()
