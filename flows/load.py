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
    raw_text_of,
    rejected_whole,
    validate_accounts,
    validate_assignments,
    validate_usage,
)
from store import FileBatch, LoadBatch, LoadReport, sources
from store.clock import utc_now

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
    known = store.read_account_ids(con)

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
            FileBatch(
                "usage", usage_file.source, _usage_or_rejected(usage_file, known, log),
                raw_lines=lambda lines: _raw_lines(usage_file, lines),
            )
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


def _usage_or_rejected(
    file: sources.InputFile, known: pl.Series, log: Callable[[str], None]
) -> Iterator[Validated]:
    """The usage chunks, or the whole file rejected when its header lacks a column. Lazy: the
    header is read while the store stages the file, so an unreadable one fails the load there
    and is recorded as a failed run."""
    if sources.missing_columns(file):
        empty = validate_usage(sources.empty_frame("usage"), source=file.source,
                               account_ids=known).valid
        yield from _rejected_chunks(file, empty, log)
    else:
        yield from _usage_chunks(file, known)


def _usage_chunks(file: sources.InputFile, known: pl.Series) -> Iterator[Validated]:
    """Validate the usage file batch by batch, so memory stays bounded, reporting progress (in
    bytes of the file; the command that runs the flow draws it)."""
    what = f"loading {file.source}"
    for batch in sources.iter_batches(file):
        yield validate_usage(batch.frame, source=file.source, account_ids=known)
        done = batch.done if file.format == "csv" else batch.done / batch.total * file.size
        progress.advance(what, int(done), int(file.size))


def _raw_lines(file: sources.InputFile, lines: pl.Series) -> pl.DataFrame:
    """The original text of some lines of `file`: a second, bounded pass over the file, made
    only when the store rejects rows itself (ids met before), stopping after the last line."""
    last = lines.max()
    parts = []
    for batch in sources.iter_batches(file):
        parts.append(raw_text_of(batch.frame, lines))
        if (batch.frame["line"].max() or 0) >= last:
            break
    return pl.concat(parts) if parts else pl.DataFrame(schema={"line": pl.Int64, "raw": pl.String})


@flow(name="billrun-load", persist_result=False, validate_parameters=False)
def load_flow(input_dir: str, db: str) -> LoadReport:
    """Load the inputs in `input_dir` into the DuckDB file `db`, and return the report."""
    logger = get_run_logger()
    logger.info(f"loading {input_dir} into {db}")
    con = store.connect(db, memory_limit=os.environ.get("BILLRUN_LOAD_MEMORY_LIMIT", "1GB"))
    try:
        report = load_directory(con, input_dir, now=utc_now(), log=logger.info)
    finally:
        con.close()
    logger.info(
        f"run {report.run_id}: rows_in={report.rows_in} loaded={report.rows_out} "
        f"rejected={report.rejected}"
    )
    return report
