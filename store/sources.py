"""Input files (SPEC §2): find them in a drop folder and read them as all-string frames.

This is the only module, with the catalog file read, that opens input files. Every frame it yields
has the file's expected columns as String (null for an empty or missing field), a `line` column
(Int64) and an `_extra` column: the first surplus field of a row that had more fields than the
header, null otherwise. Validation, not reading, decides what a bad row is, so a ragged or blank
row is still handed over with its line number instead of stopping the read.

Large files are read in bounded batches: CSV in byte blocks cut on a record boundary (never inside
a quoted field), Parquet by row groups through pyarrow, so memory does not grow with the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    "assignments": frozenset({"fee_plan_id", "end_date", "quantity"}),
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
    """The catalog file's text, as stored in `catalog_versions`."""
    return Path(path).read_text(encoding="utf-8")


def read_all(file: InputFile) -> pl.DataFrame:
    """The whole file as one frame (for accounts and assignments, which are small)."""
    frames = [b.frame for b in iter_batches(file)]
    return pl.concat(frames) if frames else empty_frame(file.kind)


def iter_batches(file: InputFile, block_bytes: int = CSV_BLOCK_BYTES) -> Iterator[Batch]:
    """Yield the file as bounded all-string frames, in file order, each with its `line` column."""
    if file.format == "csv":
        yield from _iter_csv(file, block_bytes)
    else:
        yield from _iter_parquet(file)


def empty_frame(kind: str) -> pl.DataFrame:
    """A zero-row frame with the reader's schema for `kind`."""
    return pl.DataFrame(schema=_schema(kind))


def _schema(kind: str) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {"line": pl.Int64()}
    schema.update({c: pl.String() for c in COLUMNS[kind]})
    schema[EXTRA] = pl.String()
    return schema


def _check_header(file: InputFile, header: list[str]) -> None:
    missing = [
        c for c in COLUMNS[file.kind] if c not in header and c not in OPTIONAL_COLUMNS[file.kind]
    ]
    if missing:
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


def _iter_csv(file: InputFile, block_bytes: int) -> Iterator[Batch]:
    header, offset = _read_header(file)
    _check_header(file, header)
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


def _iter_parquet(file: InputFile) -> Iterator[Batch]:
    parquet = pq.ParquetFile(file.path)
    header = [c.strip() for c in parquet.schema_arrow.names]
    _check_header(file, header)
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
