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


def publish_snapshot(db_path: str | Path) -> Path:
    """Copy the (closed, checkpointed) working database to the analyst path atomically."""
    target = analyst_path(db_path)
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
