"""`billrun preview --account ID`: what hypothetical changes would cost (SPEC §8.4).

Reads one account's stored inputs (the working file, or the analyst copy while a run writes it,
as `explain` does), bills them as they stand and with the changes through `billing.preview`, and
prints both invoices side by side, or one JSON document (`--json`). Writes nothing, takes no run
lock, starts no flow. `preview_account` is the same for a web service, in-process.

Items, each `key=value,...` (any number of each):
- `--add addon=ADD_TV,plan=TV1,quantity=2,start=2026-06-11` (`quantity` defaults to 1, `plan` is
  left out for an add-on without subscription, `end=` is optional);
- `--end assignment=S1,on=2026-06-20`;
- `--change assignment=S1,plan=V6,quantity=3,from=2026-03-11` (`plan` or `quantity` or both).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import duckdb
import polars as pl
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from billing.bill import BillInputs
from billing.preview import AddAddon, ChangeAssignment, EndAssignment, Item, Preview, preview
from pipeline.money import format_amount
from pipeline.periods import account_periods, parse_period, period_containing, shift_period


class PreviewInputError(ValueError):
    """An argument or item that names nothing the account has, or is malformed (exit 2)."""


_KEYS = {
    "add": {"addon", "plan", "quantity", "start", "end"},
    "end": {"assignment", "on"},
    "change": {"assignment", "plan", "quantity", "from"},
}
_REQUIRED = {"add": {"addon", "start"}, "end": {"assignment", "on"},
             "change": {"assignment", "from"}}


def _day(kind: str, key: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PreviewInputError(f"--{kind}: {key}={text!r} is not a date (YYYY-MM-DD)") from None


def _quantity(kind: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise PreviewInputError(f"--{kind}: quantity={text!r} is not a whole number >= 1")
    return int(text)


def parse_item(kind: str, text: str) -> Item:
    """One `--add`, `--end` or `--change` value (`key=value,...`) as an item."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise PreviewInputError(f"--{kind}: {part!r} is not key=value")
        if key not in _KEYS[kind]:
            raise PreviewInputError(
                f"--{kind}: unknown key {key!r} (expected {', '.join(sorted(_KEYS[kind]))})")
        fields[key] = value
    missing = _REQUIRED[kind] - set(fields)
    if missing:
        raise PreviewInputError(f"--{kind}: missing {', '.join(sorted(missing))}")
    if kind == "add":
        return AddAddon(
            addon_id=fields["addon"], fee_plan_id=fields.get("plan"),
            start=_day(kind, "start", fields["start"]),
            quantity=_quantity(kind, fields.get("quantity", "1")),
            end=_day(kind, "end", fields["end"]) if "end" in fields else None,
        )
    if kind == "end":
        return EndAssignment(fields["assignment"], _day(kind, "on", fields["on"]))
    if "plan" not in fields and "quantity" not in fields:
        raise PreviewInputError("--change: give plan=, quantity= or both")
    return ChangeAssignment(
        fields["assignment"], _day(kind, "from", fields["from"]),
        fee_plan_id=fields.get("plan"),
        quantity=_quantity(kind, fields["quantity"]) if "quantity" in fields else None,
    )


@dataclass(frozen=True)
class AccountPreview:
    """A preview with what it needs to be shown: the account's currency and its precision."""

    account_id: str
    currency: str
    minor_units: int
    preview: Preview


def _check_items(items: list[Item], inputs: BillInputs, finals: set[str],
                 billing_day: int) -> None:
    """Each item names what exists, and none falls in a finalized period (exit 2)."""
    catalog = inputs.catalog
    addons = {a.id for a in catalog.addons}
    plans = {fp.id for s in catalog.subscriptions for fp in s.fee_plans}
    held = set(inputs.assignments.get_column("assignment_id").to_list())
    for item in items:
        if isinstance(item, AddAddon):
            if item.addon_id not in addons:
                raise PreviewInputError(f"--add: unknown add-on {item.addon_id!r}")
            if item.fee_plan_id is not None and item.fee_plan_id not in plans:
                raise PreviewInputError(f"--add: unknown fee plan {item.fee_plan_id!r}")
            day = item.start
        else:
            if item.assignment_id not in held:
                raise PreviewInputError(
                    f"--{'end' if isinstance(item, EndAssignment) else 'change'}: the account "
                    f"has no assignment {item.assignment_id!r}")
            if isinstance(item, ChangeAssignment) and item.fee_plan_id is not None and (
                    item.fee_plan_id not in plans):
                raise PreviewInputError(f"--change: unknown fee plan {item.fee_plan_id!r}")
            day = item.on if isinstance(item, EndAssignment) else item.effective_from
        period = period_containing(day, billing_day)
        if period in finals:
            raise PreviewInputError(
                f"{day} is in {period}, a finalized period of this account: a preview changes "
                "only open periods")


