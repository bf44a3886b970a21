"""A month of nights (issue 23): a seeded random sequence of days driven through the real CLI
on a real DuckDB file, with faults on random days, and every invariant checked after each day.

One module for both sizes: `tests/soak/` runs a CI-sized campaign, `benchmarks/soak.py` a long
one with the same day generator, fault injection and checks. It lives with the tests because it
IS a test (assertions, fixtures of the flows' tests); the benchmark imports it from the source
tree, as `benchmarks/` already imports the project's packages.

- `plan_days` cuts a `billrun generate` data set into one drop per day: usage of the day (a few
  events one to six days late), accounts rows on their effective day (suspensions, main-product
  changes, new accounts), assignments on the day they were made, their SPEC §8.1 change rows on
  their effective day (some late), removals delivered as a second row with the end date on the
  end day (some late: backdated), now and then a catalog version and a reprocess.
- `plan_faults` picks fault days: a SIGKILL (at a named fault point, or after a random delay),
  a full disk (a ballast file on a size-limited tmpfs holding the database), a corrupt input
  file (one line made invalid). After a fault the day is retried without it.
- `Campaign.play` runs the days and `check_day` every invariant after each one; `equal_to_twin`
  compares the end state with a database that ran the same days without faults.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import psutil

from data.generator import below, chance
from pipeline.contracts import LINE_KEY

TAG = "BILLRUN_SOAK_TAG"  # every command's processes carry it: a survivor is found by it
CLI = [sys.executable, "-c",
       "import sys; from billrun.cli import main; sys.exit(main(sys.argv[1:]))"]
# Columns that differ between two correct runs of the same commands: run ids and clock readings.
VOLATILE = {"run_id", "loaded_at", "rejected_at", "catalog_version", "started_at", "finished_at",
            "message", "loaded_by"}
# Where a run can be frozen and killed (store/faults.py), and by which command.
POINTS = {
    "nightly": ["mid-units", "after-decisions", "mid-write", "mid-commit", "before-commit",
                "mid-publish"],
    "reprocess": ["mid-units", "mid-write", "before-commit", "mid-publish"],
    "load": [],  # no named point in a load: a random delay
}
LATE_SHARE = 0.03  # usage events delivered 1..6 days after their day
LATE_ROW_SHARE = 0.15  # account and assignment rows delivered 1..3 days late (backdated)


# ---------------------------------------------------------------------------------------------
# The days


@dataclass
class Day:
    """One night: its as-of date, its drop folder, how it is loaded, and an optional reprocess."""

    index: int
    as_of: date
    drop: Path
    via_load: bool  # `billrun load DROP` then `nightly`; else `nightly --input DROP`
    reprocess: str | None = None
    rows: dict[str, int] = field(default_factory=dict)  # data lines per file written

    def steps(self, db: Path) -> list[tuple[str, list[str]]]:
        """The day's commands, in order: (kind, arguments)."""
        night = ["nightly", "--as-of", self.as_of.isoformat(), "--db", str(db)]
        out: list[tuple[str, list[str]]] = []
        if self.via_load:
            out.append(("load", ["load", str(self.drop), "--db", str(db), "--json"]))
        elif self.drop.exists():
            night += ["--input", str(self.drop)]
        out.append(("nightly", night))
        if self.reprocess:
            out.append(("reprocess", ["reprocess", "--period", self.reprocess, "--db", str(db)]))
        return out


