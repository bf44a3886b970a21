"""`billrun explain`: the decisions, lines and counters behind one invoice, readable."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl
from rich.console import Console
from rich.table import Table

from pipeline.contracts import COUNTER_KEY
from pipeline.money import format_amount, format_quantity
from store.duck import frame, scalar
from store.snapshot import analyst_path

if TYPE_CHECKING:
    from billing.bill import BillInputs

# One account's counter window: the counter key without the account.
_WINDOW = ", ".join(c for c in COUNTER_KEY if c != "account_id")


class ExplainError(RuntimeError):
    """Nothing to explain: no database, or no such account or period (exit 1)."""

    exit_code = 1


class UnknownAccountError(ExplainError):
    """`--account` names no account of the database: a bad argument (exit 2), not an account
    with nothing in the period (exit 1)."""

    exit_code = 2


class NotADatabaseError(ExplainError):
    """`--db` names a file that DuckDB cannot open as a database: a bad argument (exit 2)."""

    exit_code = 2


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    # DuckDB words a writer's file lock as "Could not set lock on file ... Conflicting lock".
    return "lock" in str(exc).lower()


def _open(db: str) -> tuple[duckdb.DuckDBPyConnection, str]:
    """The working database, or the analyst copy while a run is writing the working one."""
    if not Path(db).exists():
        raise ExplainError(f"no database at {db}")
    try:
        return duckdb.connect(db, read_only=True), db
    except duckdb.Error as exc:
        if not _is_lock_conflict(exc):
            raise NotADatabaseError(f"{db} is not a billrun DuckDB database") from None
    copy = analyst_path(db)
    if not copy.exists():
        raise ExplainError(
            f"a billrun run is writing {db} and its analyst copy {copy.name} does not exist yet; "
            "retry when the run has finished"
        )
    try:
        return duckdb.connect(str(copy), read_only=True), f"{copy} (a run holds {db})"
    except duckdb.Error:
        raise NotADatabaseError(f"{copy} is not a billrun DuckDB database") from None


# The columns of `explain`'s tables that hold billed amounts, shown at the currency's precision.
AMOUNT_COLUMNS = ("total", "amount")


def _minor_units(con: duckdb.DuckDBPyConnection, account_id: str) -> tuple[str, int] | None:
    """The account's currency and its minor units, from the stored catalog."""
    import store

    got = con.execute(
        "SELECT currency FROM accounts WHERE account_id = ? ORDER BY effective_from DESC LIMIT 1",
        [account_id],
    ).fetchall()
    if not got:
        return None
    units = store.read_catalog(con).currencies
    return (got[0][0], units[got[0][0]]) if got[0][0] in units else None


def _amounts_as_read(frame: pl.DataFrame, minor_units: int) -> pl.DataFrame:
    """Amount columns as text at the currency's precision (display only; one invoice's rows)."""
    return frame.with_columns(
        pl.Series(name, [None if v is None else format_amount(v, minor_units) for v in frame[name]])
        for name in AMOUNT_COLUMNS
        if name in frame.columns
    )


def _table(title: str, frame: pl.DataFrame) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in frame.columns:
        table.add_column(column, overflow="fold")
    # Amounts come as text at the currency's precision; other decimals (quantities, counter
    # values) read without trailing zeros: 130, not 130.000000.
    for row in _cells(frame):
        table.add_row(*row)
    return table


def _cells(frame: pl.DataFrame) -> list[list[str]]:
    return [[format_quantity(v) if isinstance(v, Decimal) else "" if v is None else str(v)
             for v in row] for row in frame.iter_rows()]


def print_frame(console: Console, title: str, frame: pl.DataFrame) -> None:
    """`frame` as a table when it fits the console's width, else one block per row, one field
    per line (psql's expanded mode): nothing cut, no column squeezed to a few characters (cron
    and `| tee` give 80 columns)."""
    cells = _cells(frame)
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(frame.columns)]
    if sum(widths) + 3 * len(widths) + 1 <= console.width:
        console.print(_table(title, frame))
        return
    from rich.markup import escape

    console.print(f"[italic]{escape(title)}[/italic] ({len(cells)} row(s), one block each)")
    name_width = max(len(c) for c in frame.columns)
    for n, row in enumerate(cells, 1):
        console.print(f"[dim]-[ {n} ]-[/dim]")
        for name, value in zip(frame.columns, row, strict=True):
            console.print(f"{name:<{name_width}} │ {escape(value)}", overflow="fold",
                          highlight=False)


