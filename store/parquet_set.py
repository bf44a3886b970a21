"""The results as Parquet, for tools without DuckDB (pandas, Polars, Spark, BI tools).

Each run writes a whole new set, one file per table and view, into its own folder under
`billrun.analyst.sets/`, then swaps the symbolic link `billrun.analyst` to it with one atomic
rename. A reader that opens `billrun.analyst/invoices.parquet` therefore sees one run's complete
set, never a half-written one; the previous set is kept (a reader that resolved the link just
before a swap can finish), older ones are removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb

from store.views import VIEWS

# The results tables analysts read (SPEC §6), then the analyst views, materialized.
PARQUET_TABLES: tuple[str, ...] = (
    "invoices",
    "charges",
    "adjustments",
    "decisions",
    "discount_counters",
    "rejected_rows",
    "runs",
    *VIEWS,
)
MANIFEST = "_manifest.json"


def parquet_pointer(db_path: str | Path) -> Path:
    """`billrun.duckdb` -> `billrun.analyst` (the link analysts read), beside it."""
    db = Path(db_path)
    return db.with_name(f"{db.stem}.analyst")


def sets_folder(pointer: Path) -> Path:
    """Where the sets behind `pointer` live: `billrun.analyst.sets/`."""
    return pointer.with_name(f"{pointer.name}.sets")


def _sql_text(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def write_parquet_set(source_db: str | Path, pointer: Path, tag: str | None) -> Path:
    """Write every table of `PARQUET_TABLES` from `source_db` into a new set folder; returns it.
    Nothing points at it yet."""
    name = tag or f"set-{os.getpid()}"
    folder = sets_folder(pointer) / name
    if folder.exists():  # a set left by a run killed before its swap
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rows: dict[str, int] = {}
    con = duckdb.connect(str(source_db), read_only=True)
    try:
        for table in PARQUET_TABLES:
            path = folder / f"{table}.parquet"
            con.execute(f"COPY (SELECT * FROM {table}) TO {_sql_text(path)} (FORMAT parquet)")
            rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()
    (folder / MANIFEST).write_text(json.dumps({"set": name, "rows": rows}, indent=2) + "\n")
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    return folder


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
