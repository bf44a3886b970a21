"""Issue 21, item 5: a report a billing manager reads, through the CLI as the team runs it.

The books (tests/flows/conftest.py, plus one EUR account with twelve long-named add-ons),
worked by hand (SPEC §3-4):

- A1 (USD), as in test_report.py: January 37.32 (TV activation 10.00 + TV fee from Jan 11
  30.00 x 21/31 = 20.32 + voice fee 5.00 + 120 minutes at 0.10 = 12.00 - the first 100 free
  10.00), final at the 2026-02-01 nightly; February 35.00 (TV 30.00 + voice 5.00), a draft.
  One usage row has a bad date: rejected.
- B1 (EUR), billing day 1, from Jan 1: add-on n (n = 1..12) costs n.00 a month, so each month is
  1 + 2 + ... + 12 = 78.00 EUR: January final, February draft, a difference of +0.00.
- After the nightly, a late call (Jan 28, 30 minutes, 3.00 USD) is loaded: late usage waiting
  in 2026-01, one event. `reprocess --period 2026-01` bills it: one adjustment line, +3.00 USD
  (the 30 minutes are past the 100 free ones).
- The revenue table has 24 EUR rows (12 add-ons x 2 months): the top 10 (8.00 to 12.00, in
  January and in February) are shown, and the other 14 are summed in one "others" row:
  2 x (1 + 2 + ... + 7) = 56.00 EUR over 14 lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from billrun.cli import main
from flows import prefect_env
from report.tables import TOP_ROWS
from tests.flows.conftest import ACCOUNTS, ASSIGNMENTS, CATALOG, USAGE, write_drop

prefect_env.configure()

pytestmark = pytest.mark.slow

LONG = [f"ADD_EUROPE_STREAMING_BUNDLE_{n:02d}" for n in range(1, 13)]
WIDE_CATALOG = CATALOG.replace("main_products:\n", (
    "main_products:\n"
    f"  - {{id: MP_WIDE, name: Wide, available_addons: [{', '.join(LONG)}]}}\n"
)).replace("subscriptions:\n", "subscriptions:\n" + "".join(
    f"  - id: SUB_{n:02d}\n    fee_plans:\n"
    f"      - {{id: FP_{n:02d}, term_months: 1, fee: \"{n}.00\", currency: EUR}}\n"
    for n in range(1, 13)
)).replace("addons:\n", "addons:\n" + "".join(
    f"  - {{id: {name}, name: Bundle {n}, priority: {30 + n}, subscription: SUB_{n:02d}}}\n"
    for n, name in enumerate(LONG, start=1)
))
WIDE_ACCOUNTS = ACCOUNTS + "B1,EUR,MP_WIDE,1,active,2026-01-01,,\n"
WIDE_ASSIGNMENTS = ASSIGNMENTS + "".join(
    f"AS_B{n:02d},B1,{name},FP_{n:02d},2026-01-01,,2025-12-30 10:00:00,1\n"
    for n, name in enumerate(LONG, start=1)
)
BAD_USAGE_ROW = "E9,A1,voice,US,2026-01-77 10:00:00,5,0.50\n"
LATE_USAGE = """event_id,account_id,service,destination_group,started_at,quantity,amount
E3,A1,voice,US,2026-01-28 09:00:00,30,3.00
"""
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Bill the books, then keep each page as it was at each step (a later step rewrites)."""
    tmp = tmp_path_factory.mktemp("manager")
    drop = write_drop(tmp / "drop1", catalog=WIDE_CATALOG, accounts=WIDE_ACCOUNTS,
                      assignments=WIDE_ASSIGNMENTS, usage=USAGE + BAD_USAGE_ROW)
    late = write_drop(tmp / "late", usage=LATE_USAGE)
    db = tmp / "billrun.duckdb"
    run_report = tmp / "billrun.report.html"
    on_demand = tmp / "billrun.report-2026-02.html"
    assert main(["load", str(drop), "--db", str(db)]) == 0
    assert main(["nightly", "--as-of", "2026-02-01", "--db", str(db)]) == 0
    pages: dict[str, object] = {"db": db, "tmp": tmp, "night": run_report.read_text()}
    assert main(["load", str(late), "--db", str(db)]) == 0
    assert main(["report", "--db", str(db)]) == 0
    pages["on demand"] = on_demand.read_text()
    pages["run report after billrun report"] = run_report.read_text()
    assert main(["reprocess", "--period", "2026-01", "--db", str(db)]) == 0
    pages["reprocess"] = run_report.read_text()
    return pages


