"""`billrun invoice`: the printable invoice of one account and period, every final invoice of a
period, one document by its number (a credit or debit note on its own page, or as text), or the
list of an account's invoices and notes (SPEC §9).

It reads the analyst copy (`billrun.analyst.duckdb`, as `billrun sql` does), never the working
database: it never blocks a run, and a run never blocks it. The rows become a document model
(`pipeline.documents.invoice_document`, pure), which the template renders
(`billrun/invoice_html.py`)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table

from billrun.invoice_html import render_invoice, render_note, render_note_text
from billrun.summary import error
from pipeline.catalog import Catalog
from pipeline.documents import (
    KIND_LABELS,
    InvoiceDocument,
    NoteDocument,
    invoice_document,
    minor,
    note_document,
    plain_amount,
)
from pipeline.money import format_amount
from pipeline.periods import shift_period

EXIT_OK, EXIT_USAGE = 0, 2


class InvoiceError(RuntimeError):
    """Nothing to show (no analyst copy, no such account or invoice): a bad argument, exit 2."""


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> list[dict]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def open_copy(db: str | Path) -> duckdb.DuckDBPyConnection:
    """The analyst copy of `db`, read-only."""
    from billrun.sql_shell import open_copy as open_analyst_copy

    try:
        return open_analyst_copy(db)[0]
    except FileNotFoundError as exc:
        raise InvoiceError(str(exc)) from None
    except duckdb.Error:
        raise InvoiceError(f"the analyst copy of {db} is not a billrun database") from None


def _catalog(con: duckdb.DuckDBPyConnection) -> Catalog:
    import store

    return store.read_catalog(con)


def _account(con: duckdb.DuckDBPyConnection, account_id: str, period: str,
             catalog: Catalog) -> dict[str, Any]:
    """The account's version in force for `period` (the latest before the next period)."""
    rows = _dicts(
        con,
        """SELECT account_id, main_product_id, billing_day FROM accounts WHERE account_id = ?
           ORDER BY (effective_from < CAST(? || '-01' AS DATE)) DESC, effective_from DESC
           LIMIT 1""",
        [account_id, shift_period(period, 1)],
    )
    if not rows:
        return {"account_id": account_id}
    row = rows[0]
    names = {m.id: m.name for m in catalog.main_products}
    row["main_product"] = names.get(row["main_product_id"], row["main_product_id"])
    return row


def load_document(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str, catalog: Catalog | None = None
) -> InvoiceDocument:
    """The document model of one invoice, read from the analyst copy."""
    catalog = catalog or _catalog(con)
    invoices = _dicts(
        con,
        "SELECT account_id, period, currency, total, status, invoice_number, issued_on, due_on "
        "FROM invoices WHERE account_id = ? AND period = ?",
        [account_id, period],
    )
    if not invoices:
        raise InvoiceError(f"no invoice for account {account_id} in {period}")
    invoice = invoices[0]
    lines = _dicts(
        con,
        "SELECT line_type, assignment_id, addon_id, service, destination_group, quantity, "
        "amount, description, term_start FROM charges WHERE account_id = ? AND period = ?",
        [account_id, period],
    )
    notes = _dicts(
        con,
        "SELECT document_number, kind, total, issued_on, due_on FROM documents "
        "WHERE account_id = ? AND period = ? AND kind <> 'invoice'",
        [account_id, period],
    )
    note_lines = _dicts(
        con,
        "SELECT document_number, description, amount FROM adjustments "
        "WHERE account_id = ? AND period = ? AND document_number IS NOT NULL",
        [account_id, period],
    )
    return invoice_document(
        invoice, lines, notes, note_lines,
        minor_units=catalog.currencies.get(invoice["currency"], 2),
        addon_names={a.id: a.name for a in catalog.addons},
        account=_account(con, account_id, period, catalog),
        seller=catalog.seller,
    )


def file_name(account_id: str, period: str) -> str:
    """`invoice-<account>-<period>.html`, the account id made safe for a file name."""
    return f"invoice-{re.sub(r'[^A-Za-z0-9._-]', '_', account_id)}-{period}.html"


