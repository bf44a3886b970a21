"""The run staging folder (docs/RUNS.md, "Units of work"): every file a run's units read or
write, under `<root>/<run_id>/`, through fsspec so that the root may be a local folder, a
`file://` URL or (later) object storage, unchanged.

    <root>/<run_id>/inputs/catalog.yaml                         the catalog text
    <root>/<run_id>/inputs/<name>/shard=<s>/*.parquet            accounts, assignments, locks,
                                                                 changes, ...
    <root>/<run_id>/inputs/<name>/period=<p>/shard=<s>/*.parquet plan, usage, counters_before, ...
    <root>/<run_id>/settled/shard=<s>/<frame>.parquet            each shard's settlement
    <root>/<run_id>/units/<period>/<shard>/<output>.parquet      what each unit computed
    <root>/<run_id>/units/<period>/<shard>/<table>.rows.parquet  its charges and decisions, as
                                                                 the tables hold them (only so)

Inputs are written by DuckDB (`COPY ... PARTITION_BY`), once per run (usage: once per period,
just before its units run), with the shard computed once, in DuckDB, from the account id. Every
(input, shard) gets a file, empty if need be, so that a unit never has to guess a schema. The
settle round writes each shard's settlement of the rules once (`write_settlement`); every period
unit of the shard reads it back (`read_settlement`), frames and row order as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import duckdb
import fsspec
import polars as pl
from fsspec.core import url_to_fs

from pipeline.catalog import parse_catalog
from pipeline.contracts import (
    COUNTER_KEY,
    COUNTER_SCHEMA,
    DECISIONS_SCHEMA,
    INVOICE_SCHEMA,
    LIFECYCLE_SCHEMA,
    LINE_SCHEMA,
    LOCK_SCHEMA,
    PARCEL_SCHEMA,
    PLAN_CHANGE_SCHEMA,
    USAGE_SUM_SCHEMA,
)

CATALOG_FILE = "inputs/catalog.yaml"
SETTLE = "_settle"  # the units folder of the round that settles accounts no period bills

# What each unit writes, with its schema: one file per name in every unit's folder, typed even
# when empty, so that the commit reads each name with one `read_parquet` glob. The names of
# store.unit_rows.ROWS_SQL (charges, decisions) are written once, as their tables' rows
# (`<name>.rows.parquet`, from the frame typed here): no `<name>.parquet` of them.
_PERIOD = {"period": pl.Utf8()}
UNIT_OUTPUTS: dict[str, dict[str, pl.DataType]] = {
    "scope": {"account_id": pl.Utf8(), "period": pl.Utf8(), "status": pl.Utf8()},
    "charges": LINE_SCHEMA,
    "invoices": INVOICE_SCHEMA,
    "decisions": DECISIONS_SCHEMA,
    "adjustments": {**LINE_SCHEMA, "reason": pl.Utf8()},
    "counters": {**COUNTER_SCHEMA, **_PERIOD},
    "counter_shift": {
        **{k: COUNTER_SCHEMA[k] for k in COUNTER_KEY}, **_PERIOD, "delta_units": pl.Int64(),
    },
    "parcels": PARCEL_SCHEMA,
    "parcel_scope": {"account_id": pl.Utf8(), "window_start": pl.Date()},
    # the unit's period (null for the settle round): the commit keeps each assignment's first
    "lifecycles": {**LIFECYCLE_SCHEMA, **_PERIOD},
    "locks": {**LOCK_SCHEMA, **_PERIOD},
    # SPEC §8.1: each change's verdict; the commit keeps, like a life cycle, the first period's
    "plan_changes": {**PLAN_CHANGE_SCHEMA, **_PERIOD},
    # A nightly's draft groups, what the next night may continue from (store/usage_state.py):
    # their day limits, and their lines' exact sums (Decimal(38,0): Parquet has no Int128).
    "usage_marks": {"account_id": pl.Utf8(), "period": pl.Utf8(), "period_start": pl.Date(),
                    "day_limit": pl.Date()},
    "usage_sums": {
        **{n: pl.Decimal(38, 0) if t == pl.Int128() else t for n, t in USAGE_SUM_SCHEMA.items()},
        **_PERIOD,
    },
}


def default_root(db: str) -> str:
    """`billrun.duckdb` -> `billrun.duckdb.staging`, beside the database."""
    return f"{db}.staging"


def shard_sql(shards: int, column: str = "account_id") -> str:
    """THE shard of an account: a stable function of its id, computed by DuckDB only."""
    return f"CAST(hash({column}) % {int(shards)} AS INTEGER)"


@dataclass(frozen=True)
class Stage:
    """One run's staging folder: `root` (path or URL) and the run id below it."""

    root: str
    run_id: str

    @property
    def base(self) -> str:
        """`<root>/<run_id>` as fsspec and DuckDB read it."""
        return f"{self.root.rstrip('/')}/{self.run_id}"

    def url(self, relative: str) -> str:
        """The URL of a file or folder below the run's folder."""
        return f"{self.base}/{relative}"


