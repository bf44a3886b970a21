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

Quick start: billrun binds and listens on the server's socket itself and hands it to the child
(`uvicorn.Server.run(sockets=...)`), so the API URL is known, and final, the moment the child is
launched. `launch()` returns at once: Prefect can be imported (it reads PREFECT_API_URL then) and
the command can prepare its run while the server boots, which takes seconds (importing Prefect's
server alone is most of it). A request sent before the server serves waits in the socket's
backlog instead of being refused; `PrefectServer.wait_ready()` waits for the health check, so
that a server that failed to start is reported as such. No port race either: the port is bound
before the child starts, and a restart (Supervisor) reuses the same socket.

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

# The child's first lines: tie its life to the parent, then serve the app in this process, on
# the listening socket the parent handed down (file descriptor `fd`).
_CHILD = """
import ctypes, gc, importlib, os, socket, sys, threading, time
gc.disable()  # no cyclic collection while the app is imported and built: a quarter of its CPU
parent, fd, app = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
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
listener = socket.socket(fileno=fd)
module, _, factory = app.partition(":")
application = getattr(importlib.import_module(module), factory)()
gc.freeze()  # what start-up built lives as long as the server: never scanned again
gc.enable()
import uvicorn
config = uvicorn.Config(application, log_level="error", lifespan="on")
uvicorn.Server(config).run(sockets=[listener])
"""


class ServerStartError(RuntimeError):
    """The Prefect server did not answer its health check in time."""


# How long a command waits for its server: a first start (database migrations) on a busy
# two-core machine takes far longer than the usual few seconds.
START_TIMEOUT = 120.0


@dataclass
class PrefectServer:
    """A running Prefect API server child; `stop()` ends it by its PID."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path | None = None
    scheduler: bool = False
    _ready: bool = field(default=False, repr=False)
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

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server answers its health check; stop it and raise ServerStartError
        if it exits first or does not answer within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"the Prefect server exited with code {self.process.returncode}"
                    + (f" (log {self.log_path})" if self.log_path else "")
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(f"the Prefect server did not start within {timeout:.0f} s")
            # A request sent early waits in the socket's backlog until the server serves it.
            self._ready = healthy(self.api_url, timeout=min(2.0, timeout))
            if not self._ready:
                time.sleep(0.05)

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


def listening_socket(port: int = 0) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 (`port`, or one the OS picks), for a server child."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the server at `api_url` answers its health check within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
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


def launch(
    *,
    scheduler: bool = False,
    log_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
    listener: socket.socket | None = None,
) -> PrefectServer:
    """Start a Prefect API server tied to this process and return at once (see wait_ready).

    It serves on `listener` if given (the caller keeps it, e.g. for a restart on the same
    port), else on a new socket bound to a free port, which only the child keeps."""
    env = {**server_env(scheduler=scheduler), **(extra_env or {})}
    sock = listener or listening_socket()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(os.getpid()), str(sock.fileno()), APP],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, pass_fds=(sock.fileno(),),
        )
        port = int(sock.getsockname()[1])
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
        if listener is None:
            # Only the child listens now: if it dies, a request is refused instead of waiting.
            sock.close()
    return PrefectServer(process, port, log_path, scheduler)


def start(
    *,
    scheduler: bool = False,
    log_path: Path | None = None,
    timeout: float = START_TIMEOUT,
    extra_env: dict[str, str] | None = None,
    listener: socket.socket | None = None,
) -> PrefectServer:
    """Start a Prefect API server tied to this process and wait until it is healthy."""
    server = launch(scheduler=scheduler, log_path=log_path, extra_env=extra_env,
                    listener=listener)
    server.wait_ready(timeout)
    return server


_OWN: PrefectServer | None = None


def ensure_api(
    *, log_path: Path | None = None, extra_env: dict[str, str] | None = None
) -> str | None:
    """Make sure this process reports to a Prefect API; launch a tied server if none is set.

    Returns at once, with the API URL in use (or None): the server boots in the background, and
    `wait_api()` waits for it. A user's own PREFECT_API_URL wins. Must run before prefect is
    imported (it reads the URL at import); if it already is, nothing is started and Prefect
    falls back to its own server."""
    global _OWN
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect" in sys.modules:
        return None
    _OWN = launch(log_path=log_path, extra_env=extra_env)
    atexit.register(_OWN.stop)
    os.environ["PREFECT_API_URL"] = _OWN.api_url
    return _OWN.api_url


def own_server() -> PrefectServer | None:
    """The temporary server this process launched (None with a user's API, or none yet)."""
    return _OWN


def wait_api(timeout: float = START_TIMEOUT) -> None:
    """Wait until this process's own server answers (nothing to wait for with a user's API)."""
    if _OWN is not None:
        _OWN.wait_ready(timeout)


class Supervisor:
    """Keeps one scheduler-enabled server running for `billrun serve`: restarts it on the same
    listening socket if it dies, so the runner's PREFECT_API_URL stays valid (and its requests
    wait in the backlog meanwhile instead of failing)."""

    CHECK_SECONDS = 2.0

    def __init__(self, log_path: Path | None) -> None:
        self.log_path = log_path
        self.listener = listening_socket()
        try:
            self.server = start(scheduler=True, log_path=log_path, listener=self.listener)
        except ServerStartError:
            self.listener.close()
            raise
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
            self.server = launch(scheduler=True, log_path=self.log_path, listener=self.listener)
            try:
                self.server.wait_ready()
            except ServerStartError:
                continue  # try again at the next check

    def stop(self) -> None:
        """Stop watching, then stop the server and close its socket."""
        self._done.set()
        self._thread.join(timeout=30)
        self.server.stop()
        self.listener.close()


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
