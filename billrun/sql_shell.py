"""`billrun sql [--db FILE] [QUERY]`: the analyst shell, on the analyst copy, read-only.

It uses the project's own DuckDB, so it works right after the README's install (no `duckdb`
command needed). With a QUERY it prints the result as a table and exits; without one it reads
statements (ended by `;`) from the prompt, or from standard input when that is not a terminal.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import TextIO

import duckdb

from store.duck import quiet
from store.snapshot import analyst_path

PROMPT, MORE = "billrun sql> ", "        ...> "
MAX_ROWS = 10_000
HELP = (
    "Statements end with ';'. .tables lists tables and views, .quit (or Ctrl-D) leaves.\n"
    "Start with: FROM invoice_summary;  (docs/TABLES.md describes every table and view)"
)


def _print(con: duckdb.DuckDBPyConnection, sql: str, out: TextIO) -> None:
    relation = con.sql(sql)
    if relation is None:  # a statement with no result (SET, PRAGMA ...)
        return
    out.write(_render(relation) + "\n")


def _render(relation: duckdb.DuckDBPyRelation) -> str:
    """The relation as DuckDB's box table, every row up to MAX_ROWS (`print` shows 40)."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        relation.show(max_rows=MAX_ROWS, max_width=10_000)
    return buffer.getvalue().rstrip("\n")


def open_copy(db: str | Path) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A read-only connection to the analyst copy of `db`; FileNotFoundError if there is none."""
    copy = analyst_path(db)
    if not copy.exists():
        raise FileNotFoundError(
            f"no analyst copy at {copy}: it is written by every successful "
            f"`billrun nightly` or `billrun reprocess` on {db}"
        )
    return quiet(duckdb.connect(str(copy), read_only=True)), copy


def run_query(db: str | Path, query: str, out: TextIO = sys.stdout) -> None:
    """Run one query (or several, `;`-separated) on the analyst copy and print the last result."""
    con, _ = open_copy(db)
    try:
        _print(con, query, out)
    finally:
        con.close()


def shell(db: str | Path, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    """The interactive prompt (plain statements from a pipe work too)."""
    con, copy = open_copy(db)
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        out.write(f"billrun sql on {copy} (read-only)\n{HELP}\n")
    buffer: list[str] = []
    try:
        while True:
            line = _read(stdin, interactive, MORE if buffer else PROMPT)
            if line is None:
                break
            stripped = line.strip()
            if not buffer and stripped in (".quit", ".exit", "exit", "quit"):
                break
            if not buffer and stripped in (".tables", ".help"):
                _dot(con, stripped, out)
                continue
            buffer.append(line)
            if stripped.endswith(";"):
                _execute(con, "\n".join(buffer), out)
                buffer = []
        if buffer and "".join(buffer).strip():
            _execute(con, "\n".join(buffer), out)
    finally:
        con.close()


def _read(stdin: TextIO, interactive: bool, prompt: str) -> str | None:
    if interactive:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = stdin.readline()
    return line.rstrip("\n") if line else None


def _dot(con: duckdb.DuckDBPyConnection, command: str, out: TextIO) -> None:
    if command == ".help":
        out.write(HELP + "\n")
        return
    _print(
        con,
        # The copy's own bookkeeping (billrun_meta.fingerprints) is not for analysts.
        "SELECT table_name AS name, lower(table_type) AS kind FROM information_schema.tables "
        "WHERE table_schema = 'main' ORDER BY kind, name",
        out,
    )


def _execute(con: duckdb.DuckDBPyConnection, sql: str, out: TextIO) -> None:
    # At the prompt an error is printed and the session goes on, as in the duckdb shell.
    try:
        _print(con, sql, out)
    except duckdb.Error as exc:
        out.write(f"error: {exc}\n")
