"""Rich output for the commands: summaries as tables, progress bars for long work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from data.generator import GenerateReport
    from store import LoadReport

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


@contextmanager
def progress(description: str, total: float | None) -> Iterator[Callable[[float], None]]:
    """A progress bar on a terminal, plain lines on stderr elsewhere; yields `update(completed)`."""
    if not console.is_terminal:
        from billrun.progress_lines import ProgressLines

        lines = ProgressLines(description, err_console.file)
        yield lambda completed: lines("", completed, total or 0)
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda completed: bar.update(task, completed=completed)


@contextmanager
def flow_progress() -> Iterator[None]:
    """Draw the progress a flow reports (`flows.progress`) as bars while the block runs."""
    from flows import progress as reports

    with ExitStack() as bars:
        updates: dict[str, Callable[[float], None]] = {}

        def report(what: str, done: int, total: int) -> None:
            if what not in updates:
                updates[what] = bars.enter_context(progress(what, total))
            updates[what](done)

        reports.set_reporter(report)
        try:
            yield
        finally:
            reports.set_reporter(None)


ERROR_PREFIX = "billrun: error:"


def error(message: str, console: Console | None = None) -> None:
    """Print a failure as one line on stderr, `billrun: error: ...` (every command, every kind
    of failure: the exit code says which kind)."""
    from rich.markup import escape

    (console or err_console).print(
        f"[bold red]{ERROR_PREFIX}[/] {escape(message)}", highlight=False, markup=True
    )


def warning(message: str, console: Console | None = None) -> None:
    """Print a warning as one line on stderr, `billrun: warning: ...` (the command succeeds)."""
    from rich.markup import escape

    (console or err_console).print(
        f"[bold yellow]billrun: warning:[/] {escape(message)}", highlight=False, markup=True
    )


def print_load_report(report: LoadReport, db: str | Path, seconds: float) -> None:
    """Rows in / loaded / unchanged / rejected per file, the catalog's fate and the time."""
    table = Table(title=f"billrun load  [dim]{report.run_id}[/]", title_justify="left")
    for name in ("file", "rows in", "loaded", "unchanged", "rejected"):
        table.add_column(name, justify="left" if name == "file" else "right", overflow="fold")
    for f in report.files:
        style = "yellow" if f.rejected else None
        table.add_row(
            f.source, f"{f.rows_in:,}", f"{f.loaded:,}", f"{f.unchanged:,}",
            f"{f.rejected:,}", style=style,
        )
    table.add_row(
        "total", f"{report.rows_in:,}", f"{report.rows_out:,}",
        f"{sum(f.unchanged for f in report.files):,}", f"{report.rejected:,}", style="bold",
    )
    console.print(table)
    console.print(f"catalog: {report.catalog}")
    if report.rejected:
        console.print(
            f"[yellow]{report.rejected:,} row(s) rejected[/]: see table [bold]rejected_rows[/]"
        )
    from store.late_usage import late_usage_lines

    for label, text in late_usage_lines(getattr(report, "late_usage", {})):
        console.print(f"[yellow]{label}[/]: {text}", highlight=False)
    if getattr(report, "analyst_copy", ""):
        console.print(f"analyst copy: {report.analyst_copy}")
    console.print(f"database: [bold]{db}[/]   time: {seconds:.1f} s")


def print_generate_report(report: GenerateReport, seconds: float) -> None:
    """Rows and deliberately bad rows per generated file, and the time."""
    table = Table(title=f"billrun generate  [dim]{report.out}[/]", title_justify="left")
    for name in ("file", "rows", "bad rows (on purpose)"):
        table.add_column(name, justify="left" if name == "file" else "right")
    for name, rows in report.rows.items():
        table.add_row(name, f"{rows:,}", f"{report.bad.get(name, 0):,}")
    console.print(table)
    changes = getattr(report, "changes", 0)
    if changes:
        console.print(f"{changes:,} of the assignments rows are changes (effective_from set)")
    console.print(
        f"{report.accounts:,} accounts, {report.months} month(s) from {report.start}, "
        f"seed {report.seed}   time: {seconds:.1f} s"
    )