def _fs(url: str) -> tuple[Any, str]:
    return url_to_fs(url)


def _is_local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def duck_url(con: duckdb.DuckDBPyConnection, url: str) -> str:
    """What DuckDB reads or writes for `url`: a local path, or the URL itself once the fsspec
    filesystem is registered with the connection (object storage, later)."""
    fs, path = _fs(url)
    if _is_local(fs):
        return path
    if not con.filesystem_is_registered(fs.protocol if isinstance(fs.protocol, str)
                                        else fs.protocol[0]):
        con.register_filesystem(fs)
    return url


def start_clean(root: str) -> None:
    """Remove what earlier runs left under `root` (a killed run leaves its folder). The run lock
    makes the caller the only run, so nothing there is in use."""
    fs, path = _fs(root)
    if fs.exists(path):
        for entry in fs.ls(path, detail=False):
            fs.rm(entry, recursive=True)


def remove_run(stage: Stage) -> None:
    """Remove the run's folder, and the root too once it is empty (a local folder)."""
    fs, path = _fs(stage.base)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    root_fs, root = _fs(stage.root)
    try:
        if _is_local(root_fs) and root_fs.exists(root) and not root_fs.ls(root):
            root_fs.rmdir(root)
    except OSError:  # another process wrote there meanwhile: leave it
        pass


def remove(stage: Stage, relative: str) -> None:
    """Remove a staged file or folder (a period's usage once its units are done)."""
    fs, path = _fs(stage.url(relative))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def move(stage: Stage, source: str, target: str) -> None:
    """Move a staged folder to another place below the run's folder (e.g. the units of a
    period billed in a folder of its own, to where the commit reads them)."""
    fs, path = _fs(stage.url(source))
    _, to = _fs(stage.url(target))
    fs.makedirs(to.rsplit("/", 1)[0], exist_ok=True)
    fs.mv(path, to, recursive=True)


def write_text(stage: Stage, relative: str, text: str) -> None:
    """Write a small text file (the catalog)."""
    fs, path = _fs(stage.url(relative))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w", encoding="utf-8") as out:
        out.write(text)


def read_text(stage: Stage, relative: str) -> str:
    """Read a small staged text file."""
    with fsspec.open(stage.url(relative), "r", encoding="utf-8") as src:
        return str(src.read())


def read_frame(stage: Stage, relative: str) -> pl.DataFrame:
    """Every Parquet file of a staged folder (one partition), as one frame."""
    fs, path = _fs(stage.url(relative))
    files = sorted(fs.glob(f"{path}/*.parquet"))
    if not files:
        raise FileNotFoundError(f"staging: no Parquet file in {stage.url(relative)}")
    frames = [_read_parquet(fs, f) for f in files]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")


def _read_parquet(fs: Any, path: str) -> pl.DataFrame:
    if _is_local(fs):
        return pl.read_parquet(path)
    with fs.open(path, "rb") as src:
        return pl.read_parquet(src)


