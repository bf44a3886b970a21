"""The product catalog (SPEC §1): pydantic models, cross-reference validation, and flat frames.

Parsing is pure: it takes the YAML text (or an already parsed mapping) and returns a validated
`Catalog`, or raises one `CatalogError` that lists every problem, each naming the field and the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.bounds import MAX_FEE

# Quantities, usage amounts and tier thresholds are carried as integers of this many decimals.
UNIT_SCALE = 6
UNIT = 10**UNIT_SCALE
# Discount percentages are carried as integers of hundredths of a percent (12.5 % -> 1250).
PCT_SCALE = 100


class CatalogError(Exception):
    """A catalog that does not validate. `problems` holds one line per bad field."""

    def __init__(self, problems: list[str], source: str = "catalog.yaml") -> None:
        self.problems = problems
        self.source = source
        super().__init__(
            f"invalid catalog {source}: {len(problems)} problem(s)\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Promotion(_Strict):
    """SPEC §7.1: the next `terms` terms of an assignment are charged `fee`."""

    terms: int = Field(ge=1)
    fee: Decimal = Field(ge=0)


class FeePlan(_Strict):
    id: str
    term_months: Literal[1, 3, 6, 12]
    fee: Decimal = Field(ge=0)
    currency: str
    promotions: list[Promotion] = Field(default_factory=list)
    # SPEC §8.2: a commitment of `minimum_terms` terms, and the fee for ending it early. The two
    # come together (checked in `_reference_problems`).
    # strict: a YAML `true` is not 1 term (nor, below, 1 day of grace)
    minimum_terms: int | None = Field(default=None, ge=1, strict=True)
    early_termination_fee: Decimal | None = Field(default=None, ge=0)


class Subscription(_Strict):
    id: str
    charge_mode: Literal["in_advance", "in_arrears"] = "in_advance"
    prorate_first: bool = True
    prorate_last: bool = True
    activation_fee: Decimal = Field(default=Decimal(0), ge=0)
    once_per_account: bool = True
    credit_suspended_days: bool = False
    # SPEC §8.1: when a change of fee plan or quantity takes effect.
    plan_change: Literal["immediate", "end_of_term", "upgrades_now"] = "immediate"
    fee_plans: list[FeePlan] = Field(min_length=1)


class DiscountEntry(_Strict):
    service: str
    destination_group: str
    threshold_type: Literal["quantity", "amount"]
    reset: Literal["billing_period", "daily", "never"] = "billing_period"
    tiers: list[tuple[Decimal, Decimal]] = Field(min_length=1)
    rollover: int = Field(default=0, ge=0, le=3)

    @field_validator("tiers")
    @classmethod
    def _tiers_ascending_and_in_range(
        cls, tiers: list[tuple[Decimal, Decimal]]
    ) -> list[tuple[Decimal, Decimal]]:
        if tiers[0][0] != 0:
            raise ValueError("the first tier must start at 0")
        for (lo, _), (hi, _) in zip(tiers, tiers[1:]):
            if hi <= lo:
                raise ValueError(f"tiers must be strictly ascending: {hi} follows {lo}")
        for start, pct in tiers:
            if not Decimal(0) <= pct <= Decimal(100):
                raise ValueError(f"discount_pct {pct} is outside 0..100")
            if start.scaleb(UNIT_SCALE) != start.scaleb(UNIT_SCALE).to_integral_value():
                raise ValueError(f"tier start {start} has more than {UNIT_SCALE} decimals")
            if (pct * PCT_SCALE) != (pct * PCT_SCALE).to_integral_value():
                raise ValueError(f"discount_pct {pct} has more than 2 decimals")
        return tiers


class DiscountPlan(_Strict):
    id: str
    entries: list[DiscountEntry] = Field(min_length=1)


class MainProduct(_Strict):
    id: str
    name: str
    available_addons: list[str] = Field(default_factory=list)
    discount_plan: str | None = None


class Addon(_Strict):
    id: str
    name: str
    description: str = ""
    priority: int
    discount_plan: str | None = None
    subscription: str | None = None


class Seller(_Strict):
    """SPEC §9: who issues the invoices, printed at the top of each document."""

    name: str = ""
    address: str = ""
    tax_id: str = ""


class Catalog(_Strict):
    currencies: dict[str, int] = Field(min_length=1)
    conflict_policy: Literal["replace", "reject"] = "replace"
    main_products: list[MainProduct] = Field(min_length=1)
    addons: list[Addon] = Field(default_factory=list)
    subscriptions: list[Subscription] = Field(default_factory=list)
    discount_plans: list[DiscountPlan] = Field(default_factory=list)
    # SPEC §8.3: a period is finalized only by a nightly at least this many days after its end.
    finalize_grace_days: int = Field(default=0, ge=0, le=31, strict=True)
    # SPEC §9: invoice documents. Each prefix is 1 to 16 characters; a due date is the issue
    # date plus `payment_terms_days`; `seller` heads the printed document.
    invoice_prefix: str = Field(default="INV-", min_length=1, max_length=16)
    credit_note_prefix: str = Field(default="CN-", min_length=1, max_length=16)
    debit_note_prefix: str = Field(default="DN-", min_length=1, max_length=16)
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    seller: Seller | None = None

    @field_validator("currencies")
    @classmethod
    def _minor_units_in_range(cls, currencies: dict[str, int]) -> dict[str, int]:
        for code, minor in currencies.items():
            if not (len(code) == 3 and code.isalpha() and code.isupper()):
                raise ValueError(f"{code!r} is not an ISO 4217 code")
            if not 0 <= minor <= 4:
                raise ValueError(f"{code}: minor units {minor} outside 0..4")
        return currencies

    def addon(self, addon_id: str) -> Addon:
        return next(a for a in self.addons if a.id == addon_id)


def _duplicates(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]


def _reference_problems(cat: Catalog) -> list[str]:
    """Every cross-reference problem of a structurally valid catalog, gathered, not thrown."""
    problems: list[str] = []
    fee_plan_ids = [fp.id for s in cat.subscriptions for fp in s.fee_plans]
    for kind, ids in (
        ("main_products", [m.id for m in cat.main_products]),
        ("addons", [a.id for a in cat.addons]),
        ("subscriptions", [s.id for s in cat.subscriptions]),
        ("discount_plans", [d.id for d in cat.discount_plans]),
        ("fee_plans", fee_plan_ids),
    ):
        problems += [f"{kind}[{i}].id: duplicate id {i!r}" for i in _duplicates(ids)]

    addon_ids = {a.id for a in cat.addons}
    subscription_ids = {s.id for s in cat.subscriptions}
    plan_ids = {d.id for d in cat.discount_plans}
    for mp in cat.main_products:
        for addon_id in mp.available_addons:
            if addon_id not in addon_ids:
                problems.append(
                    f"main_products[{mp.id}].available_addons: unknown add-on {addon_id!r}"
                )
        if mp.discount_plan is not None and mp.discount_plan not in plan_ids:
            problems.append(
                f"main_products[{mp.id}].discount_plan: unknown discount plan {mp.discount_plan!r}"
            )
    for addon in cat.addons:
        if addon.discount_plan is not None and addon.discount_plan not in plan_ids:
            problems.append(
                f"addons[{addon.id}].discount_plan: unknown discount plan {addon.discount_plan!r}"
            )
        if addon.subscription is not None and addon.subscription not in subscription_ids:
            problems.append(
                f"addons[{addon.id}].subscription: unknown subscription {addon.subscription!r}"
            )
    for sub in cat.subscriptions:
        for fp in sub.fee_plans:
            where = f"subscriptions[{sub.id}].fee_plans[{fp.id}]"
            if fp.currency not in cat.currencies:
                problems.append(f"{where}.currency: {fp.currency!r} is not declared in currencies")
                continue
            minor = cat.currencies[fp.currency]
            if (fp.minimum_terms is None) != (fp.early_termination_fee is None):
                given, missing = (
                    ("minimum_terms", "early_termination_fee") if fp.minimum_terms is not None
                    else ("early_termination_fee", "minimum_terms")
                )
                problems.append(f"{where}.{missing}: required with {given} (SPEC §8.2)")
            fees = [("fee", fp.fee), ("activation_fee", sub.activation_fee)]
            if fp.early_termination_fee is not None:
                fees.append(("early_termination_fee", fp.early_termination_fee))
            fees += [(f"promotions[{n}].fee", p.fee) for n, p in enumerate(fp.promotions)]
            for field, value in fees:
                if value > MAX_FEE:
                    problems.append(
                        f"{where}.{field}: {value} is more than the largest fee billrun "
                        f"accepts ({MAX_FEE})"
                    )
                elif value.scaleb(minor) != value.scaleb(minor).to_integral_value():
                    problems.append(
                        f"{where}.{field}: {value} has more decimals than {fp.currency} allows "
                        f"({minor})"
                    )
    for plan in cat.discount_plans:
        for n, entry in enumerate(plan.entries):
            problem = _rollover_problem(entry)
            if problem:
                problems.append(f"discount_plans[{plan.id}].entries[{n}].rollover: {problem}")
        keys = [(e.service, e.destination_group) for e in plan.entries]
        for service, group in sorted({k for k in keys if keys.count(k) > 1}):
            problems.append(
                f"discount_plans[{plan.id}].entries: more than one entry for service "
                f"{service!r}, destination_group {group!r}"
            )
    return problems


def _rollover_problem(entry: DiscountEntry) -> str:
    """Why `rollover` is not allowed on this entry (SPEC §7.3), or "" when it is."""
    if entry.rollover == 0:
        return ""
    if entry.reset != "billing_period":
        return f"{entry.rollover} needs reset billing_period, not {entry.reset}"
    if len(entry.tiers) < 2 or entry.tiers[0][1] != 100:
        return (f"{entry.rollover} needs a billing-period quota: a first tier [0, 100] and a "
                "second tier")
    return ""


def _pydantic_problems(err: ValidationError, raw: dict[str, Any]) -> list[str]:
    """Turn pydantic's error list into lines that name the field path with ids, not indexes."""
    lines = []
    for e in err.errors():
        path: list[str] = []
        node: Any = raw
        for part in e["loc"]:
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                node = node[part]
                ident = node.get("id") if isinstance(node, dict) else None
                path[-1] = f"{path[-1]}[{ident if ident is not None else part}]"
            else:
                path.append(str(part))
                node = node.get(part) if isinstance(node, dict) else None
        lines.append(f"{'.'.join(path) or '<root>'}: {e['msg']}")
    return lines