def _day_of(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _write(folder: Path, name: str, header: str, lines: list[str]) -> int:
    if lines:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return len(lines)


def plan_days(gen: Path, out: Path, start: date, days: int, seed: int) -> list[Day]:
    """One drop folder per day from the generated set in `gen` (see the module doc)."""
    rng = random.Random(f"days-{seed}")
    last = start + timedelta(days=days - 1)

    def when(d: date | None, late_share: float, most: int) -> date:
        if d is None or d <= start:
            return start
        if rng.random() < late_share:
            d += timedelta(days=rng.randint(1, most))
        return d

    per_day: dict[date, dict[str, list[str]]] = {}

    def put(d: date, name: str, line: str) -> None:
        if d <= last:
            per_day.setdefault(d, {}).setdefault(name, []).append(line)

    # Accounts: an account's first row on its opening day, its later rows (suspensions,
    # reactivations, main-product changes) on their effective day, some late.
    header_acc, *acc = (gen / "accounts.csv").read_text().splitlines()
    seen: set[str] = set()
    for line in acc:
        f = line.split(",")
        first = f[0] not in seen
        seen.add(f[0])
        if first:  # a new account: on its opening day, never late
            put(max(_day_of(f[5]) or start, start) if len(f) == 8 else start, "accounts.csv",
                line)
        else:
            put(when(_day_of(f[7] or f[5]) if len(f) == 8 else None, LATE_ROW_SHARE, 3),
                "accounts.csv", line)
    # Assignments: a base row on the day it was made, without its end date when it ends later;
    # the end date comes as the same row again on the end day (a removal, some late); a change
    # row on its effective day (some late), with the end date only once the removal is in.
    header_asg, *asg = (gen / "assignments.csv").read_text().splitlines()
    ends: dict[str, date] = {}
    rows = [line.split(",") for line in asg]
    for f in rows:
        if len(f) != 9 or f[8]:
            continue
        made = when(_day_of(f[6]), 0.0, 0)
        end = _day_of(f[5])
        if end is not None and end > made:
            removal = when(end, LATE_ROW_SHARE, 3)
            ends[f[0]] = removal
            put(made, "assignments.csv", ",".join([*f[:5], "", *f[6:]]))
            put(removal, "assignments.csv", ",".join(f))
        else:
            put(made, "assignments.csv", ",".join(f))
    for f in rows:
        if len(f) == 9 and not f[8]:
            continue
        d = when(_day_of(f[8]) if len(f) == 9 else None, LATE_ROW_SHARE, 3)
        removal = ends.get(f[0])
        if removal is not None and d >= removal:
            d = removal - timedelta(days=1) if removal > start else start
        if removal is not None and len(f) == 9:
            f = [*f[:5], "", *f[6:]]
        put(max(d, start), "assignments.csv", ",".join(f))
    # Usage, vectorized: each event on its day, LATE_SHARE of them 1..6 days late.
    usage = pl.read_csv(gen / "usage.csv", infer_schema=False)
    row = pl.int_range(pl.len())
    late = pl.when(chance(row, seed, "soak-late", LATE_SHARE)).then(
        below(row, seed, "soak-late-days", 6) + 1).otherwise(0)
    usage = usage.with_columns(
        pl.col("started_at").str.slice(0, 10).str.to_date(strict=False).fill_null(start)
        .clip(lower_bound=start).alias("_day"), late.alias("_late"),
    ).with_columns((pl.col("_day") + pl.duration(days=pl.col("_late"))).alias("_day"))
    catalog = (gen / "catalog.yaml").read_text(encoding="utf-8")
    out_days = []
    revision = 0
    for i in range(days):
        d = start + timedelta(days=i)
        drop = out / f"day{i:03d}"
        files = per_day.get(d, {})
        n_rows = {}
        for name, header in (("accounts.csv", header_acc), ("assignments.csv", header_asg)):
            if files.get(name):
                n_rows[name] = _write(drop, name, header, files[name])
        todays = usage.filter(pl.col("_day") == d).drop("_day", "_late")
        if todays.height:
            drop.mkdir(parents=True, exist_ok=True)
            todays.write_csv(drop / "usage.csv")
            n_rows["usage.csv"] = todays.height
        if i == 0 or rng.random() < 0.06:  # a catalog version (its text changes, it bills alike)
            drop.mkdir(parents=True, exist_ok=True)
            text = catalog if i == 0 else catalog + f"# revision {(revision := revision + 1)}\n"
            (drop / "catalog.yaml").write_text(text, encoding="utf-8")
        # Mostly `nightly --input` (one command a night); `billrun load` first on day 0 and on
        # one day in five (and on the days a corrupt file is delivered, see plan_faults).
        via_load = drop.exists() and (i == 0 or rng.random() < 0.2)
        reprocess = None
        if i >= 3 and rng.random() < 0.1:
            p = d.replace(day=1) - timedelta(days=1)
            reprocess = f"{p.year:04d}-{p.month:02d}"
        out_days.append(Day(i, d, drop, via_load, reprocess, n_rows))
    return out_days


# ---------------------------------------------------------------------------------------------
# Faults


@dataclass
class Fault:
    kind: str  # kill | disk | corrupt
    step: str  # load | nightly | reprocess
    point: str | None = None  # a named fault point (kill)
    delay: float = 0.0  # seconds before a kill without a point
    room: int = 0  # bytes left free on the disk (disk)


def plan_faults(days: list[Day], seed: int, counts: dict[str, int]) -> dict[int, Fault]:
    """`counts[kind]` faults on distinct random days (never day 0). A corrupt input needs a
    `billrun load` day with usage; such a day becomes a load day."""
    rng = random.Random(f"faults-{seed}")
    free = [d.index for d in days[1:]]
    rng.shuffle(free)
    out: dict[int, Fault] = {}
    for kind, count in counts.items():
        for _ in range(count):
            if kind == "corrupt":
                pick = next((i for i in free if "usage.csv" in days[i].rows), None)
            else:
                pick = free[0] if free else None
            if pick is None:
                break
            free.remove(pick)
            day = days[pick]
            if kind == "corrupt":
                day.via_load = True
                out[pick] = Fault("corrupt", "load")
                continue
            steps = [s for s, _ in day.steps(Path("x"))]
            step = rng.choice(steps)
            if kind == "kill":
                points = POINTS[step]
                point = rng.choice(points) if points and rng.random() < 0.6 else None
                out[pick] = Fault("kill", step, point, delay=rng.uniform(0.3, 6.0))
            else:
                out[pick] = Fault("disk", step, room=rng.choice([0, 64 << 10, 1 << 20, 4 << 20]))
    return out


# ---------------------------------------------------------------------------------------------
# Running commands


@dataclass
class Outcome:
    code: int | None  # None: killed
    stdout: str
    stderr: str
    seconds: float


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes carrying `tag` (this process excluded)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def survivors(tree: list[psutil.Process], tag: str, wait: float = 15.0) -> list[str]:
    """What is still alive of a command's tree (or carries its tag) after a grace period; each
    one is ended by its PID so that one failure does not leak into the next day."""
    deadline = time.monotonic() + wait
    while True:
        alive = {p.pid: p for p in tree if _alive(p)} | {p.pid: p for p in tagged(tag)}
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    described = []
    for proc in alive.values():
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return described


def run(args: list[str], env: dict[str, str], *, kill_marker: Path | None = None,
        kill_after: float | None = None, timeout: float = 3600) -> tuple[Outcome, list[str]]:
    """Run one billrun command with its own tag; kill it (SIGKILL, by PID) once `kill_marker`
    exists or after `kill_after` seconds. Returns its outcome and what survived it."""
    tag = uuid.uuid4().hex
    started = time.monotonic()
    proc = subprocess.Popen([*CLI, *args], env={**env, TAG: tag}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if kill_marker is None and kill_after is None:
        out, err = proc.communicate(timeout=timeout)
        return Outcome(proc.returncode, out, err, time.monotonic() - started), survivors([], tag)
    parent = psutil.Process(proc.pid)
    tree = [parent]
    while proc.poll() is None:
        try:
            for child in parent.children(recursive=True):
                if child.pid not in {p.pid for p in tree}:
                    tree.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
        if kill_marker is not None and kill_marker.exists():
            break
        if kill_after is not None and time.monotonic() - started >= kill_after:
            break
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate()
    code = None if killed else proc.returncode
    return Outcome(code, out, err, time.monotonic() - started), survivors(tree, tag)


# ---------------------------------------------------------------------------------------------
# A small disk


class SmallDisk:
    """A size-limited tmpfs holding the database, and a ballast file that fills it on demand.
    Needs root (mount); `available()` says whether this machine allows it."""

    def __init__(self, folder: Path, size_mb: int) -> None:
        self.folder, self.size_mb = folder, size_mb
        self.ballast = folder / "ballast.bin"

    @staticmethod
    def available() -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None

    def __enter__(self) -> SmallDisk:
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs",
                        str(self.folder)], check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)

    def fill(self, room: int) -> None:
        """Leave `room` bytes free (in whole 4 KiB pages)."""
        self.empty()
        free = shutil.disk_usage(self.folder).free
        size = max(free - room, 0) // 4096 * 4096
        with self.ballast.open("wb") as out:
            chunk = b"\0" * (1 << 20)
            while size > 0:
                out.write(chunk[: min(size, len(chunk))])
                size -= min(size, len(chunk))

    def empty(self) -> None:
        self.ballast.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Invariants


