"""Writes and reads of the raw inputs: each load is published in one transaction; readers give
typed Polars frames back.

A load is idempotent. Reloading the same files changes no table:
- a usage row whose event_id is stored with the same values is `unchanged`; with other values it
  is rejected as a duplicate key (an event is never billed twice);
- an assignment row equal to the current version of its key (assignment_id, and effective_from
  for a change: SPEC §8.1) is `unchanged`, unless it is the load's last row of its assignment
  and its end_date is not the end date the assignment has without it; any other becomes a new
  version, and the current one of its key;
- an account row with a stored (account_id, effective_from) and other values replaces it;
- a rejected row already stored with the same source, line, reason and raw is not added again.

`rows_in = loaded + rejected` for every file; `loaded` counts the unchanged rows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import polars as pl

from pipeline.catalog import Catalog, parse_catalog
from pipeline.contracts import CHANGE_SCHEMA, INPUT_COLUMNS, typed
from pipeline.validate import Validated
from store import checks
from store.clock import Clock, utc_now
from store.duck import sql_text
from store.runs import RunRecord, new_run_id, record_run

ACCOUNT_FIELDS = list(INPUT_COLUMNS["accounts"])
ASSIGNMENT_FIELDS = list(INPUT_COLUMNS["assignments"])
# What a re-delivered change row must repeat to be `unchanged`: its start_date and assigned_at
# are always its base version's (SPEC §8.1), whatever the row says.
CHANGE_FIELDS = [c for c in ASSIGNMENT_FIELDS if c not in ("start_date", "assigned_at")]
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
class Staged:
    """What staging a file's raw rows found: when its header lacks required columns, the reason
    each of its rows is rejected with, and the file's own columns (in its order) for their text."""

    missing_reason: str | None = None
    header: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileBatch:
    """One input file of a load.

    Accounts and assignments come as validated chunks, consumed lazily while the load stages
    them. Usage comes as `stage(con, table)`, which copies the file's rows, as text, into the
    temporary table `table` (`store.sources.stage_raw`); the store then checks them in SQL
    (`store.checks`), inside DuckDB, since a usage file may not fit in memory.
    """

    kind: str
    source: str
    chunks: Iterable[Validated] = ()
    stage: Callable[[duckdb.DuckDBPyConnection, str], Staged] | None = None


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
    analyst_copy: str = ""  # where the load published it ("" when the caller publishes)
    late_usage: dict[str, int] = field(default_factory=dict)  # period -> late events waiting

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
    # `raw`: a change row's text, for a rejection at publish (its base version is checked then)
    "_staging_assignments": (
        f"SELECT {', '.join(ASSIGNMENT_FIELDS)}, source, line, CAST(NULL AS VARCHAR) AS raw "
        "FROM assignment_versions"
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
    clock: Clock = utc_now,
) -> LoadReport:
    """Load a whole batch: stage every file, then write every table in ONE transaction and
    record the run in `runs`. On failure no table changes; a `failed` run row is written and the
    error re-raised. `now` is the run's start and `clock` tells its end (both UTC: the caller's
    clock, read at the edge)."""
    started = now or clock()
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
                _stage_usage(con, file, stats)
        con.execute("BEGIN TRANSACTION")
        try:
            _publish(con, batch, report, clock)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except BaseException as exc:
        report.status = "failed"
        try:
            record_run(
                con,
                RunRecord(
                    report.run_id, "load", report.started_at, rows_in=None, rows_out=None,
                    message=f"{type(exc).__name__}: {exc}"[:2000], finished_at=clock(),
                ),
                "failed",
            )
        except duckdb.Error:
            pass  # the connection itself is broken: the original error is the one to report
        raise
    finally:
        _drop_staging(con)
    return report


def _drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    for name in [*_STAGING_DDL, "_accounts", "_assignments", "_bases", "_change_rejects",
                 "_usage_repeats", "_usage_clash", _SUSPECT_USAGE,
                 _CHECKED_USAGE, "_known_accounts", f"{_RAW_USAGE}_rows"]:
        try:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        except duckdb.Error:
            pass  # scratch only; the next load replaces it
    for view in (_GOOD_USAGE, f"{_RAW_USAGE}_all", _RAW_USAGE):
        try:
            con.execute(f"DROP VIEW IF EXISTS {view}")
        except duckdb.Error:
            pass


