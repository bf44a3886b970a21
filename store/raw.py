"""Writes and reads of the raw inputs: each load is published in one transaction; readers give
typed Polars frames back.

A load is idempotent. Reloading the same files changes no table:
- a usage row whose event_id is stored with the same values is `unchanged`; with other values it
  is rejected as a duplicate key (an event is never billed twice);
- an assignment row equal to the current version of its assignment_id is `unchanged`; one that
  differs becomes a new version, and the current one;
- an account row with a stored (account_id, effective_from) and other values replaces it;
- a rejected row already stored with the same source, line, reason and raw is not added again.

`rows_in = loaded + rejected` for every file; `loaded` counts the unchanged rows too.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb
import polars as pl

from pipeline.catalog import Catalog, parse_catalog
from pipeline.contracts import INPUT_COLUMNS, REJECTED_SCHEMA
from pipeline.validate import Validated

ACCOUNT_FIELDS = list(INPUT_COLUMNS["accounts"])
ASSIGNMENT_FIELDS = list(INPUT_COLUMNS["assignments"])
# What a reloaded event must repeat to be `unchanged`: everything but its key.
USAGE_FIELDS = [c for c in INPUT_COLUMNS["usage"] if c != "event_id"]


class StoreError(Exception):
    """The database lacks something a reader needs (e.g. no catalog was ever loaded)."""


@dataclass
class FileStats:
    """Counts for one input file of a load."""

    kind: str
    source: str
    rows_in: int = 0
    loaded: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class FileBatch:
    """One input file's validated chunks, consumed lazily while the load stages them.

    `raw_lines(lines)` returns `line, raw` (the original text) of the given lines: the store
    asks for it only for rows it rejects itself (an event id met before), which it finds once
    the whole file is staged, when the chunks are long gone.
    """

    kind: str
    source: str
    chunks: Iterable[Validated]
    raw_lines: Callable[[pl.Series], pl.DataFrame] | None = None


@dataclass(frozen=True)
class LoadBatch:
    """Everything one load writes: the catalog text (if any) and the files, in order."""

    catalog_text: str | None = None
    catalog_source: str = "catalog.yaml"
    files: list[FileBatch] = field(default_factory=list)


@dataclass
class LoadReport:
    """The outcome of one load, as recorded in `runs`."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    catalog: str = "absent"
    files: list[FileStats] = field(default_factory=list)
    status: str = "running"

    @property
    def rows_in(self) -> int:
        """Rows read from all files."""
        return sum(f.rows_in for f in self.files)

    @property
    def rows_out(self) -> int:
        """Rows loaded (new, updated or unchanged) from all files."""
        return sum(f.loaded for f in self.files)

    @property
    def rejected(self) -> int:
        """Rows rejected from all files."""
        return sum(f.rejected for f in self.files)

    def message(self) -> str:
        """A compact JSON description for the `runs.message` column."""
        return json.dumps(
            {
                "catalog": self.catalog,
                "files": [
                    {k: getattr(f, k) for k in ("source", "rows_in", "loaded", "unchanged",
                                                "rejected")}
                    for f in self.files
                ],
            }
        )