def _decided_at(con: duckdb.DuckDBPyConnection, period: str) -> str:
    """How the decisions of `period` are found: `<=` in a billed period, else `=`.

    A run stores an assignment's rows only while they say something new (docs/RULES.md
    "Stored rows"): in a billed period without rows of an assignment, its rows are, word for
    word, those of the latest period before it that has them (shown with that `decided_in`).
    A period never billed has no decisions of its own to stand for.
    """
    from store.billed import billed_range

    return "<=" if billed_range(con).holds(period) else "="


def explain_frames(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str
) -> dict[str, pl.DataFrame]:
    """The frames `explain` prints, keyed by section name."""
    def q(sql: str, params: list[object]) -> pl.DataFrame:
        return frame(con, sql, params)

    args = [account_id, period]
    told = _decided_at(con, period)
    # SPEC §9's number and dates (null for a draft), where the database has them.
    numbered = _has_column(con, "invoices", "invoice_number")
    frames = {
        "invoice": q(
            "SELECT account_id, period, currency, total, status, run_id"
            + (", invoice_number, issued_on, due_on" if numbered else "")
            + " FROM invoices WHERE account_id = ? AND period = ?",
            args,
        ),
        "decisions": q(
            "SELECT assignment_id, rule, outcome, reason, effective_start, effective_end, "
            "period AS decided_in "
            f"FROM decisions WHERE account_id = ? AND period {told} ? "
            "QUALIFY period = max(period) OVER (PARTITION BY assignment_id) "
            "ORDER BY assignment_id, rule",
            args,
        ),
        "lines": q(
            "SELECT line_type, assignment_id, addon_id, service, destination_group, quantity, "
            "amount, description FROM charges WHERE account_id = ? AND period = ? "
            "ORDER BY line_type, assignment_id NULLS LAST, service, destination_group, "
            "term_start",
            args,
        ),
        # SPEC §7: the promotion that priced each term and the suspended days behind each
        # credit, as the fee lines' descriptions name them.
        "fee_terms": q(
            r"""SELECT line_type, assignment_id, addon_id, term_start, amount,
                      nullif(regexp_extract(description, 'promotion (\d+) at ', 1), '')
                        AS promotion,
                      nullif(regexp_extract(description, 'promotion \d+ at ([0-9.]+)', 1), '')
                        AS promotional_fee,
                      nullif(regexp_extract(description, '\((\d+)/\d+ days suspended\)', 1),
                             '') AS suspended_days
               FROM charges WHERE account_id = ? AND period = ?
                 AND line_type IN ('recurring', 'credit', 'suspension_credit')
               ORDER BY assignment_id, term_start, line_type""",
            args,
        ),
        "adjustments": q(
            "SELECT line_type, assignment_id, service, destination_group, quantity, amount, "
            "reason, run_id"
            + (", document_number" if _has_column(con, "adjustments", "document_number")
               else "")
            + " FROM adjustments WHERE account_id = ? AND period = ? ORDER BY run_id, line_type",
            args,
        ),
        "notes": _notes(con, account_id, period),
        "counters": q(
            f"""WITH now AS (
                   SELECT {_WINDOW}, value
                   FROM counter_periods WHERE account_id = ? AND period = ?),
               before AS (
                   SELECT {_WINDOW}, value
                   FROM counter_periods WHERE account_id = ? AND period < ?
                   QUALIFY row_number() OVER (PARTITION BY {_WINDOW}
                                              ORDER BY period DESC) = 1)
               SELECT {", ".join(f"n.{c}" for c in _WINDOW.split(", "))},
                      coalesce(b.value, 0) AS value_before, n.value AS value_after
               FROM now n LEFT JOIN before b USING ({_WINDOW})
               ORDER BY ALL""",
            [account_id, period, account_id, period],
        ),
    }
    frames["versions"] = _versions(con, account_id)
    if told == "<=":
        decisions = frames["decisions"]
        frames["decisions"] = pl.concat(
            [decisions, _never_stored(con, account_id, period, decisions)]
        )
    return frames


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """`table` has `column` (a database from before SPEC §9 has no document columns)."""
    return bool(scalar(
        con, "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = ? AND column_name = ?", [table, column]))


