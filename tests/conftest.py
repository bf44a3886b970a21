"""Shared fixtures: one throw-away Prefect home and ONE real Prefect server per test run, a
session-end check that the run left no process behind, and small file helpers."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

# Every process the test run starts inherits this tag; at the end, any process still carrying it
# is a leak (see pytest_sessionfinish). pytest-xdist workers inherit the controller's tag, home
# and server: the controller alone starts and stops them.
TAG = "BILLRUN_TEST_SESSION"
_CONTROLLER = TAG not in os.environ

# Prefect reads its settings when it is first imported, which happens while test modules are
# collected: the home and the API URL must be set here, at conftest import, not in a fixture.
if _CONTROLLER:
    os.environ[TAG] = uuid.uuid4().hex
    os.environ["BILLRUN_PREFECT_HOME"] = tempfile.mkdtemp(prefix="billrun-test-prefect-")
    os.environ.pop("PREFECT_API_URL", None)  # the tests report to their own server, not a user's
_PREFECT_HOME = Path(os.environ["BILLRUN_PREFECT_HOME"])
# Rich wraps a non-terminal's output at 80 columns; pytest-xdist's worker folders (popen-gwN/)
# make tmp paths long enough to be cut in two. A wide console prints them whole.
os.environ.setdefault("COLUMNS", "200")

from flows import prefect_server  # noqa: E402  (after the home is chosen: flows/ configures it)

SERVER: prefect_server.PrefectServer | None = None
if _CONTROLLER:
    # One real server for the whole run: in-process flows and the CLI subprocesses both report
    # to it (PREFECT_API_URL is inherited), so no test pays for a server start of its own.
    SERVER = prefect_server.start(log_path=_PREFECT_HOME / "server.log")
    os.environ["PREFECT_API_URL"] = SERVER.api_url
    # Stopped at exit, not at session finish: atexit runs Prefect's log flush (registered later,
    # when prefect is imported) first, so its last log lines still find the server.
    atexit.register(SERVER.stop)


@pytest.fixture(scope="session", autouse=True)
def prefect_home() -> Iterator[Path]:
    """The session's Prefect home, used by the session's one server."""
    yield _PREFECT_HOME


def processes_with_env(name: str, value: str, skip: frozenset[int] = frozenset()
                       ) -> list[psutil.Process]:
    """Live processes (not zombies, not in `skip`) whose environment sets `name` to `value`:
    what a test started, since its children inherit the variable."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            if proc.environ().get(name) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes whose environment has `tag`, other than this one, its ancestors and the
    session's own server (stopped at exit; tied to this process, it cannot outlive it)."""
    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents()), *([SERVER.pid] if SERVER else [])}
    return processes_with_env(TAG, tag, frozenset(mine))


def left_in(home: Path) -> list[psutil.Process]:
    """Live processes started for Prefect home `home` (they inherit BILLRUN_PREFECT_HOME)."""
    return processes_with_env("BILLRUN_PREFECT_HOME", str(home))


# The longest files, longest first (measured with `--durations`): with `--dist loadfile` and
# `--no-loadscope-reorder` (pyproject.toml) the two workers take whole files in collection
# order, so the soak's month (one test of minutes) starts at once on one worker while the other
# works through the rest, and the run does not end with one worker alone on a long file.
LONG_FIRST = (
    "tests/soak/test_campaign.py",  # the month, with its readers
    "tests/flows/test_incremental.py",
    "tests/soak/test_disk_full.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the long files first, in LONG_FIRST's order (stable: the rest keep theirs)."""
    rank = {path: i for i, path in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.hookimpl(trylast=True)  # after pytest-xdist has shut its workers down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process the tests started is still alive (then end it, by PID)."""
    if not _CONTROLLER:
        return
    deadline = time.monotonic() + 10
    while (left := tagged_processes(os.environ[TAG])) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        described = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in left]
        for proc in left:  # ours, by PID: end them so the machine is clean
            proc.kill()
        session.config.get_terminal_writer().line(
            "\nthe test run left processes behind:\n  " + "\n  ".join(described), red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


def write_text(folder: Path, name: str, text: str) -> Path:
    """Write dedented `text` to `folder/name` and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def write() -> Callable[[Path, str, str], Path]:
    """The `write_text` helper, as a fixture for test modules."""
    return write_text
