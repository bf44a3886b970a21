"""The usage rules of docs/INPUTS.md, in DuckDB SQL: each row's reasons, its line and raw text.

The usage file is too large for Python or Polars memory (48M rows at 1M accounts), so its rows
are checked where DuckDB staged them (`store.sources.stage_raw`). While DuckDB reads the file,
`fast_flag` marks the rows that are good as read (nearly all); after the two lookups that look
beyond a row (`find_repeats`, and the known accounts), the other rows take the full checks: one
pass flags every problem of each in a bitmask and types the good ones, and the reasons are worded
only for the few rows that fail. Each rule is declared once, in `USAGE_CHECKS`, in the order its
reason is listed.
The decimal and timestamp rules are the documented ones: decimals are checked as text and cast
to DECIMAL only once they are known to fit (never through a binary float); timestamps are cut to
the microsecond and turned to UTC by their offset.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipeline.bounds import MAX_USAGE_UNITS, MAX_USAGE_VALUE
from pipeline.catalog import UNIT_SCALE
from store.duck import quiet

EXTRA = "_extra"
# DECIMAL(18,6) holds 12 integer digits.
MAX_INT_DIGITS = 18 - UNIT_SCALE
_DECIMAL = r"[+-]?[0-9]*(\.[0-9]*)?"
_TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?"
)
# The plain forms, valid on their own: at most 9 integer digits and 6 decimals is within the
# bound (MAX_USAGE_VALUE), unsigned is not negative.
_PLAIN_DECIMAL = r"[0-9]{1,9}(\.[0-9]{1,6})?"
_PLAIN_TIMESTAMP = r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
TIMESTAMP_FORM = "YYYY-MM-DD HH:MM:SS[.ffffff][Z|±HH:MM]"

# Macros over one text value: the parsed value (NULL when it does not parse) and its problems.
_MACROS = [
    # A decimal: the text form, then at most 6 significant decimals and 12 integer digits.
    f"""CREATE OR REPLACE TEMP MACRO _dec_form(x) AS
        regexp_full_match(x, '{_DECIMAL}') AND regexp_matches(x, '[0-9]')""",
    """CREATE OR REPLACE TEMP MACRO _dec_frac(x) AS
        CASE WHEN strpos(x, '.') > 0 THEN rtrim(x[strpos(x, '.') + 1:], '0') ELSE '' END""",
    """CREATE OR REPLACE TEMP MACRO _dec_whole(x) AS
        ltrim(CASE WHEN strpos(x, '.') > 0 THEN x[:strpos(x, '.') - 1] ELSE x END, '+-0')""",
    f"""CREATE OR REPLACE TEMP MACRO _dec_precise(x) AS
        _dec_form(x) AND length(_dec_frac(x)) > {UNIT_SCALE}""",
    f"""CREATE OR REPLACE TEMP MACRO _dec_large(x) AS
        _dec_form(x) AND length(_dec_whole(x)) > {MAX_INT_DIGITS}""",
    f"""CREATE OR REPLACE TEMP MACRO _dec(x) AS
        CASE WHEN _dec_form(x) AND length(_dec_frac(x)) <= {UNIT_SCALE}
                  AND length(_dec_whole(x)) <= {MAX_INT_DIGITS}
             THEN CAST(x AS DECIMAL(18,{UNIT_SCALE})) END""",
    # A timestamp: the strict form, a real date and time (strptime: no 24:00:00), the fraction
    # cut to microseconds, minus the UTC offset.
    f"""CREATE OR REPLACE TEMP MACRO _ts(x) AS
        CASE WHEN regexp_full_match(x, '{_TIMESTAMP}') THEN
            try_strptime(x[1:10] || ' ' || x[12:19], '%Y-%m-%d %H:%M:%S')
            + to_microseconds(CAST(rpad(coalesce(nullif(
                  regexp_extract(x, '^.{{19}}\\.([0-9]{{1,6}})', 1), ''), '0'), 6, '0') AS BIGINT))
            - to_minutes(CASE WHEN regexp_matches(x, '[+-][0-9:]{{4,5}}$') THEN
                  (CASE WHEN regexp_extract(x, '([+-])[0-9:]{{4,5}}$', 1) = '-' THEN -1 ELSE 1
                   END) * (CAST(regexp_extract(x, '([0-9]{{2}}):?[0-9]{{2}}$', 1) AS BIGINT) * 60
                           + CAST(regexp_extract(x, '([0-9]{{2}})$', 1) AS BIGINT))
                  ELSE 0 END)
        END""",
    # The row re-joined as CSV text (RFC 4180 quoting).
    """CREATE OR REPLACE TEMP MACRO _csv_field(x) AS
        CASE WHEN x IS NULL THEN ''
             WHEN regexp_matches(x, '[",\\r\\n]') THEN '"' || replace(x, '"', '""') || '"'
             ELSE x END""",
    "CREATE OR REPLACE TEMP MACRO _quoted(x) AS '''' || x || ''''",
]


def _req(c: str) -> tuple[str, str]:
    return f"{c} IS NULL", f"'{c}: required'"


# (condition over the staged text columns and the parsed `_q`, `_a`, `_t`, `_known`, `_first`,
# message) in the order the reasons are listed. A condition is false when it is NULL.
USAGE_CHECKS: list[tuple[str, str]] = [
    (f"{EXTRA} IS NOT NULL", "'row: more fields than the header'"),
    (
        " OR ".join(
            f"contains({c}, '\ufffd')" for c in
            ("event_id", "account_id", "service", "destination_group", "started_at",
             "quantity", "amount")
        ),
        "'row: not valid UTF-8 text'",
    ),
    _req("event_id"),
    _req("account_id"),
    (
        "account_id IS NOT NULL AND NOT _known",
        "'account_id: unknown account ' || _quoted(account_id)",
    ),
    _req("service"),
    _req("destination_group"),
    _req("started_at"),
    (
        "started_at IS NOT NULL AND _t IS NULL",
        f"'started_at: ' || _quoted(started_at) || ' is not a timestamp ({TIMESTAMP_FORM})'",
    ),
    *[
        check
        for c, v in (("quantity", "_q"), ("amount", "_a"))
        for check in (
            _req(c),
            (f"{c} IS NOT NULL AND NOT _dec_form({c})",
             f"'{c}: ' || _quoted({c}) || ' is not a decimal number'"),
            (f"_dec_precise({c})",
             f"'{c}: ' || _quoted({c}) || ' has more than {UNIT_SCALE} decimals'"),
            (f"_dec_large({c})", f"'{c}: ' || _quoted({c}) || ' is too large'"),
            (f"{v} < 0", f"'{c}: ' || _quoted({c}) || ' is negative'"),
            (f"{v} > {MAX_USAGE_VALUE}",
             f"'{c}: ' || _quoted({c}) || ' is more than {MAX_USAGE_VALUE}'"),
        )
    ],
    (
        "event_id IS NOT NULL AND line <> _first",
        "'event_id: duplicate event_id ' || _quoted(event_id) || ' (first at line ' || _first "
        "|| ')'",
    ),
]
assert MAX_USAGE_UNITS == int(MAX_USAGE_VALUE * 10**UNIT_SCALE)
_BLANK = " AND ".join(
    f"{c} IS NULL" for c in ("event_id", "account_id", "service", "destination_group",
                             "started_at", "quantity", "amount", EXTRA)
)
_USAGE_TEXT = ("event_id", "account_id", "service", "destination_group", "started_at",
               "quantity", "amount")


# ---------------------------------------------------------------------------------------------
# The fast path of a large file: a row that passes `fast_flag` as the reader gave it is good as
# it stands, whatever the full checks say of it, except for the two checks that look beyond the
# row (its account is known, its event id is not a later copy). Nearly every row of a real file
# is such a row, so the load computes this flag while DuckDB reads the file, and runs the trim
# and the full checks only on the rows it does not hold for.


def _clean_text(column: str, plain_ascii: bool) -> str:
    """SQL: `column` is present, starts and ends with a visible character, and holds no U+FFFD
    (what the reader makes of bytes that are not UTF-8), so that it is already trimmed. In a
    file of printable ASCII and spaces only (`plain_ascii`) the one white space a value can end
    with is a space, and no U+FFFD can occur: two cheap tests say it."""
    first = f"ascii({column}) BETWEEN 33 AND 126"
    if plain_ascii:
        return f"({first} AND NOT suffix({column}, ' '))"
    return (
        f"({first} AND ascii({column}[-1:]) BETWEEN 33 AND 126 "
        f"AND strlen({column}) = length({column}))"
    )


def fast_flag(columns: dict[str, str], plain_ascii: bool = False) -> str:
    """SQL: true when the row is good on its own and needs no trim: no surplus field, printable
    ASCII ids without surrounding spaces, a plain timestamp that is a real date and time, plain
    decimals within the bounds. `columns` maps each usage column and `_extra` to the SQL of its
    text as read (untrimmed); `plain_ascii`: the file is known to hold printable ASCII, spaces
    and line feeds only. A true flag implies every value equals its trimmed value, and that
    `USAGE_CHECKS` find nothing but, perhaps, an unknown account or a repeated id."""
    c = columns
    return "coalesce(" + " AND ".join([
        f"{c[EXTRA]} IS NULL",
        *[_clean_text(c[name], plain_ascii)
          for name in ("event_id", "account_id", "service", "destination_group")],
        f"regexp_full_match({c['started_at']}, '{_PLAIN_TIMESTAMP}')",
        f"try_strptime({c['started_at']}, '%Y-%m-%d %H:%M:%S') IS NOT NULL",
        f"regexp_full_match({c['quantity']}, '{_PLAIN_DECIMAL}')",
        f"regexp_full_match({c['amount']}, '{_PLAIN_DECIMAL}')",
    ]) + ", false)"


# How a column of a row that passes `fast_flag` is typed (the plain forms: no parsing needed).
_FAST_TYPED = {
    "started_at": "strptime({}, '%Y-%m-%d %H:%M:%S')",
    "quantity": f"CAST({{}} AS DECIMAL(18,{UNIT_SCALE}))",
    "amount": f"CAST({{}} AS DECIMAL(18,{UNIT_SCALE}))",
}


def fast_value(column: str, alias: str) -> str:
    """SQL: the typed value of one usage column of a row whose `fast_flag` holds (`alias` the
    staged row): the value the full checks give it."""
    return _FAST_TYPED.get(column, "{}").format(f"{alias}.{column}")


def fast_values(alias: str) -> str:
    """SQL: the typed usage columns of a row whose `fast_flag` holds, in the `usage` order."""
    return ", ".join(f"{fast_value(c, alias)} AS {c}" for c in _USAGE_TEXT)


def find_repeats(con: duckdb.DuckDBPyConnection, raw: str, out: str) -> None:
    """Make `out` (`event_id, first_line`): the event ids of `raw` met more than once, with the
    line of their first occurrence. (Grouping the ids' 64-bit hashes first was measured no
    faster at 200k accounts.)"""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
            SELECT event_id, min(line) AS first_line FROM {raw}
            WHERE event_id IS NOT NULL GROUP BY event_id HAVING count(*) > 1"""
    )