def new_run_id(kind: str, now: datetime) -> str:
    """A sortable, unique run id, e.g. `load-20260105T020000-3f2a9c`."""
    return f"{kind}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def utc_now() -> datetime:
    """Now, as a naive UTC timestamp (the TIMESTAMP columns hold UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------
# The load: stage, then publish in one transaction
#
# DuckDB keeps the rows a transaction appends statement by statement in memory until it commits
# (about 110 MiB per million usage rows), so streaming 50M events into one open transaction
# would not be bounded. Rows are therefore first staged, batch by batch, in temporary scratch
# tables (`_staging_*`, which DuckDB spills to its temp directory past the memory limit), keys are
# settled set-wise once a file is staged, and the real tables are then written by single
# INSERT ... SELECT statements inside ONE transaction, which DuckDB writes straight to disk. The
# real tables change all at once or not at all; the scratch tables are dropped either way.

_STAGING_DDL = {
    "_staging_accounts": f"SELECT {', '.join(ACCOUNT_FIELDS)}, source, line FROM accounts",
    "_staging_assignments": (
        f"SELECT {', '.join(ASSIGNMENT_FIELDS)}, source, line FROM assignment_versions"
    ),
    "_staging_usage": (
        "SELECT event_id, account_id, service, destination_group, started_at, quantity, amount, "
        "source, line FROM usage"
    ),
    "_staging_rejected": "SELECT source, line, reason, raw FROM rejected_rows",
}
_STAGE_KIND = {"accounts": "_staging_accounts", "assignments": "_staging_assignments"}


def load_batch(
    con: duckdb.DuckDBPyConnection,
    batch: LoadBatch,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
) -> LoadReport:
    """Load a whole batch: stage every file, then write every table in ONE transaction and
    record the run in `runs`. On failure no table changes; a `failed` run row is written and the
    error re-raised."""
    started = now or utc_now()
    report = LoadReport(run_id or new_run_id("load", started), started)
    if sum(f.kind == "usage" for f in batch.files) > 1:
        raise ValueError("a load takes at most one usage file")
    try:
        for name, select in _STAGING_DDL.items():
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select} LIMIT 0")
        for file in batch.files:
            stats = FileStats(file.kind, file.source)
            report.files.append(stats)
            for chunk in file.chunks:
                _stage_chunk(con, file, chunk, stats)
            if file.kind == "usage":
                _settle_usage_keys(con, file, stats)
        if not any(f.kind == "usage" for f in batch.files):
            con.execute("CREATE OR REPLACE TEMP TABLE _usage_clash (line BIGINT, state VARCHAR)")
        con.execute("BEGIN TRANSACTION")
        try:
            _publish(con, batch, report)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except BaseException as exc:
        report.status = "failed"
        try:
            record_run(
                con, report.run_id, "load", report.started_at, utc_now(), "failed",
                None, None, f"{type(exc).__name__}: {exc}"[:2000],
            )
        except duckdb.Error:
            pass  # the connection itself is broken: the original error is the one to report
        raise
    finally:
        _drop_staging(con)
    return report


def _drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    for name in [*_STAGING_DDL, "_accounts", "_assignments", "_usage_repeats", "_usage_clash"]:
        try:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        except duckdb.Error:
            pass  # scratch only; the next load replaces it


def _stage_chunk(
    con: duckdb.DuckDBPyConnection, file: FileBatch, chunk: Validated, stats: FileStats
) -> None:
    """Stage one validated chunk: its good rows and every rejected row, with counts."""
    stats.rows_in += chunk.valid.height + chunk.rejected.height
    if file.kind == "usage":
        late = _stage_usage(con, chunk, file.source, stats)
    else:
        fields = ACCOUNT_FIELDS if file.kind == "accounts" else ASSIGNMENT_FIELDS
        _insert_frame(
            con, _STAGE_KIND[file.kind],
            chunk.valid.select(*fields, pl.lit(file.source).alias("source"), "line"),
        )
        late = _no_rejects()
    rejected = pl.concat([chunk.rejected, late], how="vertical_relaxed")
    stats.rejected += rejected.height
    if rejected.height:
        _insert_frame(con, "_staging_rejected", rejected.select("source", "line", "reason", "raw"))


def _insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    con.register("_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


def _stage_usage(
    con: duckdb.DuckDBPyConnection, chunk: Validated, source: str, stats: FileStats
) -> pl.DataFrame:
    """Stage a chunk's good events as they are; keys are checked once all are staged."""
    # Units are exact integers of 10^-6: multiplying by a DECIMAL keeps the result a DECIMAL
    # (dividing would turn it into a DOUBLE).
    con.register("_batch_usage", chunk.valid)
    try:
        con.execute(
            """INSERT INTO _staging_usage
               SELECT event_id, account_id, service, destination_group, started_at,
                      CAST(quantity_units * 0.000001 AS DECIMAL(18,6)),
                      CAST(amount_units * 0.000001 AS DECIMAL(18,6)), ?, line
               FROM _batch_usage""",
            [source],
        )
    finally:
        con.unregister("_batch_usage")
    stats.loaded += chunk.valid.height
    return _no_rejects()


