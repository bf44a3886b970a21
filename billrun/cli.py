"""The `billrun` command line (SPEC §6). Exit codes: 0 ok, 1 run failed, 2 bad arguments or an
invalid catalog."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from billrun import summary

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_DB = "billrun.duckdb"
DEMO_DIR = "billrun-demo"
DEMO_ACCOUNTS = 200

Handler = Callable[[argparse.Namespace], int]


def _as_of(text: str) -> str:
    # Checked here (a bad date is exit 2) but passed on as text, as the handlers expect.
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from exc
    if len(text) != 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    return text


def _period(text: str) -> str:
    from pipeline.periods import parse_period

    try:
        parse_period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


# ---------------------------------------------------------------------------------------------
# load, generate, demo


def _run_load(input_dir: Path, db: Path, as_json: bool = False) -> int:
    """Check the folder and catalog up front (exit 2 at once), then run the load flow."""
    from billrun.guards import load_refusal
    from flows import prefect_env
    from pipeline.catalog import CatalogError
    from store import sources

    started = time.perf_counter()
    # Checked before any server or flow starts: a refusal writes nothing (docs/RUNS.md).
    refusal = load_refusal(input_dir, str(db))
    if refusal is not None:
        summary.error(refusal.message)
        return refusal.code
    inputs = sources.find_inputs(input_dir)
    if inputs.catalog is None and not inputs.files:  # nothing to do: say so, start nothing
        summary.warning(
            f"nothing to load: {input_dir} holds no catalog.yaml and no accounts, assignments "
            "or usage file (.csv or .parquet); nothing was written"
        )
        return EXIT_OK

    prefect_env.connect()  # the server boots while the flow's modules are imported
    from billrun.failures import release
    from flows.load import load_flow
    from store.clock import utc_now
    from store.runlock import RunInProgressError, run_lock

    since = utc_now()  # a run that fails on a full disk may have committed: see disk_full
    try:
        # One writer: the same lock as nightly.
        with run_lock(db), summary.flow_progress(), prefect_env.flow_api():
            report = load_flow(str(input_dir), str(db))
    except RunInProgressError as exc:
        summary.error(f"refused: {exc}")
        return EXIT_FAILED
    except CatalogError as exc:
        release(exc)
        summary.error(str(exc))
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001  (any failure of the run is exit 1, with its cause)
        release(exc)  # its frames hold DuckDB objects: free them (no nanobind leak report)
        from billrun.failures import committed_since, disk_full

        full = disk_full(exc) and disk_full(exc, committed_since(db, "load", since))
        summary.error(full or f"load failed, nothing was written: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    if as_json:
        import json

        from billrun.summary_json import load_json

        print(json.dumps(load_json(report, db, time.perf_counter() - started), indent=2))
    else:
        summary.print_load_report(report, db, time.perf_counter() - started)
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """`billrun load DIR [--db FILE]`."""
    return _run_load(Path(args.dir), Path(args.db), getattr(args, "json", False))


def _run_generate(
    accounts: int, out: Path, seed: int, months: int, start: str, fmt: str,
    changes: bool = True,
) -> int:
    from data.generator import generate

    started = time.perf_counter()
    with summary.progress(f"generating {accounts:,} accounts", accounts) as update:
        report = generate(
            accounts, out, seed=seed, months=months, start=start, fmt=fmt, progress=update,
            changes=changes,
        )
    summary.print_generate_report(report, time.perf_counter() - started)
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    """`billrun generate --accounts N --out DIR [--seed S] [--months M] [--start YYYY-MM]
    [--no-changes]`."""
    return _run_generate(
        args.accounts, Path(args.out), args.seed, args.months, args.start, args.format,
        changes=not args.no_changes,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """`billrun demo [--dir DIR]`: generate a small data set and bill it end to end."""
    work = Path(args.dir)
    inputs, db = work / "input", work / "billrun.duckdb"
    code = _run_generate(DEMO_ACCOUNTS, inputs, 1, 2, "2026-01", "csv")
    if code != EXIT_OK:
        return code
    from flows import prefect_env

    prefect_env.connect()
    from billrun.demo import bill_demo

    with prefect_env.flow_api():
        bill_demo(inputs, db, summary.console)
    summary.console.print(f"\n[bold green]demo done[/]: database [bold]{db.resolve()}[/]")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    """`billrun config`: the effective settings, each with its source."""
    from billrun import config

    if getattr(args, "json", False):
        import json

        from billrun.summary_json import config_json

        print(json.dumps(config_json(args.settings, config.KEYS), indent=2))
    else:
        print(config.render(args.settings))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """`billrun report [--period P] [--out FILE] [--db FILE]`."""
    from report.write import ReportError, write_report

    folder = Path(args.out).parent if args.out else None
    if folder is not None and not folder.is_dir():  # refused: no folder is made on a typo
        summary.error(f"--out {args.out}: no folder {folder}")
        return EXIT_USAGE
    try:
        path = write_report(args.db, out=args.out, period=args.period)
    except ReportError as exc:
        summary.error(str(exc))
        return exc.exit_code
    summary.console.print(f"report: [bold]{path.resolve()}[/]")
    return EXIT_OK


def cmd_sql(args: argparse.Namespace) -> int:
    """`billrun sql [--db FILE] [QUERY]`: the analyst shell on the analyst copy, read-only."""
    import duckdb

    from billrun import sql_shell

    try:
        if args.query:
            sql_shell.run_query(args.db, args.query)
        else:
            sql_shell.shell(args.db)
    except FileNotFoundError as exc:
        summary.error(str(exc))
        return EXIT_USAGE
    except duckdb.Error as exc:  # a bad QUERY is a bad argument; its first line says why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        summary.error(f"{type(exc).__name__}: {first}")
        return EXIT_USAGE
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    """`billrun preview --account ID [items] [--json]`: no flow, no write (SPEC §8.4)."""
    from billrun.explain import ExplainError
    from billrun.preview import PreviewInputError, run

    try:
        return run(args, summary.console)
    except PreviewInputError as exc:
        summary.error(str(exc))
        return EXIT_USAGE
    except ExplainError as exc:
        summary.error(str(exc))
        return exc.exit_code


def cmd_invoice(args: argparse.Namespace) -> int:
    """`billrun invoice`: one invoice as HTML, every final invoice of a period, or a list."""
    from billrun.invoice import command

    return command(args, summary.console, summary.err_console)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"billrun {version('billrun')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "billrun (not installed)"


# ---------------------------------------------------------------------------------------------
# Commands implemented in billrun.commands (by the billing stages)


def _delegate(name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        from billrun import commands
        from flows import prefect_env

        prefect_env.configure()
        return int(getattr(commands, name)(args) or 0)

    handler.__doc__ = f"`billrun {name}`, run by billrun.commands.{name}."
    return handler


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="billrun", description="Batch billing for subscription add-ons."
    )
    parser.add_argument("--config", metavar="FILE", help="configuration file (billrun.toml)")
    parser.add_argument(
        "--verbose", action="store_true",
        help="also show Prefect's own warnings and errors (tracebacks) on the console",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def add_db(p: argparse.ArgumentParser) -> None:
        # No argparse default: an unset flag falls back to env, billrun.toml, then DEFAULT_DB.
        p.add_argument("--db", help=f"DuckDB file (default {DEFAULT_DB})")
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="configuration file (default ./billrun.toml if present)")
        p.set_defaults(uses_settings=True)

    def add_run_budget(p: argparse.ArgumentParser) -> None:
        # Unset flags fall back to $BILLRUN_MEMORY_GB / _STAGING / _CLUSTER, billrun.toml, defaults.
        p.add_argument("--memory-gb", type=float, metavar="GB",
                       help="memory budget of the run in GB; sets the number of shards "
                       "(default 8 GB)")
        p.add_argument("--staging", metavar="DIR|URL",
                       help="staging folder or fsspec URL (default <db>.staging beside the db); "
                       "with --cluster ADDRESS, one every worker reaches")
        p.add_argument("--cluster", metavar="local:N|ADDRESS",
                       help="run the units on a LocalCluster of N worker processes or on the "
                       "Dask scheduler at ADDRESS, e.g. tcp://10.0.0.5:8786 (default: threads)")

    p = add("load", cmd_load, "load catalog.yaml, accounts, assignments and usage from DIR")
    p.add_argument("dir", metavar="DIR")
    add_db(p)
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON document (the contract for scripts)")

    p = add("generate", cmd_generate, "write realistic, seeded synthetic inputs")
    p.add_argument("--accounts", type=_positive, required=True, metavar="N")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=42, metavar="S")
    p.add_argument("--months", type=_positive, default=2, metavar="M")
    p.add_argument("--start", type=_period, default="2026-01", metavar="YYYY-MM")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--no-changes", action="store_true",
                   help="no SPEC 8.1 change rows (and no effective_from column) in assignments")

    p = add("demo", cmd_demo, "generate a small data set, load (and bill) it, print a summary")
    p.add_argument("--dir", default=DEMO_DIR, help=f"working folder (default ./{DEMO_DIR})")

    p = add("nightly", _delegate("nightly"), "load new inputs, draft open periods, finalize")
    p.add_argument("--as-of", type=_as_of, required=True, metavar="YYYY-MM-DD")
    p.add_argument("--input", metavar="DIR")
    add_db(p)
    p.add_argument("--conflict-policy", choices=("replace", "reject"))
    # Checked by the settings (0..31, like BILLRUN_GRACE_DAYS): a bad value is one line, exit 2.
    p.add_argument("--grace-days", metavar="G",
                   help="finalize a period only from G days after its end (0 to 31); "
                   "overrides the catalog's finalize_grace_days")
    # The flag of the setting `late_usage` (default "report"; $BILLRUN_LATE_USAGE, billrun.toml).
    p.add_argument("--adjust-late", dest="late_usage", action="store_const", const="adjust",
                   help="also reprocess, in this run, every final period that has late usage, "
                   "with adjustment lines and credit/debit notes (late_usage = \"adjust\")")
    add_run_budget(p)
    p.add_argument("--allow-future", action="store_true",
                   help="accept an --as-of beyond the horizon (finalizes periods not yet ended)")
    p.add_argument("--horizon-days", type=_days, metavar="N",
                   help="how far past today (UTC) --as-of may go (default 1, or "
                   "$BILLRUN_AS_OF_HORIZON_DAYS)")
    p.add_argument(
        "--dry-run", action="store_true",
        help="print which periods would be drafted or finalized, and for how many accounts; "
        "write nothing",
    )
    p.add_argument(
        "--full", action="store_true",
        help="recompute every draft whole, none continued from what it counted so far "
        "(same results; docs/RUNS.md, \"Incremental nightly\")",
    )
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON document (the contract for scripts)")

    p = add("reprocess", _delegate("reprocess"), "recompute one period from the stored inputs")
    p.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    add_db(p)
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON document (the contract for scripts)")
    p.add_argument("--conflict-policy", choices=("replace", "reject"))
    add_run_budget(p)

    p = add("explain", _delegate("explain"), "the decisions, lines and counters of one invoice")
    p.add_argument("--account", required=True, metavar="ID")
    p.add_argument("--period", type=_period, required=True, metavar="YYYY-MM")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (amounts as strings) instead of tables")
    add_db(p)

    p = add("preview", cmd_preview,
            "bill one account as it stands and with hypothetical changes, side by side")
    p.add_argument("--account", required=True, metavar="ID")
    p.add_argument("--add", action="append", metavar="addon=ID,plan=ID,quantity=N,start=DATE",
                   help="add an add-on (plan and quantity optional; end=DATE too)")
    p.add_argument("--end", action="append", metavar="assignment=ID,on=DATE",
                   help="end an assignment on a date")
    p.add_argument("--change", action="append",
                   metavar="assignment=ID,plan=ID,quantity=N,from=DATE",
                   help="change an assignment's fee plan and/or quantity from a date")
    p.add_argument("--periods", metavar="P[,P...]",
                   help="periods shown (default: the open period and the next)")
    p.add_argument("--as-of", metavar="YYYY-MM-DD",
                   help="bill only up to this day, as that night's draft (default: whole periods)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_db(p)

    p = add("invoice", cmd_invoice,
            "write an invoice or a note as a printable HTML page, or list an account's "
            "invoices and notes")
    p.add_argument("--account", metavar="ID")
    p.add_argument("--period", type=_period, metavar="YYYY-MM")
    p.add_argument("--all", action="store_true",
                   help="every final invoice of --period, one file each, into --out DIR")
    p.add_argument("--out", metavar="FILE|DIR",
                   help="where to write (default ./invoice-<account>-<period>.html; with --all, "
                   "the folder, default .)")
    p.add_argument("--json", action="store_true",
                   help="without --period: the list as one JSON document")
    p.add_argument("--number", metavar="NUMBER",
                   help="one document by its number: a credit or debit note (CN-..., DN-...) "
                   "as its own page (default ./note-<number>.html), or an invoice's page")
    p.add_argument("--text", action="store_true",
                   help="with --number: print the note as plain text instead")
    add_db(p)

    p = add("serve", _delegate("serve"), "run the nightly flow on a schedule (Prefect)")
    add_db(p)
    p.add_argument("--input", metavar="DIR", help="drop folder loaded by each nightly run")
    p.add_argument("--cron", metavar="EXPR", help="schedule (default: every night at 02:00)")
    p.add_argument("--adjust-late", dest="late_usage", action="store_const", const="adjust",
                   help="each night also reprocesses the final periods that have late usage "
                   "(late_usage = \"adjust\"; see nightly --adjust-late)")

    p = add("config", cmd_config, "print the effective settings and where each came from")
    add_db(p)
    p.add_argument("--json", action="store_true",
                   help="print the settings as one JSON document: each value and its source")

    p = add("report", cmd_report, "write the HTML report of a period (charts and tables)")
    p.add_argument("--period", type=_period, metavar="YYYY-MM", help="latest period shown")
    p.add_argument("--out", metavar="FILE",
                   help="where to write it (default <db>.report-<period>.html, beside the "
                        "run's own <db>.report.html, which is kept)")
    add_db(p)
    p = add("sql", cmd_sql, "query the analyst copy read-only (a prompt without QUERY)")
    add_db(p)
    p.add_argument("query", nargs="?", metavar="QUERY", help="SQL to run; prints a table")

    p = add("bench", _delegate("bench"), "run the benchmarks")
    p.add_argument("--accounts", type=_positive, default=20_000, metavar="N")
    p.add_argument("--out", metavar="DIR")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    # Not a setting (no BILLRUN_CLUSTER here): a bench measures exactly what its line says.
    p.add_argument("--cluster", metavar="local:N|ADDRESS",
                   help="run the billing steps' units on this cluster (see nightly --cluster)")
    p.add_argument("--no-changes", action="store_true",
                   help="generate no plan or quantity change rows (SPEC §8.1), for a comparison")
    return parser


# Commands that run flows: their start-up (imports, checks, the Prefect server's boot) ends at
# the flow call (flows.prefect_env.flow_api), the others' once their settings are read.
FLOW_COMMANDS = {"load", "nightly", "reprocess", "demo"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `billrun` script; returns the exit code."""
    # Start-up allocates much and frees little: no cyclic collection until it is over (it costs
    # about a fifth of import time), then collections resume (flows.prefect_env.end_start_up).
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:  # read by flows.prefect_env before Prefect is imported
        os.environ["BILLRUN_VERBOSE"] = "1"
    if args.command in FLOW_COMMANDS and not getattr(args, "dry_run", False):
        from flows import prefect_env

        # The server child imports Prefect's server while this process reads its settings and
        # runs the checks below; it is released (a server) only once they pass, and ended if
        # they refuse the command (docs/RUNS.md, "Start-up").
        prefect_env.prepare()
    if getattr(args, "uses_settings", False):
        from billrun.settings_cli import apply_settings

        try:
            apply_settings(args)
        except ValueError as exc:  # config.ConfigError: a bad key, named with its source
            summary.error(str(exc))  # soft wrap: paths stay whole
            return EXIT_USAGE
    if args.command not in FLOW_COMMANDS:
        gc.enable()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        summary.error("interrupted")
        return EXIT_FAILED
    except Exception as exc:  # the last net: an unexpected failure is one line, not a traceback
        if args.verbose:
            raise
        from billrun.failures import release

        release(exc)
        summary.error(f"{type(exc).__name__}: {exc} (run with --verbose for the traceback)")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
