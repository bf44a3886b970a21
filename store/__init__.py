"""The DuckDB store: the only package (with `flows/`) that opens the database."""

from store.clock import Clock, utc_now
from store.raw import (
    FileBatch,
    FileStats,
    LoadBatch,
    LoadReport,
    Staged,
    StoreError,
    load_batch,
    read_account_ids,
    read_accounts,
    read_assignments,
    read_catalog,
    read_catalog_text,
    read_changes,
    read_rejected,
    read_runs,
    read_usage,
)
from store.runs import RunRecord, new_run_id, record_run
from store.schema import connect, create_schema

__all__ = [
    "Clock",
    "FileBatch",
    "FileStats",
    "LoadBatch",
    "LoadReport",
    "RunRecord",
    "Staged",
    "StoreError",
    "connect",
    "create_schema",
    "load_batch",
    "new_run_id",
    "read_account_ids",
    "read_accounts",
    "read_assignments",
    "read_catalog",
    "read_catalog_text",
    "read_changes",
    "read_rejected",
    "read_runs",
    "read_usage",
    "record_run",
    "utc_now",
]
