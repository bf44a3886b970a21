"""The bench's helper processes: split a generated drop by day, and DuckDB's own floors.

Each runs as its own process (`python -m billrun.bench_floor ...`), so that `billrun bench`
samples its memory exactly as it samples a `billrun` command's, and prints one JSON line:

    split SRC FIRST SECOND DAY   usage of DAY goes to SECOND, everything else to FIRST
    read DB FILE...              CREATE TABLE ... AS SELECT * FROM read_csv/read_parquet(FILE)
    group DB [FROM TO]           GROUP BY account_id, service, destination_group over `usage`
    runs DB                      every `runs.started_at`, as epoch seconds (UTC)
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import UTC
from pathlib import Path

USAGE_NAMES = ("usage.csv", "usage.parquet")


def split_by_day(src: Path, first: Path, second: Path, day: str) -> dict[str, int]:
    """Copy `src` to `first`, but for usage rows started on `day`, which go to `second` alone.

    CSV is split on physical lines, kept byte for byte (bad rows included, so the loader sees
    the same defects): a line goes to `second` when its `started_at` field (found by the
    header) starts with `day`; a bad row whose date does not parse stays in `first`.
    """
    import polars as pl

    first.mkdir(parents=True, exist_ok=True)
    second.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.name not in USAGE_NAMES:
            shutil.copy2(path, first / path.name)
    usage = next(src / n for n in USAGE_NAMES if (src / n).is_file())
    if usage.suffix == ".parquet":
        frame = pl.read_parquet(usage)
        on_day = pl.col("started_at").fill_null("").str.starts_with(day)
        frame.filter(~on_day).write_parquet(first / usage.name)
        frame.filter(on_day).write_parquet(second / usage.name)
        return {"first": frame.height - frame.filter(on_day).height,
                "second": frame.filter(on_day).height}
    # One string per physical line: a separator and quote that never occur in the file.
    lines = pl.read_csv(
        usage, has_header=False, separator="\x1f", quote_char=None, infer_schema=False,
        new_columns=["text"],
    )["text"]
    header, body = lines[0], lines[1:]
    on_day = (
        body.str.split(",").list.get(header.split(",").index("started_at"), null_on_oob=True)
        .fill_null("").str.starts_with(day)
    )
    counts = {}
    for name, folder, rows in (("first", first, body.filter(~on_day)),
                               ("second", second, body.filter(on_day))):
        with (folder / usage.name).open("w", encoding="utf-8", newline="") as out:
            out.write(header + "\n")
            if len(rows):
                out.write("\n".join(rows.fill_null("").to_list()) + "\n")
        counts[name] = len(rows)
    return counts


def read_floor(db: Path, files: list[Path]) -> dict[str, float | int]:
    """Seconds DuckDB takes to read `files` into tables of a scratch database file."""
    import duckdb

    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    rows = 0
    started = time.perf_counter()
    for i, path in enumerate(files):
        reader = (
            f"read_parquet('{path}')" if path.suffix == ".parquet"
            # All text, as the loader reads it; the bad rows on purpose must not stop DuckDB.
            else f"read_csv('{path}', all_varchar = true, ignore_errors = true)"
        )
        con.execute(f"CREATE TABLE t{i} AS SELECT * FROM {reader}")
        rows += con.execute(f"SELECT count(*) FROM t{i}").fetchone()[0]
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "rows": rows}


def group_floor(db: Path, since: str | None, until: str | None) -> dict[str, float | int]:
    """Seconds of DuckDB's GROUP BY of the stored usage (optionally started in [since, until))."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    where = ""
    if since and until:
        where = f"WHERE started_at >= TIMESTAMP '{since}' AND started_at < TIMESTAMP '{until}'"
    started = time.perf_counter()
    con.execute(
        "CREATE TEMP TABLE floor_groups AS SELECT account_id, service, destination_group, "
        "count(*) AS events, sum(quantity) AS quantity, sum(amount) AS amount "
        f"FROM usage {where} GROUP BY account_id, service, destination_group"
    )
    seconds = time.perf_counter() - started
    groups, events = con.execute(
        "SELECT count(*), coalesce(sum(events), 0) FROM floor_groups"
    ).fetchone()
    con.close()
    return {"seconds": seconds, "rows": int(events), "groups": int(groups)}


def runs_started(db: Path) -> dict[str, list[float]]:
    """When each run's flow took its first step: `runs.started_at` (naive UTC) as epoch
    seconds, for the bench's fixed start-up cost."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT started_at FROM runs ORDER BY started_at").fetchall()
    con.close()
    return {"started": [r[0].replace(tzinfo=UTC).timestamp() for r in rows]}


def main(argv: list[str]) -> int:
    """Run one helper and print its result as one JSON line."""
    what, rest = argv[0], argv[1:]
    if what == "split":
        result: dict[str, float | int] = dict(
            split_by_day(Path(rest[0]), Path(rest[1]), Path(rest[2]), rest[3])
        )
    elif what == "read":
        result = read_floor(Path(rest[0]), [Path(p) for p in rest[1:]])
    elif what == "group":
        result = group_floor(Path(rest[0]), *(rest[1:3] if len(rest) >= 3 else (None, None)))
    elif what == "runs":
        print(json.dumps(runs_started(Path(rest[0]))))
        return 0
    else:
        raise SystemExit(f"unknown helper {what!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