def _stage_chunk(
    con: duckdb.DuckDBPyConnection, file: FileBatch, chunk: Validated, stats: FileStats
) -> None:
    """Stage one validated chunk (accounts or assignments): its good and rejected rows."""
    stats.rows_in += chunk.valid.height + chunk.rejected.height
    if file.kind == "accounts":
        valid = chunk.valid.select(*ACCOUNT_FIELDS, pl.lit(file.source).alias("source"), "line")
    else:
        raw = pl.col("raw") if "raw" in chunk.valid.columns else pl.lit(None, pl.String)
        valid = chunk.valid.select(
            *ASSIGNMENT_FIELDS, pl.lit(file.source).alias("source"), "line", raw.alias("raw")
        )
    _insert_frame(con, _STAGE_KIND[file.kind], valid)
    stats.rejected += chunk.rejected.height
    if chunk.rejected.height:
        _insert_frame(
            con, "_staging_rejected", chunk.rejected.select("source", "line", "reason", "raw")
        )


def _insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    con.register("_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


_RAW_USAGE = "_raw_usage"
_CHECKED_USAGE = "_usage_checked"
_SUSPECT_USAGE = "_usage_suspects"


def _stage_usage(con: duckdb.DuckDBPyConnection, file: FileBatch, stats: FileStats) -> None:
    """Stage the usage file as text, check its rows in SQL, and settle the event ids met
    before: a later copy within the file is a duplicate (one of the checks); an id loaded
    earlier with the same values is unchanged, with other values it is rejected. Set-based: a
    50M-row file costs a few passes inside DuckDB, and only the rejected rows are worded.

    The rows the reader flagged good on their own (`checks.fast_flag`, nearly all) are only
    looked up: their account, and whether their id is a later copy. The full checks run on the
    other rows alone (the suspects), and the good rows are typed once, when they are published.
    """
    if file.stage is None:
        raise ValueError(f"{file.source}: a usage file is staged, not given as chunks")
    staged = file.stage(con, _RAW_USAGE)
    checks.define_macros(con)
    if staged.missing_reason is not None:
        _reject_whole(con, file.source, staged, stats)
        return
    raw = _RAW_USAGE
    if "_ok" not in [d[0] for d in con.execute(f"SELECT * FROM {raw} LIMIT 0").description]:
        # Staged without the flag: every row takes the full checks.
        raw = f"{_RAW_USAGE}_all"
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {raw} AS SELECT *, false AS _ok FROM {_RAW_USAGE}"
        )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _known_accounts AS
           SELECT account_id FROM accounts UNION SELECT account_id FROM _staging_accounts"""
    )
    checks.find_repeats(con, raw, "_usage_repeats")
    # The rows the fast flag does not vouch for, of an unknown account, or a later copy of an id.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {_SUSPECT_USAGE} AS
            SELECT r.* EXCLUDE (_ok) FROM {raw} r
            LEFT JOIN _known_accounts k ON k.account_id = r.account_id
            LEFT JOIN _usage_repeats d ON d.event_id = r.event_id
            WHERE NOT r._ok OR k.account_id IS NULL OR d.first_line < r.line"""
    )
    checks.check_usage(con, _SUSPECT_USAGE, "_known_accounts", _CHECKED_USAGE, "_usage_repeats")
    # The good rows' ids that are stored already: the same event again, or another one. The
    # fast rows are joined as text and typed only once they match a stored id.
    fast_same = " AND ".join(
        f"h._u_{c} IS NOT DISTINCT FROM {checks.fast_value(c, 'h')}" for c in USAGE_FIELDS
    )
    stored = ", ".join(f"u.{c} AS _u_{c}" for c in USAGE_FIELDS)
    known = _stored_usage_between(con, raw)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _usage_clash AS
            SELECT h.line, h.event_id,
                   CASE WHEN {fast_same} THEN 'same' ELSE 'conflict' END AS state,
                   h.first_line, h.first_source
            FROM (SELECT r.*, u.line AS first_line, u.source AS first_source, {stored}
                  FROM {raw} r JOIN {known} u ON u.event_id = r.event_id WHERE r._ok) h
            ANTI JOIN {_SUSPECT_USAGE} s ON s.line = h.line
            UNION ALL
            SELECT c.line, c.event_id,
                   CASE WHEN {_same(USAGE_FIELDS, 'u', 'c')} THEN 'same' ELSE 'conflict' END,
                   u.line, u.source
            FROM {_CHECKED_USAGE} c JOIN {known} u ON u.event_id = c.event_id
            WHERE c._bad = 0"""
    )
    rows_in = _rows(con, f"SELECT count(*) FROM {raw}")[0][0]
    bad = _rows(con, f"SELECT count(*) FROM {_CHECKED_USAGE} WHERE _bad <> 0")[0][0]
    same_rows, conflict = _rows(
        con,
        "SELECT count(*) FILTER (WHERE state = 'same'), "
        "count(*) FILTER (WHERE state = 'conflict') FROM _usage_clash",
    )[0]
    stats.rows_in += rows_in
    stats.rejected += bad + conflict
    stats.loaded += rows_in - bad - conflict
    stats.unchanged += same_rows
    reasons = checks.usage_reasons(_SUSPECT_USAGE, _CHECKED_USAGE)
    con.execute(
        f"INSERT INTO _staging_rejected SELECT ?, line, reason, raw FROM ({reasons})",
        [file.source],
    )
    if conflict:
        con.execute(
            f"""INSERT INTO _staging_rejected
                SELECT ?, r.line,
                       'event_id: duplicate event_id ' || _quoted(x._id)
                       || ' (already loaded from ' || x.first_source || ' line ' || x.first_line
                       || ' with other values)',
                       {checks.raw_text(list(INPUT_COLUMNS["usage"]))}
                FROM {raw} r
                JOIN (SELECT line AS _line, event_id AS _id, first_source, first_line
                      FROM _usage_clash WHERE state = 'conflict') x ON r.line = x._line""",
            [file.source],
        )
    # What `_publish` inserts: the fast rows that are no suspect, and the suspects found good;
    # neither when their id is stored already.
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {_GOOD_USAGE} AS
            SELECT {checks.fast_values('r')}, r.line FROM {raw} r
            ANTI JOIN {_SUSPECT_USAGE} s ON s.line = r.line
            ANTI JOIN _usage_clash c ON c.line = r.line
            WHERE r._ok
            UNION ALL
            SELECT s.event_id, s.account_id, s.service, s.destination_group, s.started_at,
                   s.quantity, s.amount, s.line
            FROM {_CHECKED_USAGE} s ANTI JOIN _usage_clash c ON c.line = s.line
            WHERE s._bad = 0"""
    )