def _settle_usage_keys(
    con: duckdb.DuckDBPyConnection, file: FileBatch, stats: FileStats
) -> None:
    """Once the whole file is staged, find the events whose id was met before, in one pass:
    a later copy within the file is a duplicate; an id loaded earlier with the same values is
    unchanged, with other values it is rejected. Set-based, so a 50M-row file costs one
    aggregate and one join, not one join per batch."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _usage_repeats AS
           SELECT event_id, min(line) AS first_line FROM _staging_usage
           GROUP BY event_id HAVING count(*) > 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _usage_clash AS
            SELECT s.line, s.event_id,
                   CASE WHEN s.line > d.first_line THEN 'duplicate'
                        WHEN u.event_id IS NULL THEN 'new'
                        WHEN {_same(USAGE_FIELDS, 'u', 's')} THEN 'same'
                        ELSE 'conflict' END AS state,
                   CASE WHEN s.line > d.first_line THEN d.first_line ELSE u.line END
                     AS first_line,
                   u.source AS first_source
            FROM _staging_usage s
            LEFT JOIN _usage_repeats d ON d.event_id = s.event_id
            LEFT JOIN usage u ON u.event_id = s.event_id
            WHERE d.event_id IS NOT NULL OR u.event_id IS NOT NULL"""
    )
    # Only the rejected rows come back to Python; unchanged ones are merely counted.
    stats.unchanged += _rows(con, "SELECT count(*) FROM _usage_clash WHERE state = 'same'")[0][0]
    rejected = _frame(
        con,
        "SELECT line, event_id, state, first_line, first_source FROM _usage_clash "
        "WHERE state IN ('duplicate', 'conflict') ORDER BY line",
    )
    if rejected.height:
        raw = file.raw_lines(rejected["line"]) if file.raw_lines is not None else None
        rejects = _usage_rejects(rejected, raw, file.source)
        stats.loaded -= rejects.height
        stats.rejected += rejects.height
        _insert_frame(con, "_staging_rejected", rejects)


def _usage_rejects(clash: pl.DataFrame, raw: pl.DataFrame | None, source: str) -> pl.DataFrame:
    """Rejected rows for events whose id was met before, with their original text."""
    reason = (
        pl.when(pl.col("state") == "duplicate")
        .then(
            pl.format(
                "event_id: duplicate event_id '{}' (first at line {})",
                pl.col("event_id"), pl.col("first_line"),
            )
        )
        .otherwise(
            pl.format(
                "event_id: duplicate event_id '{}' (already loaded from {} line {} with other "
                "values)",
                pl.col("event_id"), pl.col("first_source"), pl.col("first_line"),
            )
        )
    )
    out = clash.with_columns(reason.alias("reason"))
    if raw is not None:
        out = out.join(raw.select("line", "raw"), on="line", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("raw"))
    return out.sort("line").select(
        pl.lit(source, pl.String).alias("source"),
        pl.col("line").cast(pl.Int64),
        "reason",
        pl.col("raw").fill_null(""),
    )