def parse_catalog(source: str | dict[str, Any], name: str = "catalog.yaml") -> Catalog:
    """Parse and validate a catalog, raising one CatalogError that lists every problem."""
    if isinstance(source, str):
        try:
            raw = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise CatalogError([f"<yaml>: {exc}"], name) from exc
    else:
        raw = source
    if not isinstance(raw, dict):
        raise CatalogError(["<root>: the catalog must be a mapping"], name)
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as err:
        raise CatalogError(_pydantic_problems(err, raw), name) from err
    problems = _reference_problems(catalog)
    if problems:
        raise CatalogError(problems, name)
    return catalog


def _to_units(value: Decimal, scale: int) -> int:
    return int(value.scaleb(scale).to_integral_value())


@dataclass(frozen=True)
class CatalogFrames:
    """The catalog flattened into small frames, one row per entity, for joins in Polars."""

    currencies: pl.DataFrame  # currency, minor_units
    main_products: pl.DataFrame  # main_product_id, name, discount_plan_id
    offers: pl.DataFrame  # main_product_id, addon_id
    addons: pl.DataFrame  # addon_id, name, description, priority, discount_plan_id, subscription_id
    subscriptions: pl.DataFrame  # subscription_id, charge_mode, prorate_*, once_per_account
    fee_plans: pl.DataFrame  # fee_plan_id, subscription_id, term_months, currency, fee_minor, ...
    discount_entries: pl.DataFrame  # discount_plan_id, entry_no, service, ... , reset
    discount_tiers: pl.DataFrame  # discount_plan_id, entry_no, tier_no, from_units, to_units, pct
    # SPEC §7.1: fee_plan_id, promotion_no, first_term, last_term (1-based), fee, fee_minor
    promotions: pl.DataFrame
    # The rules' verdicts (rules.promotions.with_verdicts): which promotion prices each term
    # number, and which entries roll over. None until the rules have run.
    term_prices: pl.DataFrame | None = None
    rollover_entries: pl.DataFrame | None = None