def write_invoice(db: str | Path, account_id: str, period: str, out: str | Path | None) -> Path:
    """Write one invoice's page to `out` (default: `file_name(...)` in the working folder)."""
    con = open_copy(db)
    try:
        html = render_invoice(load_document(con, account_id, period))
    finally:
        con.close()
    target = Path(out) if out else Path(file_name(account_id, period))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target


def write_period(db: str | Path, period: str, out_dir: str | Path) -> list[Path]:
    """Write every final invoice of `period` into `out_dir`, one file each."""
    con = open_copy(db)
    try:
        catalog = _catalog(con)
        accounts = [r[0] for r in con.execute(
            "SELECT account_id FROM invoices WHERE period = ? AND status = 'final' "
            "ORDER BY account_id", [period]).fetchall()]
        if not accounts:
            raise InvoiceError(f"no final invoice in {period}")
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for account_id in accounts:
            target = folder / file_name(account_id, period)
            target.write_text(render_invoice(load_document(con, account_id, period, catalog)),
                              encoding="utf-8")
            written.append(target)
    finally:
        con.close()
    return written


def _by_number(con: duckdb.DuckDBPyConnection, number: str) -> dict[str, Any]:
    """The `documents` row of `number` (an invoice's or a note's)."""
    rows = _dicts(
        con,
        "SELECT document_number, kind, account_id, period, currency, total, issued_on, "
        "due_on, corrects FROM documents WHERE document_number = ?",
        [number],
    )
    if not rows:
        raise InvoiceError(f"no invoice or note numbered {number}")
    return rows[0]


def load_note(con: duckdb.DuckDBPyConnection, note: dict[str, Any],
              catalog: Catalog | None = None) -> NoteDocument:
    """The document model of one credit or debit note (a `documents` row), read from the
    analyst copy: its lines, the invoice it corrects and the notes issued before it."""
    catalog = catalog or _catalog(con)
    account_id, period = note["account_id"], note["period"]
    lines = _dicts(
        con,
        "SELECT line_type, assignment_id, addon_id, service, destination_group, quantity, "
        "amount, description, reason FROM adjustments WHERE document_number = ?",
        [note["document_number"]],
    )
    invoice = con.execute(
        "SELECT total FROM invoices WHERE invoice_number = ?", [note["corrects"]]
    ).fetchone() if note["corrects"] else None
    earlier = [r[0] for r in con.execute(
        """SELECT total FROM documents WHERE account_id = ? AND period = ? AND kind <> 'invoice'
           AND (issued_on < ? OR (issued_on = ? AND document_number < ?))""",
        [account_id, period, note["issued_on"], note["issued_on"],
         note["document_number"]]).fetchall()]
    return note_document(
        note, lines, None if invoice is None else invoice[0], earlier,
        minor_units=catalog.currencies.get(note["currency"], 2),
        account=_account(con, account_id, period, catalog),
        seller=catalog.seller,
    )


def note_file_name(number: str) -> str:
    """`note-<number>.html`, the number made safe for a file name."""
    return f"note-{re.sub(r'[^A-Za-z0-9._-]', '_', number)}.html"


def write_number(db: str | Path, number: str, out: str | Path | None,
                 *, text: bool = False) -> tuple[Path | None, str]:
    """The document numbered `number`: a note as its own page (default
    `./note-<number>.html`) or, with `text`, as plain text (returned, nothing written); an
    invoice's number writes that invoice's page, as `--account --period` does."""
    con = open_copy(db)
    try:
        row = _by_number(con, number)
        if row["kind"] == "invoice":
            if text:
                raise InvoiceError(f"{number} is an invoice: --text prints a note; write the "
                                   "invoice's page without --text")
            html = render_invoice(load_document(con, row["account_id"], row["period"]))
            default = file_name(row["account_id"], row["period"])
        else:
            note = load_note(con, row)
            if text:
                return None, render_note_text(note)
            html, default = render_note(note), note_file_name(number)
    finally:
        con.close()
    target = Path(out) if out else Path(default)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target, str(row["kind"])