def read_output(stage: Stage, period: str, shard: int, name: str) -> pl.DataFrame:
    """One output of unit (period, shard) (not the charges or decisions: see UNIT_OUTPUTS)."""
    fs, path = _fs(stage.url(f"units/{period}/{shard}/{name}.parquet"))
    return _read_parquet(fs, path)


def write_outputs(stage: Stage, period: str, shard: int, frames: dict[str, pl.DataFrame]) -> dict:
    """Write every UNIT_OUTPUTS file of unit (period, shard), typed; returns rows per name."""
    # The charges and decisions go only as their tables hold them, which the commit inserts
    # and the publication takes whole (store/unit_rows.py; imported here: it reads this module).
    from store.unit_rows import ROWS_TABLES, write_unit_rows

    fs, folder = _fs(stage.url(f"units/{period}/{shard}"))
    fs.makedirs(folder, exist_ok=True)
    counts, typed_frames = {}, {}
    for name, schema in UNIT_OUTPUTS.items():
        frame = frames.get(name)
        frame = pl.DataFrame(schema=schema) if frame is None or frame.width == 0 else frame.select(
            [pl.col(c).cast(t) for c, t in schema.items()]
        )
        if name not in ROWS_TABLES:
            with fs.open(f"{folder}/{name}.parquet", "wb") as out:
                frame.write_parquet(out)
        counts[name] = frame.height
        typed_frames[name] = frame
    write_unit_rows(stage, period, shard, typed_frames, catalog_minor_units(stage))
    return counts


@lru_cache(maxsize=4)
def _minor_units(text: str) -> dict[str, int]:
    return dict(parse_catalog(text).currencies)


def catalog_minor_units(stage: Stage) -> dict[str, int]:
    """`currency -> minor units` of the run's staged catalog (parsed once per process)."""
    return _minor_units(read_text(stage, CATALOG_FILE))


def write_settlement(stage: Stage, shard: int, frames: dict[str, pl.DataFrame]) -> None:
    """Stage the settlement of one shard: one Parquet file per frame, as it is (Parquet keeps
    the frames' types and row order)."""
    fs, folder = _fs(stage.url(f"settled/shard={shard}"))
    fs.makedirs(folder, exist_ok=True)
    for name, frame in frames.items():
        with fs.open(f"{folder}/{name}.parquet", "wb") as out:
            frame.write_parquet(out)


def read_settlement(stage: Stage, shard: int) -> dict[str, pl.DataFrame]:
    """The frames `write_settlement` staged for `shard`, by name."""
    fs, folder = _fs(stage.url(f"settled/shard={shard}"))
    files = sorted(fs.glob(f"{folder}/*.parquet"))
    if not files:
        raise FileNotFoundError(f"staging: no settlement in {stage.url(f'settled/shard={shard}')}")
    return {f.rsplit("/", 1)[1].removesuffix(".parquet"): _read_parquet(fs, f) for f in files}


def output_glob(con: duckdb.DuckDBPyConnection, stage: Stage, name: str) -> str:
    """`read_parquet(...)` of one output name over every unit of the run, for the commit (the
    charges and decisions: store.unit_rows.staged_rows_glob)."""
    return f"read_parquet('{duck_url(con, stage.url(f'units/*/*/{name}.parquet'))}')"


# --- Exports (DuckDB, streamed: nothing passes through Polars) ----------------------------------