def _base_tables(con: duckdb.DuckDBPyConnection, catalog: str, schema: str = "main") -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND "
        "table_schema = ? AND table_type = 'BASE TABLE' ORDER BY 1", [catalog, schema]).fetchall()]


def _columns(con: duckdb.DuckDBPyConnection, catalog: str, table: str,
             schema: str = "main") -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = ? AND "
        "table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [catalog, schema, table]).fetchall()]


def _differ(con: duckdb.DuckDBPyConnection, left: str, right: str, columns: list[str]) -> int:
    """How many rows the two relations do not share (multiset difference, both ways)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    return con.execute(
        f"SELECT (SELECT count(*) FROM (SELECT {cols} FROM {left} EXCEPT ALL "
        f"SELECT {cols} FROM {right})) + (SELECT count(*) FROM (SELECT {cols} FROM {right} "
        f"EXCEPT ALL SELECT {cols} FROM {left}))").fetchone()[0]


class Memory:
    """What earlier days saw, for the checks that compare with the past: the final invoices
    and their lines, the adjustment lines and the documents issued (a DuckDB file of its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def compare_and_keep(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        con.execute(f"ATTACH '{self.path}' AS mem")
        problems = []
        try:
            keys = ", ".join(f'c."{k}"' for k in LINE_KEY)
            now = {
                "final_invoices": "SELECT account_id, period, currency, total, invoice_number, "
                                  "issued_on, due_on FROM w.invoices WHERE status = 'final'",
                "final_lines": f"SELECT {keys}, c.amount, c.quantity FROM w.charges c JOIN "
                               "w.invoices i USING (account_id, period) WHERE i.status = 'final'",
                "adjustments": "SELECT * EXCLUDE (run_id) FROM w.adjustments",
                "documents": "SELECT * EXCLUDE (run_id) FROM w.documents",
            }
            for name, sql in now.items():
                known = con.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'mem' "
                    "AND table_name = ?", [name]).fetchone()[0]
                if known:
                    gone = con.execute(
                        f"SELECT count(*) FROM (SELECT * FROM mem.{name} EXCEPT ALL ({sql}))"
                    ).fetchone()[0]
                    if gone:
                        problems.append(f"{name}: {gone} row(s) of an earlier day changed or "
                                        "vanished")
                con.execute(f"CREATE OR REPLACE TABLE mem.{name} AS {sql}")
        finally:
            con.execute("DETACH mem")
        return problems


def check_day(db: Path, memory: Memory, ledger: Counter) -> None:
    """Every per-day invariant of issue 23 but the counters' recompute (`check_counters`) and
    the processes (checked by `run`); raises AssertionError naming each broken one."""
    problems: list[str] = []
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{db}' AS w (READ_ONLY)")

        def zero(name: str, sql: str) -> None:
            ledger[f"check {name}"] += 1
            got = con.execute(sql).fetchone()[0]
            if got:
                problems.append(f"{name}: {got}")

        zero("invoice = sum of its lines",
             "SELECT count(*) FROM w.invoices i LEFT JOIN (SELECT account_id, period, "
             "sum(amount) s FROM w.charges GROUP BY ALL) c USING (account_id, period) "
             "WHERE i.total <> coalesce(c.s, 0)")
        zero("no line without its invoice",
             "SELECT count(*) FROM w.charges c ANTI JOIN w.invoices i USING (account_id, period)")
        keys = ", ".join(f'"{k}"' for k in LINE_KEY)
        zero("line key once", f"SELECT count(*) FROM (SELECT {keys} FROM w.charges GROUP BY ALL "
             "HAVING count(*) > 1)")
        zero("invoice key once", "SELECT count(*) FROM (SELECT account_id, period FROM "
             "w.invoices GROUP BY ALL HAVING count(*) > 1)")
        zero("documents gapless per kind",
             "SELECT count(*) FROM (SELECT kind, count(*) n, count(DISTINCT sequence) d, "
             "min(sequence) lo, max(sequence) hi FROM w.documents GROUP BY kind) "
             "WHERE n <> d OR lo <> 1 OR hi <> n")
        zero("document numbers unique",
             "SELECT count(*) - count(DISTINCT document_number) FROM w.documents")
        zero("each final invoice has its number",
             "SELECT count(*) FROM w.invoices i WHERE status = 'final' AND NOT EXISTS (SELECT 1 "
             "FROM w.documents d WHERE d.kind = 'invoice' AND d.document_number = "
             "i.invoice_number AND d.account_id = i.account_id AND d.period = i.period "
             "AND d.total = i.total)")
        zero("notes = sum of their lines",
             "SELECT count(*) FROM w.documents d LEFT JOIN (SELECT document_number, sum(amount) "
             "s FROM w.adjustments GROUP BY ALL) a USING (document_number) WHERE d.kind <> "
             "'invoice' AND d.total <> coalesce(a.s, 0)")
        zero("adjustments all numbered",
             "SELECT count(*) FROM w.adjustments WHERE document_number IS NULL")
        ledger["check final periods unchanged, documents never reused"] += 1
        problems += memory.compare_and_keep(con)
        problems += _published_equal(con, db, ledger)
    assert not problems, f"invariants broken after the day: {problems}"


def set_source(folder: Path, name: str) -> str | None:
    """SQL reading table or view `name` of the Parquet set `folder` (one file, or one per
    period: docs/TABLES.md, "The Parquet set"); None when the set does not hold it."""
    from store.parquet_set import relation_files

    try:
        files = relation_files(folder, name)
    except KeyError:
        return None
    if not files:  # a split table without rows: its folder's one file carries the columns
        files = sorted((folder / name).glob("*.parquet"))
    if not files:
        return None
    listed = ", ".join(f"'{f}'" for f in files)
    return f"read_parquet([{listed}], hive_partitioning = false)"


def _published_equal(con: duckdb.DuckDBPyConnection, db: Path, ledger: Counter) -> list[str]:
    """The analyst copy and the Parquet set hold the working tables of the last successful run:
    every table of the copy (and every table file of the set) equals the working table, row
    for row; `runs` up to that run (a failed run after it is in the working file only).

    One query per table reads each of the three once: their rows counted per distinct row and
    per source (`_three_way`), the same multiset comparison as EXCEPT ALL both ways, which
    would read each side twice per pair."""
    from store.parquet_set import parquet_pointer
    from store.snapshot import analyst_path

    problems = []
    copy = analyst_path(db)
    con.execute(f"ATTACH '{copy}' AS a (READ_ONLY)")
    try:
        last = con.execute("SELECT max(finished_at) FROM a.runs WHERE status = 'success'"
                           ).fetchone()[0]
        later = con.execute("SELECT count(*) FROM w.runs WHERE status = 'success' AND "
                            "finished_at > ?", [last]).fetchone()[0]
        ledger["check analyst copy = working tables"] += 1
        if later:
            problems.append(f"analyst copy: {later} successful run(s) not published")
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE "
                "table_catalog = 'w' AND table_schema = 'main' AND table_name IN (SELECT "
                "table_name FROM information_schema.tables WHERE table_catalog = 'w' AND "
                "table_schema = 'main' AND table_type = 'BASE TABLE') "
                "ORDER BY table_name, ordinal_position").fetchall():
            columns.setdefault(table, []).append(column)
        folder = Path(os.path.realpath(parquet_pointer(db)))  # one set, resolved once
        # The analyst file shows each table as a view over the set's files (store/snapshot.py):
        # every name it lists that is a working table is compared, whatever its kind.
        shown = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'a' AND "
            "table_schema = 'main' ORDER BY 1").fetchall()]
        compared = [t for t in shown if t in columns]
        ledger["tables compared with the analyst copy and the set"] += len(compared)
        if not compared:  # the check must not pass by comparing nothing
            problems.append("analyst copy: shows none of the working tables")
        for table in compared:
            mine = f"w.{table}" if table != "runs" else \
                f"(SELECT * FROM w.runs WHERE finished_at <= '{last}')"
            copy_differs, set_differs = _three_way(con, mine, f"a.{table}",
                                                   set_source(folder, table), columns[table])
            if copy_differs:
                problems.append(f"analyst copy: {table} differs from the working table")
            if set_differs:
                problems.append(f"Parquet set: {table} differs from the working table")
        ledger["check Parquet set = working tables"] += 1
    finally:
        con.execute("DETACH a")
    return problems


