"""The load flow: a drop folder into the store (sources → validate → store), one transaction."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

import store
from flows import prefect_env, progress
from pipeline.catalog import Catalog, CatalogError, parse_catalog
from pipeline.validate import (
    Validated,
    rejected_whole,
    validate_accounts,
    validate_assignments,
)
from store import FileBatch, LoadBatch, LoadReport, Staged, checks, sources
from store.clock import utc_now
from store.late_usage import late_usage_by_period

prefect_env.configure()

from prefect import flow, get_run_logger  # noqa: E402  (Prefect must see its env first)


def load_directory(
    con: duckdb.DuckDBPyConnection,
    input_dir: str | Path,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> LoadReport:
    """Read, validate and store every input in `input_dir`, in one transaction."""
    inputs = sources.find_inputs(input_dir)
    catalog_text = sources.read_catalog_text(inputs.catalog) if inputs.catalog else None
    catalog = _catalog(con, catalog_text, inputs)
    files: list[FileBatch] = []
    known = store.read_account_ids(con)  # for assignments; usage is checked against the store

    accounts_file = inputs.get("accounts")
    if accounts_file is not None and catalog is not None and sources.missing_columns(accounts_file):
        files.append(_rejected_file(accounts_file, validate_accounts(
            sources.empty_frame("accounts"), catalog, source=accounts_file.source,
            stored=store.read_accounts(con),
        ).valid, log))
    elif accounts_file is not None and catalog is not None:
        checked = validate_accounts(
            sources.read_all(accounts_file), catalog, source=accounts_file.source,
            stored=store.read_accounts(con),
        )
        log(f"{accounts_file.source}: {checked.valid.height} valid, {checked.rejected.height} bad")
        files.append(FileBatch("accounts", accounts_file.source, [checked]))
        known = pl.concat([known, checked.valid["account_id"]]).unique()

    assignments_file = inputs.get("assignments")
    if assignments_file is not None and catalog is not None and sources.missing_columns(
        assignments_file
    ):
        files.append(_rejected_file(assignments_file, validate_assignments(
            sources.empty_frame("assignments"), catalog, source=assignments_file.source,
            account_ids=known,
        ).valid, log))
    elif assignments_file is not None and catalog is not None:
        checked = validate_assignments(
            sources.read_all(assignments_file), catalog, source=assignments_file.source,
            account_ids=known,
        )
        log(
            f"{assignments_file.source}: {checked.valid.height} valid, "
            f"{checked.rejected.height} bad"
        )
        files.append(FileBatch("assignments", assignments_file.source, [checked]))

    usage_file = inputs.get("usage")
    if usage_file is not None:
        files.append(
            FileBatch("usage", usage_file.source, stage=lambda c, t: _stage_usage(
                c, usage_file, t, log))
        )

    source = inputs.catalog.name if inputs.catalog else sources.CATALOG_NAME
    report = store.load_batch(
        con, LoadBatch(catalog_text, source, files), run_id=run_id, now=now
    )
    for f in report.files:
        log(
            f"{f.source}: rows_in={f.rows_in} loaded={f.loaded} unchanged={f.unchanged} "
            f"rejected={f.rejected}"
        )
    return report


def _catalog(
    con: duckdb.DuckDBPyConnection, text: str | None, inputs: sources.Inputs
) -> Catalog | None:
    """The folder's catalog, else the stored one; None only when nothing needs one."""
    if text is not None:
        return parse_catalog(text, name=inputs.catalog.name if inputs.catalog else "catalog.yaml")
    if store.read_catalog_text(con) is not None:
        return store.read_catalog(con)
    needing = [f.source for k, f in inputs.files.items() if k in ("accounts", "assignments")]
    if needing:
        raise CatalogError(
            [f"<file>: {', '.join(needing)} need a catalog: put {sources.CATALOG_NAME} in "
             f"{inputs.directory} (none has been loaded before)"]
        )
    return None


