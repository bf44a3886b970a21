"""Input files (SPEC §2): find them in a drop folder and read them as all-string rows.

This is the only module, with the catalog file read, that opens input files. Every frame or table
it yields has the file's expected columns as text (null for an empty or missing field, surrounding
spaces trimmed), a `line` column (BIGINT) and an `_extra` column: the first surplus field of a row
that had more fields than the header, null otherwise. Validation, not reading, decides what a bad
row is, so a ragged or blank row is still handed over with its line number instead of stopping
the read.

Two readers give the same rows (tests/store/test_sources_fast.py compares them):
- `stage_raw` lets DuckDB's parallel CSV reader copy a regular CSV file into a scratch table,
  with `line` taken from the row's position (rowid). That is the physical line only when every
  record is one line, so the file's line ends are counted alongside; a quoted line break, a blank
  line (DuckDB skips those), a row with two surplus fields or bytes that are not UTF-8 make it
  fall back to the block reader below, which stages the same table.
- `iter_batches` reads in bounded batches: CSV in byte blocks cut on a record boundary (never
  inside a quoted field), Parquet by row groups through pyarrow, so memory does not grow with the
  file.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from pipeline.contracts import INPUT_COLUMNS

CATALOG_NAME = "catalog.yaml"
KINDS = ("accounts", "assignments", "usage")
FORMATS = ("csv", "parquet")
EXTRA = "_extra"

# The columns of each input, in file order (pipeline.contracts), and which of them must be
# present in the header.
COLUMNS = INPUT_COLUMNS
OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    "accounts": frozenset({"billing_day", "closed_on", "effective_from"}),
    "assignments": frozenset({"fee_plan_id", "end_date", "quantity", "effective_from"}),
    "usage": frozenset(),
}

# 32 MiB of CSV text per batch: about 500k usage rows, a few hundred MiB while validated.
CSV_BLOCK_BYTES = 32 << 20
PARQUET_BATCH_ROWS = 500_000


class SourceError(Exception):
    """An input folder or file that cannot be read at all (not a bad row: those are rejected)."""


@dataclass(frozen=True)
class InputFile:
    """One bulk input file: its kind (accounts, assignments or usage) and where it is."""

    kind: str
    path: Path

    @property
    def source(self) -> str:
        """The base name stored with each rejected row, e.g. `usage.csv`."""
        return self.path.name

    @property
    def format(self) -> str:
        """`csv` or `parquet`."""
        return self.path.suffix.lstrip(".").lower()

    @property
    def size(self) -> int:
        """Size in bytes, for progress bars."""
        return self.path.stat().st_size


@dataclass(frozen=True)
class Inputs:
    """What a drop folder holds: any subset of the catalog and the three bulk files."""

    directory: Path
    catalog: Path | None
    files: dict[str, InputFile]

    def get(self, kind: str) -> InputFile | None:
        """The file of `kind`, or None when the folder has none."""
        return self.files.get(kind)


@dataclass(frozen=True)
class Batch:
    """One bounded slice of a file, with how many bytes (or rows) of it have been read so far."""

    frame: pl.DataFrame
    done: int
    total: int


def find_inputs(directory: str | Path) -> Inputs:
    """Locate `catalog.yaml` and `accounts|assignments|usage` `.csv`/`.parquet` in `directory`."""
    folder = Path(directory)
    if not folder.is_dir():
        raise SourceError(f"input folder {folder} does not exist")
    files: dict[str, InputFile] = {}
    for kind in KINDS:
        found = [p for fmt in FORMATS if (p := folder / f"{kind}.{fmt}").is_file()]
        if len(found) > 1:
            raise SourceError(
                f"{folder} holds both {found[0].name} and {found[1].name}: keep only one"
            )
        if found:
            files[kind] = InputFile(kind, found[0])
    catalog = folder / CATALOG_NAME
    return Inputs(folder, catalog if catalog.is_file() else None, files)


def read_catalog_text(path: str | Path) -> str:
    """The catalog file's text, as stored in `catalog_versions`; not UTF-8 is a SourceError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{Path(path).name}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save the catalog as UTF-8"
        ) from None


def read_all(file: InputFile, strict: bool = True) -> pl.DataFrame:
    """The whole file as one frame (for accounts and assignments, which are small)."""
    frames = [b.frame for b in iter_batches(file, strict=strict)]
    return pl.concat(frames) if frames else empty_frame(file.kind)