def _three_way(con: duckdb.DuckDBPyConnection, mine: str, copy: str, in_set: str | None,
               columns: list[str]) -> tuple[int, int]:
    """How many distinct rows `copy`, and `in_set` (if not None), hold a different number of
    times than `mine` (0, 0: the same multisets), in one pass over the three."""
    cols = ", ".join(f'"{c}"' for c in columns)
    sources = [mine, copy] + ([in_set] if in_set is not None else [])
    union = " UNION ALL ".join(f"SELECT {cols}, {i} AS _src FROM {rel}"
                               for i, rel in enumerate(sources))
    n = ", ".join(f"count(*) FILTER (WHERE _src = {i}) AS n{i}" for i in range(len(sources)))
    third = "n2" if in_set is not None else "n0"
    got = con.execute(
        f"SELECT count(*) FILTER (WHERE n0 <> n1), count(*) FILTER (WHERE n0 <> {third}) "
        f"FROM (SELECT {cols}, {n} FROM ({union}) GROUP BY ALL)").fetchone()
    return got[0], got[1]


def check_counters(db: Path, as_of: date, scratch: Path, env: dict[str, str],
                   ledger: Counter) -> None:
    """Counters equal a recompute: a copy of the database runs the same night again with
    `--full`, which recomputes every draft whole from the stored usage (no state carried from
    earlier nights); its counters, parcels, lines and invoices must equal the working ones."""
    from tests.flows.conftest import copy_database

    shutil.rmtree(scratch, ignore_errors=True)
    twin = copy_database(db, scratch / "recompute.duckdb")
    outcome, left = run(["nightly", "--as-of", as_of.isoformat(), "--db", str(twin), "--full"],
                        env)
    assert outcome.code == 0 and not left, (outcome.stderr, left)
    ledger["check counters = a whole recompute"] += 1
    differ = equal_to_twin(db, twin, set(), only={
        "discount_counters", "counter_periods", "quota_rollovers", "charges", "invoices"})
    if differ:
        raise AssertionError(f"{differ} differ from a whole recompute on {as_of}: "
                             + example_rows(db, twin, differ[0]))
    shutil.rmtree(scratch, ignore_errors=True)


