"""One run at a time per database: a second run is refused with a clear message."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RunInProgressError(RuntimeError):
    """Another billrun process holds the database's run lock."""


@contextmanager
def run_lock(db_path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock beside the database for the duration of a run.

    flock is released by the kernel when the holder dies, even by SIGKILL, so a killed run never
    leaves a stale lock behind.
    """
    lock_path = Path(f"{db_path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)  # a first load creates the db's folder
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgressError(_refusal(db_path, _holder(fd))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def held_by(db_path: str | Path) -> str | None:
    """Why a run on `db_path` would be refused now (another run holds its lock), or None.

    A look before a command starts anything: it creates no lock file and takes no lock that
    outlives the call. The run's own `run_lock` still decides (a run may start in between)."""
    lock_path = Path(f"{db_path}.lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:  # no lock file: no run ever held it, or no folder yet
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _refusal(db_path, _holder(fd))
        return None  # closing the descriptor releases the lock just taken
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"


def _refusal(db_path: str | Path, holder: str) -> str:
    return (
        f"another billrun run (pid {holder}) is writing {db_path}; "
        "this run was refused and changed nothing — retry when it has finished"
    )