def iter_batches(
    file: InputFile, block_bytes: int = CSV_BLOCK_BYTES, strict: bool = True
) -> Iterator[Batch]:
    """Yield the file as bounded all-string frames, in file order, each with its `line` column.

    `strict=False` reads a file that lacks required columns too (they come as null), so that its
    rows can be rejected whole with their lines and text.
    """
    if file.format == "csv":
        yield from _iter_csv(file, block_bytes, strict)
    else:
        yield from _iter_parquet(file, strict)


def empty_frame(kind: str) -> pl.DataFrame:
    """A zero-row frame with the reader's schema for `kind`."""
    return pl.DataFrame(schema=_schema(kind))


def _schema(kind: str) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {"line": pl.Int64()}
    schema.update({c: pl.String() for c in COLUMNS[kind]})
    schema[EXTRA] = pl.String()
    return schema


def header_of(file: InputFile) -> list[str]:
    """The file's column names, as its header (CSV) or schema (Parquet) gives them."""
    if file.format == "csv":
        return _read_header(file)[0]
    return [c.strip() for c in pq.ParquetFile(file.path).schema_arrow.names]


def missing_columns(file: InputFile) -> list[str]:
    """The required columns that the file's header lacks (SPEC §2: such a file is rejected
    whole, row by row, and the rest of the drop still loads)."""
    return _missing(file.kind, header_of(file))


def _missing(kind: str, header: list[str]) -> list[str]:
    return [c for c in COLUMNS[kind] if c not in header and c not in OPTIONAL_COLUMNS[kind]]


def _check_header(file: InputFile, header: list[str], strict: bool = True) -> None:
    missing = _missing(file.kind, header)
    if missing and strict:
        raise SourceError(f"{file.source}: the header lacks column(s) {', '.join(missing)}")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise SourceError(f"{file.source}: the header repeats column(s) {', '.join(duplicated)}")


def _conform(frame: pl.DataFrame, kind: str, header: list[str]) -> pl.DataFrame:
    """Select the kind's columns in canonical order; absent optional columns become null."""
    cols = [
        _blank_to_null(pl.col(c)) if c in header else pl.lit(None, pl.String)
        for c in COLUMNS[kind]
    ]
    return frame.select(
        pl.col("line").cast(pl.Int64),
        *[c.alias(name) for c, name in zip(cols, COLUMNS[kind], strict=True)],
        pl.col(EXTRA) if EXTRA in frame.columns else pl.lit(None, pl.String).alias(EXTRA),
    )


def _blank_to_null(col: pl.Expr) -> pl.Expr:
    stripped = col.str.strip_chars()
    return pl.when(stripped != "").then(stripped)


def _read_header(file: InputFile) -> tuple[list[str], int]:
    """The header's column names and its length in bytes (with its line end)."""
    with file.path.open("rb") as fh:
        first = fh.readline()
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{file.source}: the header line is not UTF-8 text") from exc
    header = [c.strip() for c in next(csv.reader([text]), [])]
    return header, len(first)


def _record_end(block: bytes, quotes_before: int) -> int:
    """Index just past the last newline of `block` that is not inside a quoted field, or -1."""
    end = block.rfind(b"\n")
    while end != -1:
        # CSV quotes come in pairs ("" escapes one), so an even count means we are outside one.
        if (quotes_before + block.count(b'"', 0, end)) % 2 == 0:
            return end + 1
        end = block.rfind(b"\n", 0, end)
    return -1


def _iter_csv(file: InputFile, block_bytes: int, strict: bool = True) -> Iterator[Batch]:
    header, offset = _read_header(file)
    _check_header(file, header, strict)
    names = [f"c{i}" for i in range(len(header))] + [EXTRA]
    total = file.size
    next_line = 2
    carry = b""
    with file.path.open("rb") as fh:
        fh.seek(offset)
        done = offset
        while True:
            chunk = fh.read(block_bytes)
            block = carry + chunk
            if not chunk:
                cut = len(block)
            else:
                cut = _record_end(block, 0)
                if cut == -1 and len(block) > 4 * block_bytes:
                    # A stray quote outside any quoted field would keep us reading forever: cut
                    # at the last line end and let the parser take the record as it is.
                    cut = block.rfind(b"\n") + 1 or len(block)
                if cut == -1:
                    # A quoted field longer than a block: read on until a record ends.
                    carry = block
                    continue
            body, carry = block[:cut], block[cut:]
            done += len(chunk)
            if body:
                frame = _parse_csv_block(body, names, next_line)
                next_line += body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
                frame = frame.rename(dict(zip(names, header + [EXTRA], strict=True)))
                yield Batch(_conform(frame, file.kind, header), done, total)
            if not chunk:
                return


