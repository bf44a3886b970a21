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

Quicker still: a command launches its child *held* (`launch(hold=True)`) at its very start,
before its checks. A held child imports and builds the app, then waits on a Unix socket pair:
no port, no database, no log, so it is no server yet. `release()` binds the socket and sends it
over the pair (SCM_RIGHTS); a refused command closes the pair instead and ends the child.

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

# Prefect's whole server app, and billrun's own smaller one for a command's server (the same
# routers, models, database and services a flow run uses: flows/prefect_app.py).
APP = "prefect.server.api.server:create_app"
FLOW_APP = "flows.prefect_app:create_app"

# The child's first lines: tie its life to the parent, then serve the app in this process, on
# the listening socket the parent hands down: at once (`where` is its file descriptor), or, for
# a held child (`where` is "held"), once the command's checks passed (see `launch`).
_CHILD = """
import ctypes, gc, importlib, os, socket, sys, threading, time
gc.disable()  # no cyclic collection while the app is imported and built: a quarter of its CPU
parent, where, app, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
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
module, _, factory = app.partition(":")
failure = None
try:  # building the app and loading uvicorn's config open neither the database nor a socket
    application = getattr(importlib.import_module(module), factory)()
    import uvicorn
    config = uvicorn.Config(application, log_level="error", lifespan="on")
    config.load()
except Exception:
    if where != "held":
        raise
    import traceback
    failure = traceback.format_exc()
gc.freeze()  # what start-up built lives as long as the server: never scanned again
gc.enable()
if where != "held":
    listener = socket.socket(fileno=int(where))
else:
    try:  # the socket to serve on, once the command's checks passed; nothing if refused
        _, fds, _, _ = socket.recv_fds(socket.socket(fileno=0), 16, 1)
    except OSError:
        fds = []
    if not fds:
        os._exit(0)
    listener = socket.socket(fileno=fds[0])
    if log:  # a server from now on: its output goes to its log
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
    if failure:
        sys.stderr.write(failure)
        sys.stderr.flush()
        os._exit(1)
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
    app: str = ""
    # A held child's end of its channel: `release()` sends the socket through it.
    _channel: socket.socket | None = field(default=None, repr=False)
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

    @property
    def held(self) -> bool:
        """Whether this is a held child that `release()` has not made a server yet."""
        return self._channel is not None

    def release(self) -> None:
        """Make a held child a server: bind a socket to a free port and hand it over; the
        child serves on it once its app is built (`wait_ready()` waits for that)."""
        if self._channel is None:
            return
        sock = listening_socket()
        try:
            self.port = int(sock.getsockname()[1])
            try:
                socket.send_fds(self._channel, [b"serve"], [sock.fileno()])
            except OSError:
                pass  # the child is gone: wait_ready() reports its exit code
        finally:
            sock.close()  # only the child listens now
            self._channel.close()
            self._channel = None

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
        if self._channel is not None:  # held, never released: it exits on its own
            self._channel.close()
            self._channel = None
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
    app: str = APP,
    hold: bool = False,
) -> PrefectServer:
    """Start a Prefect API server tied to this process and return at once (see wait_ready).

    It serves on `listener` if given (the caller keeps it, e.g. for a restart on the same
    port), else on a new socket bound to a free port, which only the child keeps. `app` is the
    factory ("module:function") of the ASGI app it serves: Prefect's whole server by default.

    With `hold`, the child only imports and builds the app, then waits: it binds no port, opens
    no database and writes no log until `release()` hands it its socket, and exits quietly if
    the channel closes instead (`stop()`). A command launches it before its checks, releases
    it once they pass: the server's imports run beside the checks, and a refused command never
    starts a server (docs/RUNS.md, "Start-up")."""
    env = {**server_env(scheduler=scheduler), **(extra_env or {})}
    if hold:
        mine, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(os.getpid()), "held", app,
                 str(log_path or "")],
                env=env, stdin=theirs.fileno(), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        return PrefectServer(process, 0, log_path, scheduler, app, mine)
    sock = listener or listening_socket()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(os.getpid()), str(sock.fileno()), app, ""],
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
    return PrefectServer(process, port, log_path, scheduler, app)


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
    *,
    log_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
    app: str = APP,
    held: PrefectServer | None = None,
) -> str | None:
    """Make sure this process reports to a Prefect API; launch a tied server if none is set.

    Returns at once, with the API URL in use (or None): the server boots in the background, and
    `wait_api()` waits for it. `held` is a child launched earlier with `hold=True`: it is
    released instead of launching a new one. A user's own PREFECT_API_URL wins. Must run before
    prefect is imported (it reads the URL at import); if it already is, nothing is started and
    Prefect falls back to its own server."""
    global _OWN
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect" in sys.modules:
        return None
    if held is not None and not held._stopped:
        held.release()
        _OWN = held
    else:
        _OWN = launch(log_path=log_path, extra_env=extra_env, app=app)
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
