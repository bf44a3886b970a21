"""The analyst file: a small DuckDB file of views over one published Parquet set, swapped in
with that set by one atomic rename after each successful run or load.

DuckDB allows one writing process or many reading processes per file, never both. Analysts open
the analyst file, never the working database, so a notebook left open cannot make a run fail,
and a run cannot make a notebook fail.

The analyst file holds no rows. Each set (store/parquet_set.py) carries its own
`analyst.duckdb`: one view per table of the working database over that set's Parquet files
(absolute paths: the files of a set are never modified, and the set is kept while it is the
current or the previous one), and the working database's views, defined as they are there. So
publishing it writes a few KB, not a copy of the database, and `billrun.analyst.duckdb` is a
link to `billrun.analyst/analyst.duckdb`: the one rename of `billrun.analyst` that swaps the
Parquet set swaps the analyst file with it. A reader that opened the previous file keeps
reading the previous set.

The file is written in an older storage format (`ANALYST_STORAGE_VERSION`): the working file
is in DuckDB 2's format, which no DuckDB 1.x tool (the `duckdb` CLI, notebooks, BI drivers)
can open.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

from store.clock import timed
from store.duck import quiet, sql_text
from store.faults import checkpoint
from store.parquet_set import (
    ANALYST_FILE,
    ParquetSet,
    UnitFiles,
    finish_set,
    parquet_pointer,
    publish_parquet,
    write_parquet_set,
)

# The oldest storage format DuckDB 2 writes that keeps every type and view we use (DECIMAL,
# DATE, TIMESTAMP, BOOLEAN; views with FILTER, QUALIFY, GROUP BY ALL, ordered string_agg):
# checked readable by DuckDB 0.10.3 and by the `duckdb-cli` 1.5 package (tests/store).
ANALYST_STORAGE_VERSION = "v0.10.0"


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
    """Remove the `.<analyst>.tmp-<pid>` files left by publishers killed mid-write (the whole
    copies older versions wrote, and the links this one makes).

    A file whose pid is gone (or is this process) has no writer left. A live pid's file is
    kept: the pid may have been reused, but a live publisher must never lose its copy.
    """
    swept = []
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1].removesuffix(".wal")  # the copy and its WAL
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            stale.unlink(missing_ok=True)
            swept.append(stale)
    return swept


def _name(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _table_view(folder: Path, files: list[str], columns: list[list[str]]) -> str:
    """SQL: a published table, read from its Parquet files (absolute paths; hive partitioning
    off: the partition column is in the files, in its place); typed and empty without files."""
    if not files:
        listed = ", ".join(f"CAST(NULL AS {t}) AS {_name(c)}" for c, t in columns)
        return f"SELECT {listed} WHERE false"
    paths = ", ".join(sql_text(folder / f) for f in files)
    return f"SELECT * FROM read_parquet([{paths}], hive_partitioning = false)"


def write_analyst_file(written: ParquetSet) -> Path:
    """Write `analyst.duckdb` into the set `written`: a view per table over the set's files and
    every view of the working database as defined there; returns its path."""
    folder = written.folder.resolve()
    target = folder / ANALYST_FILE
    target.unlink(missing_ok=True)
    con = quiet(duckdb.connect())
    try:
        con.execute(
            f"ATTACH {sql_text(target)} AS snap (STORAGE_VERSION '{ANALYST_STORAGE_VERSION}')"
        )
        con.execute("USE snap")  # the views' unqualified names bind to the file's own views
        con.execute("BEGIN TRANSACTION")  # one commit (one flush to disk), not one per view
        for rel in written.relations.values():
            if rel.kind == "table":
                con.execute(f"CREATE VIEW {_name(rel.name)} AS "
                            f"{_table_view(folder, rel.files, rel.columns)}")
        views = {r.name: r.sql for r in written.relations.values() if r.kind == "view" and r.sql}
        for name in _in_order(views):
            con.execute(views[name])
        con.execute("COMMIT")
        con.execute("USE memory")
        con.execute("DETACH snap")
    finally:
        con.close()
    return target


def _in_order(views: dict[str, str]) -> list[str]:
    """The views' names, each after the views its SQL names (a name read as a whole word: a
    false match only moves a view later). A failed statement ends DuckDB's transaction, so the
    order must be right the first time."""
    words = {name: set(re.findall(r"[a-z_][a-z0-9_]*", sql.lower())) for name, sql in
             views.items()}
    done: list[str] = []
    pending = sorted(views)
    while pending:
        ready = [n for n in pending if not (words[n] & set(pending)) - {n}]
        if not ready:  # a cycle of names: DuckDB's error will name the view
            ready = pending
        done += ready
        pending = [n for n in pending if n not in ready]
    return done


def _link_analyst_file(target: Path, pointer: Path) -> None:
    """Make `target` the link `billrun.analyst.duckdb -> billrun.analyst/analyst.duckdb` (once:
    it then follows every swap of `pointer`). A whole copy left by an older billrun is replaced
    atomically; a reader that has it open keeps it."""
    want = Path(pointer.name) / ANALYST_FILE
    if target.is_symlink() and Path(os.readlink(target)) == want:
        return
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    staging.unlink(missing_ok=True)
    staging.symlink_to(want)
    os.replace(staging, target)


def publish_snapshot(
    db_path: str | Path,
    tag: str | None = None,
    seconds: dict[str, float] | None = None,
    touched: frozenset[str] | None = None,
    units: UnitFiles | None = None,
) -> Path:
    """Publish the (closed, checkpointed) working database to analysts: the Parquet set and its
    analyst file, swapped in together by one atomic rename; `tag` names the set (the run id),
    `touched` every period the run wrote in a period-split table (None: not known, every
    partition is counted; store/parquet_set.py checks it by row counts), `units` the run's own
    table-shaped files, which partitions holding exactly their rows take. Returns the
    analyst file's path. `seconds`, if given, receives the wall time of each step."""
    took = seconds if seconds is not None else {}
    target = analyst_path(db_path)
    pointer = parquet_pointer(db_path)
    sweep_stale_staging(target)
    with timed(took, "parquet set"):
        written = write_parquet_set(db_path, pointer, tag, touched, units)
    with timed(took, "analyst file"):
        write_analyst_file(written)
        finish_set(written)
    checkpoint("mid-publish")
    publish_parquet(pointer, written.folder)
    _link_analyst_file(target, pointer)
    return target