def example_rows(db: Path, other: Path, table: str, n: int = 6) -> str:
    """A few rows of `table` that one database holds and the other does not, for a message."""
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{db}' AS f (READ_ONLY)")
        con.execute(f"ATTACH '{other}' AS t (READ_ONLY)")
        cols = ", ".join(f'"{c}"' for c in _columns(con, "f", table) if c not in VOLATILE)
        only = [con.execute(f"SELECT {cols} FROM {a}.{table} EXCEPT ALL SELECT {cols} FROM "
                            f"{b}.{table} ORDER BY ALL LIMIT {n}").fetchall()
                for a, b in (("f", "t"), ("t", "f"))]
    return f"only in {db.name}: {only[0]}; only in {other.name}: {only[1]}"


# ---------------------------------------------------------------------------------------------
# The campaign


def corrupt(drop: Path, target: Path, rng: random.Random) -> tuple[Path, str]:
    """A copy of `drop` whose usage.csv has one line made invalid (its quantity `1.2.3`); the
    corrupted line's text."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(drop, target)
    lines = (target / "usage.csv").read_text().splitlines()
    at = rng.randrange(1, len(lines))
    f = lines[at].split(",")
    f[5] = "1.2.3"
    lines[at] = ",".join(f)
    (target / "usage.csv").write_text("\n".join(lines) + "\n")
    return target, lines[at]


@dataclass
class Campaign:
    db: Path
    env: dict[str, str]
    faults: dict[int, Fault] = field(default_factory=dict)
    disk: SmallDisk | None = None
    counters_every: int = 5
    seed: int = 0
    log: Callable[[str], None] = print
    ledger: Counter = field(default_factory=Counter)
    corrupt_lines: set[str] = field(default_factory=set)
    found: list[str] = field(default_factory=list)  # problems met
    strict: bool = True  # raise at the first broken invariant (tests); else record, go on
    after_day: Callable[[Day], None] | None = None  # called after each day and its checks

    def __post_init__(self) -> None:
        self.memory = Memory(self.db.parent.parent / f"{self.db.stem}.memory.duckdb")
        self.rng = random.Random(f"campaign-{self.seed}")

    def play(self, days: list[Day], check: bool = True, last: bool | None = None) -> None:
        """Play `days` in order, each checked after it; `last`: whether the final one is the
        campaign's last (its counters are recomputed). Not `strict`: a broken invariant is
        recorded in `found` and the campaign goes on (a long run reports everything)."""
        for day in days:
            started, cpu = time.monotonic(), cpu_seconds()
            self.log(f"day {day.index} {day.as_of}: "
                     + ", ".join(k for k, _ in day.steps(self.db))
                     + (f", fault {self.faults[day.index]}" if day.index in self.faults else ""))
            try:
                self.play_day(day)
                commands = cpu_seconds()
                if check:
                    check_day(self.db, self.memory, self.ledger)
                    final = day is days[-1] if last is None else last and day is days[-1]
                    if self.counters_every and ((day.index + 1) % self.counters_every == 0
                                                or final):
                        scratch = self.db.parent.parent / f"{self.db.stem}.recompute"
                        check_counters(self.db, day.as_of, scratch, self.env, self.ledger)
                    self.log(f"  checks {cpu_seconds() - commands:.1f} CPU-s")
            except AssertionError as exc:
                if self.strict:
                    raise
                self.found.append(f"day {day.index}: {exc}")
                self.log(f"  FOUND: {exc}")
            self.ledger["days"] += 1
            if self.after_day is not None:
                self.after_day(day)
            self.log(f"  done in {time.monotonic() - started:.1f} s, "
                     f"{cpu_seconds() - cpu:.1f} CPU-s")

    def play_day(self, day: Day) -> None:
        fault = self.faults.get(day.index)
        for kind, args in day.steps(self.db):
            if fault is not None and fault.step == kind:
                self.inject(day, kind, args, fault)
            self.step(day, kind, args)

    def step(self, day: Day, kind: str, args: list[str]) -> Outcome:
        cpu = cpu_seconds()
        outcome, left = run(args, self.env)
        self.log(f"  {kind} {outcome.seconds:.1f} s, {cpu_seconds() - cpu:.1f} CPU-s")
        self.ledger[f"command {kind}"] += 1
        assert not left, f"day {day.index} {kind}: processes left: {left}"
        assert outcome.code == 0, f"day {day.index} {' '.join(args)}: {outcome.stderr}"
        if kind == "load":
            self.check_load(day, outcome)
        elif "--input" in args:  # the night's load: its `runs` row counts the lines delivered
            self.ledger["check rows_in = loaded + rejected"] += 1
            with duckdb.connect(str(self.db), read_only=True) as con:
                rows_in, rows_out, rejected = con.execute(
                    "SELECT r.rows_in, r.rows_out, (SELECT count(*) FROM rejected_rows x WHERE "
                    "x.run_id = r.run_id) FROM runs r WHERE kind = 'load' AND status = "
                    "'success' ORDER BY started_at DESC LIMIT 1").fetchone()
            assert rows_in == sum(day.rows.values()), (day.index, rows_in, day.rows)
            assert rows_in - rows_out >= rejected, (day.index, rows_in, rows_out, rejected)
        return outcome

    def check_load(self, day: Day, outcome: Outcome, extra_rejected: int = 0) -> None:
        """rows in = loaded + rejected for every file; rows in = the lines we delivered; the
        load's `runs` row says the same."""
        try:
            report = json.loads(outcome.stdout)
        except ValueError as exc:  # `--json` is the contract for scripts: stdout is one document
            raise AssertionError(f"day {day.index}: load --json printed more than JSON: "
                                 f"{outcome.stdout[:300]!r}") from exc
        self.ledger["check rows_in = loaded + rejected"] += 1
        for f in report["files"]:
            assert f["rows_in"] == f["loaded"] + f["rejected"], f
            assert f["rows_in"] == day.rows[f["file"]], (f, day.rows)
        with duckdb.connect(str(self.db), read_only=True) as con:
            rows_in, rows_out, rejected = con.execute(
                "SELECT r.rows_in, r.rows_out, (SELECT count(*) FROM rejected_rows x WHERE "
                "x.run_id = r.run_id) FROM runs r WHERE run_id = ?", [report["run_id"]]
            ).fetchone()
        assert rows_in == report["rows_in"] and rows_out == report["loaded"], report
        assert rows_in - rows_out >= rejected - extra_rejected, (rows_in, rows_out, rejected)

    def inject(self, day: Day, kind: str, args: list[str], fault: Fault) -> None:
        self.ledger[f"fault {fault.kind}"] += 1
        where = f"day {day.index} {kind}"
        if fault.kind == "corrupt":
            bad_drop, line = corrupt(day.drop, day.drop.with_name(day.drop.name + "-bad"),
                                     self.rng)
            self.corrupt_lines.add(line)
            outcome, left = run(["load", str(bad_drop), "--db", str(self.db), "--json"],
                                self.env)
            assert outcome.code == 0 and not left, (where, outcome.stderr, left)
            report = json.loads(outcome.stdout)
            usage = next(f for f in report["files"] if f["file"] == "usage.csv")
            assert usage["rows_in"] == usage["loaded"] + usage["rejected"]
            with duckdb.connect(str(self.db), read_only=True) as con:
                reason = con.execute("SELECT reason FROM rejected_rows WHERE raw = ?",
                                     [line]).fetchone()
            assert reason and "quantity" in reason[0], (where, line, reason)
            self.log(f"  {where}: corrupt line rejected: {reason[0]}")
            return
        if fault.kind == "kill":
            marker = self.db.parent / f".paused-{uuid.uuid4().hex}"
            env = self.env
            if fault.point:
                env = {**env, "BILLRUN_PAUSE_AT": fault.point,
                       "BILLRUN_PAUSE_MARKER": str(marker)}
            outcome, left = run(args, env, kill_marker=marker if fault.point else None,
                                kill_after=None if fault.point else fault.delay, timeout=600)
            marker.unlink(missing_ok=True)
            assert not left, f"{where}: processes left after SIGKILL: {left}"
            state = "killed" if outcome.code is None else f"ended first ({outcome.code})"
            self.ledger[f"kill {state.split()[0]}"] += 1
            self.log(f"  {where}: SIGKILL at {fault.point or f'{fault.delay:.1f} s'}: {state}")
            with duckdb.connect(str(self.db), read_only=True) as con:  # the database opens
                con.execute("SELECT count(*) FROM runs").fetchone()
            return
        assert self.disk is not None
        before = _published_state(self.db)
        self.disk.fill(fault.room)
        try:
            outcome, left = run(args, self.env)
        finally:
            self.disk.empty()
        assert not left, f"{where}: processes left after a full disk: {left}"
        if outcome.code == 0:
            self.ledger["disk fault had room enough"] += 1
            self.log(f"  {where}: disk with {fault.room} B free: the run fit")
            return
        # Progress lines (`loading usage.csv: ...`) share stderr; the message is `billrun: `'s.
        lines = [x for x in outcome.stderr.splitlines() if x.startswith("billrun: ")]
        self.log(f"  {where}: disk with {fault.room} B free: exit {outcome.code}: {lines}")
        if outcome.code != 1 or len(lines) != 1 or "disk is full" not in lines[0]:
            self.found.append(f"{where}: a full disk gave exit {outcome.code}: {lines}")
        else:
            self.ledger["disk full: exit 1, one line"] += 1
        with duckdb.connect(str(self.db), read_only=True) as con:
            con.execute("SELECT count(*) FROM runs").fetchone()
        after = _published_state(self.db)
        assert after == before, f"{where}: the full disk changed the published results"


