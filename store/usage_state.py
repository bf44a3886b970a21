"""The incremental nightly's state (docs/RUNS.md, "Incremental nightly"): which draft
(account, period) groups a night may continue from what the last computation counted, what
they continue from, and the state a run leaves for the next night.

A group continues when, since its last computation by a nightly run:
- the catalog and the conflict policy are the same (`basis`);
- the account's rows, assignments, changes of its assignments (SPEC §8.1), activation locks,
  the never-reset counters and the rollover parcels before the period are the same
  (`inputs_print`, one hash, computed by the same SQL on both sides);
- the day limit did not move back;
- no event came in at or before the last one counted, in counter order (started_at,
  event_id): as many events are stored up to it as were counted.

Its new events then all come after the counted ones, so the period's counters continue from
the windows it left and its line sums add to the exact sums it counted (pipeline.contracts
`UsageSoFar`). Every other group is recomputed whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import duckdb

from store.duck import scalar
from store.results_schema import STATE_SCHEMA

MARKS = f"{STATE_SCHEMA}.usage_marks"
SUMS = f"{STATE_SCHEMA}.usage_sums"
WINDOWS = f"{STATE_SCHEMA}.usage_windows"
_SUM_COLUMNS = ("account_id, period, service, destination_group, assignment_id, addon_id, "
                "owner, quantity_units, amount_units, discount_pico, discounted_units")
_WINDOW_COLUMNS = ("account_id, service, destination_group, threshold_type, reset, "
                   "window_start, period, value_units")


def usage_basis(catalog_text: str, policy: str) -> str:
    """What every group of a run was computed under: the catalog's text and the policy."""
    return hashlib.sha256(f"{policy}\n{catalog_text}".encode()).hexdigest()


def _inputs_print_sql(groups: str) -> str:
    """SQL: `account_id, period, inputs_print` for each (account, period) of table `groups`.
    Each part is a sum of row hashes (an order-free fingerprint of a set of rows), tagged so
    that rows of two parts never cancel out."""
    return f"""
    WITH g AS (SELECT DISTINCT account_id, period FROM {groups}),
    a AS (SELECT account_id, sum(hash('account', currency, main_product_id, billing_day, status,
                                      opened_on, closed_on, effective_from)) AS h
          FROM accounts SEMI JOIN g USING (account_id) GROUP BY account_id),
    -- the groups' accounts' assignments: the view (a window over every version) once
    ga AS MATERIALIZED (SELECT account_id, assignment_id, addon_id, fee_plan_id, start_date,
                               end_date, assigned_at, quantity
                        FROM assignments SEMI JOIN g USING (account_id)),
    s AS (SELECT account_id, sum(hash('assignment', assignment_id, addon_id, fee_plan_id,
                                      start_date, end_date, assigned_at, quantity)) AS h
          FROM ga GROUP BY account_id),
    k AS (SELECT a.account_id, sum(hash('lock', l.assignment_id, l.locked_start)) AS h
          FROM activation_locks l JOIN ga a USING (assignment_id) GROUP BY a.account_id),
    v AS (SELECT a.account_id, sum(hash('change', x.assignment_id, x.effective_from,
                                        x.fee_plan_id, x.quantity)) AS h
          FROM assignment_changes x JOIN ga a USING (assignment_id) GROUP BY a.account_id),
    c AS (SELECT account_id, period, sum(hash('counter', service, destination_group,
                                              threshold_type, window_start, value)) AS h
          -- each window's value in its latest period before the group's (one per period)
          FROM (SELECT g.account_id, g.period, c.service, c.destination_group, c.threshold_type,
                       c.window_start, arg_max(c.value, c.period) AS value
                FROM counter_periods c JOIN g ON c.account_id = g.account_id
                  AND c.period < g.period
                WHERE c.reset = 'never'
                GROUP BY g.account_id, g.period, c.service, c.destination_group,
                         c.threshold_type, c.window_start)
          GROUP BY account_id, period),
    q AS (SELECT g.account_id, g.period,
                 sum(hash('parcel', q.service, q.destination_group, q.threshold_type,
                          q.window_start, q.granted_window_start, q.expires_after_window_start,
                          q.remaining)) AS h
          FROM quota_rollovers q JOIN g ON q.account_id = g.account_id
            -- the parcels the previous period left (store.results.parcels_before_params)
            AND q.window_start >= CAST(strptime(g.period || '-01', '%Y-%m-%d') AS DATE)
                                  - INTERVAL 1 MONTH
            AND q.window_start < CAST(strptime(g.period || '-01', '%Y-%m-%d') AS DATE)
          GROUP BY g.account_id, g.period)
    SELECT g.account_id, g.period,
           -- an account without changes hashes as it did before changes existed, so that
           -- the state stored by earlier nights still continues
           CASE WHEN v.h IS NULL
                THEN hash(coalesce(a.h, 0), coalesce(s.h, 0), coalesce(k.h, 0),
                          coalesce(c.h, 0), coalesce(q.h, 0))
                ELSE hash(coalesce(a.h, 0), coalesce(s.h, 0), coalesce(k.h, 0),
                          coalesce(c.h, 0), coalesce(q.h, 0), v.h) END AS inputs_print
    FROM g LEFT JOIN a USING (account_id) LEFT JOIN s USING (account_id)
    LEFT JOIN k USING (account_id) LEFT JOIN v USING (account_id)
    LEFT JOIN c USING (account_id, period) LEFT JOIN q USING (account_id, period)"""


