"""Read-only looks at `--db` before a command starts a server or a flow (billrun/guards.py).

They create nothing and change nothing. A database that a run holds right now cannot be opened
read-only; its facts are then unknown here (None) and the run lock, or the run itself, decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

# Every DuckDB database file carries these bytes at offset 8 (its main header's magic).
DUCKDB_MAGIC = b"DUCK"
MAGIC_OFFSET = 8

DatabaseKind = Literal["missing", "duckdb", "other"]


def database_kind(db: str | Path) -> DatabaseKind:
    """`missing` (a load or a nightly --input creates it), `duckdb`, or `other`: a folder, an
    empty file, or any file that is not a DuckDB database."""
    path = Path(db)
    if not path.exists():
        return "missing"
    try:
        with path.open("rb") as file:
            head = file.read(MAGIC_OFFSET + len(DUCKDB_MAGIC))
    except OSError:  # a folder, or unreadable
        return "other"
    return "duckdb" if head[MAGIC_OFFSET:] == DUCKDB_MAGIC else "other"


def has_catalog(db: str | Path) -> bool | None:
    """Whether a catalog was ever loaded into `db` (None: a run holds it, so unknown here)."""
    import duckdb

    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return None
    try:
        tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'catalog_versions'"
        ).fetchall()[0][0]
        if not tables:
            return False
        return bool(con.execute("SELECT count(*) FROM catalog_versions").fetchall()[0][0])
    except duckdb.Error:
        return None
    finally:
        con.close()


def staging_problem(root: str) -> str | None:
    """Why fsspec cannot open the staging root `root` (an unknown protocol, or one whose
    package is not installed), or None. Reachability is the run's to find out."""
    from fsspec.core import split_protocol
    from fsspec.registry import get_filesystem_class

    protocol, _ = split_protocol(root)
    if protocol is None:
        return None
    try:
        get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        return f"--staging {root}: {exc}"
    return None