def cpu_seconds() -> float:
    """CPU seconds (user + sys) of this process and the children it waited for."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def _published_state(db: Path) -> tuple:
    """The analyst copy's identity (inode, size, mtime) and the set the Parquet link shows."""
    from store.parquet_set import parquet_pointer
    from store.snapshot import analyst_path

    copy = analyst_path(db)
    st = copy.stat() if copy.exists() else None
    link = parquet_pointer(db)
    return (st and (st.st_ino, st.st_size, st.st_mtime_ns),
            os.path.realpath(link) if link.exists() else None)


def play_twin(days: list[Day], db: Path, env: dict[str, str],
              log: Callable[[str], None] = print, in_process: bool = False) -> None:
    """The same days on `db`, with no fault and no check: the reference. `in_process`: call
    the flows the commands call in this process, which saves each command's start (the tests'
    budget), and load a day's drop with its night (`nightly --input`, whose own load is the
    same `load_flow` without a publication of its own) where the campaign ran `billrun load`
    first: the same rows in every table, one flow and one publication fewer; else the CLI,
    the campaign's commands."""
    db.parent.mkdir(parents=True, exist_ok=True)
    for day in days:
        if in_process:
            from flows.nightly import nightly_flow
            from flows.reprocess import reprocess_flow

            nightly_flow(as_of=day.as_of, db=str(db),
                         input_dir=str(day.drop) if day.drop.exists() else None)
            if day.reprocess:
                reprocess_flow(period=str(day.reprocess), db=str(db))
        else:
            for kind, args in day.steps(db):
                outcome, left = run(args, env)
                assert outcome.code == 0 and not left, (day.index, kind, outcome.stderr, left)
        log(f"twin day {day.index} {day.as_of} done")