def inputs_prints(con: duckdb.DuckDBPyConnection, groups: str) -> dict[tuple[str, str], int]:
    """`(account_id, period) -> inputs_print` for the groups of table `groups` (`account_id,
    period`): what a draft's stored mark is compared with (module doc)."""
    rows = con.execute(_inputs_print_sql(groups)).fetchall()
    return {(account, period): int(value) for account, period, value in rows}


# The prints a run's plan computed for its candidate groups (temp, on the run's connection): the
# commit stores them again for the groups whose print inputs the run did not write, instead of
# hashing the same rows a second time (`write_usage_state`).
PLAN_PRINTS = "_plan_prints"


def forget_plan_prints(con: duckdb.DuckDBPyConnection) -> None:
    """Start a run with no plan prints (a connection may have served an earlier run)."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {PLAN_PRINTS} (
        account_id VARCHAR, period VARCHAR, inputs_print UBIGINT)""")


def plan_continued(
    con: duckdb.DuckDBPyConnection, plan: str, period: str, basis: str | None
) -> int:
    """Fill the temp table `_continued` (`account_id, last_started_at, last_event_id`) with the
    draft groups of `period` in the registered `plan` that continue (module doc); returns how
    many. `basis` None: none does (a whole recompute). With none, `_continued` is not read.
    The candidates' prints are kept in `PLAN_PRINTS` for the commit."""
    if basis is None:
        return 0
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _candidates AS
            SELECT p.account_id, p.period, CAST(p.period_start AS TIMESTAMP) AS period_start,
                   m.events, m.last_started_at, m.last_event_id, m.inputs_print
            FROM {plan} p JOIN {MARKS} m USING (account_id, period)
            WHERE p.period = ? AND p.cutoff IS NOT NULL AND m.basis = ?
              -- the plan group's day limit, as pipeline.schedule.day_limit has it
              AND m.day_limit <= least(p.period_end, CAST(p.cutoff AS DATE) + 1)""",
        [period, basis],
    )
    if not scalar(con, "SELECT count(*) FROM _candidates"):  # e.g. every period of a first run
        return 0
    con.execute(f"""CREATE TEMP TABLE IF NOT EXISTS {PLAN_PRINTS} (
        account_id VARCHAR, period VARCHAR, inputs_print UBIGINT)""")
    con.execute(f"DELETE FROM {PLAN_PRINTS} WHERE period = ?", [period])
    con.execute(f"""INSERT INTO {PLAN_PRINTS} SELECT account_id, period, inputs_print
                    FROM ({_inputs_print_sql('_candidates')})""")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _continued AS
            WITH counted AS (
                SELECT c.account_id, count(u.event_id) AS n
                FROM _candidates c LEFT JOIN usage u ON u.account_id = c.account_id
                  AND u.started_at >= c.period_start
                  AND (u.started_at < c.last_started_at
                       OR (u.started_at = c.last_started_at AND u.event_id <= c.last_event_id))
                GROUP BY c.account_id)
            SELECT c.account_id, c.last_started_at, c.last_event_id
            FROM _candidates c JOIN counted n USING (account_id)
            JOIN {PLAN_PRINTS} p USING (account_id, period)
            WHERE n.n = c.events AND p.inputs_print = c.inputs_print"""
    )
    return int(scalar(con, "SELECT count(*) FROM _continued"))


