"""The rows each unit writes as the results tables hold them (docs/RUNS.md, "Units of work"):
`units/<period>/<shard>/<name>.rows.parquet` for the period-split tables that grow the most
(`charges`, `decisions`), with exactly the table's columns, types and order, run id included.

The commit inserts these files as they are (store/results.py), so every row a run stores in
those tables is a row of its units' files, value for value; and the publication
(store/parquet_set.py) takes a period's files whole into the new Parquet set, by a hard link,
when the period holds exactly the rows this run staged (a first night), instead of copying the
rows back out of DuckDB. The conversion from the pipeline's integer units (minor units,
millionths) is DuckDB's, the same SQL the commit used before, so the amounts are exact.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
from fsspec.core import url_to_fs

from store.duck import sql_text
from store.staging import SETTLE, Stage, duck_url

# The period-split tables the units write whole, in the table's column order (store/
# results_schema.py). Each maps to the SQL over `_staged` (the unit's output, pipeline units)
# and `_currencies` (currency, minor_units) that gives the table's row; `{run_id}` is the run's.
ROWS_SQL: dict[str, str] = {
    "charges": """SELECT account_id, period, line_type, assignment_id, addon_id, service,
              destination_group,
              CAST(CAST(quantity_units AS DECIMAL(38,0)) * 0.000001 AS DECIMAL(38,6)) AS quantity,
              CAST(CAST(amount_minor AS DECIMAL(38,0)) * CASE minor_units WHEN 0 THEN 1.0000
                   WHEN 1 THEN 0.1000 WHEN 2 THEN 0.0100 WHEN 3 THEN 0.0010 ELSE 0.0001 END
                   AS DECIMAL(38,4)) AS amount,
              currency, description, CAST({run_id} AS VARCHAR) AS run_id, term_start, line_date
            FROM _staged LEFT JOIN _currencies USING (currency)""",
    "decisions": """SELECT assignment_id, account_id, period, rule, outcome, reason,
              effective_start, effective_end, CAST({run_id} AS VARCHAR) AS run_id
            FROM _staged""",
}
ROWS_TABLES = tuple(ROWS_SQL)


def rows_file(name: str) -> str:
    """The file name of a unit's table-shaped rows of `name`."""
    return f"{name}.rows.parquet"


def write_unit_rows(stage: Stage, folder: str, shard: int, frames: dict[str, pl.DataFrame],
                    minor_units: dict[str, int]) -> None:
    """Write `units/<folder>/<shard>/<name>.rows.parquet` for every ROWS_TABLES name from the
    unit's typed outputs `frames` (those staging.write_outputs wrote), by DuckDB."""
    fs, path = url_to_fs(stage.url(f"units/{folder}/{shard}"))
    fs.makedirs(path, exist_ok=True)
    currencies = pl.DataFrame(
        {"currency": list(minor_units), "minor_units": list(minor_units.values())},
        schema={"currency": pl.Utf8(), "minor_units": pl.Int64()})
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")  # units run side by side: one core each
        con.register("_currencies", currencies.to_arrow())
        for name, sql in ROWS_SQL.items():
            con.register("_staged", frames[name].to_arrow())
            target = duck_url(con, stage.url(f"units/{folder}/{shard}/{rows_file(name)}"))
            con.execute(f"COPY ({sql.format(run_id=sql_text(stage.run_id))}) TO {sql_text(target)} "
                        "(FORMAT parquet)")
            con.unregister("_staged")
    finally:
        con.close()


def staged_rows_glob(con: duckdb.DuckDBPyConnection, stage: Stage, name: str) -> str:
    """`read_parquet(...)` of the table-shaped rows of `name` over every unit of the run."""
    return f"read_parquet({sql_text(duck_url(con, stage.url(f'units/*/*/{rows_file(name)}')))})"


def staged_rows_files(stage: Stage, name: str) -> dict[str, list[str]]:
    """`period -> [URL]`: the table-shaped files of `name` the run's period units wrote (the
    settle round's folder holds none)."""
    fs, path = url_to_fs(stage.url("units"))
    found: dict[str, list[str]] = {}
    for file in sorted(fs.glob(f"{path}/*/*/{rows_file(name)}")):
        period = file.rsplit("/", 3)[-3]
        if period == SETTLE:
            continue
        url = file if _local(fs) else fs.unstrip_protocol(file)
        found.setdefault(period, []).append(url)
    return found


def _local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