def equal_to_twin(db: Path, twin: Path, corrupt_lines: set[str],
                  only: set[str] | None = None) -> list[str]:
    """The tables that differ between the faulted database and its fault-free twin, row for
    row (multisets, in DuckDB), volatile columns aside (`VOLATILE`: run ids, clocks); `runs` as
    the set of successful (kind, period, as_of): the faulted database also holds the failed
    runs, and a day retried after a kill that landed after its commit runs a night twice;
    `rejected_rows` without the corrupt lines a fault injected (the retry loaded them)."""
    differ = []
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{db}' AS f (READ_ONLY)")
        con.execute(f"ATTACH '{twin}' AS t (READ_ONLY)")
        con.execute("CREATE TEMP TABLE corrupt (raw VARCHAR)")
        if corrupt_lines:
            con.executemany("INSERT INTO corrupt VALUES (?)", [[x] for x in sorted(corrupt_lines)])
        for schema in ("main", "run_state"):
            names = set(_base_tables(con, "f", schema)) | set(_base_tables(con, "t", schema))
            for table in sorted(names):
                name = table if schema == "main" else f"{schema}.{table}"
                if only is not None and name not in only:
                    continue
                cols = [c for c in _columns(con, "f", table, schema) if c not in VOLATILE]
                if cols != [c for c in _columns(con, "t", table, schema) if c not in VOLATILE]:
                    differ.append(f"{name} (columns)")
                    continue
                if not cols:  # clocks only (run_state.first_usage_mark): nothing to compare
                    continue
                if table == "runs":
                    cols = ["kind", "period", "as_of"]
                    left = ("(SELECT DISTINCT kind, period, as_of FROM f.main.runs "
                            "WHERE status = 'success')")
                    right = left.replace("f.main", "t.main")
                else:
                    left, right = f"f.{schema}.{table}", f"t.{schema}.{table}"
                    if table == "rejected_rows":
                        left = (f"(SELECT * FROM {left} WHERE raw NOT IN "
                                "(SELECT raw FROM corrupt))")
                if _differ(con, left, right, cols):
                    differ.append(name)
    return differ


# ---------------------------------------------------------------------------------------------
# Readers during publication