# The staged inputs of the continued groups of one period (`?`: the period), by shard.
CONTINUED_SQL = "SELECT account_id, {shard} AS shard FROM _continued"
SUMS_SO_FAR_SQL = f"""SELECT {_SUM_COLUMNS.replace('period, ', '')}, {{shard}} AS shard
FROM {SUMS} SEMI JOIN _continued USING (account_id) WHERE period = ?"""
WINDOWS_SO_FAR_SQL = f"""SELECT {_WINDOW_COLUMNS.replace(', period', '')}, {{shard}} AS shard
FROM {WINDOWS} SEMI JOIN _continued USING (account_id) WHERE period = ?"""
# The usage rows a period's units read: of a continued account, only those after its last
# counted event (staging.export_usage's `source`; its window filter is pushed down to the scan).
USAGE_AFTER = """(SELECT u.* FROM usage u LEFT JOIN _continued c ON c.account_id = u.account_id
  WHERE c.account_id IS NULL OR c.last_started_at IS NULL OR u.started_at > c.last_started_at
     OR (u.started_at = c.last_started_at AND u.event_id > c.last_event_id))"""


def write_usage_state(
    con: duckdb.DuckDBPyConnection, staged: Callable[[str], str], run_id: str,
    basis: str | None,
) -> int:
    """Inside the run's transaction: drop the state of every group the run recomputed
    (`_scope`) and store what its draft groups counted (the units' `usage_marks`, `usage_sums`
    and `counters`). `basis` None (a reprocess): no state is kept, so the next night
    recomputes those groups whole. Returns the groups marked."""
    for table in (MARKS, SUMS, WINDOWS):
        con.execute(f"DELETE FROM {table} t USING _scope s "
                    f"WHERE t.account_id = s.account_id AND t.period = s.period")
    if basis is None:
        return 0
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _marks AS
            SELECT account_id, period, CAST(period_start AS TIMESTAMP) AS period_start,
                   day_limit FROM {staged('usage_marks')}"""
    )
    _mark_prints(con, run_id)
    con.execute(
        f"""INSERT INTO {MARKS}
            WITH counted AS (
                SELECT m.account_id, m.period, count(u.event_id) AS events,
                       max({{'t': u.started_at, 'e': u.event_id}}) AS last
                FROM _marks m LEFT JOIN usage u ON u.account_id = m.account_id
                  AND u.started_at >= m.period_start
                  AND u.started_at < CAST(m.day_limit AS TIMESTAMP)
                GROUP BY m.account_id, m.period)
            SELECT m.account_id, m.period, ?, p.inputs_print, m.day_limit, n.events,
                   n.last.t, n.last.e, ?
            FROM _marks m JOIN counted n USING (account_id, period)
            JOIN _mark_prints p USING (account_id, period)""",
        [basis, run_id],
    )
    con.execute(
        f"""INSERT INTO {SUMS} SELECT {_SUM_COLUMNS} FROM {staged('usage_sums')}
            SEMI JOIN _marks USING (account_id, period)"""
    )
    con.execute(
        f"""INSERT INTO {WINDOWS} SELECT {_WINDOW_COLUMNS} FROM {staged('counters')}
            SEMI JOIN _marks USING (account_id, period)"""
    )
    return int(scalar(con, "SELECT count(*) FROM _marks"))


def _mark_prints(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Fill `_mark_prints` (`account_id, period, inputs_print`) for the run's drafts (`_marks`),
    as they stand in the run's transaction: each print is computed once per run. The print
    the plan computed (`PLAN_PRINTS`) still holds when the run wrote none of its inputs: no
    earlier period of the account was recomputed (its never-reset counters and parcels before
    the period) and no activation lock of the account was added by this run. The run writes no
    account, assignment or change. Every other draft is hashed here. (A print kept when it
    should not be could only make the next night recompute the draft whole, never continue
    it wrongly: it is compared with a print of what the database then holds.)"""
    have_plan = scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE temporary "
                            f"AND table_name = '{PLAN_PRINTS}'")
    kept = f"""SELECT p.account_id, p.period, p.inputs_print FROM {PLAN_PRINTS} p
               SEMI JOIN _marks m USING (account_id, period)
               WHERE NOT EXISTS (SELECT 1 FROM _scope s WHERE s.account_id = p.account_id
                                   AND s.period < p.period)
                 AND p.account_id NOT IN (
                   SELECT a.account_id FROM activation_locks l JOIN assignments a
                   USING (assignment_id) WHERE l.run_id = $run_id)"""
    none = "SELECT NULL::VARCHAR AS account_id, NULL::VARCHAR AS period, " \
        "NULL::UBIGINT AS inputs_print WHERE false"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _mark_prints AS {kept if have_plan else none}",
                {"run_id": run_id} if have_plan else None)
    con.execute("""CREATE OR REPLACE TEMP TABLE _marks_left AS
                   SELECT account_id, period FROM _marks ANTI JOIN _mark_prints
                   USING (account_id, period)""")
    con.execute(f"""INSERT INTO _mark_prints SELECT account_id, period, inputs_print
                    FROM ({_inputs_print_sql('_marks_left')})""")