_GOOD_USAGE = "_usage_good"


def _stored_usage_between(con: duckdb.DuckDBPyConnection, raw: str) -> str:
    """The stored usage an incoming file's ids can match, as SQL: the rows whose event_id lies
    between the file's smallest and largest id. The bounds are written in as constants, so
    DuckDB skips every row group outside them (ids grow with time in practice, and usage is
    stored in load order): a day's drop then reads about a day of history, not all of it. An id
    outside the bounds cannot equal one inside, so the result is the same whatever the ids."""
    if not _rows(con, "SELECT count(*) FROM (SELECT 1 FROM usage LIMIT 1)")[0][0]:
        return "(SELECT * FROM usage WHERE false)"  # nothing stored (a first load): no bounds
    low, high = _rows(
        con,
        f"""SELECT min(e), max(e) FROM (
                SELECT CAST(event_id AS VARCHAR) AS e FROM {raw}
                UNION ALL SELECT CAST(event_id AS VARCHAR) FROM {_CHECKED_USAGE})""",
    )[0]
    if low is None:
        return "(SELECT * FROM usage WHERE false)"
    return f"(SELECT * FROM usage WHERE event_id BETWEEN {sql_text(low)} AND {sql_text(high)})"


def _reject_whole(
    con: duckdb.DuckDBPyConnection, source: str, staged: Staged, stats: FileStats
) -> None:
    """A file whose header lacks required columns: every physical row is rejected, re-joined
    from the file's own columns in its order (SPEC §2: nothing of it is billed, nothing lost)."""
    present = [c for c in staged.header if c in INPUT_COLUMNS["usage"]]
    con.execute(
        f"""INSERT INTO _staging_rejected
            SELECT ?, line, ?, {checks.raw_text(present, extra=False)} FROM {_RAW_USAGE}""",
        [source, staged.missing_reason],
    )
    count = _rows(con, f"SELECT count(*) FROM {_RAW_USAGE}")[0][0]
    stats.rows_in += count
    stats.rejected += count
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {_GOOD_USAGE} AS
            SELECT event_id, account_id, service, destination_group, started_at, quantity,
                   amount, line FROM usage LIMIT 0"""
    )


def _publish(
    con: duckdb.DuckDBPyConnection, batch: LoadBatch, rep: LoadReport, clock: Clock
) -> None:
    """Inside the transaction: write every staged row into the real tables, and the run."""
    if batch.catalog_text is not None:
        rep.catalog = _put_catalog(con, batch.catalog_text, batch.catalog_source, rep)
    for stats in rep.files:
        if stats.kind == "accounts":
            _publish_accounts(con, rep, stats)
        elif stats.kind == "assignments":
            _publish_assignments(con, rep, stats)
    usage = next((f for f in rep.files if f.kind == "usage"), None)
    if usage is not None:
        con.execute(
            f"""INSERT INTO usage
                SELECT event_id, account_id, service, destination_group, started_at, quantity,
                       amount, ?, line, ?, ?
                FROM {_GOOD_USAGE}""",
            [usage.source, rep.run_id, rep.started_at],
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
    rep.finished_at = clock()
    rep.status = "success"
    record_run(
        con,
        RunRecord(
            rep.run_id, "load", rep.started_at, rows_in=rep.rows_in, rows_out=rep.rows_out,
            message=rep.message(), finished_at=rep.finished_at,
        ),
        "success",
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
    """A row that differs from the current version of its key becomes a new version.

    SPEC §8.1: a change row (with `effective_from`) is first checked against its assignment's
    base version as this load leaves it (`_check_changes`). Then a row equal to the current
    version of its key is `unchanged`, except the load's last row of its assignment when its
    `end_date` differs from the end date the assignment has without it (the stored one, or that
    of the load's latest new or changed row of the assignment before it): the latest delivered
    row gives the end date, so that row becomes a version again. For a row delivered alone, that
    is SPEC §8.1's rule (equal to its key's version and to the assignment's end date), and
    loading the same file twice changes nothing."""
    _check_changes(con, stats)
    key = ("c.assignment_id = b.assignment_id "
           "AND c.effective_from IS NOT DISTINCT FROM b.effective_from")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _assignments AS
        WITH current_versions AS (
            SELECT * FROM assignment_versions
            SEMI JOIN _staging_assignments USING (assignment_id)
            QUALIFY row_number() OVER (PARTITION BY assignment_id, effective_from
                                       ORDER BY load_seq DESC) = 1),
        compared AS (
            SELECT b.* EXCLUDE (raw),
                   c.assignment_id IS NOT NULL AS _known,
                   c.assignment_id IS NOT NULL
                     AND CASE WHEN b.effective_from IS NULL
                              THEN {_same(ASSIGNMENT_FIELDS, 'c', 'b')}
                              ELSE {_same(CHANGE_FIELDS, 'c', 'b')} END AS _equal,
                   row_number() OVER (PARTITION BY b.assignment_id ORDER BY b.line DESC) = 1
                     AS _last
            FROM _staging_assignments b LEFT JOIN current_versions c ON {key}),
        -- the end date the assignment has without its last row: that of the latest row before
        -- it that becomes a version, else the stored one
        ends AS (
            SELECT assignment_id, end_date FROM compared WHERE NOT _equal AND NOT _last
            QUALIFY row_number() OVER (PARTITION BY assignment_id ORDER BY line DESC) = 1)
        SELECT b.* EXCLUDE (_known, _equal, _last),
               CASE WHEN NOT b._known THEN 'new'
                    WHEN NOT b._equal THEN 'changed'
                    WHEN NOT b._last THEN 'same'
                    WHEN b.end_date IS NOT DISTINCT FROM
                         CASE WHEN e.assignment_id IS NULL THEN a.end_date ELSE e.end_date END
                    THEN 'same'
                    ELSE 'changed' END AS state
        FROM compared b
        LEFT JOIN ends e ON e.assignment_id = b.assignment_id
        LEFT JOIN assignments a ON a.assignment_id = b.assignment_id"""
    )
    con.execute(
        f"""INSERT INTO assignment_versions BY NAME
            SELECT {', '.join(ASSIGNMENT_FIELDS)},
                   (SELECT coalesce(max(load_seq), 0) FROM assignment_versions)
                     + row_number() OVER (ORDER BY line) AS load_seq,
                   source, line, ? AS run_id, ? AS loaded_at
            FROM _assignments WHERE state <> 'same' ORDER BY line""",
        [rep.run_id, rep.started_at],
    )
    _count(con, "_assignments", stats)