def export(
    con: duckdb.DuckDBPyConnection,
    stage: Stage,
    name: str,
    sql: str,
    shards: int,
    params: list[Any] | None = None,
    period: str | None = None,
) -> int:
    """COPY the rows of `sql` (which has a `shard` column) to `inputs/<name>/[period=<p>/]`
    partitioned by shard; every shard gets a file (an empty one written from the same query
    with LIMIT 0). Returns the rows written."""
    folder = f"inputs/{name}" + (f"/period={period}" if period is not None else "")
    target = duck_url(con, stage.url(folder))
    fs, path = _fs(stage.url(folder))
    fs.makedirs(path, exist_ok=True)
    written = con.execute(
        f"COPY ({sql}) TO '{target}' (FORMAT parquet, PARTITION_BY (shard), OVERWRITE_OR_IGNORE)",
        params,
    ).fetchone()
    for shard in range(shards):
        if not fs.glob(f"{path}/shard={shard}/*.parquet"):
            fs.makedirs(f"{path}/shard={shard}", exist_ok=True)
            con.execute(
                f"COPY (SELECT * EXCLUDE (shard) FROM ({sql}) LIMIT 0) "
                f"TO '{target}/shard={shard}/data_0.parquet' (FORMAT parquet)",
                params,
            )
    return int(written[0]) if written else 0


def input_folder(name: str, shard: int, period: str | None = None) -> str:
    """The staged folder of one input partition."""
    return f"inputs/{name}" + (f"/period={period}" if period is not None else "") + \
        f"/shard={shard}"


ACCOUNTS_SQL = """SELECT account_id, currency, main_product_id,
       CAST(billing_day AS BIGINT) AS billing_day, status, opened_on, closed_on, effective_from,
       {shard} AS shard
FROM accounts"""  # the columns of store.raw.read_accounts
ASSIGNMENTS_SQL = """SELECT assignment_id, account_id, addon_id, fee_plan_id, start_date,
       end_date, assigned_at, CAST(quantity AS BIGINT) AS quantity, {shard} AS shard
FROM assignments"""  # the columns of store.raw.read_assignments
LOCKS_SQL = """SELECT l.assignment_id, l.locked_start, {shard} AS shard
FROM activation_locks l JOIN assignments a USING (assignment_id)"""
# SPEC §8.1: the current changes (the columns of store.raw.read_changes), by their assignment's
# account, like the locks.
CHANGES_SQL = """SELECT c.assignment_id, c.effective_from, c.fee_plan_id,
       CAST(c.quantity AS BIGINT) AS quantity, {shard} AS shard
FROM assignment_changes c JOIN assignments a USING (assignment_id)"""
# The quantity and amount go out as the table stores them, DECIMAL(18,6): a 64-bit integer of
# millionths, which is the pipeline's unit, so the unit reads the integer as it is
# (`usage_units`). Multiplying by 10^6 in DuckDB (through DECIMAL(38,6): DECIMAL(18,6) can
# overflow) was a third of the export's CPU (benchmarks/RESULTS.md, "A reprocess of a
# finalized period, and the units' exports").
USAGE_SQL = """SELECT event_id, account_id, service, destination_group, started_at,
       CAST(quantity AS DECIMAL(18,6)) AS quantity, CAST(amount AS DECIMAL(18,6)) AS amount,
       {shard} AS shard
FROM {source}
WHERE started_at >= CAST(? AS TIMESTAMP) AND started_at < CAST(? AS TIMESTAMP)"""
# (the columns of store.raw.read_usage; the filter is pushed into the scan)


def usage_units(staged: pl.DataFrame) -> pl.DataFrame:
    """A staged usage partition in the pipeline's units (store.raw.read_usage's columns):
    `quantity_units` and `amount_units`, the millionths the DECIMAL(18,6) columns hold."""
    return staged.with_columns(
        *(pl.col(c).cast(pl.Decimal(18, 6)).to_physical().cast(pl.Int64).alias(f"{c}_units")
          for c in ("quantity", "amount"))
    ).drop("quantity", "amount")


def export_usage(
    con: duckdb.DuckDBPyConnection, stage: Stage, period: str, start: date, end: date, shards: int,
    source: str = "usage",
) -> int:
    """The usage of one period's window, by shard; returns the events exported. `source`: the
    `usage` table, or a query of its rows (store.usage_state.USAGE_AFTER)."""
    return export(con, stage, "usage", USAGE_SQL.format(shard=shard_sql(shards), source=source),
                  shards, [start, end], period=period)
