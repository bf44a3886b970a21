"""Guard rails: what refuses a command, checked before it starts a Prefect server or a flow.

A refused command prints one line, starts nothing and writes nothing (no `runs` row), in well
under a second (docs/RUNS.md, "Guard rails"). Two kinds:

- typos that would be irreversible: an as-of date too far ahead (issue 12, item 7), a
  reprocess of a period never billed (billrun/commands.py);
- facts that would make the run fail after its start-up (issue 21, item 2): a `--db` that is
  not a DuckDB database, a nightly with no catalog to bill by, a drop folder the load would
  refuse, a database another run holds, Dask workers that cannot reach the Prefect API, a
  staging URL whose protocol fsspec does not know.

The run itself still checks all of these (a run may start between the look and the flow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

# The horizon itself is the setting `as_of_horizon_days` (billrun.config: flag, env, file).
HORIZON_ENV = "BILLRUN_AS_OF_HORIZON_DAYS"
# The API a command reports to when PREFECT_API_URL is not set: its own temporary server.
OWN_SERVER_URL = "http://127.0.0.1/api"


@dataclass(frozen=True)
class Refusal:
    """Why a command does not run, and its exit code: 2 a bad argument, 1 refused by the lock
    (another run holds the database: the same code as when the run itself finds it)."""

    message: str
    code: int = 2


def as_of_refusal(as_of: date, today: date, days: int, allow_future: bool) -> str | None:
    """Why `nightly --as-of` is refused, or None. `today` is the UTC date read at the edge."""
    latest = today + timedelta(days=days)
    if allow_future or as_of <= latest:
        return None
    return (
        f"--as-of {as_of} is beyond the horizon {latest} (today {today} UTC + {days} day(s)): "
        "it would finalize periods that have not ended; pass --allow-future if you mean it, "
        f"or widen the horizon with --horizon-days or {HORIZON_ENV}"
    )


def drop_refusal(input_dir: str | Path) -> str | None:
    """Why the load of `input_dir` would be refused (no such folder, two files of one kind, a
    catalog that is not UTF-8 or not valid), or None."""
    from pipeline.catalog import CatalogError, parse_catalog
    from store import sources

    try:
        inputs = sources.find_inputs(input_dir)
        if inputs.catalog is not None:
            parse_catalog(sources.read_catalog_text(inputs.catalog), name=inputs.catalog.name)
    except (sources.SourceError, CatalogError) as exc:
        return str(exc)
    return None


def database_refusal(db: str) -> str | None:
    """Why `--db` cannot be written by a run: it exists and is not a DuckDB database."""
    from store.preflight import database_kind

    if database_kind(db) == "other":
        return f"--db {db} is not a DuckDB database (a folder, an empty file or another file)"
    return None


def lock_refusal(db: str) -> Refusal | None:
    """Another billrun run holds the database now (exit 1, as when the run finds it)."""
    from store.runlock import held_by

    reason = held_by(db)
    return Refusal(f"refused: {reason}", 1) if reason is not None else None


def cluster_refusal(cluster: str | None) -> str | None:
    """Why the units cannot run on `cluster`: a remote scheduler's workers cannot reach the
    API this command reports to (its own server is on this machine only)."""
    if cluster is None:
        return None
    from flows.cluster import ClusterSpecError, parse_cluster, unreachable_api

    try:
        spec = parse_cluster(cluster)
    except ClusterSpecError as exc:
        return str(exc)
    users = os.environ.get("PREFECT_API_URL")
    reason = unreachable_api(spec, users or OWN_SERVER_URL)
    if reason is not None and not users:
        return (
            f"the workers of {spec.address} cannot reach billrun's temporary Prefect server "
            "(this machine only): run a Prefect server they reach and set PREFECT_API_URL to "
            "its address"
        )
    return reason


def staging_refusal(staging: str | None) -> str | None:
    """Why the staging root cannot be used: a protocol fsspec does not know or cannot load."""
    if staging is None:
        return None
    from store.preflight import staging_problem

    return staging_problem(staging)


def load_refusal(input_dir: str | Path, db: str) -> Refusal | None:
    """Everything that refuses `billrun load DIR` before it starts (exit 2, or 1: locked)."""
    reason = drop_refusal(input_dir) or database_refusal(db)
    return Refusal(reason) if reason else lock_refusal(db)


def nightly_refusal(
    db: str, input_dir: str | None, cluster: str | None, staging: str | None
) -> Refusal | None:
    """Everything that refuses `billrun nightly` before it starts, once its as-of date passed:
    the drop folder, the database (a nightly bills by a catalog loaded before or in this
    night's drop), the cluster, the staging root, the run lock."""
    reason = (
        (drop_refusal(input_dir) if input_dir is not None else None)
        or database_refusal(db)
        or _catalog_refusal(db, input_dir)
        or cluster_refusal(cluster)
        or staging_refusal(staging)
    )
    return Refusal(reason) if reason else lock_refusal(db)


def reprocess_refusal(db: str, cluster: str | None, staging: str | None) -> Refusal | None:
    """What refuses `billrun reprocess` before it starts, beside the period check
    (billrun/commands.py): the database file, the cluster, the staging root, the run lock."""
    reason = database_refusal(db) or cluster_refusal(cluster) or staging_refusal(staging)
    return Refusal(reason) if reason else lock_refusal(db)


def _catalog_refusal(db: str, input_dir: str | None) -> str | None:
    from store import sources
    from store.preflight import has_catalog

    if input_dir is not None and sources.find_inputs(input_dir).catalog is not None:
        return None  # this night's drop brings one
    hint = "load a folder with catalog.yaml first (billrun load DIR, or nightly --input DIR)"
    if not Path(db).exists():
        return f"no database at {db}: {hint}"
    if has_catalog(db) is False:
        return f"no catalog has been loaded into {db}: {hint}"
    return None