def account_documents(db: str | Path, account_id: str) -> dict[str, Any]:
    """The account's invoices (drafts included) and notes over time, amounts as plain text at
    the currency's precision: the `--json` contract."""
    con = open_copy(db)
    try:
        catalog = _catalog(con)
        rows = _dicts(
            con,
            """SELECT 'invoice' AS kind, period, status, invoice_number AS number, issued_on,
                      due_on, total, currency, CAST(NULL AS VARCHAR) AS corrects, 0 AS rank
               FROM invoices WHERE account_id = ?
               UNION ALL
               SELECT kind, period, 'final', document_number, issued_on, due_on, total,
                      currency, corrects, 1
               FROM documents WHERE account_id = ? AND kind <> 'invoice'
               ORDER BY period, rank, issued_on, number""",
            [account_id, account_id],
        )
    finally:
        con.close()
    if not rows:
        raise InvoiceError(f"no invoice for account {account_id}")
    documents = []
    for row in rows:
        units = catalog.currencies.get(row["currency"], 2)
        documents.append({
            "kind": row["kind"], "period": row["period"], "status": row["status"],
            "number": row["number"],
            "issued_on": None if row["issued_on"] is None else str(row["issued_on"]),
            "due_on": None if row["due_on"] is None else str(row["due_on"]),
            "total": plain_amount(minor(row["total"], units), units),
            "currency": row["currency"], "corrects": row["corrects"],
        })
    return {"account_id": account_id, "documents": documents}


def _print_list(listing: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Invoices and notes of {listing['account_id']}", title_justify="left")
    for name in ("period", "kind", "number", "status", "issued on", "due on", "total",
                 "corrects"):
        table.add_column(name, justify="right" if name == "total" else "left", overflow="fold")
    for d in listing["documents"]:
        units = len(d["total"].partition(".")[2])
        table.add_row(
            d["period"], KIND_LABELS[d["kind"]], d["number"] or "(draft)", d["status"],
            d["issued_on"] or "", d["due_on"] or "",
            format_amount(d["total"], units, d["currency"]), d["corrects"] or "",
        )
    console.print(table)


def command(args: argparse.Namespace, console: Console, err: Console) -> int:
    """`billrun invoice`: see the module doc; every failure is one line, exit 2."""
    def bad(message: str) -> int:
        error(message, err)
        return EXIT_USAGE

    try:
        if args.number is not None:
            if args.account is not None or args.period is not None or args.all or args.json:
                return bad("--number names one document: give it without --account, "
                           "--period, --all or --json")
            if args.text and args.out:
                return bad("--text prints the note; --out writes its HTML page: give one")
            path, kind = write_number(args.db, args.number, args.out, text=args.text)
            if path is None:
                print(kind, end="")
            else:
                label = KIND_LABELS[kind].lower()
                console.print(f"{label} {args.number} written to {path.resolve()}")
            return EXIT_OK
        if args.text:
            return bad("--text prints a credit or debit note: give it with --number")
        if args.all:
            if args.period is None or args.account is not None:
                return bad("--all needs --period and no --account")
            written = write_period(args.db, args.period, args.out or ".")
            folder = Path(args.out or ".").resolve()
            console.print(f"{len(written)} invoice(s) of {args.period} written to {folder}")
            return EXIT_OK
        if args.account is None:
            return bad("give --account ID (with --period P for one invoice), or --period P --all")
        if args.period is None:
            listing = account_documents(args.db, args.account)
            if args.json:
                print(json.dumps(listing, indent=2))
            else:
                _print_list(listing, console)
            return EXIT_OK
        if args.json:
            return bad("--json lists an account's documents: give it without --period")
        path = write_invoice(args.db, args.account, args.period, args.out)
        console.print(f"invoice written to {path.resolve()}")
        return EXIT_OK
    except InvoiceError as exc:
        return bad(str(exc))
    except (duckdb.CatalogException, duckdb.BinderException) as exc:  # a copy made before §9
        first = str(exc).splitlines()[0]
        return bad(f"the analyst copy of {args.db} has no invoice documents yet (the next "
                   f"`billrun nightly` publishes them): {first}")