def _parse_csv_block(body: bytes, names: list[str], first_line: int) -> pl.DataFrame:
    """Parse complete CSV records; give each its physical line, even when a value spans lines."""
    frame = pl.read_csv(
        io.BytesIO(body),
        has_header=False,
        schema={n: pl.String for n in names},
        missing_columns="insert",
        extra_columns="ignore",
        truncate_ragged_lines=True,
        # Bytes that are not UTF-8 become U+FFFD, and validation rejects that row (not the file).
        encoding="utf8-lossy",
    )
    newlines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    index = pl.int_range(0, pl.len(), dtype=pl.Int64)
    if newlines == frame.height:
        return frame.with_columns((index + first_line).alias("line"))
    # Some value holds a line break: shift every later record by the breaks before it.
    breaks = pl.sum_horizontal(
        [pl.col(n).str.count_matches("\n").fill_null(0) for n in names]
    ).cast(pl.Int64)
    return frame.with_columns(
        (index + first_line + breaks.cum_sum().shift(1, fill_value=0)).alias("line")
    )


def _iter_parquet(file: InputFile, strict: bool = True) -> Iterator[Batch]:
    parquet = pq.ParquetFile(file.path)
    header = [c.strip() for c in parquet.schema_arrow.names]
    _check_header(file, header, strict)
    total = parquet.metadata.num_rows
    done = 0
    for record_batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        frame = pl.from_arrow(record_batch)
        assert isinstance(frame, pl.DataFrame)
        frame = frame.rename(dict(zip(frame.columns, header, strict=True))).select(
            pl.int_range(done + 1, done + 1 + frame.height, dtype=pl.Int64).alias("line"),
            # Typed Parquet columns are turned back to text so that one validator serves both.
            *[pl.col(c).cast(pl.String) for c in header if c in COLUMNS[file.kind]],
        )
        done += frame.height
        yield Batch(_conform(frame, file.kind, header), done, total)


# ---------------------------------------------------------------------------------------------
# Staging a file as an all-text DuckDB table

# What Polars' `strip_chars()` trims (Unicode White_Space), so that both readers trim alike.
_WHITESPACE = "".join(
    chr(c) for c in (
        *range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
        0x202F, 0x205F, 0x3000,
    )
)
_COUNT_BLOCK = 8 << 20
# Builds an SQL boolean from the SQL of each column's text, and whether the file is known to hold
# printable ASCII, spaces and line feeds only (see `stage_raw`).
Flag = Callable[[dict[str, str], bool], str]


def stage_raw(
    con: duckdb.DuckDBPyConnection, file: InputFile, table: str, *, strict: bool = True,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
    flag: Flag | None = None,
) -> None:
    """Make `table` (a temporary view over `<table>_rows`) hold `file`: `line`, the kind's
    columns as trimmed text (null when empty or absent), `_extra`; rows in file order.
    `strict=False` takes a file that lacks required columns too (they come as null), so that its
    rows can be rejected whole. `drop_raw` removes both.

    `flag` (optional) builds an SQL boolean from the SQL of each column's text as read: it is
    computed while the file is read and shown as the view's last column, `_ok`. It must hold
    only for rows whose every value is already trimmed: such rows are stored as read, and only
    the others are trimmed, when the view is read."""
    rows = f"{table}_rows"
    if file.format == "csv":
        header, _ = _read_header(file)
        _check_header(file, header, strict)
        if _stage_csv_natively(con, file, rows, header, flag):
            # The reader keeps the file's order, so a row's rowid is its record's position.
            if flag is None:
                columns = "*"
            else:
                columns = ", ".join(
                    f"CASE WHEN _ok THEN {c} ELSE {_trimmed(c)} END AS {c}"
                    for c in [*COLUMNS[file.kind], EXTRA]
                ) + ", _ok"
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {table} AS "
                f"SELECT rowid + 2 AS line, {columns} FROM {rows}"
            )
            progress(file.size, file.size)
            return
    columns = ", ".join(f"{c} VARCHAR" for c in COLUMNS[file.kind])
    ok = "" if flag is None else ", _ok BOOLEAN"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {rows} (line BIGINT, {columns}, {EXTRA} VARCHAR{ok})"
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {rows}")
    # The block reader trims as it reads: the flag then sees trimmed text.
    computed = "" if flag is None else ", " + flag(
        {c: c for c in [*COLUMNS[file.kind], EXTRA]}, False
    )
    for batch in iter_batches(file, strict=strict):
        con.register("_raw_batch", batch.frame)
        try:
            con.execute(f"INSERT INTO {rows} SELECT *{computed} FROM _raw_batch")
        finally:
            con.unregister("_raw_batch")
        progress(batch.done, batch.total)


