"""One account's stored inputs, read by account (for `billrun preview` and `explain`).

Each read is the store's own reader or SQL for every account, filtered to one: DuckDB pushes
the filter into the scan, so reading one account costs one account, not the whole database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl

from pipeline.catalog import Catalog
from pipeline.contracts import CHANGE_SCHEMA, LOCK_SCHEMA
from store.duck import frame, scalar
from store.raw import read_accounts, read_assignments, read_catalog, read_changes
from store.results import COUNTERS_BEFORE_SQL, PARCELS_BEFORE_SQL, parcels_before_params


@dataclass(frozen=True)
class AccountInputs:
    """What `bill` reads of one account, and what says which of its periods are final."""

    catalog: Catalog
    policy: str  # the conflict policy the last run billed with
    accounts: pl.DataFrame
    assignments: pl.DataFrame
    changes: pl.DataFrame  # CHANGE_SCHEMA
    locks: pl.DataFrame  # LOCK_SCHEMA
    final_periods: list[str]
    last_as_of: date | None  # of the latest successful nightly


def has_relation(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """A table or view `name` exists (an analyst copy holds the views as tables)."""
    return bool(scalar(
        con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]))


def read_account_changes(con: duckdb.DuckDBPyConnection, account_id: str) -> pl.DataFrame:
    """The current version of each change (SPEC §8.1) of the account's assignments (none in a
    database, or an analyst copy, from before changes existed)."""
    if not has_relation(con, "assignment_changes"):
        return pl.DataFrame(schema=CHANGE_SCHEMA)
    return read_changes(con, account_id)


def read_account(con: duckdb.DuckDBPyConnection, account_id: str) -> AccountInputs | None:
    """The account's stored inputs, or None when it has no row."""
    accounts = read_accounts(con, account_id)
    if accounts.height == 0:
        return None
    catalog = read_catalog(con)
    assignments = read_assignments(con, account_id)
    locks = frame(
        con,
        "SELECT l.assignment_id, l.locked_start FROM activation_locks l "
        "JOIN assignments a USING (assignment_id) WHERE a.account_id = ?",
        [account_id],
    )
    finals = frame(
        con,
        "SELECT DISTINCT period FROM invoices WHERE account_id = ? AND status = 'final' "
        "UNION SELECT DISTINCT period FROM finalized_periods WHERE account_id = ? ORDER BY 1",
        [account_id, account_id],
    )
    # The policy the last run billed with (a run may override the catalog's). A database only
    # loaded has no catalog_settings yet: the catalog's policy then.
    billed = has_relation(con, "catalog_settings")
    policy = (billed and scalar(con, "SELECT conflict_policy FROM catalog_settings")) or (
        catalog.conflict_policy
    )
    return AccountInputs(
        catalog=catalog,
        policy=str(policy),
        accounts=accounts,
        assignments=assignments,
        changes=read_account_changes(con, account_id),
        locks=locks.cast(LOCK_SCHEMA) if locks.height else pl.DataFrame(schema=LOCK_SCHEMA),
        final_periods=finals.get_column("period").to_list() if finals.height else [],
        last_as_of=scalar(con, "SELECT max(as_of) FROM runs WHERE kind = 'nightly' "
                          "AND status = 'success'"),
    )


def read_account_counters_before(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str
) -> pl.DataFrame:
    """The account's never-reset counters as they stood before `period`."""
    return frame(con, f"SELECT * FROM ({COUNTERS_BEFORE_SQL}) WHERE account_id = ?",
                 [period, account_id])


def read_account_parcels_before(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str
) -> pl.DataFrame:
    """The account's rollover parcels left at the end of the period before `period`."""
    return frame(con, f"SELECT * FROM ({PARCELS_BEFORE_SQL}) WHERE account_id = ?",
                 [*parcels_before_params(period), account_id])