# One query, one snapshot: the invoices' total and their lines' total must agree (each invoice
# equals the sum of its lines), and so must the counts of invoices with and without lines
# (no line without its invoice); a reader that saw invoices of one run and charges of another
# would see them differ, since every night moves the totals.
READ_SQL = ("SELECT (SELECT coalesce(sum(total), 0) FROM {inv}) AS invoices, "
            "(SELECT coalesce(sum(amount), 0) FROM {chg}) AS lines, "
            "(SELECT count(*) FROM {inv}) AS n")


# Between two reads of one reader: without it each reader spun a whole core, which on the
# suite's two cores slowed the other tests more than it added reads. A reader's cost grows with
# the wall time of its nights (which contention stretches), not with the publications it
# watches, so the pauses are as long as still reads each publication several times: a night
# publishes once, in about a second at the suite's size, and a file reader reads every 100 ms.
# The `sql` reader starts a `billrun sql` process per read (about a CPU-second each): every
# 3 s it still reads a few times a night (the file readers carry the race with a publication).
READ_PAUSE = {"copy": 0.1, "parquet": 0.1, "sql": 3.0}


def read_loop(db: str, kind: str, stop: str, report: str) -> None:
    """Read the published results in a loop until the file `stop` exists, then write a JSON
    report: reads, errors (their texts), mixes (a query whose invoices and lines disagree) and
    the distinct totals seen. `kind`: `copy` (the analyst copy, DuckDB), `parquet` (the set,
    its link resolved once per read), `sql` (`billrun sql`, a process per read)."""
    from store.parquet_set import parquet_pointer
    from store.snapshot import analyst_path

    reads, errors, mixes, seen = 0, [], [], set()
    while not Path(stop).exists():
        try:
            if kind == "copy":
                with duckdb.connect(str(analyst_path(db)), read_only=True) as con:
                    got = con.execute(READ_SQL.format(inv="invoices", chg="charges")).fetchone()
            elif kind == "parquet":
                folder = Path(os.path.realpath(parquet_pointer(db)))
                with duckdb.connect() as con:
                    got = con.execute(READ_SQL.format(
                        inv=set_source(folder, "invoices"),
                        chg=set_source(folder, "charges"))).fetchone()
            else:
                done = subprocess.run(
                    [*CLI, "sql", "--db", db, "SELECT " + ", ".join(
                        f"({q})::VARCHAR" for q in ("SELECT coalesce(sum(total), 0) FROM invoices",
                                                    "SELECT coalesce(sum(amount), 0) FROM charges",
                                                    "SELECT count(*) FROM invoices"))],
                    capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.strip() or done.stdout.strip())
                body = [ln for ln in done.stdout.splitlines() if ln.startswith("│")][-1]
                got = tuple(cell.strip() for cell in body.strip("│").split("│"))
            reads += 1
            if str(got[0]) != str(got[1]) and float(got[0]) != float(got[1]):
                mixes.append(str(got))
            seen.add(str(got))
            time.sleep(READ_PAUSE[kind])
        except Exception as exc:  # noqa: BLE001  (every error a reader meets is the finding)
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.05)
    Path(report).write_text(json.dumps({"kind": kind, "reads": reads, "errors": errors,
                                        "mixes": mixes, "states": len(seen),
                                        "cpu": round(cpu_seconds(), 1)}))


def readers_window(days: list[Day], faults: dict[int, Fault], nights: int
                   ) -> tuple[int, int] | None:
    """Where readers read during a campaign: `nights` days in a row with no fault, after day 0
    (something is published to read), preferring a stretch with a reprocess (it publishes too).
    Returns (first, end) indexes into `days`, or None when no such stretch exists."""
    stretches = [(i, i + nights) for i in range(1, len(days) - nights + 1)
                 if not any(d.index in faults for d in days[i:i + nights])]
    with_reprocess = [w for w in stretches if any(d.reprocess for d in days[w[0]:w[1]])]
    return (with_reprocess or stretches or [None])[0]


def start_readers(db: Path, kinds: list[str], folder: Path, env: dict[str, str]
                  ) -> tuple[list[subprocess.Popen], Path, list[Path]]:
    """One reader process per kind (`read_loop`); returns them, the stop file and reports."""
    folder.mkdir(parents=True, exist_ok=True)
    stop = folder / "stop"
    reports = [folder / f"reader-{i}-{k}.json" for i, k in enumerate(kinds)]
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from tests.soak.campaign import read_loop; "
         "read_loop(*sys.argv[1:])", str(db), kind, str(stop), str(report)],
        cwd=root, env=env) for kind, report in zip(kinds, reports, strict=True)]
    return procs, stop, reports


def stop_readers(procs: list[subprocess.Popen], stop: Path, reports: list[Path]) -> list[dict]:
    """Stop the readers (by the stop file; by PID if one hangs) and return their reports."""
    stop.touch()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [json.loads(r.read_text()) if r.exists() else {"missing": str(r)} for r in reports]


def assert_readers_held(procs: list[subprocess.Popen], seen: list[dict]) -> None:
    """What readers during publication must show (issue 23): no error, no mix of two runs, a
    read each, more than one published state for the file readers (`sql` reads slowly: at
    least once), and no process left."""
    for report in seen:
        assert report.get("errors") == [] and report.get("mixes") == [], report
        assert report["reads"] > 0, report
    assert all(r["states"] > 1 for r in seen if r["kind"] != "sql"), seen
    assert [p.pid for p in procs if p.poll() is None] == []
    assert tagged("") == []
