"""The results as Parquet, for tools without DuckDB (pandas, Polars, Spark, BI tools), and the
folder the analyst file lives in (store/snapshot.py).

Each run publishes a new set, in its own folder under `billrun.analyst.sets/`, then swaps the
symbolic link `billrun.analyst` to it with one atomic rename. The tables that grow with the
history are split by period (`charges/period=2026-01/part_0.parquet`; the usage by the month
of `started_at`, one file per load: `usage/month=2026-01/<load run id>_0.parquet`): a run
writes again only the partitions it changed and hard-links the others from the set in place,
so its cost follows its work, not the history. The other tables and the views are one file
each (`runs.parquet`), hard-linked too when they did not change. A reader that opens
`billrun.analyst/...` therefore sees one run's complete set, never a half-written one; the
previous set is kept (a reader that resolved the link, or opened the previous analyst file,
just before a swap can finish), older ones are removed. docs/TABLES.md, "The Parquet set",
gives the layout and docs/RUNS.md the rules.

Which partitions changed is read from the tables, not trusted to the caller: every row a run
writes carries its `run_id`, so a partition changed when it holds rows of a run the previous
set did not publish, or when its row count differs from the one that set recorded (rows
removed), in that table; the invoices and adjustments, which a run numbers in place (their
rows keep their run id), write again every period found changed anywhere
(`partitions_to_write`).
The usage is only ever added to (an event is immutable once loaded: store/raw.py) and each
event is stamped with its load's start (`loaded_at`): the new loads' events are found by that
stamp's row-group statistics and added to their months as files of their own, and the events
published before are not read at all. Only if the table's row count is not the previous
set's plus those (an event deleted or replaced by hand) is every month counted, and a month
that lost or changed a row written again whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from fsspec.core import url_to_fs

from store.duck import quiet, sql_text
from store.staging import duck_url
from store.views import VIEWS

# The results tables analysts read (SPEC §6), the inputs they join them to (the accounts, the
# assignments and their history, the catalog's products and plans, the usage), then the analyst
# views, materialized. The set holds every other table of the database too (the run's own
# bookkeeping: `finalized_periods`, `counter_periods` ...), which the analyst file and
# `billrun explain` read. A table or view the database does not hold yet (a load before the
# first billing run has no catalog tables and no views) is left out of the set and its manifest.
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
ANALYST_FILE = "analyst.duckdb"  # inside each set: written by store/snapshot.py
EMPTY_FILE = "_empty.parquet"  # a split table's one file while it has no row
# DuckDB's memory while it writes the set (benchmarks/RESULTS.md, run 6).
PUBLISH_MEMORY = "1GB"
# At most this many (month, run) files are added by one plain COPY each (a load's month, a
# night's few loads); more are written by one partitioned COPY.
RUN_FILE_COPIES = 8

# Take a period's files from the units that wrote its rows (`UnitFiles`) instead of copying the
# rows out of DuckDB: off only to show, in tests, that the sets are the same.
TAKE_UNIT_FILES = True


@dataclass(frozen=True)
class UnitFiles:
    """The committing run's table-shaped files (store/unit_rows.py): `table -> period ->
    [path or URL]`, one file per unit (shard) of the period. Still in the run's staging
    folder, which the run removes when it ends: the set takes them by hard link before."""

    run_id: str
    files: dict[str, dict[str, list[str]]]


@dataclass(frozen=True)
class Split:
    """How a table is split into partitions: the folder label and the SQL giving a row's value
    (`YYYY-MM`), with `column` the one its value is read from (for the filter's pushdown)."""

    label: str
    key: str
    column: str
    bucket: str | None = None  # cheaper to group by than `key` (a month as a timestamp)
    # A table whose rows are only ever added, each stamped with the start of the run that
    # stored it (`runs.started_at`): that stamp's column. Its partitions hold one file per
    # run, and a publication finds the new runs' rows by the stamp's row-group statistics and
    # adds them as files of their own, without reading the rows published before.
    stamp: str | None = None

    def where(self, values: list[str]) -> str:
        """SQL: the rows of the partitions `values`."""
        listed = ", ".join(sql_text(v) for v in values)
        if self.key == f"strftime({self.column}, '%Y-%m')":
            # A range on the date first: DuckDB skips the row groups outside it.
            low, high = min(values), _next_month(max(values))
            return (f"{self.column} >= TIMESTAMP '{low}-01' AND {self.column} < TIMESTAMP "
                    f"'{high}-01' AND {self.key} IN ({listed})")
        return f"{self.key} IN ({listed})"


BY_PERIOD = Split("period", "period", "period")
# The tables that grow with the history, split by period; the usage by the calendar month of
# its events (an event's billing period depends on its account's billing day: a load knows
# the month, not the period). The others hold a row per account, assignment, catalog entry or
# run, whatever the history: one file each (docs/TABLES.md).
SPLITS: dict[str, Split] = {
    "charges": BY_PERIOD,
    "invoices": BY_PERIOD,
    "adjustments": BY_PERIOD,
    "decisions": BY_PERIOD,
    "documents": BY_PERIOD,
    "counter_periods": BY_PERIOD,
    "finalized_periods": BY_PERIOD,
    # A window's row holds the period of its latest value (a later period moves it).
    "discount_counters": Split(
        "period", "coalesce(period, strftime(window_start, '%Y-%m'))", "period"),
    "quota_rollovers": Split("period", "strftime(window_start, '%Y-%m')", "window_start"),
    "usage": Split("month", "strftime(started_at, '%Y-%m')", "started_at",
                   "date_trunc('month', started_at)", stamp="loaded_at"),
}
# The split tables whose rows a run may change without stamping its run id on them: a final
# invoice numbered after it was stored, an adjustment numbered by its note (store/documents.py).
# Every other split table's rows are inserted, replaced or shifted with the run's id.
IN_PLACE = frozenset({"invoices", "adjustments"})
# A view that reads the clock gives other rows on another day from the same tables.
_VOLATILE = re.compile(r"\b(current_date|current_timestamp|now|today)\b", re.IGNORECASE)
_VIEW_HEAD = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+.+?\s+AS\s+",
                        re.IGNORECASE | re.DOTALL)


def _next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def parquet_pointer(db_path: str | Path) -> Path:
    """`billrun.duckdb` -> `billrun.analyst` (the link analysts read), beside it."""
    db = Path(db_path)
    return db.with_name(f"{db.stem}.analyst")


def sets_folder(pointer: Path) -> Path:
    """Where the sets behind `pointer` live: `billrun.analyst.sets/`."""
    return pointer.with_name(f"{pointer.name}.sets")


def relation_files(folder: Path, name: str) -> list[Path]:
    """The Parquet files of table or view `name` in the set `folder`, from its manifest: one
    file, or one per partition (none for a split table without rows)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    return [folder / f for f in manifest["relations"][name]["files"]]


@dataclass
class Relation:
    """One table or view as published: its columns, its files (relative to the set), and, for a
    split one, its files by partition value."""

    name: str
    kind: str  # "table" or "view"
    columns: list[list[str]]  # [name, DuckDB type]
    rows: int = 0
    label: str | None = None  # the partition label, for a split one
    parts: dict[str, dict] = field(default_factory=dict)  # value -> {"rows", "files"}
    files: list[str] = field(default_factory=list)
    fingerprint: str | None = None  # a whole table's "rows:sum of row hashes"
    sql: str | None = None  # a view's definition
    written: list[str] = field(default_factory=list)  # partitions (or "") written anew
    # A period-split table's partitions whose rows were read to find what changed, when only
    # those were (the run's touched periods); None: every partition was counted.
    read: list[str] | None = None

    def record(self) -> dict:
        return {"kind": self.kind, "columns": self.columns, "rows": self.rows,
                "label": self.label, "parts": self.parts, "files": self.files,
                "fingerprint": self.fingerprint, "sql": self.sql, "read": self.read}


@dataclass(frozen=True)
class ParquetSet:
    """A written set, not yet pointed at: its folder and what it holds."""

    folder: Path
    relations: dict[str, Relation]
    runs: list[str]

    def written(self) -> dict[str, list[str]]:
        """`relation -> partitions written anew` ("" for a whole file), linked ones left out."""
        return {n: r.written for n, r in self.relations.items() if r.written}


def _previous_set(pointer: Path) -> tuple[Path | None, dict]:
    """The set `pointer` shows now, and its manifest (empty if it has none billrun can reuse)."""
    if not pointer.is_symlink():
        return None, {}
    folder = pointer.resolve()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None, {}
    return folder, manifest if "relations" in manifest else {}


def _new_folder(pointer: Path, tag: str | None, previous: Path | None) -> tuple[Path, str]:
    name = tag or f"set-{os.getpid()}"
    folder = sets_folder(pointer) / name
    if previous is not None and previous == folder.resolve():  # a re-run under the same tag
        name = f"{name}-{os.getpid()}"
        folder = sets_folder(pointer) / name
    if folder.exists():  # a set left by a run killed before its swap
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder, name


class _Writer:
    """Writes one set from the attached working database `work`, reusing the previous set's
    files wherever their content is the same."""

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: Path, previous: Path | None,
                 manifest: dict, units: UnitFiles | None = None) -> None:
        self.con, self.folder, self.previous = con, folder, previous
        self.before: dict[str, dict] = manifest.get("relations", {})
        self.units = units  # None: every partition to write is copied out of DuckDB

    def columns(self, name: str) -> list[list[str]]:
        return [[c, t] for c, t, *_ in self.con.execute(f'DESCRIBE SELECT * FROM "{name}"')
                .fetchall()]

    def link(self, files: list[str]) -> bool:
        """Hard-link `files` of the previous set into this one; False if one fails (the caller
        writes them)."""
        if self.previous is None:
            return False
        done: list[Path] = []
        try:
            for f in files:
                (self.folder / f).parent.mkdir(parents=True, exist_ok=True)
                os.link(self.previous / f, self.folder / f)
                done.append(self.folder / f)
        except OSError:  # another file system, a file gone: none of them, then
            for path in done:
                path.unlink(missing_ok=True)
            return False
        return True

    def partition_counts(self, name: str, split: Split, has_run: bool,
                         only: list[str] | None = None) -> dict[str, tuple]:
        """`value -> (rows, rows of runs the previous set did not publish)`, of every partition,
        or of the partitions `only` (the others' rows are not read)."""
        fresh = ("count(*) FILTER (WHERE run_id IN (SELECT run_id FROM _new_runs))"
                 if has_run else "count(*)")
        where = ""
        if only is not None:
            if not only:
                return {}
            where = f" WHERE {split.where(only)}"
        if split.bucket:  # group by the cheap bucket, then name the few groups
            sql = (f"SELECT strftime(b, '%Y-%m'), n, f FROM (SELECT {split.bucket} AS b, "
                   f'count(*) AS n, {fresh} AS f FROM "{name}"{where} GROUP BY ALL)')
        else:
            sql = f'SELECT {split.key} AS v, count(*), {fresh} FROM "{name}"{where} GROUP BY ALL'
        return {v: (n, f) for v, n, f in self.con.execute(sql).fetchall()}

    def touched_counts(self, rel: Relation, split: Split, has_run: bool,
                       touched: frozenset[str]) -> dict[str, tuple] | None:
        """`partition_counts` reading only the partitions of the periods `touched` (the ones
        the run says it wrote): every other partition keeps the previous set's count, and is
        clean. None when that cannot hold, and the caller counts every partition: the table's
        columns changed, or its row count is not the previous set's counts of the other
        partitions plus the rows counted in the touched ones (a row added or removed
        elsewhere)."""
        old = self.before.get(rel.name, {})
        if old.get("columns") != rel.columns or old.get("label") != split.label:
            return None
        counts = {v: (p["rows"], 0) for v, p in old.get("parts", {}).items()
                  if v not in touched}
        counted = self.partition_counts(rel.name, split, has_run, sorted(touched))
        (total,) = self.con.execute(f'SELECT count(*) FROM "{rel.name}"').fetchone()
        if total != sum(n for n, _ in counts.values()) + sum(n for n, _ in counted.values()):
            return None
        return {**counts, **counted}

    def write_parts(self, rel: Relation, source: str, split: Split, values: list[str],
                    only: str | None = None) -> None:
        """Write the partitions `values` of `source` (SQL) as `<name>/<label>=<value>/`: files
        `part_<i>.parquet`, or, for a stamped split, one file per run, `<run id>_<i>.parquet`.
        `only` (SQL), if given, picks the rows to add to the partitions' linked files; without
        it the partitions are written whole."""
        if not values:
            return
        if self.write_run_files(rel, source, split, values, only):
            return
        scratch = self.folder / f".{rel.name}.writing"
        where = split.where(values) + (f" AND {only}" if only else "")
        by_run = ", run_id AS _run" if split.stamp else ""
        self.con.execute(
            f"COPY (SELECT *, {split.key} AS _part{by_run} FROM ({source}) s WHERE {where})"
            f" TO {sql_text(scratch)} (FORMAT parquet, PARTITION_BY (_part{by_run and ', _run'}),"
            " FILENAME_PATTERN 'part_{i}')"
        )
        for value in values:
            made = scratch / f"_part={value}"
            if not made.is_dir():  # no row left in it
                continue
            target = self.folder / rel.name / f"{rel.label}={value}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if only is None:
                shutil.rmtree(target, ignore_errors=True)  # what a failed link left, if any
            if split.stamp:
                target.mkdir(exist_ok=True)
                _move_run_files(made, target)
            else:
                os.rename(made, target)
            rel.parts[value]["files"] = sorted(
                str(p.relative_to(self.folder)) for p in target.iterdir())
            rel.written.append(value)
        shutil.rmtree(scratch, ignore_errors=True)

    def write_run_files(self, rel: Relation, source: str, split: Split, values: list[str],
                        only: str | None) -> bool:
        """`write_parts` for a month split stamped by run (the usage): one file per (month,
        run), `<run id>_0.parquet`, each by a plain COPY of the month's range of that run's
        rows. A partitioned COPY of the same rows cost 1.5 times the CPU (benchmarks/RESULTS.md,
        "The load's phases against DuckDB's reader"). False, with nothing written, when there
        are more than `RUN_FILE_COPIES` such files: one partitioned COPY then reads the rows
        once."""
        if split.label != "month" or not split.stamp:
            return False
        picked = f" AND {only}" if only else ""
        pairs = self.con.execute(
            f"SELECT DISTINCT strftime({split.bucket or split.column}, '%Y-%m'), run_id "
            f"FROM ({source}) s WHERE {split.where(values)}{picked} ORDER BY ALL"
        ).fetchall()
        if len(pairs) > RUN_FILE_COPIES:
            return False
        scratch = self.folder / f".{rel.name}.writing"
        scratch.mkdir(parents=True, exist_ok=True)
        for value, run in pairs:
            made = scratch / f"_part={value}" / f"_run={run}" / "part_0.parquet"
            made.parent.mkdir(parents=True, exist_ok=True)
            self.con.execute(
                f"COPY (SELECT * FROM ({source}) s WHERE {split.column} >= TIMESTAMP "
                f"'{value}-01' AND {split.column} < TIMESTAMP '{_next_month(value)}-01' "
                f"{picked} AND run_id = {sql_text(run)}) TO {sql_text(made)} "
                "(FORMAT parquet)"
            )
        for value in sorted({value for value, _ in pairs}):
            target = self.folder / rel.name / f"{rel.label}={value}"
            if only is None:
                shutil.rmtree(target, ignore_errors=True)  # what a failed link left, if any
            target.mkdir(parents=True, exist_ok=True)
            _move_run_files(scratch / f"_part={value}", target)
            rel.parts[value]["files"] = sorted(
                str(p.relative_to(self.folder)) for p in target.iterdir())
            rel.written.append(value)
        shutil.rmtree(scratch, ignore_errors=True)
        return True

    def fresh_rows(self, rel: Relation, split: Split, fresh: list[str]) -> tuple[dict, str] | None:
        """For a stamped split: `(partition -> rows, SQL)` of the rows of the runs `fresh` (the
        ones the previous set did not publish), found without reading older rows: a run's rows
        are stamped with its start, so the rows stamped before the first fresh run's start are
        skipped by row group. None when the table changed otherwise, i.e. the table's rows are
        not the previous set's plus those (a row deleted or replaced, a fresh run's row stamped
        before its run started), or its columns changed: the caller then counts every
        partition."""
        old = self.before.get(rel.name, {})
        if old.get("columns") != rel.columns or old.get("label") != split.label:
            return None
        (total,) = self.con.execute(f'SELECT count(*) FROM "{rel.name}"').fetchone()
        found: dict[str, int] = {}
        where = "false"
        if fresh:
            (since,) = self.con.execute(
                "SELECT min(started_at) FROM runs WHERE run_id IN (SELECT run_id FROM _new_runs)"
            ).fetchone()
            where = (f"{split.stamp} >= TIMESTAMP '{since}' AND run_id IN "
                     f"({', '.join(sql_text(r) for r in fresh)})")
            found = dict(self.con.execute(
                f'SELECT {split.key}, count(*) FROM "{rel.name}" WHERE {where} GROUP BY ALL'
            ).fetchall())
        if total != old.get("rows", -1) + sum(found.values()):
            return None
        return found, where

    def append_table(self, rel: Relation, split: Split, found: dict[str, int], where: str) -> None:
        """Link every partition of the previous set, and add the rows `where` (SQL) picks as
        files of their own to the partitions `found` names (`value -> rows`). A partition whose
        files cannot be linked is written whole."""
        rel.label = split.label
        whole = []
        for value, part in self.before[rel.name].get("parts", {}).items():
            rel.parts[value] = {"rows": part["rows"], "files": []}
            if self.link(part["files"]):
                rel.parts[value]["files"] = list(part["files"])
            else:
                whole.append(value)
        for value, rows in found.items():
            rel.parts.setdefault(value, {"rows": 0, "files": []})["rows"] += rows
        source = f'SELECT * FROM "{rel.name}"'
        self.write_parts(rel, source, split, sorted(whole))
        self.write_parts(rel, source, split, sorted(set(found) - set(whole)), only=where)
        rel.parts = dict(sorted(rel.parts.items()))
        rel.rows = sum(part["rows"] for part in rel.parts.values())
        self.gather_files(rel)

    def file_rows(self, files: list[str]) -> int:
        """Rows of written Parquet files (read from their footers)."""
        return int(self.con.execute(
            "SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata(?)",
            [[str(self.folder / f) for f in files]]).fetchone()[0])

    def write_whole(self, rel: Relation) -> None:
        path = f"{rel.name}.parquet"
        self.con.execute(
            f'COPY (SELECT * FROM "{rel.name}") TO {sql_text(self.folder / path)} '
            "(FORMAT parquet)")
        rel.files, rel.written = [path], [""]

    def split_table(self, rel: Relation, split: Split, dirty: set[str], counts: dict) -> None:
        """Link the partitions not in `dirty` whose files the previous set has, write the rest."""
        old = self.before.get(rel.name, {})
        reuse = old.get("columns") == rel.columns and old.get("label") == split.label
        rel.label = split.label
        write = []
        for value, (rows, _) in sorted(counts.items()):
            rel.parts[value] = {"rows": rows, "files": []}
            files = old.get("parts", {}).get(value, {}).get("files") if reuse else None
            if value not in dirty and files and self.link(files):
                rel.parts[value]["files"] = files
            elif not self.take_unit_files(rel, split, value, counts[value]):
                write.append(value)
        self.write_parts(rel, f'SELECT * FROM "{rel.name}"', split, write)
        rel.rows = sum(rows for rows, _ in counts.values())
        self.gather_files(rel)

    def take_unit_files(self, rel: Relation, split: Split, value: str,
                        counted: tuple[int, int]) -> bool:
        """Make partition `value` of `rel` the committing run's own files for it (hard links,
        or copies from another file system), when it holds exactly the rows they hold; False
        (nothing left in the set) when it may not, and the caller copies it out of DuckDB.

        The partition holds exactly the rows of the files when every one of its rows is of the
        committing run (`counted`: rows, rows of runs the previous set did not publish, which
        is that run alone) and it holds as many rows as the files: the commit inserts a run's
        rows of this table from these files as they are (store/results.py), so the run's rows
        of the period are some of the files' rows, and as many are all of them. So a period a
        first night wrote, or one a night rewrote whole, is taken; one that keeps a row of an
        earlier run is copied."""
        units = self.units
        files = (units.files.get(rel.name, {}).get(value) if TAKE_UNIT_FILES and units
                 and split is BY_PERIOD else None)
        rows, fresh = counted
        if not files or rows != fresh or not rows:
            return False
        paths = [duck_url(self.con, f) for f in files]
        meta = self.con.execute(
            "SELECT file_name, num_rows FROM parquet_file_metadata(?)", [paths]).fetchall()
        # DuckDB lists the files in its own order (its threads read the footers): match by name.
        counted_rows = dict(meta)
        if sum(counted_rows.get(path, 0) for path in paths) != rows:
            return False
        full = [f for f, path in zip(files, paths, strict=True) if counted_rows.get(path)]
        for path in full:  # the table's columns, types and order, and the period's rows only
            columns = [[c, t] for c, t, *_ in self.con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({sql_text(duck_url(self.con, path))})"
            ).fetchall()]
            low, high = self.con.execute(
                "SELECT min(stats_min_value), max(stats_max_value) FROM parquet_metadata(?) "
                "WHERE path_in_schema = 'period'", [duck_url(self.con, path)]).fetchone()
            if columns != rel.columns or low != value or high != value:
                return False
        target = self.folder / rel.name / f"{rel.label}={value}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        names = [f"{units.run_id}_{i}.parquet" for i in range(len(full))]
        try:
            for path, name in zip(full, names, strict=True):
                place_file(path, target / name)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            return False
        rel.parts[value]["files"] = [str((target / n).relative_to(self.folder)) for n in names]
        rel.written.append(value)
        return True

    def gather_files(self, rel: Relation) -> None:
        """The split relation's files, partition by partition; without rows, one empty file
        with its columns (`<name>/_empty.parquet`: readers of the folder get the schema)."""
        rel.files = [f for part in rel.parts.values() for f in part["files"]]
        if not rel.files:
            path = f"{rel.name}/{EMPTY_FILE}"
            (self.folder / rel.name).mkdir(parents=True, exist_ok=True)
            self.con.execute(f'COPY (SELECT * FROM "{rel.name}" LIMIT 0) TO '
                             f"{sql_text(self.folder / path)} (FORMAT parquet)")
            rel.files = [path]

    def whole_table(self, rel: Relation) -> None:
        rows, hashes = self.con.execute(
            f'SELECT count(*), CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) FROM "{rel.name}" t'
        ).fetchone()
        rel.rows, rel.fingerprint = rows, f"{rows}:{hashes}"
        old = self.before.get(rel.name, {})
        if (old.get("fingerprint") == rel.fingerprint and old.get("columns") == rel.columns
                and old.get("label") is None and self.link(old.get("files", []))):
            rel.files = old["files"]
            return
        self.write_whole(rel)


def place_file(source: str, target: Path) -> None:
    """Put the file `source` (a path, or an fsspec URL) at `target`: a hard link when both are
    on one local file system (no byte copied, and it outlives the source's removal), else a
    copy."""
    fs, path = url_to_fs(source)
    if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        fs.get_file(path, str(target))
        return
    try:
        os.link(path, target)
    except OSError:  # another file system
        shutil.copyfile(path, target)


def _move_run_files(made: Path, target: Path) -> None:
    """Move the files DuckDB wrote for one partition, `made/_run=<run id>/part_<i>.parquet`,
    into `target` as `<run id>_<i>.parquet`, beside the files already there."""
    for path in sorted(made.glob("_run=*/*.parquet")):
        run = path.parent.name.removeprefix("_run=")
        name = f"{run}_{path.stem.removeprefix('part_')}"
        dest, n = target / f"{name}.parquet", 1
        while dest.exists():  # a linked file of that name (another run's id, once escaped)
            dest, n = target / f"{name}-{n}.parquet", n + 1
        os.rename(path, dest)


def _base_tables(node: object) -> set[str]:
    """The names of the base tables a serialized query (`json_serialize_sql`) reads."""
    if isinstance(node, dict):
        found = {str(node["table_name"])} if node.get("type") == "BASE_TABLE" else set()
        return found.union(*(_base_tables(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_base_tables(v) for v in node))
    return set()


def _view_inputs(con: duckdb.DuckDBPyConnection, views: dict[str, str],
                 tables: set[str]) -> dict[str, set[str]]:
    """Each view's tables, through the views it reads, from DuckDB's own parse of its SQL."""
    direct = {}
    for name, sql in views.items():
        query = _VIEW_HEAD.sub("", sql).rstrip().rstrip(";")
        parsed = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
        if parsed.get("error"):  # not parsed: read as if it read every table
            direct[name] = tables | set(views)
        else:
            direct[name] = _base_tables(parsed) & (tables | set(views))

    def reads(name: str, seen: frozenset[str]) -> set[str]:
        found = direct[name] & tables
        for view in (direct[name] & set(views)) - seen:
            found |= reads(view, seen | {view})
        return found

    return {name: reads(name, frozenset({name})) for name in views}


def write_parquet_set(
    source_db: str | Path, pointer: Path, tag: str | None,
    touched: frozenset[str] | None = None, units: UnitFiles | None = None,
) -> ParquetSet:
    """Write every table and view of `source_db`'s main schema into a new set folder; returns
    it. Nothing points at it yet.

    A partition, a table or a view whose content is the one the set in place holds is
    hard-linked from it (Parquet files are never modified, so two sets can share them).
    `touched`: every period the caller wrote in a period-split table (written again in every
    period-split table); only those partitions are read to find what changed, and a row count
    checks that nothing else did. None: the caller does not know, and every partition of every
    period-split table is counted. `units`: the committing run's own files, which a partition
    to write takes when it holds exactly their rows."""
    previous, manifest = _previous_set(pointer)
    folder, name = _new_folder(pointer, tag, previous)
    con = quiet(duckdb.connect())
    try:
        # The set holds the usage too (every event): unbounded, DuckDB's COPY of 46M events
        # took 4.9 GB on top of what the run's units had left in the coordinator (a 15.4 GiB
        # peak at 1M accounts); bounded, it streams in 1.1 GB at the same speed.
        con.execute(f"SET memory_limit = '{PUBLISH_MEMORY}'")
        # A partitioned COPY buffers rows per open partition: flush each at one row group, and
        # let the rows come in any order (a table is a set of rows; readers sort).
        con.execute("SET partitioned_write_flush_threshold = 122880")
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"ATTACH {sql_text(source_db)} AS work (READ_ONLY)")
        con.execute("USE work")  # the views' unqualified names bind to the working tables
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'work' "
            "AND schema_name = 'main' ORDER BY ALL").fetchall()]
        views = dict(con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'work' "
            "AND schema_name = 'main' AND NOT internal ORDER BY ALL").fetchall())
        runs = [r for (r,) in con.execute(
            "SELECT run_id FROM runs ORDER BY ALL").fetchall()] if "runs" in tables else []
        published = set(manifest.get("runs", []))
        new_runs = [r for r in runs if r not in published]
        con.execute("CREATE TEMP TABLE _new_runs AS SELECT unnest(?::VARCHAR[]) AS run_id",
                    [new_runs])
        # A partition takes the run's own files only when its new rows are the run's alone.
        own = units if units is not None and new_runs == [units.run_id] else None
        writer = _Writer(con, folder, previous, manifest, own)
        relations: dict[str, Relation] = {}
        if touched is not None and "runs" in tables and _other_writers(con, tag):
            touched = None  # a run whose publication was killed: what it wrote is not known

        # Split tables: what changed, by partition and table (`own`); the tables a run may
        # change in place take every dirty period (`dirty`).
        counts: dict[str, dict[str, tuple]] = {}
        dirty: dict[str, set[str]] = {"period": set(touched or ()), "month": set()}
        own: dict[str, set[str]] = {}
        for table in (t for t in tables if t in SPLITS):
            rel = relations[table] = Relation(table, "table", writer.columns(table))
            split = SPLITS[table]
            added = writer.fresh_rows(rel, split, new_runs) if split.stamp else None
            if added is not None:  # only rows added, by the fresh runs: the cheap way
                writer.append_table(rel, split, *added)
                continue
            has_run = any(c == "run_id" for c, _ in rel.columns)
            known = (writer.touched_counts(rel, split, has_run, touched)
                     if touched is not None and split.label == "period" else None)
            if known is not None:
                rel.read = sorted(touched or ())
            counts[table] = known if known is not None else writer.partition_counts(
                table, split, has_run)
            old = manifest.get("relations", {}).get(table, {})
            same_shape = old.get("columns") == rel.columns and old.get("label") == split.label
            old_parts = old.get("parts", {})
            own[table] = {value for value, (rows, fresh) in counts[table].items()
                          if not same_shape or fresh
                          or old_parts.get(value, {}).get("rows") != rows}
            own[table] |= set(old_parts) - set(counts[table])  # emptied partitions
            dirty[split.label] |= own[table]
        to_write = {table: partitions_to_write(table, own[table], dirty[SPLITS[table].label])
                    for table in counts}
        for table in counts:
            writer.split_table(relations[table], SPLITS[table], to_write[table], counts[table])
        for table in (t for t in tables if t not in SPLITS):
            rel = relations[table] = Relation(table, "table", writer.columns(table))
            writer.whole_table(rel)

        changed = {t for t in tables if relations[t].written}
        inputs = _view_inputs(con, views, set(tables))
        for view, sql in views.items():
            rel = relations[view] = Relation(view, "view", writer.columns(view), sql=sql)
            # Its periods changed where a table it reads changed (all of them, if one is
            # not split by period: the view is then written whole anyway).
            view_dirty = set().union(*(to_write.get(t, dirty["period"]) for t in inputs[view]
                                       if t in SPLITS))
            _write_view(writer, rel, inputs[view], changed, view_dirty, manifest)
    finally:
        con.close()
    return ParquetSet(folder, relations, runs)


def partitions_to_write(table: str, changed: set[str], dirty: set[str]) -> set[str]:
    """The partitions of split table `table` to write again: the ones whose rows changed
    (`changed`: rows of a run the previous set did not cover, or another row count), since
    every row a run inserts, rewrites or shifts carries its run id. The tables a run also
    changes in place, keeping the rows' run id (`IN_PLACE`: the document numbers of stored
    invoices and notes), take every `dirty` period: any period found changed in any table,
    and every period the run names."""
    return changed | dirty if table in IN_PLACE else changed


def _other_writers(con: duckdb.DuckDBPyConnection, tag: str | None) -> bool:
    """Whether a successful run the previous set did not publish, other than the publishing
    one (`tag`) and the loads (they write no period-split table), may have written results."""
    return bool(con.execute(
        "SELECT count(*) FROM runs WHERE run_id IN (SELECT run_id FROM _new_runs) "
        "AND run_id IS DISTINCT FROM ? AND kind <> 'load' AND status = 'success'",
        [tag]).fetchone()[0])


def _write_view(writer: _Writer, rel: Relation, reads: set[str], changed: set[str],
                dirty: set[str], manifest: dict) -> None:
    """A view with a `period` column over period-split tables is split by period too, and only
    the dirty periods are computed again; another view is one file, written again when a table
    it reads changed or it reads the clock."""
    old = manifest.get("relations", {}).get(rel.name, {})
    same = (old.get("sql") == rel.sql and old.get("columns") == rel.columns
            and not _VOLATILE.search(rel.sql or ""))
    split_reads = {t for t in reads if t in SPLITS}
    by_period = (any(c == "period" for c, _ in rel.columns) and split_reads
                 and all(SPLITS[t].label == "period" for t in split_reads))
    if not by_period:
        if same and not (reads & changed) and old.get("label") is None and writer.link(
                old.get("files", [])):
            rel.files, rel.rows = old["files"], old["rows"]
            return
        writer.write_whole(rel)
        rel.rows = writer.file_rows(rel.files)
        return
    rel.label = "period"
    # Its definition, or a whole table it reads (the catalog), changed: every period may differ.
    if not same or old.get("label") != "period" or (reads - split_reads) & changed:
        write = [v for (v,) in writer.con.execute(
            f'SELECT DISTINCT period FROM "{rel.name}" WHERE period IS NOT NULL').fetchall()]
    else:
        for value, part in old.get("parts", {}).items():
            if value not in dirty and writer.link(part["files"]):
                rel.parts[value] = part
        write = [v for v in dirty if v not in rel.parts]
    write = sorted(write)
    for value in write:
        rel.parts[value] = {"rows": 0, "files": []}
    writer.write_parts(rel, f'SELECT * FROM "{rel.name}"', BY_PERIOD, write)
    for value in write:
        if rel.parts[value]["files"]:
            rel.parts[value]["rows"] = writer.file_rows(rel.parts[value]["files"])
        else:  # the view has no row of that period (any more)
            del rel.parts[value]
    rel.parts = dict(sorted(rel.parts.items()))
    rel.rows = sum(part["rows"] for part in rel.parts.values())
    writer.gather_files(rel)


def finish_set(written: ParquetSet) -> None:
    """Write the set's manifest and flush every file of it to disk (before it is pointed at)."""
    relations = written.relations
    manifest = {
        "set": written.folder.name,
        "rows": {n: r.rows for n, r in relations.items()},
        "runs": written.runs,
        "relations": {n: r.record() for n, r in relations.items()},
    }
    (written.folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    for root, _, files in os.walk(written.folder):
        for name in files:
            with open(Path(root) / name, "rb") as handle:
                os.fsync(handle.fileno())


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