# Why a staged change row does not fit its base version (`b`, null when it has none), one
# clause per problem, as `field: problem` (docs/INPUTS.md).
_CHANGE_PROBLEMS = {
    "b.assignment_id IS NULL":
        "'effective_from: a change of assignment ' || _quoted(s.assignment_id) || ', which has no "
        "base version (a row without effective_from) stored or in this load'",
    "s.account_id <> b.account_id":
        "'account_id: ' || _quoted(s.account_id) || ' differs from the base version''s '"
        " || _quoted(b.account_id)",
    "s.addon_id <> b.addon_id":
        "'addon_id: ' || _quoted(s.addon_id) || ' differs from the base version''s '"
        " || _quoted(b.addon_id)",
    "s.effective_from < b.start_date":
        "'effective_from: ' || s.effective_from || ' is before the base version''s start_date '"
        " || b.start_date",
    "s.end_date < b.start_date":
        "'end_date: end before start (' || s.end_date || ' < ' || b.start_date"
        " || ', the base version''s start_date)'",
}


def _check_changes(con: duckdb.DuckDBPyConnection, stats: FileStats) -> None:
    """Reject the staged change rows that do not fit their base version (SPEC §8.1: none, or
    another account or add-on, or an `effective_from` before its `start_date`), and give the
    others their base's `start_date` and `assigned_at`. The base is the one this load leaves:
    the load's own base row of the assignment, else the stored one."""
    if not _rows(con, "SELECT count(*) FROM _staging_assignments "
                      "WHERE effective_from IS NOT NULL")[0][0]:
        return
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _bases AS
           WITH changed AS (SELECT DISTINCT assignment_id FROM _staging_assignments
                            WHERE effective_from IS NOT NULL),
           loaded AS (SELECT assignment_id, account_id, addon_id, start_date, assigned_at
                      FROM _staging_assignments SEMI JOIN changed USING (assignment_id)
                      WHERE effective_from IS NULL
                      QUALIFY row_number() OVER (PARTITION BY assignment_id
                                                 ORDER BY line DESC) = 1)
           SELECT * FROM loaded
           UNION ALL
           SELECT assignment_id, account_id, addon_id, start_date, assigned_at
           FROM assignments SEMI JOIN changed USING (assignment_id)
           ANTI JOIN loaded USING (assignment_id)"""
    )
    checks.define_macros(con)  # _quoted
    reasons = ", ".join(f"CASE WHEN {cond} THEN {text} END"
                        for cond, text in _CHANGE_PROBLEMS.items())
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _change_rejects AS
            SELECT s.source, s.line, concat_ws('; ', {reasons}) AS reason, s.raw
            FROM _staging_assignments s LEFT JOIN _bases b USING (assignment_id)
            WHERE s.effective_from IS NOT NULL
              AND ({' OR '.join(_CHANGE_PROBLEMS)})"""
    )
    rejected = _rows(con, "SELECT count(*) FROM _change_rejects")[0][0]
    if rejected:
        con.execute("INSERT INTO _staging_rejected SELECT * FROM _change_rejects")
        con.execute(
            """DELETE FROM _staging_assignments s USING _change_rejects r
               WHERE s.source = r.source AND s.line = r.line"""
        )
        stats.rejected += rejected
    con.execute(
        """UPDATE _staging_assignments s
           SET start_date = b.start_date, assigned_at = b.assigned_at
           FROM _bases b
           WHERE s.assignment_id = b.assignment_id AND s.effective_from IS NOT NULL"""
    )


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


