"""The analyst copy: a read-only snapshot file, swapped in atomically after each successful run.

DuckDB allows one writing process or many reading processes per file, never both. Analysts open
the snapshot, never the working database, so a notebook left open cannot make a run fail, and a
run cannot make a notebook fail: `os.replace` swaps the directory entry while open readers keep
the old file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from store.faults import checkpoint


def analyst_path(db_path: str | Path) -> Path:
    """`billrun.duckdb` -> `billrun.analyst.duckdb`, beside it."""
    db = Path(db_path)
    return db.with_name(f"{db.stem}.analyst{db.suffix or '.duckdb'}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale_staging(target: Path) -> list[Path]:
    """Remove the `.<analyst>.tmp-<pid>` files left by publishers killed mid-copy.

    A file whose pid is gone (or is this process) has no writer left. A live pid's file is
    kept: the pid may have been reused, but a live publisher must never lose its copy.
    """
    swept = []
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            stale.unlink(missing_ok=True)
            swept.append(stale)
    return swept


def publish_snapshot(db_path: str | Path) -> Path:
    """Copy the (closed, checkpointed) working database to the analyst path atomically."""
    target = analyst_path(db_path)
    sweep_stale_staging(target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(db_path, staging)
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        checkpoint("mid-publish")
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target
