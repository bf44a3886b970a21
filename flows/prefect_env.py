"""Prefect's environment for billrun, set BEFORE prefect is imported (it reads it at import).

- A persistent PREFECT_HOME (default `~/.billrun/prefect`, or `$BILLRUN_PREFECT_HOME`), so that
  the ephemeral server's database migrations run once, not at every command.
- A user's own `PREFECT_API_URL` is left alone: billrun then reports to their running server and
  starts none (about 1 s of start-up instead of several).
- Otherwise a command that runs flows calls `prepare()` as it starts, which launches billrun's
  own temporary Prefect server (flows/prefect_server.py) held: the child imports and builds its
  app but is no server yet (no port, no database, no log). Once the command's checks passed,
  `connect()` releases it (or launches one, if nothing was prepared). It is tied to this process
  so that it dies with it, even by SIGKILL, instead of Prefect's own temporary server, which a
  killed parent orphans. `connect()` returns at once; the server boots while the command imports
  and prepares its flow, and `flow_api()` waits for it around the flow call.
- On a migrated home that server runs billrun's smaller Prefect app (flows/prefect_app.py: the
  routers and services a flow run uses); a first start runs Prefect's whole server.
- That server skips its database migrations once this Prefect home's database is migrated for
  this Prefect version (a marker file written after the first start that ran them), and flows
  run without Prefect's heartbeat thread, which nothing reads on a server that dies with the
  command and which holds up the end of every flow by up to a second. The client skips its API
  version check against that server (the same installation: the same version), which would
  make the fresh server build all its routes before the flow's first step.
- Prefect's console output is silenced (its "Encountered exception" traceback would come before
  billrun's own one-line error); its logs still reach the API (the UI). `billrun --verbose`
  (`BILLRUN_VERBOSE=1`) shows its warnings and errors, tracebacks included.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flows.prefect_server import PrefectServer

DEFAULT_HOME = Path("~/.billrun/prefect")

# Defaults only: anything the user set in the environment wins.
_DEFAULTS = {
    # The ephemeral server counts its start-up wait in 0.1 s sleeps; a first start with database
    # migrations on a busy two-core machine can take longer than Prefect's default of 20.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def prefect_home() -> Path:
    """The Prefect home billrun uses: `$BILLRUN_PREFECT_HOME`, else `~/.billrun/prefect`."""
    chosen = os.environ.get("BILLRUN_PREFECT_HOME") or str(DEFAULT_HOME)
    return Path(chosen).expanduser()


def configure() -> Path:
    """Set Prefect's environment for this process and return the Prefect home in use."""
    home = prefect_home()
    if "prefect" in sys.modules and os.environ.get("PREFECT_HOME") != str(home):
        # Too late to move it: Prefect has read its settings already. Keep what it has.
        return Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault(
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING" if verbose() else "CRITICAL"
    )
    return home


def end_start_up() -> None:
    """The command's start-up is over (billrun/cli.py paused the cyclic garbage collector while
    it imports: about a fifth of import time): collect again, from now on."""
    gc.enable()


def verbose() -> bool:
    """Whether the user asked for Prefect's own console output (`billrun --verbose`)."""
    return os.environ.get("BILLRUN_VERBOSE", "") not in ("", "0")


def using_server() -> bool:
    """Whether billrun reports to a running Prefect server (PREFECT_API_URL is set)."""
    return bool(os.environ.get("PREFECT_API_URL"))


def _server_choice(home: Path) -> tuple[bool, dict[str, str] | None, str]:
    """Whether this home's server may skip its migrations, the child's extra environment, and
    the app it serves: billrun's smaller app (flows/prefect_app.py, the routers and services a
    flow run uses) on a migrated home; on a first start, Prefect's whole server, which migrates
    the database and registers the block types."""
    from flows import prefect_server

    if not migrated(home):
        return False, None, prefect_server.APP
    skip = {"PREFECT_API_DATABASE_MIGRATE_ON_START": "false"}
    if any(os.environ.get(k, "").lower() not in ("", "0", "false")
           for k in _FULL_SERVER_VARIABLES):
        return True, skip, prefect_server.APP
    return True, skip, prefect_server.FLOW_APP


# Settings of Prefect's server that billrun's smaller app does not implement (authentication,
# CSRF tokens, another URL prefix): with any of them set, the command runs Prefect's server.
_FULL_SERVER_VARIABLES = (
    "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING",
    "PREFECT_SERVER_CSRF_PROTECTION_ENABLED", "PREFECT_SERVER_API_BASE_PATH",
)