def _of_account(account_id: str | None, where: str = "WHERE") -> tuple[str, list[str]]:
    """An optional `account_id = ?` filter: the SQL to add, and its parameter."""
    return (f"{where} account_id = ?", [account_id]) if account_id is not None else ("", [])


def read_accounts(con: duckdb.DuckDBPyConnection, account_id: str | None = None) -> pl.DataFrame:
    """Every account row (or those of one account): `account_id, currency, main_product_id,
    billing_day, status, opened_on, closed_on, effective_from`, ordered by account and
    effective_from."""
    only, params = _of_account(account_id)
    return _frame(
        con,
        f"""SELECT account_id, currency, main_product_id,
                  CAST(billing_day AS BIGINT) AS billing_day, status, opened_on, closed_on,
                  effective_from
           FROM accounts {only} ORDER BY account_id, effective_from""",
        params,
    )


def read_account_ids(con: duckdb.DuckDBPyConnection) -> pl.Series:
    """The distinct account ids stored."""
    return _frame(con, "SELECT DISTINCT account_id FROM accounts").to_series()


def read_assignments(
    con: duckdb.DuckDBPyConnection, account_id: str | None = None
) -> pl.DataFrame:
    """The current version of every assignment (or those of one account), by assignment_id."""
    only, params = _of_account(account_id)
    return _frame(
        con,
        f"""SELECT assignment_id, account_id, addon_id, fee_plan_id, start_date, end_date,
                  assigned_at, CAST(quantity AS BIGINT) AS quantity
           FROM assignments {only} ORDER BY assignment_id""",
        params,
    )


