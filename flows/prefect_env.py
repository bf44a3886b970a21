"""Prefect's environment for billrun, set BEFORE prefect is imported (it reads it at import).

- A persistent PREFECT_HOME (default `~/.billrun/prefect`, or `$BILLRUN_PREFECT_HOME`), so that
  the ephemeral server's database migrations run once, not at every command.
- A user's own `PREFECT_API_URL` is left alone: billrun then reports to their running server and
  starts none (about 1 s of start-up instead of several).
- Otherwise a command that runs flows calls `connect()`: it starts billrun's own temporary
  Prefect server (flows/prefect_server.py), tied to this process so that it dies with it, even
  by SIGKILL, instead of Prefect's own temporary server, which a killed parent orphans.
- Prefect's console output is silenced (its "Encountered exception" traceback would come before
  billrun's own one-line error); its logs still reach the API (the UI). `billrun --verbose`
  (`BILLRUN_VERBOSE=1`) shows its warnings and errors, tracebacks included.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


def verbose() -> bool:
    """Whether the user asked for Prefect's own console output (`billrun --verbose`)."""
    return os.environ.get("BILLRUN_VERBOSE", "") not in ("", "0")


def using_server() -> bool:
    """Whether billrun reports to a running Prefect server (PREFECT_API_URL is set)."""
    return bool(os.environ.get("PREFECT_API_URL"))


def connect() -> str | None:
    """Configure, then point Prefect at an API: the user's, else a tied temporary server."""
    configure()
    from flows import prefect_server

    return prefect_server.ensure_api(log_path=prefect_home() / "server.log")