def define_macros(con: duckdb.DuckDBPyConnection) -> None:
    """The parsers the checks use, as temporary macros of this connection."""
    for sql in _MACROS:
        con.execute(sql)


def check_usage(
    con: duckdb.DuckDBPyConnection, raw: str, known: str, out: str, repeats: str | None = None
) -> None:
    """Check the staged usage rows of `raw` into the temporary table `out`: `line`, the typed
    columns of a good row (`event_id, account_id, service, destination_group, started_at,
    quantity, amount`), `_bad` (a bitmask of the failed `USAGE_CHECKS`, -1 for an empty row, 0
    for a good row), `_first` (the line of the event id's first occurrence in the file). `known`
    is a table of the account ids a usage row may name; `repeats` (`find_repeats`) the ids met
    more than once in the whole file, when `raw` holds only some of its rows (else they are
    found in `raw`)."""
    define_macros(con)
    # Most ids occur once: only the repeated ones are joined back.
    if repeats is None:
        repeats = "_usage_repeats"
        find_repeats(con, raw, repeats)
    mask = " | ".join(
        f"(CASE WHEN coalesce({cond}, false) THEN {1 << i} ELSE 0 END)"
        for i, (cond, _) in enumerate(USAGE_CHECKS)
    )
    # Nearly every row is plain (an unsigned decimal within the bounds, a timestamp without
    # fraction or zone, no problem at all): such a row skips the full checks, which give the
    # same verdict for it, so the cost of a clean file is a few cheap tests per row.
    clean = " AND ".join([
        f"{EXTRA} IS NULL", "event_id IS NOT NULL", "account_id IS NOT NULL", "_known",
        "service IS NOT NULL", "destination_group IS NOT NULL", "_t IS NOT NULL", "_qp", "_ap",
        "line = _first",
        *[f"NOT contains({c}, '\ufffd')" for c in _USAGE_TEXT],
    ])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
            WITH p AS (
                SELECT r.*, k.account_id IS NOT NULL AS _known,
                       coalesce(d.first_line, r.line) AS _first,
                       regexp_full_match(r.quantity, '{_PLAIN_DECIMAL}') AS _qp,
                       regexp_full_match(r.amount, '{_PLAIN_DECIMAL}') AS _ap,
                       regexp_full_match(r.started_at, '{_PLAIN_TIMESTAMP}') AS _tp
                FROM {raw} r
                LEFT JOIN {known} k ON k.account_id = r.account_id
                LEFT JOIN {repeats} d ON d.event_id = r.event_id
            ), v AS (
                SELECT *,
                       CASE WHEN _tp THEN try_strptime(started_at, '%Y-%m-%d %H:%M:%S')
                            ELSE _ts(started_at) END AS _t,
                       CASE WHEN _qp THEN CAST(quantity AS DECIMAL(18,{UNIT_SCALE}))
                            ELSE _dec(quantity) END AS _q,
                       CASE WHEN _ap THEN CAST(amount AS DECIMAL(18,{UNIT_SCALE}))
                            ELSE _dec(amount) END AS _a
                FROM p
            )
            SELECT line, event_id, account_id, service, destination_group, _t AS started_at,
                   _q AS quantity, _a AS amount,
                   CASE WHEN {clean} THEN 0 WHEN {_BLANK} THEN -1 ELSE {mask} END AS _bad,
                   _first
            FROM v"""
    )


def usage_reasons(raw: str, checked: str) -> str:
    """SQL selecting `line, reason, raw` of the rows of `checked` that failed a check."""
    words = ", ".join(
        f"CASE WHEN c._bad & {1 << i} <> 0 THEN {msg} END"
        for i, (_, msg) in enumerate(USAGE_CHECKS)
    )
    # The messages name the staged columns; the raw row is joined back for the bad lines only.
    return f"""
        SELECT r.line,
               CASE WHEN c._bad = -1 THEN 'row: empty row'
                    ELSE concat_ws('; ', {words.replace('_first', 'c._first')}) END AS reason,
               {raw_text(list(_USAGE_TEXT))} AS raw
        FROM (SELECT line, _bad, _first FROM {checked} WHERE _bad <> 0) c
        JOIN {raw} r ON r.line = c.line"""


def raw_text(columns: list[str], extra: bool = True) -> str:
    """SQL: the row re-joined as CSV text, with any surplus field at the end."""
    row = " || ',' || ".join(f"_csv_field({c})" for c in columns) if columns else "''"
    if not extra:
        return row
    return f"({row} || CASE WHEN {EXTRA} IS NOT NULL THEN ',' || _csv_field({EXTRA}) ELSE '' END)"


def check_usage_frame(
    rows: pl.DataFrame, *, source: str, account_ids: pl.Series | list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The same checks over a small frame shaped like a staged table (`line`, the usage columns
    as text, `_extra`), in a throwaway in-memory DuckDB: `(valid, rejected)`. `valid` has the
    columns of `pipeline.contracts.USAGE_SCHEMA` (exact `*_units` of 10^-6) and `line`;
    `rejected` has `source, line, reason, raw`. For small inputs and tests: a load checks its
    staged table in place."""
    con = quiet(duckdb.connect())
    try:
        con.register("_frame", rows)
        con.execute("CREATE TEMP TABLE _raw AS SELECT * FROM _frame")
        ids = pl.DataFrame({"account_id": pl.Series(list(account_ids), dtype=pl.String)})
        con.register("_ids", ids)
        con.execute("CREATE TEMP TABLE _known AS SELECT DISTINCT account_id FROM _ids")
        check_usage(con, "_raw", "_known", "_checked")
        valid = con.sql(
            "SELECT event_id, account_id, service, destination_group, started_at, "
            f"{_units('quantity')} AS quantity_units, {_units('amount')} AS amount_units, line "
            "FROM _checked WHERE _bad = 0 ORDER BY line"
        ).pl()
        rejected = con.sql(
            f"SELECT ? AS source, line, reason, raw FROM ({usage_reasons('_raw', '_checked')}) "
            "ORDER BY line",
            params=[source],
        ).pl()
    finally:
        con.close()
    return valid, rejected


def _units(column: str) -> str:
    return f"CAST(CAST({column} AS DECIMAL(38,{UNIT_SCALE})) * {10**UNIT_SCALE} AS BIGINT)"