# The current version of every change (SPEC §8.1), as pipeline.contracts.CHANGE_SCHEMA; also
# what a run exports by shard (store/staging.py) and the incremental nightly hashes.
CHANGES_SQL = """SELECT assignment_id, effective_from, fee_plan_id,
       CAST(quantity AS BIGINT) AS quantity
FROM assignment_changes"""


def read_changes(con: duckdb.DuckDBPyConnection, account_id: str | None = None) -> pl.DataFrame:
    """The current version of every change of an assignment's fee plan or quantity (SPEC §8.1),
    or of one account's: `assignment_id, effective_from, fee_plan_id, quantity`
    (CHANGE_SCHEMA), ordered by assignment_id and effective_from."""
    only, params = _of_account(account_id)
    return typed(
        _frame(con, f"{CHANGES_SQL} {only} ORDER BY assignment_id, effective_from", params),
        CHANGE_SCHEMA,
    )


def read_usage(
    con: duckdb.DuckDBPyConnection, start: date, end: date, account_id: str | None = None
) -> pl.DataFrame:
    """Usage events with `start <= started_at < end` (of every account, or of one), quantity
    and amount as exact `*_units`."""
    only, params = _of_account(account_id, "AND")
    return _frame(
        con,
        f"""SELECT event_id, account_id, service, destination_group, started_at,
                  CAST(CAST(quantity AS DECIMAL(38,6)) * 1000000 AS BIGINT) AS quantity_units,
                  CAST(CAST(amount AS DECIMAL(38,6)) * 1000000 AS BIGINT) AS amount_units
           FROM usage
           WHERE started_at >= CAST(? AS TIMESTAMP) AND started_at < CAST(? AS TIMESTAMP)
             {only}
           ORDER BY started_at, event_id""",
        [start, end, *params],
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
