"""The commit's write of the counters (`counter_periods`, `discount_counters`), inside the run's
transaction (store/results.py `write_results`).

A run stages one value per counter window and period it computed (`_new_counters`) and, after a
reprocess, the change of each never-reset window to roll forward (`_shift`). What it writes:
- the values that changed, and only those (a value that did not change keeps its run_id, so two
  runs over the same inputs leave the same rows): compared with the stored values of the periods
  the run computed, and only those periods are read (`period IN (...)`, which DuckDB prunes by
  the row groups' min and max: a night reads its open period's values, not the history's);
- the later periods of the shifted windows, moved by the shift;
- each written or shifted window's own row in `discount_counters`: the value of its latest
  period, compared with the stored row.

A changed row is deleted then inserted, not upserted: `INSERT OR REPLACE` needs a key index
that DuckDB maintains on every insert and writes again at each checkpoint (issue 24: most of
a night's `COMMIT`). The tables have no key index; their keys stay unique because each run
deletes every stored row of a key before inserting it, and `check_counter_keys` checks it over
the keys the run wrote before the commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import duckdb

from pipeline.contracts import COUNTER_KEY
from store.duck import scalar

_KEY = ", ".join(COUNTER_KEY)
_SAME_KEY = " AND ".join(f"t.{c} = n.{c}" for c in COUNTER_KEY)
_PERIOD = re.compile(r"\d{4}-\d{2}")


def period_list(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The distinct periods of `sql` (one column) as an SQL list of literals, `('2026-01')`:
    literals, not a subquery, so that DuckDB skips the other periods' row groups by their
    statistics. `('')` when there is none (no stored period is empty)."""
    periods = [p for (p,) in con.execute(
        f"SELECT DISTINCT p FROM ({sql}) AS t(p) WHERE p IS NOT NULL ORDER BY p").fetchall()]
    for p in periods:  # YYYY-MM text written by the run's own units; checked before inlining
        if not _PERIOD.fullmatch(p):
            raise ValueError(f"unexpected period {p!r} in the staged counters")
    return "(" + ", ".join(f"'{p}'" for p in periods or [""]) + ")"


def write_changed_counters(
    con: duckdb.DuckDBPyConnection, run_id: str, touch: Callable[[str], None]
) -> None:
    """Write the staged counter values (`_new_counters`, `_shift`) that change what is stored
    (module doc); `touch` receives the periods written (SQL, one column), for the publication."""
    periods = period_list(con, "SELECT period FROM _new_counters")
    touch("SELECT period FROM _new_counters")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _changed_counters AS
            SELECT n.* FROM _new_counters n
            LEFT JOIN (SELECT {_KEY}, period, value FROM counter_periods
                       WHERE period IN {periods}) t USING ({_KEY}, period)
            WHERE t.value IS DISTINCT FROM n.value"""
    )
    if scalar(con, "SELECT count(*) FROM _changed_counters"):
        con.execute(
            f"""DELETE FROM counter_periods t USING _changed_counters n
                WHERE t.period IN {periods} AND t.period = n.period AND {_SAME_KEY}"""
        )
        con.execute(f"INSERT INTO counter_periods BY NAME SELECT n.*, '{run_id}' AS run_id "
                    "FROM _changed_counters n")
    shifted = bool(scalar(con, "SELECT count(*) FROM _shift"))
    if shifted:
        same_window = " AND ".join(f"c.{c} = s.{c}" for c in COUNTER_KEY)
        touch(f"SELECT c.period FROM counter_periods c, _shift s "
              f"WHERE {same_window} AND c.period > s.period")
        con.execute(
            f"""UPDATE counter_periods c SET
                  value = c.value + CAST(CAST(s.delta_units AS DECIMAL(38,0)) * 0.000001
                                         AS DECIMAL(38,6)),
                  run_id = '{run_id}'
                FROM _shift s
                WHERE {same_window} AND c.period > s.period"""
        )
    _write_windows(con, run_id, touch, shifted)


def _write_windows(
    con: duckdb.DuckDBPyConnection, run_id: str, touch: Callable[[str], None], shifted: bool
) -> None:
    """Rewrite the `discount_counters` row of each window the run wrote or shifted whose latest
    value or period changed. A window's latest period is at least the earliest the run wrote
    or shifted of it, so the stored values of earlier periods are not read."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _touched_windows AS
            SELECT {_KEY}, min(period) AS since FROM (
                SELECT {_KEY}, period FROM _new_counters
                {f'UNION ALL SELECT {_KEY}, period FROM _shift' if shifted else ''})
            GROUP BY ALL"""
    )
    since = scalar(con, "SELECT min(since) FROM _touched_windows")
    if since is None:
        return
    if not _PERIOD.fullmatch(since):
        raise ValueError(f"unexpected period {since!r} in the staged counters")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _latest AS
            SELECT {_KEY}, value, period FROM counter_periods
            SEMI JOIN _touched_windows USING ({_KEY})
            WHERE period >= '{since}'
            QUALIFY row_number() OVER (PARTITION BY {_KEY} ORDER BY period DESC) = 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _stored_windows AS
            SELECT {_KEY}, value, period FROM discount_counters
            SEMI JOIN _touched_windows USING ({_KEY})"""
    )
    # A window's row moves from the partition of its old latest period to its new one.
    touch("SELECT period FROM _latest")
    touch("SELECT coalesce(period, strftime(window_start, '%Y-%m')) FROM _stored_windows")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _changed_windows AS
            SELECT l.* FROM _latest l LEFT JOIN _stored_windows d USING ({_KEY})
            WHERE d.value IS DISTINCT FROM l.value OR d.period IS DISTINCT FROM l.period"""
    )
    if not scalar(con, "SELECT count(*) FROM _changed_windows"):
        return
    con.execute(f"DELETE FROM discount_counters t USING _changed_windows n WHERE {_SAME_KEY}")
    con.execute(f"INSERT INTO discount_counters BY NAME SELECT n.*, '{run_id}' AS run_id "
                "FROM _changed_windows n")
