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
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunInProgressError(
                f"another billrun run (pid {holder}) is writing {db_path}; "
                "this run was refused and changed nothing — retry when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
