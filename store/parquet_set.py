"""The results as Parquet, for tools without DuckDB (pandas, Polars, Spark, BI tools).

Each run writes a whole new set, one file per table and view, into its own folder under
`billrun.analyst.sets/`, then swaps the symbolic link `billrun.analyst` to it with one atomic
rename. A table that did not change since the set in place is hard-linked from it, not written
again. A reader that opens `billrun.analyst/invoices.parquet` therefore sees one run's complete
set, never a half-written one; the previous set is kept (a reader that resolved the link just
before a swap can finish), older ones are removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb

from store.duck import quiet
from store.views import VIEWS

# The results tables analysts read (SPEC §6), the inputs they join them to (the accounts, the
# assignments and their history, the catalog's products and plans, the usage), then the analyst
# views, materialized. A table or view the database does not hold yet (a load before the first
# billing run has no catalog tables and no views) is left out of the set and its manifest.
PARQUET_TABLES: tuple[str, ...] = (
    "invoices",
    "charges",
    "adjustments",
    "documents",
    "decisions",
    "discount_counters",
    "rejected_rows",
    "runs",
    "plan_change_verdicts",  # SPEC §8.1; read through the assignment_history view
    "accounts",
    "assignments",  # view: the current base version of each assignment
    "assignment_changes",  # view: the current version of each change (SPEC §8.1)
    "usage",
    "catalog_currencies",
    "catalog_main_products",
    "catalog_offers",
    "catalog_addons",
    "catalog_subscriptions",
    "catalog_fee_plans",
    "catalog_discount_entries",
    *VIEWS,
)
MANIFEST = "_manifest.json"
# DuckDB's memory while it writes the set (benchmarks/RESULTS.md, run 6).
PUBLISH_MEMORY = "1GB"


def parquet_pointer(db_path: str | Path) -> Path:
    """`billrun.duckdb` -> `billrun.analyst` (the link analysts read), beside it."""
    db = Path(db_path)
    return db.with_name(f"{db.stem}.analyst")


def sets_folder(pointer: Path) -> Path:
    """Where the sets behind `pointer` live: `billrun.analyst.sets/`."""
    return pointer.with_name(f"{pointer.name}.sets")


def _sql_text(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _previous_set(pointer: Path) -> tuple[Path | None, dict[str, str]]:
    """The set `pointer` shows now, and the table fingerprints its manifest recorded."""
    if not pointer.is_symlink():
        return None, {}
    folder = pointer.resolve()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None, {}
    return folder, manifest.get("fingerprints", {})


def write_parquet_set(
    source_db: str | Path, pointer: Path, tag: str | None, prints: dict[str, str] | None = None
) -> Path:
    """Write every table of `PARQUET_TABLES` from `source_db` into a new set folder; returns it.
    Nothing points at it yet.

    `prints` are the tables' fingerprints (store/snapshot.py): a table whose fingerprint equals
    the one in the current set's manifest is hard-linked from that set, not written again
    (Parquet files are never modified in place, so the two sets can share them). Views are
    always written."""
    prints = prints or {}
    name = tag or f"set-{os.getpid()}"
    folder = sets_folder(pointer) / name
    previous, previous_prints = _previous_set(pointer)
    if previous is not None and previous == folder.resolve():  # a re-run under the same tag
        folder = sets_folder(pointer) / f"{name}-{os.getpid()}"
    if folder.exists():  # a set left by a run killed before its swap
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rows: dict[str, int] = {}
    con = quiet(duckdb.connect(str(source_db), read_only=True))
    try:
        # The set holds the usage too (every event): unbounded, DuckDB's COPY of 46M events
        # took 4.9 GB on top of what the run's units had left in the coordinator (a 15.4 GiB
        # peak at 1M accounts); bounded, it streams in 1.1 GB at the same speed.
        con.execute(f"SET memory_limit = '{PUBLISH_MEMORY}'")
        held = {name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' UNION "
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"
        ).fetchall()}
        for table in (t for t in PARQUET_TABLES if t in held):
            path = folder / f"{table}.parquet"
            unchanged = table in prints and previous_prints.get(table) == prints[table]
            if not (unchanged and previous is not None and _link(previous / path.name, path)):
                con.execute(f"COPY (SELECT * FROM {table}) TO {_sql_text(path)} (FORMAT parquet)")
            rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()
    manifest = {"set": name, "rows": rows,
                "fingerprints": {t: prints[t] for t in rows if t in prints}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    return folder


def _link(source: Path, path: Path) -> bool:
    """Hard-link `source` to `path`; False (the caller writes the file) where links fail."""
    try:
        os.link(source, path)
    except OSError:
        return False
    return True


def publish_parquet(pointer: Path, folder: Path) -> None:
    """Point `pointer` at `folder` atomically, then remove every set but this one and the one
    it replaces (sets left by runs killed before their swap go too)."""
    if pointer.exists() and not pointer.is_symlink():
        raise RuntimeError(f"{pointer} exists and is not billrun's link: move it away")
    previous = pointer.resolve() if pointer.is_symlink() else None
    link = pointer.with_name(f".{pointer.name}.link-{os.getpid()}")
    link.unlink(missing_ok=True)
    link.symlink_to(Path(folder.parent.name) / folder.name, target_is_directory=True)
    os.replace(link, pointer)
    keep = {folder.resolve(), previous}
    for old in folder.parent.iterdir():
        if old.is_dir() and old.resolve() not in keep:
            shutil.rmtree(old, ignore_errors=True)
