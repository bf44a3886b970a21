"""A small hand-made billing scenario, written as real input files (SPEC §1-2)."""

from __future__ import annotations

from pathlib import Path

import pytest

CATALOG = """
currencies: {USD: 2, EUR: 2}
conflict_policy: replace
main_products:
  - {id: MP_BASIC, name: Basic, available_addons: [ADD_TV, ADD_VOICE100, ADD_VOICE200]}
addons:
  - {id: ADD_TV, name: TV pack, priority: 10, subscription: SUB_TV}
  - {id: ADD_VOICE100, name: 100 free US minutes, priority: 20, discount_plan: VDP_US100,
     subscription: SUB_VOICE}
  - {id: ADD_VOICE200, name: 200 free US minutes, priority: 20, discount_plan: VDP_US200}
subscriptions:
  - id: SUB_TV
    activation_fee: "10.00"
    fee_plans:
      - {id: TV1, term_months: 1, fee: "30.00", currency: USD}
  - id: SUB_VOICE
    fee_plans:
      - {id: V1, term_months: 1, fee: "5.00", currency: USD}
discount_plans:
  - id: VDP_US100
    entries:
      - {service: voice, destination_group: US, threshold_type: quantity, tiers: [[0, 100], [100, 0]]}
  - id: VDP_US200
    entries:
      - {service: voice, destination_group: US, threshold_type: quantity, tiers: [[0, 100], [200, 0]]}
"""

ACCOUNTS = """account_id,currency,main_product_id,billing_day,status,opened_on,closed_on,effective_from
A1,USD,MP_BASIC,1,active,2026-01-01,,
"""

ASSIGNMENTS = """assignment_id,account_id,addon_id,fee_plan_id,start_date,end_date,assigned_at,quantity
AS_TV,A1,ADD_TV,TV1,2026-01-11,,2026-01-10 09:00:00,1
AS_V100,A1,ADD_VOICE100,V1,2026-01-01,,2025-12-30 10:00:00,1
"""

# 50 min on Jan 5 and 70 min on Jan 25 at $0.10/min: 120 minutes, the first 100 free.
USAGE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E1,A1,voice,US,2026-01-05 10:00:00,50,5.00
E2,A1,voice,US,2026-01-25 18:30:00,70,7.00
"""


def write_drop(folder: Path, **files: str) -> Path:
    """Write a drop folder with the given files (name without extension -> CSV text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = folder / ("catalog.yaml" if name == "catalog" else f"{name}.csv")
        target.write_text(text.lstrip("\n"))
    return folder


@pytest.fixture(scope="module")  # a plain function: module fixtures may use it too
def write_drop_fixture() -> object:
    """`write_drop` as a fixture, for tests that add a later drop."""
    return write_drop


@pytest.fixture()
def scenario(tmp_path: Path) -> dict[str, Path]:
    """The initial drop and the database path of the hand-made scenario."""
    drop = write_drop(
        tmp_path / "drop1", catalog=CATALOG, accounts=ACCOUNTS, assignments=ASSIGNMENTS,
        usage=USAGE,
    )
    return {"drop": drop, "db": tmp_path / "billrun.duckdb", "tmp": tmp_path}


@pytest.fixture(scope="module")
def module_scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same initial drop, written once per module, for module-scoped billed databases."""
    tmp = tmp_path_factory.mktemp("scenario")
    drop = write_drop(
        tmp / "drop1", catalog=CATALOG, accounts=ACCOUNTS, assignments=ASSIGNMENTS, usage=USAGE,
    )
    return {"drop": drop, "tmp": tmp}


def copy_database(source: Path, target: Path) -> Path:
    """Copy a billed database to `target`, a test's own file, and publish its own Parquet set
    and analyst file if `source` had them (the source's analyst file reads the source's set)."""
    import shutil

    from store.snapshot import analyst_path, publish_snapshot

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    if analyst_path(source).exists():
        publish_snapshot(target)
    return target


@pytest.fixture(scope="module")
def copy_db() -> object:
    """`copy_database` as a fixture: module fixtures bill once, each test gets its own copy."""
    return copy_database
