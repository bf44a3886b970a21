"""The key checks of the commit: no key of a results table is held by two rows (SPEC §6 grains,
docs/TABLES.md). The keys are not declared to DuckDB (pipeline.contracts `RESULT_KEYS`: a key
index costs more at each commit than the run's own writes); each commit checks, inside its
transaction and before `COMMIT`, the keys it wrote: only they can repeat, since every other
row is one an earlier run wrote and checked.

Each check groups the rows by the 64-bit hash of their key first (one narrow aggregate): equal
keys hash equally, so no repeated hash means no repeated key; only a repeated hash (a real
duplicate, or a collision) takes the exact GROUP BY of the key's columns.
"""

from __future__ import annotations

import duckdb

from pipeline.contracts import COUNTER_KEY, RESULT_KEYS
from store.counter_writes import period_list
from store.duck import scalar


def repeated_keys(
    con: duckdb.DuckDBPyConnection, table: str, written: str, where: str = ""
) -> int:
    """How many keys of `table` (pipeline.contracts `RESULT_KEYS`) among those of `written` (a
    table or a parenthesized query with the key's columns) are held by more than one row;
    `where` narrows the rows of `table` read (e.g. to the periods written)."""
    key = ", ".join(RESULT_KEYS[table])
    rows = f"(SELECT {key} FROM {table} SEMI JOIN {written} USING ({key}) {where})"
    if not scalar(con, f"SELECT count(*) FROM (SELECT hash({key}) AS h FROM {rows} "
                       "GROUP BY h HAVING count(*) > 1)"):
        return 0
    return int(scalar(con, f"SELECT count(*) FROM (SELECT {key} FROM {rows} "
                           "GROUP BY ALL HAVING count(*) > 1)"))


def _exists(con: duckdb.DuckDBPyConnection, temp_table: str) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE temporary "
                            "AND table_name = ?", [temp_table]))


def written_key_repeats(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """`table -> repeated keys` over what the run wrote (the commit's temp tables of staged
    rows), for every results table of `RESULT_KEYS` but `invoices` (checked with its lines,
    store/results.py `_check_invariants`); a table the run did not write is not read.
    Of `counter_periods`, only the periods the run wrote are read."""
    periods = (period_list(con, "SELECT period FROM _new_counters")
               if _exists(con, "_new_counters") else "")
    window = ", ".join(COUNTER_KEY)
    # table: (the keys written, the rows of the table to read, the temp tables they need)
    checks = {
        "counter_periods": ("_new_counters", f"WHERE period IN {periods}", ["_new_counters"]),
        "discount_counters": (f"(SELECT {window} FROM _new_counters "
                              f"UNION SELECT {window} FROM _shift)", "",
                              ["_new_counters", "_shift"]),
        "quota_rollovers": ("_new_parcels", "", ["_new_parcels"]),
        "assignment_lifecycles": ("_new_lifecycles", "", ["_new_lifecycles"]),
        "plan_change_verdicts": ("_new_plan_changes", "", ["_new_plan_changes"]),
        "finalized_periods": ("(SELECT account_id, period FROM _scope WHERE status = 'final')",
                              "", ["_scope"]),
        "activation_locks": ("_new_locks", "", ["_new_locks"]),
    }
    repeats: dict[str, int] = {}
    for table, (written, where, needs) in checks.items():
        if all(_exists(con, temp) for temp in needs):
            repeats[table] = repeated_keys(con, table, written, where)
    return repeats