def drop_raw(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Remove what `stage_raw` made."""
    con.execute(f"DROP VIEW IF EXISTS {table}")
    con.execute(f"DROP TABLE IF EXISTS {table}_rows")


def _stage_csv_natively(
    con: duckdb.DuckDBPyConnection, file: InputFile, rows: str, header: list[str],
    flag: Flag | None = None,
) -> bool:
    """Copy the file with DuckDB's parallel reader into `rows` (no line column: the rowid is the
    record's position) when every record of the file is one physical line; False otherwise.
    Without `flag` the values are trimmed on the way; with it they are kept as read, with the
    flag's value in `_ok`."""
    names = [f"c{i}" for i in range(len(header))]
    spec = ", ".join(f"'{n}': 'VARCHAR'" for n in [*names, EXTRA])
    by_name = dict(zip(header, names, strict=True))
    read = {
        c: by_name[c] if c in by_name else "CAST(NULL AS VARCHAR)" for c in COLUMNS[file.kind]
    }
    read[EXTRA] = EXTRA
    if flag is None:
        select = ", ".join(
            f"{_trimmed(read[c])} AS {c}" if c in by_name or c == EXTRA else f"{read[c]} AS {c}"
            for c in [*COLUMNS[file.kind], EXTRA]
        )
    else:
        # Flagged as if the file were plain ASCII (nearly always so, and cheaper to test); the
        # file scan tells afterwards, and the flag is taken back where it was too quick.
        select = ", ".join(f"{read[c]} AS {c}" for c in [*COLUMNS[file.kind], EXTRA])
        select += f", {flag(read, True)} AS _ok"
    lines: list[tuple[int, bool]] = []
    counter = threading.Thread(target=lambda: lines.append(_scan_lines(file.path)))
    counter.start()
    try:
        # null_padding keeps short rows (and gives `_extra` to a row with one surplus field); the
        # parallel reader refuses a quoted line break with it, a case for the block reader.
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {rows} AS
                SELECT {select}
                FROM read_csv('{_sql_path(file.path)}', auto_detect = false, header = false,
                    skip = 1, columns = {{{spec}}}, delim = ',', quote = '"', escape = '"',
                    null_padding = true)"""
        )
    except duckdb.Error:
        return False
    finally:
        counter.join()
    staged = con.execute(f"SELECT count(*) FROM {rows}").fetchall()[0][0]
    count, plain_ascii = lines[0]
    # DuckDB skips blank lines; a record that spans lines would shift the later ones.
    if count != staged + 1:
        return False
    if flag is not None and not plain_ascii:
        names = {c: c for c in [*COLUMNS[file.kind], EXTRA]}
        con.execute(f"UPDATE {rows} SET _ok = false WHERE _ok AND NOT {flag(names, False)}")
    return True


def _trimmed(column: str) -> str:
    """SQL: the value trimmed, null when empty. DuckDB's trim is slow, so it runs only on values
    that may need it: a first character that is not printable ASCII, any non-ASCII character,
    or a last character that is ASCII white space."""
    chars = "'" + _WHITESPACE + "'"
    ends = " OR ".join(
        ["(" + column + " LIKE '% ')"] + [f"suffix({column}, chr({c}))" for c in range(9, 14)]
    )
    return (
        f"CASE WHEN NOT (ascii({column}) BETWEEN 33 AND 126) "
        f"OR strlen({column}) <> length({column}) OR {ends} "
        f"THEN nullif(trim({column}, {chars}), '') ELSE {column} END"
    )


# Bytes that make a file more than plain ASCII text: anything not ASCII, and the white space
# other than the space and the line feed.
_NOT_PLAIN = (b"\t", b"\x0b", b"\x0c", b"\r")


def _scan_lines(path: Path) -> tuple[int, bool]:
    """Physical lines of the file (a last line without a line end counts too), and whether it
    holds printable ASCII, spaces and line feeds only."""
    count, last, plain = 0, b"\n", True
    with path.open("rb", buffering=0) as fh:
        while block := fh.read(_COUNT_BLOCK):
            count += block.count(b"\n")
            last = block[-1:]
            plain = plain and block.isascii() and not any(b in block for b in _NOT_PLAIN)
    return count + (last != b"\n"), plain


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