def _publish(con: duckdb.DuckDBPyConnection, batch: LoadBatch, rep: LoadReport) -> None:
    """Inside the transaction: write every staged row into the real tables, and the run."""
    if batch.catalog_text is not None:
        rep.catalog = _put_catalog(con, batch.catalog_text, batch.catalog_source, rep)
    for stats in rep.files:
        if stats.kind == "accounts":
            _publish_accounts(con, rep, stats)
        elif stats.kind == "assignments":
            _publish_assignments(con, rep, stats)
    con.execute(
        """INSERT INTO usage
           SELECT s.event_id, s.account_id, s.service, s.destination_group, s.started_at,
                  s.quantity, s.amount, s.source, s.line, ?, ?
           FROM _staging_usage s
           WHERE NOT EXISTS (
               SELECT 1 FROM _usage_clash c WHERE c.line = s.line AND c.state <> 'new')""",
        [rep.run_id, rep.started_at],
    )
    con.execute(
        """INSERT INTO rejected_rows
           SELECT DISTINCT r.source, r.line, r.reason, r.raw, ?, ?
           FROM _staging_rejected r
           WHERE NOT EXISTS (
               SELECT 1 FROM rejected_rows x
               WHERE x.source = r.source AND x.line = r.line AND x.reason = r.reason
                 AND x.raw = r.raw)""",
        [rep.run_id, rep.started_at],
    )
    rep.finished_at = utc_now()
    rep.status = "success"
    record_run(
        con, rep.run_id, "load", rep.started_at, rep.finished_at, "success",
        rep.rows_in, rep.rows_out, rep.message(),
    )


def record_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    kind: str,
    started_at: datetime,
    finished_at: datetime | None,
    status: str,
    rows_in: int | None,
    rows_out: int | None,
    message: str | None = None,
    *,
    period: str | None = None,
    as_of: date | None = None,
) -> None:
    """Insert one row into `runs`."""
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, kind, period, as_of, started_at, finished_at, status, rows_in, rows_out,
         message],
    )


def _put_catalog(con: duckdb.DuckDBPyConnection, text: str, source: str, rep: LoadReport) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    found = _rows(con, "SELECT version, sha256 FROM catalog_versions ORDER BY version DESC LIMIT 1")
    current = found[0] if found else None
    if current is not None and current[1] == digest:
        return f"unchanged (version {current[0]})"
    version = 1 if current is None else current[0] + 1
    con.execute(
        "INSERT INTO catalog_versions VALUES (?, ?, ?, ?, ?, ?)",
        [version, digest, text, source, rep.started_at, rep.run_id],
    )
    return f"new version {version}"


def _same(columns: list[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{c} IS NOT DISTINCT FROM {right}.{c}" for c in columns)


def _publish_accounts(con: duckdb.DuckDBPyConnection, rep: LoadReport, stats: FileStats) -> None:
    """New keys are added, changed rows replace the stored row of their key."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _accounts AS
        SELECT b.*, CASE WHEN a.account_id IS NULL THEN 'new'
                         WHEN {_same(ACCOUNT_FIELDS, 'a', 'b')} THEN 'same'
                         ELSE 'changed' END AS state
        FROM _staging_accounts b
        LEFT JOIN accounts a
          ON a.account_id = b.account_id AND a.effective_from = b.effective_from"""
    )
    con.execute(
        """DELETE FROM accounts USING _accounts t
           WHERE t.state = 'changed' AND accounts.account_id = t.account_id
             AND accounts.effective_from = t.effective_from"""
    )
    con.execute(
        f"""INSERT INTO accounts
            SELECT {', '.join(ACCOUNT_FIELDS)}, source, line, ?, ?
            FROM _accounts WHERE state <> 'same' ORDER BY line""",
        [rep.run_id, rep.started_at],
    )
    _count(con, "_accounts", stats)


def _publish_assignments(
    con: duckdb.DuckDBPyConnection, rep: LoadReport, stats: FileStats
) -> None:
    """A row that differs from its assignment's current version becomes a new version."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _assignments AS
        SELECT b.*, CASE WHEN c.assignment_id IS NULL THEN 'new'
                         WHEN {_same(ASSIGNMENT_FIELDS, 'c', 'b')} THEN 'same'
                         ELSE 'changed' END AS state
        FROM _staging_assignments b
        LEFT JOIN assignments c ON c.assignment_id = b.assignment_id"""
    )
    con.execute(
        f"""INSERT INTO assignment_versions
            SELECT {', '.join(ASSIGNMENT_FIELDS)},
                   (SELECT coalesce(max(load_seq), 0) FROM assignment_versions)
                     + row_number() OVER (ORDER BY line),
                   source, line, ?, ?
            FROM _assignments WHERE state <> 'same' ORDER BY line""",
        [rep.run_id, rep.started_at],
    )
    _count(con, "_assignments", stats)