def _notes(con: duckdb.DuckDBPyConnection, account_id: str, period: str) -> pl.DataFrame:
    """The credit and debit notes (SPEC §9) that correct the account's invoice of `period`,
    in the order they were issued (none in a database from before documents existed)."""
    from store.account import has_relation

    if not has_relation(con, "documents"):
        return pl.DataFrame()
    return frame(
        con,
        """SELECT document_number, kind, total, issued_on, due_on, corrects, run_id
           FROM documents WHERE account_id = ? AND period = ? AND kind <> 'invoice'
           ORDER BY issued_on, document_number""",
        [account_id, period],
    )


def _versions(con: duckdb.DuckDBPyConnection, account_id: str) -> pl.DataFrame:
    """The change story of the account's add-ons (SPEC §8.1): every version, base and change,
    when it took effect and why (`assignment_history`); only for add-ons that have changes."""
    from store.account import has_relation

    if not has_relation(con, "assignment_history"):  # a database from before changes existed
        return pl.DataFrame()
    return frame(
        con,
        """SELECT assignment_id, effective_from, takes_effect_on, fee_plan_id, quantity,
                  status, reason
           FROM assignment_history h
           WHERE account_id = ? AND assignment_id IN (
               SELECT assignment_id FROM assignment_history
               WHERE account_id = ? AND effective_from IS NOT NULL)
           ORDER BY assignment_id, effective_from NULLS FIRST""",
        [account_id, account_id],
    )


def event_detail(con: duckdb.DuckDBPyConnection, account_id: str, period: str) -> pl.DataFrame:
    """Each discounted usage event of the invoice, split into its tier parts.

    Per-event parts are not stored (they are not invoice lines): they are recomputed here, for
    this one account, by the one pure function the run used (`billing.bill.bill`), from the
    stored inputs.
    """
    return recomputed_detail(con, account_id, period)[0]


def _account_inputs(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str, *, with_usage: bool
) -> BillInputs | None:
    """The stored inputs of `bill` for one account (its usage of `period` if `with_usage`), or
    None for an account without rows."""
    from billing.bill import BillInputs
    from pipeline.periods import account_periods
    from store.account import read_account
    from store.raw import read_usage

    stored = read_account(con, account_id)
    if stored is None:
        return None
    inputs = BillInputs(
        catalog=stored.catalog, policy=stored.policy, accounts=stored.accounts,
        assignments=stored.assignments, locks=stored.locks, changes=stored.changes,
    )
    if not with_usage:
        return inputs
    bounds = account_periods(stored.accounts, period).row(0, named=True)
    usage = read_usage(con, bounds["period_start"], bounds["period_end"], account_id)
    return replace(inputs, usage=usage)


def _never_stored(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str, decisions: pl.DataFrame
) -> pl.DataFrame:
    """Decision rows of `period`, recomputed from the stored inputs, of the account's
    assignments that have no stored row at or before it (`decided_in` "recomputed").

    Rows are stored from an assignment's first billed period on; one loaded after the periods
    of its whole life were final has none, so its rows are worked out here (docs/RULES.md).
    """
    from rules import decide

    known = decisions.get_column("assignment_id").unique()
    missing = frame(
        con, "SELECT assignment_id FROM assignments WHERE account_id = ?", [account_id]
    ).filter(~pl.col("assignment_id").is_in(known.implode()))
    inputs = _account_inputs(con, account_id, period, with_usage=False) if missing.height else None
    if inputs is None:
        return decisions.clear()
    rows = decide(
        inputs.catalog, inputs.accounts, inputs.assignments, [period],
        inputs.policy,  # type: ignore[arg-type]
        inputs.locks, changes=inputs.changes,
    ).decisions.join(missing, on="assignment_id", how="semi")
    return rows.select(
        *(c for c in decisions.columns if c != "decided_in"),
        pl.lit("recomputed").alias("decided_in"),
    ).cast(decisions.schema)