def prepare() -> None:
    """At a flow command's very start, before its checks: launch its server child held (it
    imports and builds the app, on the other core, while the command parses its settings and
    runs its checks; it serves nothing, holds no port and opens no database until `connect()`
    releases it). Nothing with a user's API, or once Prefect is imported."""
    global _HELD, _HELD_SKIPS
    configure()
    if using_server() or "prefect" in sys.modules or _HELD is not None:
        return
    from flows import prefect_server

    home = prefect_home()
    _HELD_SKIPS, extra_env, app = _server_choice(home)
    _HELD = prefect_server.launch(log_path=home / "server.log", extra_env=extra_env, app=app,
                                  hold=True)
    atexit.register(_HELD.stop)  # a refused command ends it, by its PID


def connect() -> str | None:
    """Configure, then point Prefect at an API: the user's, else a tied temporary server,
    launched now (or released, if `prepare()` launched it held) and not waited for
    (`flow_api()` waits). Returns the API URL, or None."""
    configure()
    from flows import prefect_server

    global _MIGRATES
    home = prefect_home()
    if _HELD is not None:
        skip, extra_env, app = _HELD_SKIPS, None, _HELD.app
    else:
        skip, extra_env, app = _server_choice(home)
    url = prefect_server.ensure_api(log_path=home / "server.log", extra_env=extra_env, app=app,
                                    held=_HELD)
    _MIGRATES = prefect_server.own_server() is not None and not skip
    if prefect_server.own_server() is not None:
        # The server runs from this very installation, so its API version is the client's: the
        # check would only cost a request that makes the fresh server build every route first.
        os.environ.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")
    return url


# The child `prepare()` launched held, and whether it skips the migrations.
_HELD: PrefectServer | None = None
_HELD_SKIPS = False
# Whether the server this process launched runs the migrations (then ready() writes the marker).
_MIGRATES = False
# The marker says which Prefect version last migrated this home's database.
MIGRATED_MARKER = "billrun-migrated"
_DATABASE_URL_VARIABLES = (
    "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)


def _prefect_version() -> str:
    from importlib.metadata import version

    return version("prefect")


def migrated(home: Path) -> bool:
    """Whether the temporary server may skip its migrations: this home's own SQLite database
    exists and was migrated by this Prefect version, and nobody chose otherwise (a database URL
    of their own, or PREFECT_API_DATABASE_MIGRATE_ON_START set: theirs wins)."""
    if any(os.environ.get(k) for k in _DATABASE_URL_VARIABLES):
        return False
    if "PREFECT_API_DATABASE_MIGRATE_ON_START" in os.environ:
        return False
    marker = home / MIGRATED_MARKER
    try:
        return (home / "prefect.db").is_file() and marker.read_text().strip() == (
            _prefect_version()
        )
    except OSError:
        return False


def _remember_migrated(home: Path) -> None:
    """After a start that ran the migrations: the next commands may skip them."""
    if any(os.environ.get(k) for k in _DATABASE_URL_VARIABLES):
        return
    try:
        (home / MIGRATED_MARKER).write_text(_prefect_version() + "\n")
    except OSError:
        pass  # a read-only home: every start migrates, as before


def ready() -> None:
    """Wait until the API is up: this command's own server answers its health check."""
    from flows import prefect_server

    server = prefect_server.own_server()
    if server is None:
        return
    server.wait_ready()
    if _MIGRATES and "PREFECT_API_DATABASE_MIGRATE_ON_START" not in os.environ:
        _remember_migrated(prefect_home())


@contextmanager
def flow_api() -> Iterator[None]:
    """Around a command's flow calls: the API is up, and, with billrun's own temporary server,
    the flows run without a heartbeat thread (nothing reads heartbeats on a server that dies
    with the command, and joining the thread holds up the end of every flow by up to 1 s).

    What a flow's first call would build after the server answers is built before, while it
    may still be booting: the modules Prefect imports at that call, and the API client the
    flow engine takes from the context (and the flows of the block share)."""
    import importlib

    for module in _FIRST_CALL_IMPORTS:
        importlib.import_module(module)
    from prefect.context import SyncClientContext

    with SyncClientContext.get_or_create():
        ready()
        end_start_up()
        from flows import prefect_server

        if prefect_server.own_server() is None:
            yield
            return
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


# What Prefect (3.8.8) imports at a flow's first call, and at its first task: its flow engine,
# FastAPI's JSON encoder (the parameters), graphviz (its visualization check), OpenTelemetry's
# metrics and logs, its task engine.
_FIRST_CALL_IMPORTS = (
    "prefect.flow_engine", "fastapi.encoders", "prefect.utilities.visualization",
    "opentelemetry.metrics", "opentelemetry._logs", "prefect.task_engine",
)