def _count(con: duckdb.DuckDBPyConnection, table: str, stats: FileStats) -> None:
    total, same = _rows(
        con, f"SELECT count(*), count(*) FILTER (WHERE state = 'same') FROM {table}"
    )[0]
    stats.loaded += total
    stats.unchanged += same


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    # fetchall, never fetchone: DuckDB 2 keeps a half-read result open and then refuses the
    # connection's next query.
    return con.execute(sql, params).fetchall()


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    return con.sql(sql, params=params).pl()


def _no_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECTED_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Readers: typed frames per docs/CONTRACTS.md


def read_catalog_text(con: duckdb.DuckDBPyConnection) -> str | None:
    """The text of the current catalog, or None when none was ever loaded."""
    rows = _rows(con, "SELECT text FROM catalog_versions ORDER BY version DESC LIMIT 1")
    return str(rows[0][0]) if rows else None


def read_catalog(con: duckdb.DuckDBPyConnection) -> Catalog:
    """The current catalog, parsed; raises StoreError when none was ever loaded."""
    text = read_catalog_text(con)
    if text is None:
        raise StoreError("no catalog has been loaded: load a folder with catalog.yaml first")
    return parse_catalog(text)


def read_accounts(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every account row: `account_id, currency, main_product_id, billing_day, status,
    opened_on, closed_on, effective_from`, ordered by account and effective_from."""
    return _frame(
        con,
        """SELECT account_id, currency, main_product_id, CAST(billing_day AS BIGINT) AS billing_day,
                  status, opened_on, closed_on, effective_from
           FROM accounts ORDER BY account_id, effective_from"""
    )


def read_account_ids(con: duckdb.DuckDBPyConnection) -> pl.Series:
    """The distinct account ids stored."""
    return _frame(con, "SELECT DISTINCT account_id FROM accounts").to_series()


def read_assignments(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The current version of every assignment, ordered by assignment_id."""
    return _frame(
        con,
        """SELECT assignment_id, account_id, addon_id, fee_plan_id, start_date, end_date,
                  assigned_at, CAST(quantity AS BIGINT) AS quantity
           FROM assignments ORDER BY assignment_id"""
    )


def read_usage(con: duckdb.DuckDBPyConnection, start: date, end: date) -> pl.DataFrame:
    """Usage events with `start <= started_at < end`, quantity and amount as exact `*_units`."""
    return _frame(
        con,
        """SELECT event_id, account_id, service, destination_group, started_at,
                  CAST(CAST(quantity AS DECIMAL(38,6)) * 1000000 AS BIGINT) AS quantity_units,
                  CAST(CAST(amount AS DECIMAL(38,6)) * 1000000 AS BIGINT) AS amount_units
           FROM usage
           WHERE started_at >= CAST(? AS TIMESTAMP) AND started_at < CAST(? AS TIMESTAMP)
           ORDER BY started_at, event_id""",
        [start, end],
    )


def read_rejected(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every rejected row: `source, line, reason, raw, run_id`, by source and line."""
    return _frame(
        con,
        "SELECT source, line, reason, raw, run_id FROM rejected_rows ORDER BY source, line, reason"
    )


def read_runs(con: duckdb.DuckDBPyConnection, kind: str | None = None) -> pl.DataFrame:
    """The run log, oldest first, optionally of one kind."""
    return _frame(
        con,
        "SELECT * FROM runs WHERE ? IS NULL OR kind = ? ORDER BY started_at, run_id", [kind, kind]
    )
