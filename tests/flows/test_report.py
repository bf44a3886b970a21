"""The visual run report (issue 13 item 5): written by nightly, reprocess and `billrun report`,
linked from the Prefect artifacts, opened in a real headless Chromium.

The scenario (conftest.py), worked by hand (SPEC §3-4):
- January, final at the 2026-02-01 nightly: TV pack activation 10.00 + its fee prorated from
  Jan 11 (30.00 x 21/31 = 20.32); voice add-on fee 5.00; 120 US minutes at 0.10 = 12.00 of usage,
  of which the first 100 are free: discount -10.00. Total 10.00 + 20.32 + 5.00 + 12.00 - 10.00
  = 37.32 USD.
- February, draft: TV 30.00 + voice 5.00 = 35.00 USD.
- One usage row with a bad date is rejected (not billed): usage.csv, reason started_at.
"""

from __future__ import annotations

import struct
import subprocess
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from billrun.cli import main
from flows import prefect_env

# Prefect reads its settings (the ephemeral server's start-up timeout) when first imported: set
# billrun's before this module imports it (in _artifacts), as the CLI does.
prefect_env.configure()

BAD_USAGE_ROW = "E9,A1,voice,US,2026-01-77 10:00:00,5,0.50\n"


@pytest.fixture()
def billed(scenario: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> Path:
    """The scenario with one bad usage row, loaded and billed by the 2026-02-01 nightly."""
    usage = scenario["drop"] / "usage.csv"
    usage.write_text(usage.read_text() + BAD_USAGE_ROW)
    db = scenario["db"]
    assert main(["load", str(scenario["drop"]), "--db", str(db)]) == 0
    assert main(["nightly", "--as-of", "2026-02-01", "--db", str(db)]) == 0
    assert "run report" in capsys.readouterr().out
    return db


class _Dom(HTMLParser):
    """The parts of the report a reader sees: tables (as text cells), charts and their bars."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.figures: list[dict] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "table":
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "figure":
            self.figures.append({"attrs": a, "svgs": 0, "bars": []})
        elif tag == "svg" and self.figures:
            self.figures[-1]["svgs"] += 1
        elif tag == "rect" and "bar" in a.get("class", "").split() and self.figures:
            self.figures[-1]["bars"].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            if self._row:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> _Dom:
    dom = _Dom()
    dom.feed(html)
    return dom


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def _headless(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", "--window-size=1280,1600"]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True,
                          timeout=180, check=True)


def _analyst(db: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db.with_name("billrun.analyst.duckdb")), read_only=True)


def test_nightly_writes_the_report_beside_the_analyst_copy(billed: Path) -> None:
    report = billed.with_name("billrun.report.html")
    html = report.read_text()
    assert "<script src" not in html and "<link" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # self-contained: nothing fetched
    dom = parse(html)
    assert [r for r in dom.tables["t-invoices"] if r[0] in ("2026-01", "2026-02")] == [
        ["2026-01", "final", "USD", "1", "37.32"],
        ["2026-02", "draft", "USD", "1", "35.00"],
    ]
    revenue = {(r[0], r[1], r[2]): r[4] for r in dom.tables["t-revenue"]}
    assert revenue[("2026-01", "ADD_TV", "activation")] == "10.00"
    assert revenue[("2026-01", "ADD_TV", "recurring")] == "20.32"
    assert revenue[("2026-01", "ADD_VOICE100", "usage")] == "12.00"
    assert revenue[("2026-01", "ADD_VOICE100", "discount")] == "-10.00"
    assert revenue[("2026-02", "ADD_TV", "recurring")] == "30.00"
    assert dom.tables["t-discounts"] == [["2026-01", "VDP_US100", "USD", "10.00", "1"]]
    assert dom.tables["t-rejected"][0][:3] == ["usage.csv", "started_at", "1"]
    stage_kinds = [r[0].split()[0] for r in dom.tables["t-stages"]]
    assert stage_kinds == ["nightly"]
    facts = dict(dom.tables["t-run-facts"])
    assert facts["drafts / final"] == "1 / 1"  # Feb drafted, Jan finalized
    assert facts["invoices USD (this run)"] == "2 totalling 72.32"  # 37.32 + 35.00


def test_reprocess_rewrites_it_and_report_writes_on_demand(
    billed: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = billed.with_name("billrun.report.html")
    before = report.read_text()
    assert main(["reprocess", "--period", "2026-01", "--db", str(billed)]) == 0
    after = report.read_text()
    assert after != before and "reprocess" in parse(after).tables["t-stages"][0][0]

    out = tmp_path / "jan" / "january.html"
    out.parent.mkdir()  # --out into a missing folder is refused (issue 21)
    assert main(["report", "--db", str(billed), "--period", "2026-01", "--out", str(out)]) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    dom = parse(out.read_text())
    assert {r[0] for r in dom.tables["t-invoices"]} == {"2026-01"}  # nothing after P

    assert main(["report", "--db", str(tmp_path / "none.duckdb")]) == 2  # a bad argument
    assert "no such database" in capsys.readouterr().err


def _artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    # Every page: the worker's server also holds the artifacts of the other tests it ran (a
    # month of soak nights), and one page of the API is not all of them.
    found: list = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                offset=len(found), limit=200,
            )
            found.extend(page)
            if len(page) < 200:
                return found


def test_the_prefect_artifacts_link_to_it_with_the_same_tables(billed: Path) -> None:
    uri = billed.with_name("billrun.report.html").resolve().as_uri()
    links = _artifacts("nightly-report-link")
    assert any(uri in str(a.data) for a in links), [a.data for a in links]
    markdown = [a.data for a in _artifacts("nightly-report") if uri in str(a.data)]
    assert markdown, "no markdown artifact links this report"
    assert "**Period 2026-02 (draft) as of 2026-02-01; compared with 2026-01 (final)**" in (
        markdown[-1])
    assert ("| USD | 37.32 (1 invoice, final) | 35.00 (1 invoice, draft) | -2.32 |"
            in markdown[-1])  # the headline: billed this period against the last
    assert "| 2026-01 | final | USD | 1 | 37.32 |" in markdown[-1]
    assert "| 2026-01 | VDP_US100 | USD | 10.00 | 1 |" in markdown[-1]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_chromium_renders_every_chart_and_the_numbers_match(billed: Path, tmp_path: Path) -> None:
    from .pdf_text import chromium as find_chromium

    chromium = find_chromium()
    page = billed.with_name("billrun.report.html").resolve().as_uri()
    dom = parse(_headless(chromium, "--dump-dom", page).stdout)

    # Every chart rendered: one <svg> per chart, each with bars the browser laid out.
    charts = dom.figures
    assert len(charts) == int(dom.body["data-charts"]) >= 7
    assert dom.body.get("data-charts-rendered") == str(len(charts))  # set by the page after layout
    for figure in charts:
        assert figure["svgs"] == 1
        assert int(figure["attrs"]["data-rendered-bars"]) == len(figure["bars"]) > 0

    con = _analyst(billed)
    # Invoices: the table and the bars are the DuckDB totals, per period, status and currency.
    expected = {
        (p, s, c): (n, total) for p, s, c, n, total in con.execute(
            "SELECT period, status, currency, count(*), sum(total) FROM invoices GROUP BY ALL"
        ).fetchall()
    }
    shown = {(r[0], r[1], r[2]): (int(r[3]), number(r[4])) for r in dom.tables["t-invoices"]}
    assert shown == expected
    bars = next(f for f in charts if f["attrs"]["data-chart"] == "chart-invoices-USD")["bars"]
    assert {(b["data-category"], b["data-series"]): Decimal(b["data-value"]) for b in bars} == {
        (p, s): total for (p, s, c), (_, total) in expected.items() if c == "USD"
    }
    # Revenue: per add-on and line type, charges plus adjustments.
    revenue = dict(con.execute(
        "SELECT addon_id || '/' || line_type, sum(amount) FROM charges GROUP BY ALL"
    ).fetchall())
    bars = next(f for f in charts if f["attrs"]["data-chart"] == "chart-revenue-lines-USD")["bars"]
    assert {f"{b['data-category']}/{b['data-series']}": Decimal(b["data-value"])
            for b in bars} == revenue
    table = {}
    for r in dom.tables["t-revenue"]:
        table[f"{r[1]}/{r[2]}"] = table.get(f"{r[1]}/{r[2]}", Decimal(0)) + number(r[4])
    assert table == revenue
    # Discount by plan, and rejected rows by file.
    assert [number(r[3]) for r in dom.tables["t-discounts"]] == [
        -con.execute("SELECT sum(amount) FROM charges WHERE line_type = 'discount'").fetchone()[0]
    ]
    assert sum(int(r[2]) for r in dom.tables["t-rejected"]) == con.execute(
        "SELECT count(*) FROM rejected_rows").fetchone()[0] == 1
    con.close()

    shot = tmp_path / "report.png"
    _headless(chromium, f"--screenshot={shot}", page)
    width, height = _png_size(shot)
    assert (width, height) == (1280, 1600) and shot.stat().st_size > 20_000  # not a blank page