def recomputed_detail(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The per-event tier parts and the rollover parcels (available, used, left: SPEC §7.3) of
    one account and period, recomputed from the stored inputs."""
    from billing.bill import bill
    from pipeline.schedule import cutoff_for
    from store.results import last_nightly_as_of, read_counters_before, read_parcels_before

    inputs = _account_inputs(con, account_id, period, with_usage=True)
    if inputs is None:
        return pl.DataFrame(), pl.DataFrame()
    status = scalar(
        con, "SELECT status FROM invoices WHERE account_id = ? AND period = ?",
        [account_id, period],
    )
    before = read_counters_before(con, period).filter(pl.col("account_id") == account_id)
    parcels_before = read_parcels_before(con, period).filter(pl.col("account_id") == account_id)
    result = bill(
        inputs, period, cutoff_for(status, last_nightly_as_of(con)), before, detail=True,
        parcels_before=parcels_before,
    )
    parcels = result.parcel_use
    if parcels.height:
        parcels = parcels.select(
            "service", "destination_group", "threshold_type", "granted_window_start",
            "expires_after_window_start",
            _fixed(pl.col("available_units"), 6, 2).alias("available"),
            _fixed(pl.col("used_units"), 6, 2).alias("used"),
            _fixed(pl.col("left_units"), 6, 2).alias("left"),
        )
    detail = result.usage_detail
    if detail.height == 0:
        return detail, parcels
    return detail.sort("started_at", "event_id", "tier_no").select(
        "event_id",
        "started_at",
        "service",
        "destination_group",
        "assignment_id",
        "addon_id",
        "window_start",
        _fixed(pl.col("pct"), 2, 2).alias("tier_pct"),
        _fixed(pl.col("counter_from_units"), 6, 2).alias("counter_from"),
        _fixed(pl.col("counter_to_units"), 6, 2).alias("counter_to"),
        _fixed(pl.col("quantity_units"), 6, 2).alias("quantity"),
        _fixed(pl.col("amount_pico"), 12, 4).alias("amount"),
        _fixed(pl.col("discount_pico"), 12, 4).alias("discount"),
    ), parcels


def _fixed(units: pl.Expr, scale: int, digits: int) -> pl.Expr:
    """A non-negative integer of `10^-scale` units as exact decimal text: at least `digits`
    decimals, more while they are not zero, never cut (so an event's tier parts add up to the
    event, 115.594 + 256.781 = 372.375). Display only; amounts billed are the invoice lines'."""
    whole = units // (10**scale)
    fraction = (
        (units % (10**scale)).cast(pl.Utf8).str.zfill(scale)
        .str.replace(r"0+$", "").str.pad_end(digits, "0")
    )
    return pl.format("{}.{}", whole, fraction)



def _check_found(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str,
    frames: dict[str, pl.DataFrame],
) -> None:
    """Raise when there is nothing to explain, saying whether the account is unknown or only
    has nothing billed or decided in `period`."""
    if any(f.height for f in frames.values()):
        return
    if not scalar(con, "SELECT count(*) FROM accounts WHERE account_id = ?", [account_id]):
        raise UnknownAccountError(
            f"no account {account_id} in the database (check --account and --db)"
        )
    raise ExplainError(
        f"account {account_id} exists, but nothing was billed or decided for it in {period}"
    )


def _jsonable(value: object) -> object:
    """A cell as JSON: amounts (Decimal) as exact strings, dates and times as ISO text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def explain_json(db: str, account_id: str, period: str) -> dict[str, object]:
    """`explain --json`: one document with the same sections as the tables (amounts are
    strings at the currency's precision; the per-event parts keep their exact decimals)."""
    con, source = _open(db)
    try:
        frames = explain_frames(con, account_id, period)
        frames["events"], frames["parcels"] = recomputed_detail(con, account_id, period)
        currency = _minor_units(con, account_id)
        _check_found(con, account_id, period, frames)
    except duckdb.CatalogException:
        raise NotADatabaseError(f"{source} is not a billrun DuckDB database") from None
    finally:
        con.close()
    units = currency[1] if currency else 2
    doc: dict[str, object] = {"account_id": account_id, "period": period,
                              "currency": currency[0] if currency else None}
    for key, shown in frames.items():
        if key != "events" and shown.height:
            shown = shown.with_columns(
                pl.Series(name, [None if v is None else f"{Decimal(v):.{units}f}"
                                 for v in shown[name]], dtype=pl.Utf8)
                for name in AMOUNT_COLUMNS if name in shown.columns
            )
        doc[key] = [{k: _jsonable(v) for k, v in row.items()}
                    for row in shown.iter_rows(named=True)]
    return doc


def explain_invoice(db: str, account_id: str, period: str, console: Console) -> None:
    """Print the breakdown of one invoice."""
    con, source = _open(db)
    try:
        frames = explain_frames(con, account_id, period)
        frames["events"], frames["parcels"] = recomputed_detail(con, account_id, period)
        _check_found(con, account_id, period, frames)
        currency = _minor_units(con, account_id)
    except duckdb.CatalogException:  # a DuckDB file, but without billrun's tables
        raise NotADatabaseError(f"{source} is not a billrun DuckDB database") from None
    finally:
        con.close()
    invoice = frames["invoice"]
    units = currency[1] if currency else 2
    if invoice.height:
        row = invoice.row(0, named=True)
        total = format_amount(row["total"], units, row["currency"])
        console.print(
            f"[bold]Invoice {row['account_id']} {row['period']}[/bold]: "
            f"{total} ({row['status']}, run {row['run_id']})"
        )
        console.print(number_line(row), highlight=False)
    else:
        console.print(f"[bold]{account_id} {period}[/bold]: no invoice (no line in the period)")
    console.print(f"[dim]from {source}[/dim]")
    titles = {
        "decisions": "Decisions (rule, outcome, reason)",
        "versions": "Versions of each changed add-on (base, then each change: when it took "
                    "effect and why)",
        "lines": "Invoice lines",
        "fee_terms": "Fee terms (promotion that priced each term, suspended days credited)",
        "adjustments": "Adjustments made after finalization",
        "notes": "Credit and debit notes correcting the invoice",
        "counters": "Discount counters (before the period, after it or at the as-of date)",
        # Exact parts before the line's one rounding (SPEC §4): finer than the minor unit.
        "events": "Discounted usage events, split at tier boundaries (recomputed, exact parts)",
        "parcels": "Rollover parcels: available, used and left in the period (recomputed)",
    }
    for key, title in titles.items():
        frame = frames[key]
        if frame.height:
            shown = frame if key == "events" else _amounts_as_read(frame, units)
            print_frame(console, title, shown)
        else:
            console.print(f"[dim]{title}: none[/dim]")
    lines = frames["lines"]
    if invoice.height and lines.height:
        total = format_amount(lines["amount"].sum(), units)
        console.print(
            f"Sum of lines: {total} = invoice total {format_amount(invoice['total'][0], units)}"
        )
    notes = frames["notes"]
    if invoice.height and notes.height:
        balance = invoice["total"][0] + notes["total"].sum()
        console.print(f"Total with corrections: {format_amount(balance, units)}")


def number_line(invoice: dict[str, object]) -> str:
    """The invoice's number and dates (SPEC §9), or why it has none: a draft is numbered only
    when a nightly finalizes it."""
    if invoice.get("status") != "final":
        return "Number: none (a draft has no number until a nightly finalizes it)"
    if invoice.get("invoice_number") is None:  # a database from before SPEC §9
        return "Number: none yet (the next billrun nightly numbers this final invoice)"
    return (f"Number: {invoice['invoice_number']}, issued on {invoice['issued_on']}, "
            f"due on {invoice['due_on']}")