class _Page(HTMLParser):
    """The headline paragraph's text and every table's rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.headline = ""
        self.tables: dict[str, list[list[str]]] = {}
        self.captions: dict[str, str] = {}
        self._in: str | None = None  # "headline", "caption" or "cell"
        self._table: str | None = None
        self._text: list[str] = []
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "p" and a.get("id") == "headline":
            self._in, self._text = "headline", []
        elif tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "caption":
            self._in, self._text = "caption", []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._in, self._text = "cell", []

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text).strip()
        if tag == "p" and self._in == "headline":
            self.headline, self._in = text, None
        elif tag == "caption" and self._in == "caption" and self._table:
            self.captions[self._table], self._in = text, None
        elif tag == "td" and self._in == "cell" and self._row is not None:
            self._row.append(text)
            self._in = None
        elif tag == "tr" and self._row and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text.append(data)


def page(html: object) -> _Page:
    parsed = _Page()
    parsed.feed(str(html))
    return parsed


REJECTED = ('1 row in all loads: see "Rejected rows" below, or '
            'billrun sql "SELECT * FROM rejected_rows"')
BILLED = [
    ["EUR", "78.00 (1 invoice, final)", "78.00 (1 invoice, draft)", "+0.00"],
    ["USD", "37.32 (1 invoice, final)", "35.00 (1 invoice, draft)", "-2.32"],
]


def test_the_headline_answers_the_first_questions(books: dict[str, object]) -> None:
    # `billrun report` after the late call was loaded, before anyone reprocessed January.
    shown = page(books["on demand"])
    assert shown.headline == (
        "Period 2026-02 (draft) as of 2026-02-01; compared with 2026-01 (final)")
    assert shown.tables["t-headline-billed"] == BILLED
    assert dict(shown.tables["t-headline-facts"]) == {
        "adjustments": "none to the periods 2026-01 to 2026-02",
        "rejected rows": REJECTED,
        "late usage waiting, 2026-01": "1 event in a final period, not billed yet: "
                                       "billrun reprocess --period 2026-01",
    }


def test_after_the_reprocess_the_headline_counts_its_adjustment(
    books: dict[str, object],
) -> None:
    shown = page(books["reprocess"])
    assert shown.tables["t-headline-billed"] == BILLED  # final invoices are never rewritten
    assert dict(shown.tables["t-headline-facts"]) == {
        "adjustments": "1 line, net +3.00 USD (to 2026-01)",
        "rejected rows": REJECTED,
        "late usage waiting": "none",
    }
    assert dict(shown.tables["t-run-facts"])["adjustment lines"] == "1"  # "The run" section


def test_billrun_report_keeps_the_runs_own_report(books: dict[str, object]) -> None:
    # The on-demand page went to billrun.report-2026-02.html: the nightly's page, with its
    # "The run" section, is byte for byte what the nightly wrote.
    assert books["run report after billrun report"] == books["night"]
    assert "t-run-facts" in page(books["night"]).tables
    assert "t-run-facts" not in page(books["on demand"]).tables  # no run to tell about
    # Asked for by name, the run's page is replaced.
    db, run_report = Path(str(books["db"])), Path(str(books["tmp"])) / "billrun.report.html"
    assert main(["report", "--db", str(db), "--out", str(run_report)]) == 0
    assert "t-run-facts" not in page(run_report.read_text()).tables


def test_a_long_table_shows_its_top_rows_and_one_others_row(books: dict[str, object]) -> None:
    shown = page(books["reprocess"])
    eur = [r for r in shown.tables["t-revenue"] if r[3] == "EUR"]
    assert len(eur) == TOP_ROWS + 1 == 11
    assert eur[-1] == ["others (14)", "", "", "EUR", "56.00", "14"]
    assert sorted(r[4] for r in eur[:-1]) == sorted(
        f"{n}.00" for n in range(8, 13) for _ in range(2))
    assert len([r for r in shown.tables["t-revenue"] if r[3] == "USD"]) == 8  # whole
    assert shown.captions["t-revenue"] == (
        f"The top {TOP_ROWS} rows by amount, per currency; the other 14 of the 32 rows are "
        'summed in the "others" row.')


# Appended to a copy of the page: measures the page as laid out in a 1280 px window.
PROBE = """<script>
window.addEventListener('load', function () {
  var svgOf = {}, out = {innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth, headline:
    document.getElementById('headline').textContent, figures: [], legends: [], categories: []};
  document.querySelectorAll('figure.chart').forEach(function (f) {
    var svg = f.querySelector('svg'), r = svg.getBoundingClientRect(), fills = {};
    svg.querySelectorAll('rect.bar').forEach(function (b) {
      fills[b.getAttribute('data-series')] = b.getAttribute('fill'); });
    out.figures.push({chart: f.getAttribute('data-chart'), right: r.right,
      figureRight: f.getBoundingClientRect().right, fills: fills,
      caption: f.querySelector('figcaption').textContent});
    f.querySelectorAll('.legend-label').forEach(function (l) {
      var b = l.getBoundingClientRect();
      out.legends.push({chart: f.getAttribute('data-chart'), name: l.getAttribute('data-name'),
        text: l.textContent, right: b.right, clipped: l.scrollWidth > l.clientWidth + 1,
        swatch: getComputedStyle(l.previousElementSibling).backgroundColor});
    });
    svg.querySelectorAll('text.category').forEach(function (t) {
      var b = t.getBBox();
      out.categories.push({chart: f.getAttribute('data-chart'), name: t.getAttribute('data-name'),
        text: Array.from(t.querySelectorAll('tspan')).map(function (s) {
          return s.textContent; }).join(''),
        inside: b.x >= 0 && b.x + b.width <= svg.width.baseVal.value + 0.5});
    });
  });
  var pre = document.createElement('pre'); pre.id = 'layout-probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


def _laid_out(html: str, tmp_path: Path, name: str) -> dict:
    from .pdf_text import chromium

    probe = tmp_path / f"{name}.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--window-size=1280,1600", "--dump-dom",
         probe.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=True)
    start = done.stdout.index('<pre id="layout-probe">') + len('<pre id="layout-probe">')
    text = done.stdout[start:done.stdout.index("</pre>", start)]
    return json.loads(text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


@pytest.mark.parametrize("step", ["on demand", "reprocess"])
def test_chromium_at_1280_px_no_scroll_whole_legends_distinct_colours(
    books: dict[str, object], tmp_path: Path, step: str,
) -> None:
    got = _laid_out(str(books[step]), tmp_path, step.replace(" ", "-"))
    assert got["innerWidth"] == 1280
    assert got["scrollWidth"] <= 1280  # no horizontal scroll
    assert got["headline"] == (
        "Period 2026-02 (draft) as of 2026-02-01; compared with 2026-01 (final)")
    assert got["figures"] and all(f["right"] <= 1280 and f["figureRight"] <= 1280
                                  for f in got["figures"])
    for figure in got["figures"]:  # one colour per series, none repeated within a chart
        fills = list(figure["fills"].values())
        assert len(set(fills)) == len(fills), figure
    # Every legend label is its whole name, laid out inside the window.
    assert got["legends"]
    for label in got["legends"]:
        assert label["text"] == label["name"] and not label["clipped"], label
        assert label["right"] <= 1280, label
    # The EUR net revenue chart: the 7 largest add-ons by name, whole, then "others" in grey.
    eur = [lab["text"] for lab in got["legends"]
           if lab["chart"] == "chart-revenue-periods-EUR"]
    assert eur == sorted(LONG[5:]) + ["others"]
    others = next(lab for lab in got["legends"] if lab["chart"] == "chart-revenue-periods-EUR"
                  and lab["name"] == "others")
    assert others["swatch"] == "rgb(153, 153, 153)"
    figure = next(f for f in got["figures"] if f["chart"] == "chart-revenue-periods-EUR")
    assert '5 smaller add-ons summed in "others"' in figure["caption"]
    # Category labels: wrapped where long, never cut, inside their chart.
    lines = {c["name"]: c for c in got["categories"] if c["chart"] == "chart-revenue-lines-EUR"}
    assert sorted(lines) == LONG
    assert all(c["text"] == c["name"] and c["inside"] for c in got["categories"])


def test_refusals_are_one_line_exit_2_and_make_no_folder(books: dict[str, object]) -> None:
    db, tmp = Path(str(books["db"])), Path(str(books["tmp"]))
    before = sorted(p.name for p in tmp.iterdir())
    missing = tmp / "missing" / "dir" / "x.html"
    never, nowhere = (
        subprocess.run([str(BIN / "billrun"), *argv, "--db", str(db)], capture_output=True,
                       text=True, timeout=120, cwd=tmp, env={**os.environ, "COLUMNS": "80"})
        for argv in (["report", "--period", "2030-01"], ["report", "--out", str(missing)])
    )
    assert (never.returncode, never.stdout) == (2, "")
    assert never.stderr == (
        f"billrun: error: {db.with_name('billrun.analyst.duckdb')}: "
        "no invoice for period 2030-01\n")
    assert (nowhere.returncode, nowhere.stdout) == (2, "")
    assert nowhere.stderr == f"billrun: error: --out {missing}: no folder {missing.parent}\n"
    assert sorted(p.name for p in tmp.iterdir()) == before  # no folder, no page