def preview_account(
    con: duckdb.DuckDBPyConnection, account_id: str, items: list[Item],
    periods: list[str] | None = None, as_of: date | None = None,
) -> AccountPreview:
    """Preview `items` on one account of the open database `con` (read only).

    `periods`: those shown (default: the open period, the one holding the latest nightly's
    as-of, and the next). `as_of`: bill only up to that day, as a draft of that night (default:
    whole periods). Raises PreviewInputError for anything that names nothing (exit 2).
    """
    from store.account import (
        read_account,
        read_account_counters_before,
        read_account_parcels_before,
    )
    from store.raw import read_usage

    stored = read_account(con, account_id)
    if stored is None:
        raise PreviewInputError(f"unknown account {account_id!r}")
    billing_day = int(stored.accounts.sort("effective_from")["billing_day"][0])
    if not periods:
        anchor = as_of or stored.last_as_of
        if anchor is None:
            raise PreviewInputError("nothing billed yet: name the periods with --periods")
        first = period_containing(anchor, billing_day)
        periods = [first, shift_period(first, 1)]
    inputs = BillInputs(catalog=stored.catalog, policy=stored.policy, accounts=stored.accounts,
                        assignments=stored.assignments, locks=stored.locks,
                        changes=stored.changes)
    _check_items(items, inputs, set(stored.final_periods), billing_day)
    bounds = [account_periods(stored.accounts, p).row(0, named=True) for p in periods]
    usage = pl.concat([
        read_usage(con, b["period_start"], b["period_end"], account_id) for b in bounds
    ])
    shown = preview(
        replace(inputs, usage=usage), items, periods,
        cutoffs={p: as_of for p in periods},
        counters_before={p: read_account_counters_before(con, account_id, p) for p in periods},
        parcels_before={p: read_account_parcels_before(con, account_id, p) for p in periods},
    )
    currency = str(stored.accounts["currency"][0])
    return AccountPreview(account_id, currency, stored.catalog.currencies.get(currency, 2), shown)


def _plain(minor: int | None, units: int) -> str | None:
    """An amount in minor units as a plain decimal string at the currency's precision."""
    return None if minor is None else f"{Decimal(minor).scaleb(-units):.{units}f}"


class PreviewItemDoc(BaseModel):
    """One hypothetical item, as given (dates ISO; `assignment_id` of an added add-on)."""

    kind: Literal["add", "end", "change"]
    addon_id: str | None = None
    fee_plan_id: str | None = None
    quantity: int | None = None
    start: date | None = None
    end: date | None = None
    on: date | None = None
    effective_from: date | None = None
    assignment_id: str | None = None


class PreviewLineDoc(BaseModel):
    """One invoice line, as it stands (`before`) and with the changes (`after`)."""

    line_type: str
    assignment_id: str | None
    addon_id: str | None
    service: str | None
    destination_group: str | None
    description: str
    before: str | None = Field(description="amount now; null: no such line now")
    after: str | None = Field(description="amount with the changes; null: the line goes")
    difference: str


class PreviewPeriodDoc(BaseModel):
    period: str
    total_before: str
    total_after: str
    difference: str
    lines: list[PreviewLineDoc]


class VerdictDoc(BaseModel):
    """A decision row the changes made (SPEC §6 `decisions`)."""

    assignment_id: str
    period: str
    rule: str
    outcome: str | None
    reason: str | None
    effective_start: date | None
    effective_end: date | None


class PlanChangeDoc(BaseModel):
    """The rules' verdict on a change of fee plan or quantity (SPEC §8.1)."""

    assignment_id: str
    effective_from: date
    takes_effect_on: date | None
    fee_plan_id: str | None
    quantity: int | None
    status: str
    reason: str | None


class PreviewDoc(BaseModel):
    """`billrun preview --json`: amounts are decimal strings at the currency's precision."""

    account_id: str
    currency: str
    items: list[PreviewItemDoc]
    periods: list[PreviewPeriodDoc]
    verdicts: list[VerdictDoc]
    plan_changes: list[PlanChangeDoc]