def catalog_frames(cat: Catalog) -> CatalogFrames:
    """Flatten a validated catalog into frames with money as integer minor units."""
    s, i = pl.Utf8, pl.Int64
    fee_rows = [
        {
            "fee_plan_id": fp.id,
            "subscription_id": sub.id,
            "term_months": fp.term_months,
            "currency": fp.currency,
            "fee": str(fp.fee),
            "fee_minor": _to_units(fp.fee, cat.currencies[fp.currency]),
            "activation_fee_minor": _to_units(sub.activation_fee, cat.currencies[fp.currency]),
            "minimum_terms": fp.minimum_terms,
            "early_termination_fee_minor": (
                None if fp.early_termination_fee is None
                else _to_units(fp.early_termination_fee, cat.currencies[fp.currency])
            ),
        }
        for sub in cat.subscriptions
        for fp in sub.fee_plans
    ]
    promotion_rows = []
    for sub in cat.subscriptions:
        for fp in sub.fee_plans:
            first = 1
            for n, promo in enumerate(fp.promotions):
                promotion_rows.append({
                    "fee_plan_id": fp.id, "promotion_no": n, "first_term": first,
                    "last_term": first + promo.terms - 1, "fee": str(promo.fee),
                    "fee_minor": _to_units(promo.fee, cat.currencies[fp.currency]),
                })
                first += promo.terms
    entry_rows, tier_rows = [], []
    for plan in cat.discount_plans:
        for n, e in enumerate(plan.entries):
            entry_rows.append(
                {
                    "discount_plan_id": plan.id,
                    "entry_no": n,
                    "service": e.service,
                    "destination_group": e.destination_group,
                    "threshold_type": e.threshold_type,
                    "reset": e.reset,
                    "rollover": e.rollover,
                }
            )
            bounds = [t[0] for t in e.tiers[1:]] + [None]
            for t, ((start, pct), end) in enumerate(zip(e.tiers, bounds)):
                tier_rows.append(
                    {
                        "discount_plan_id": plan.id,
                        "entry_no": n,
                        "tier_no": t,
                        "from_units": _to_units(start, UNIT_SCALE),
                        "to_units": None if end is None else _to_units(end, UNIT_SCALE),
                        "pct": _to_units(pct, 2),
                    }
                )
    return CatalogFrames(
        currencies=pl.DataFrame(
            [{"currency": c, "minor_units": m} for c, m in cat.currencies.items()],
            schema={"currency": s, "minor_units": i},
        ),
        main_products=pl.DataFrame(
            [
                {"main_product_id": m.id, "name": m.name, "discount_plan_id": m.discount_plan}
                for m in cat.main_products
            ],
            schema={"main_product_id": s, "name": s, "discount_plan_id": s},
        ),
        offers=pl.DataFrame(
            [
                {"main_product_id": m.id, "addon_id": a}
                for m in cat.main_products
                for a in m.available_addons
            ],
            schema={"main_product_id": s, "addon_id": s},
        ),
        addons=pl.DataFrame(
            [
                {
                    "addon_id": a.id,
                    "name": a.name,
                    "description": a.description,
                    "priority": a.priority,
                    "discount_plan_id": a.discount_plan,
                    "subscription_id": a.subscription,
                }
                for a in cat.addons
            ],
            schema={
                "addon_id": s,
                "name": s,
                "description": s,
                "priority": i,
                "discount_plan_id": s,
                "subscription_id": s,
            },
        ),
        subscriptions=pl.DataFrame(
            [
                {
                    "subscription_id": sub.id,
                    "charge_mode": sub.charge_mode,
                    "prorate_first": sub.prorate_first,
                    "prorate_last": sub.prorate_last,
                    "once_per_account": sub.once_per_account,
                    "credit_suspended_days": sub.credit_suspended_days,
                    "plan_change": sub.plan_change,
                }
                for sub in cat.subscriptions
            ],
            schema={
                "subscription_id": s,
                "charge_mode": s,
                "prorate_first": pl.Boolean,
                "prorate_last": pl.Boolean,
                "once_per_account": pl.Boolean,
                "credit_suspended_days": pl.Boolean,
                "plan_change": s,
            },
        ),
        fee_plans=pl.DataFrame(
            fee_rows,
            schema={
                "fee_plan_id": s,
                "subscription_id": s,
                "term_months": i,
                "currency": s,
                "fee": s,
                "fee_minor": i,
                "activation_fee_minor": i,
                "minimum_terms": i,
                "early_termination_fee_minor": i,
            },
        ),
        promotions=pl.DataFrame(
            promotion_rows,
            schema={
                "fee_plan_id": s,
                "promotion_no": i,
                "first_term": i,
                "last_term": i,
                "fee": s,
                "fee_minor": i,
            },
        ),
        discount_entries=pl.DataFrame(
            entry_rows,
            schema={
                "discount_plan_id": s,
                "entry_no": i,
                "service": s,
                "destination_group": s,
                "threshold_type": s,
                "reset": s,
                "rollover": i,
            },
        ),
        discount_tiers=pl.DataFrame(
            tier_rows,
            schema={
                "discount_plan_id": s,
                "entry_no": i,
                "tier_no": i,
                "from_units": i,
                "to_units": i,
                "pct": i,
            },
        ),
    )