def _rejected_file(
    file: sources.InputFile, empty_valid: pl.DataFrame, log: Callable[[str], None]
) -> FileBatch:
    """A file whose header lacks required columns: every row rejected, the drop goes on."""
    return FileBatch(file.kind, file.source, _rejected_chunks(file, empty_valid, log))


def _rejected_chunks(
    file: sources.InputFile, empty_valid: pl.DataFrame, log: Callable[[str], None]
) -> Iterator[Validated]:
    missing, header = sources.missing_columns(file), sources.header_of(file)
    log(f"{file.source}: header lacks {', '.join(missing)}: every row is rejected")
    for batch in sources.iter_batches(file, strict=False):
        yield rejected_whole(
            batch.frame, source=file.source, missing=missing, header=header,
            empty_valid=empty_valid,
        )


def _stage_usage(
    con: duckdb.DuckDBPyConnection, file: sources.InputFile, table: str,
    log: Callable[[str], None],
) -> Staged:
    """Copy the usage file into DuckDB as text (the store checks it there). Called by the store
    while it stages, so that an unreadable header fails the load there, recorded as failed."""
    missing = sources.missing_columns(file)
    what = f"loading {file.source}"
    sources.stage_raw(
        con, file, table, strict=not missing,
        progress=lambda done, total: progress.advance(
            what, int(done if file.format == "csv" else done / max(total, 1) * file.size),
            int(file.size),
        ),
        # Flag the rows that are good as read, while DuckDB reads them: only the others are
        # trimmed and fully checked (store/checks.py).
        flag=checks.fast_flag,
    )
    if not missing:
        return Staged()
    log(f"{file.source}: header lacks {', '.join(missing)}: every row is rejected")
    reason = "; ".join(
        f"{c}: required column missing from the header of {file.source}" for c in missing
    )
    return Staged(reason, tuple(sources.header_of(file)))


def load_memory_limit() -> str:
    """DuckDB's memory cap for a load: `BILLRUN_LOAD_MEMORY_LIMIT`, else half the run's memory
    budget (`BILLRUN_MEMORY_GB`), else 4 GB; the staged usage spills to disk beyond it."""
    explicit = os.environ.get("BILLRUN_LOAD_MEMORY_LIMIT")
    if explicit:
        return explicit
    budget = os.environ.get("BILLRUN_MEMORY_GB")
    return f"{max(float(budget) / 2, 0.5):g}GB" if budget else "4GB"


@flow(name="billrun-load", persist_result=False, validate_parameters=False)
def load_flow(input_dir: str, db: str, publish: bool = True) -> LoadReport:
    """Load the inputs in `input_dir` into the DuckDB file `db`, publish the Parquet set and its
    analyst file (only the usage months it added are written again), so that the rows it
    rejected, the accounts and the usage it loaded are in `billrun sql` at once; return the
    report. `publish=False`: the caller publishes (a
    nightly does, at its end)."""
    logger = get_run_logger()
    logger.info(f"loading {input_dir} into {db}")
    con = store.connect(db, memory_limit=load_memory_limit())
    # Past the limit DuckDB spills the staged usage beside the database, not into /tmp.
    spill = str(Path(db).with_name(Path(db).name + ".tmp")).replace("'", "''")
    con.execute(f"SET temp_directory = '{spill}'")
    try:
        report = load_directory(con, input_dir, now=utc_now(), log=logger.info)
        report.late_usage = late_usage_by_period(con)
    finally:
        con.close()
    logger.info(
        f"run {report.run_id}: rows_in={report.rows_in} loaded={report.rows_out} "
        f"rejected={report.rejected}"
    )
    if publish:
        from store.snapshot import publish_snapshot

        seconds: dict[str, float] = {}
        # A load writes no period-split table (its events are added to the usage's months).
        report.analyst_copy = str(publish_snapshot(db, report.run_id, seconds, frozenset()))
        logger.info("publish steps: %s",
                    ", ".join(f"{step} {s:.1f} s" for step, s in seconds.items()))
    return report
