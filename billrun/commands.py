"""Handlers of the billing commands (nightly, reprocess, explain, serve, bench).

Each takes the parsed argparse namespace and returns the exit code: 0 success, 1 the run failed,
2 bad arguments or an invalid catalog (SPEC §6).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from billrun.summary import error
from flows import progress
from pipeline.catalog import CatalogError
from pipeline.contracts import RUN_CHANGE_LABELS
from pipeline.periods import parse_period

console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


def _bad_argument(message: str) -> int:
    error(message, err_console)
    return 2


@contextmanager
def _progress_bar(label: str) -> Iterator[None]:
    """Draw flow progress reports as a rich bar while the block runs (plain lines off a TTY)."""
    if not err_console.is_terminal:
        from billrun.progress_lines import ProgressLines

        progress.set_reporter(ProgressLines(label, err_console.file))
        try:
            yield
        finally:
            progress.set_reporter(None)
        return
    with Progress(
        TextColumn(f"[bold]{label}[/bold] {{task.description}}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        tasks: dict[str, int] = {}

        def report(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        progress.set_reporter(report)
        try:
            yield
        finally:
            progress.set_reporter(None)


def _guarded(run: Callable[[], object], db: str | None = None,
             kind: str | None = None) -> tuple[int, object | None]:
    """Run a flow; map the failures users can act on to exit codes and clear messages. `db`
    and `kind`: where to look whether a run that failed on a full disk committed all the same."""
    from billrun.failures import release
    from store.clock import utc_now

    started, since = time.monotonic(), utc_now()
    try:
        return 0, run()
    except Exception as exc:  # a failed run: previous results stay whole (one transaction)
        release(exc)  # its frames hold DuckDB objects: free them (no nanobind leak report)
        return _failure_code(exc, time.monotonic() - started, db, kind, since), None


def _failure_code(exc: Exception, seconds: float = 0.0, db: str | None = None,
                  kind: str | None = None, since: datetime | None = None) -> int:
    """Print the one-line message of a failed run and return its exit code."""
    from store.billed import PeriodNotBilledError
    from store.runlock import RunInProgressError
    from store.sources import SourceError

    if isinstance(exc, CatalogError):
        error(f"invalid catalog: {exc}", err_console)
        return 2
    if isinstance(exc, PeriodNotBilledError | SourceError):
        return _bad_argument(str(exc))
    if isinstance(exc, RunInProgressError):
        error(f"refused: {exc}", err_console)
        return 1
    from billrun.failures import committed_since, disk_full

    full = disk_full(exc)
    if full is not None and db and kind and since is not None:
        full = disk_full(exc, committed=committed_since(db, kind, since))
    if full is not None:  # one line: where, and what was kept (SPEC §2's "bad input" cousin)
        error(full, err_console)
        return 1
    error(f"run failed after {seconds:.1f} s: {type(exc).__name__}: {exc}", err_console)
    return 1


# What the run changed, in the business's words (the keys stay in `--json`).
CHANGE_LABELS = RUN_CHANGE_LABELS


def _print_run_summary(summary: object, as_json: bool = False) -> None:
    """The short summary every billing run ends with (`--json`: one JSON document)."""
    from flows.publish import RunSummary, documents_issued, invoice_totals

    assert isinstance(summary, RunSummary)
    if as_json:
        import json

        from billrun.summary_json import run_json

        print(json.dumps(run_json(summary), indent=2))
        return
    # Folded, never cut: a path or a long line wraps inside its cell at 80 columns (cron, tee).
    table = Table(title=f"billrun {summary.kind}: {summary.run_id}", show_header=False,
                  title_justify="left")
    table.add_column("what", overflow="fold")
    table.add_column("value", overflow="fold")
    table.add_row("periods", ", ".join(summary.periods) or "none")
    table.add_row("invoices computed", f"{summary.account_periods:,}")
    table.add_row("  drafts / final", f"{summary.drafts:,} / {summary.finalized:,}")
    table.add_row("charge lines", f"{summary.charge_lines:,}")
    table.add_row("adjustment lines", f"{summary.adjustments:,}")
    for currency, text in invoice_totals(summary).items():
        table.add_row(f"invoices {currency}", text)
    for label, text in documents_issued(summary).items():
        table.add_row(label, text)
    for key, value in summary.changes.items():
        if not key.endswith("_issued") and key != "adjustments":  # shown above
            table.add_row(CHANGE_LABELS.get(key, key.replace("_", " ")), f"{value:,}")
    from store.late_usage import late_adjusted_lines, late_usage_lines

    for label, text in late_adjusted_lines(summary.late_adjusted, summary.minor_units):
        table.add_row(label, text)
    for label, text in late_usage_lines(getattr(summary, "late_usage", {})):
        table.add_row(label, text, style="yellow")
    table.add_row("analyst copy", summary.analyst_copy)
    if getattr(summary, "report", ""):
        table.add_row("run report", summary.report)
    table.add_row("time", f"{summary.seconds:.1f} s")
    console.print(table)


def _on_runner(flow: Any, args: argparse.Namespace) -> tuple[Any, str | None]:
    """The flow on the task runner of `args.cluster` (unchanged without one), and the staging
    root to give it. On a cluster a local root is made absolute (workers resolve paths from
    their own working folder); without --staging it is the default beside the db, which only
    workers on this machine or on a shared filesystem see (README, "Running on a cluster")."""
    from flows.cluster import parse_cluster, task_runner
    from flows.coordinator import DEFAULT_CONCURRENCY
    from store.staging import default_root

    cluster = getattr(args, "cluster", None)
    staging = getattr(args, "staging", None)
    spec = parse_cluster(cluster)
    if spec.kind == "threads":
        return flow, staging
    root = staging or default_root(args.db)
    if "://" not in root:
        root = str(Path(root).expanduser().resolve())
    runner = task_runner(spec, DEFAULT_CONCURRENCY)
    err_console.print(f"billrun: units run on {spec.describe()}")
    return flow.with_options(task_runner=runner), root


def nightly(args: argparse.Namespace) -> int:
    """`billrun nightly --as-of D [--input DIR] [--db FILE] [--conflict-policy P]
    [--grace-days G] [--adjust-late]`."""
    try:
        as_of = date.fromisoformat(args.as_of)
    except ValueError:
        return _bad_argument(f"--as-of {args.as_of!r} is not a date YYYY-MM-DD")
    from billrun.guards import as_of_refusal
    from store.clock import utc_now

    # The clock is read once, here at the edge, in UTC; the horizon is the resolved setting
    # (flag > BILLRUN_AS_OF_HORIZON_DAYS > billrun.toml > 1 day).
    refusal = as_of_refusal(
        as_of, utc_now().date(), args.as_of_horizon_days,
        bool(getattr(args, "allow_future", False)),
    )
    if refusal is not None:
        return _bad_argument(refusal)
    input_dir = getattr(args, "input", None)
    if input_dir is not None and not Path(input_dir).is_dir():
        return _bad_argument(f"--input {input_dir!r} is not a folder")
    if getattr(args, "dry_run", False):
        from billrun.dry_run import dry_run_command
        from flows.prefect_env import end_start_up

        end_start_up()  # no flow, so no flow_api() to end the start-up (billrun/cli.py)

        return dry_run_command(args.db, as_of, input_dir, console, err_console,
                               grace_days=getattr(args, "grace_days", None),
                               late_usage=getattr(args, "late_usage", None) or "report")
    from billrun.guards import nightly_refusal

    refused = nightly_refusal(args.db, input_dir, getattr(args, "cluster", None),
                              getattr(args, "staging", None))
    if refused is not None:  # before any server or flow starts: no runs row (docs/RUNS.md)
        error(refused.message, err_console)
        return refused.code
    from flows.prefect_env import connect, flow_api

    connect()  # the server boots while the flow's modules are imported
    from flows.nightly import nightly_flow

    try:
        flow, staging = _on_runner(nightly_flow, args)
    except ValueError as exc:  # ClusterSpecError: no API the workers reach
        return _bad_argument(str(exc))
    with _progress_bar("nightly"), flow_api():
        code, summary = _guarded(
            lambda: flow(
                as_of=as_of,
                db=args.db,
                input_dir=input_dir,
                conflict_policy=getattr(args, "conflict_policy", None),
                grace_days=getattr(args, "grace_days", None),
                memory_gb=getattr(args, "memory_gb", None),
                staging=staging,
                incremental=not getattr(args, "full", False),
                late_usage=getattr(args, "late_usage", None) or "report",
            ),
            args.db, "nightly",
        )
    if summary is not None:
        _print_run_summary(summary, getattr(args, "json", False))
    return code


def _reprocess_refusal(db: str, period: str) -> str | None:
    """Why `reprocess --period` is refused (no database, a period never billed), read before
    anything starts; None when it may run. A database a run holds now is checked by the flow,
    under the run lock."""
    import duckdb

    from store.billed import PeriodNotBilledError, require_billed

    if not Path(db).is_file():
        return f"no database at {db}: run `billrun load` and `billrun nightly` first"
    try:
        con = duckdb.connect(db, read_only=True)
    except duckdb.Error:
        return None
    try:
        require_billed(con, period)
    except PeriodNotBilledError as exc:
        return str(exc)
    except duckdb.Error:
        return None
    finally:
        con.close()
    return None


def reprocess(args: argparse.Namespace) -> int:
    """`billrun reprocess --period P [--db FILE]`."""
    try:
        parse_period(args.period)
    except ValueError as exc:
        return _bad_argument(str(exc))
    refusal = _reprocess_refusal(args.db, args.period)
    if refusal is not None:  # before any server or flow starts: no runs row (docs/RUNS.md)
        return _bad_argument(refusal)
    from billrun.guards import reprocess_refusal

    refused = reprocess_refusal(args.db, getattr(args, "cluster", None),
                                getattr(args, "staging", None))
    if refused is not None:
        error(refused.message, err_console)
        return refused.code
    from flows.prefect_env import connect, flow_api

    connect()  # the server boots while the flow's modules are imported
    from flows.reprocess import reprocess_flow

    try:
        flow, staging = _on_runner(reprocess_flow, args)
    except ValueError as exc:  # ClusterSpecError: no API the workers reach
        return _bad_argument(str(exc))
    with _progress_bar("reprocess"), flow_api():
        code, summary = _guarded(
            lambda: flow(
                period=args.period,
                db=args.db,
                conflict_policy=getattr(args, "conflict_policy", None),
                memory_gb=getattr(args, "memory_gb", None),
                staging=staging,
            ),
            args.db, "reprocess",
        )
    if summary is not None:
        _print_run_summary(summary, getattr(args, "json", False))
    return code


def explain(args: argparse.Namespace) -> int:
    """`billrun explain --account ID --period P [--db FILE]`."""
    try:
        parse_period(args.period)
    except ValueError as exc:
        return _bad_argument(str(exc))
    from billrun.explain import ExplainError, explain_invoice, explain_json

    try:
        if getattr(args, "json", False):
            import json

            print(json.dumps(explain_json(args.db, args.account, args.period), indent=2))
        else:
            explain_invoice(args.db, args.account, args.period, console)
    except ExplainError as exc:
        error(str(exc), err_console)
        return exc.exit_code
    return 0


def serve(args: argparse.Namespace) -> int:
    """`billrun serve`: a Prefect deployment of the nightly flow on a cron schedule."""
    from flows.prefect_env import configure, prefect_home
    from flows.prefect_server import ServerStartError, scheduler_api

    configure()
    log = prefect_home() / "serve-server.log"
    try:
        # Prefect's temporary server runs no scheduler: serve needs a real one (issue 13).
        with scheduler_api(log) as api_url:
            err_console.print(f"billrun: Prefect API with its scheduler at {api_url} (log {log})")
            from flows.serve import next_run_at, serve_nightly
            from store.clock import utc_now

            cron = getattr(args, "cron", None) or "0 2 * * *"
            err_console.print(
                f"billrun: serving the nightly on cron '{cron}' (UTC); next run "
                f"{next_run_at(cron, utc_now()):%Y-%m-%d %H:%M} UTC", highlight=False
            )
            serve_nightly(db=args.db, input_dir=getattr(args, "input", None), cron=cron,
                          late_usage=getattr(args, "late_usage", None) or "report")
            err_console.print("billrun: serve stopped")
    except ServerStartError as exc:
        return _bad_argument(
            f"{exc}; start one with `prefect server start` and set PREFECT_API_URL"
        )
    return 0


def bench(args: argparse.Namespace) -> int:
    """`billrun bench [--accounts N] [--out DIR] [--format F] [--cluster C]`: each step beside
    DuckDB's floor."""
    from billrun.bench import main as run_bench

    # Every step runs as its own `billrun` process, which sets up Prefect for itself.
    argv = ["--accounts", str(args.accounts), "--format", getattr(args, "format", "csv")]
    if getattr(args, "out", None):
        argv += ["--out", args.out]
    if getattr(args, "cluster", None):
        argv += ["--cluster", args.cluster]
    if getattr(args, "no_changes", False):
        argv += ["--no-changes"]
    return run_bench(argv)