def as_json(shown: AccountPreview) -> PreviewDoc:
    """The preview as one document (schema: docs/preview.schema.json)."""
    units = shown.minor_units
    p = shown.preview
    kinds = {AddAddon: "add", EndAssignment: "end", ChangeAssignment: "change"}
    return PreviewDoc(
        account_id=shown.account_id,
        currency=shown.currency,
        items=[PreviewItemDoc(kind=kinds[type(it)], **vars(it),  # type: ignore[arg-type]
                              **({"assignment_id": p.new_ids[n]} if n in p.new_ids else {}))
               for n, it in enumerate(p.items)],
        periods=[
            PreviewPeriodDoc(
                period=period.period,
                total_before=_plain(period.total_before, units) or "",
                total_after=_plain(period.total_after, units) or "",
                difference=_plain(period.total_after - period.total_before, units) or "",
                lines=[
                    PreviewLineDoc(
                        line_type=r["line_type"], assignment_id=r["assignment_id"],
                        addon_id=r["addon_id"], service=r["service"],
                        destination_group=r["destination_group"], description=r["description"],
                        before=_plain(r["amount_before"], units),
                        after=_plain(r["amount_after"], units),
                        difference=_plain(r["difference"], units) or "",
                    )
                    for r in period.lines.iter_rows(named=True)
                ],
            )
            for period in p.periods
        ],
        verdicts=[VerdictDoc(**r) for r in p.decisions.select(list(VerdictDoc.model_fields))
                  .iter_rows(named=True)],
        plan_changes=[PlanChangeDoc(**r) for r in p.plan_changes.select(
            list(PlanChangeDoc.model_fields)).iter_rows(named=True)],
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of `billrun preview --json` (docs/preview.schema.json is this)."""
    return PreviewDoc.model_json_schema()


def print_preview(shown: AccountPreview, console: Console) -> None:
    """Both invoices of each period side by side, then the verdicts; fits 80 columns."""
    units, cur = shown.minor_units, shown.currency

    def money(v: int | None) -> str:
        return "" if v is None else format_amount(v, units, in_minor=True)

    console.print(f"[bold]Preview of account {shown.account_id}[/bold] ({cur}): as it stands, "
                  "and with the changes")
    for period in shown.preview.periods:
        table = Table(title=f"{period.period}", title_justify="left", expand=False)
        table.add_column("line", overflow="fold", ratio=3)
        table.add_column("now", justify="right", no_wrap=True)
        table.add_column("with changes", justify="right", no_wrap=True)
        table.add_column("difference", justify="right", no_wrap=True)
        for r in period.lines.iter_rows(named=True):
            table.add_row(f"{r['line_type']}: {r['description']}", money(r["amount_before"]),
                          money(r["amount_after"]), money(r["difference"]))
        table.add_row("[bold]total[/bold]", money(period.total_before),
                      money(period.total_after),
                      money(period.total_after - period.total_before), end_section=True)
        console.print(table)
    p = shown.preview
    if p.decisions.height:
        table = Table(title="What the rules decided", title_justify="left")
        table.add_column("assignment", overflow="fold")
        table.add_column("outcome", overflow="fold")
        table.add_column("why", overflow="fold", ratio=3)
        for r in p.decisions.iter_rows(named=True):
            table.add_row(r["assignment_id"], r["outcome"] or "", f"{r['rule']}: {r['reason']}")
        console.print(table)
    for n, new_id in sorted(p.new_ids.items()):
        console.print(f"item {n + 1} is shown as assignment {new_id}")


def _periods(text: str | None) -> list[str] | None:
    if not text:
        return None
    out = [t.strip() for t in text.split(",") if t.strip()]
    for period in out:
        try:
            parse_period(period)
        except ValueError as exc:
            raise PreviewInputError(f"--periods: {exc}") from None
    return out


def run(args: Any, console: Console) -> int:
    """`billrun preview`; raises PreviewInputError (exit 2) or ExplainError."""
    from billrun.explain import _open

    items = [parse_item(kind, text) for kind in ("add", "end", "change")
             for text in (getattr(args, kind) or [])]
    periods = _periods(args.periods)
    as_of = _day("preview", "as-of", args.as_of) if args.as_of else None
    con, _ = _open(args.db)
    try:
        shown = preview_account(con, args.account, items, periods, as_of)
    finally:
        con.close()
    if args.json:
        print(as_json(shown).model_dump_json(indent=2))
    else:
        print_preview(shown, console)
    return 0
