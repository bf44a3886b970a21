"""The printable invoice and notes (SPEC §9): self-contained HTML pages (and a note as plain
text), rendered by Jinja2 (autoescape on for HTML) from a `pipeline.documents.InvoiceDocument`
or `NoteDocument`. The templates only place text: every
amount is worked out and formatted by the model.

Print is a first-class medium: the page fits A4 and Letter (margins in mm, widths in %, no
`@page size`, so the printer's paper is used), a table header repeats on every page, and a
row never breaks across pages (`break-inside: avoid`)."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, StrictUndefined

from pipeline.documents import InvoiceDocument, NoteDocument

STYLE = """
@page { margin: 16mm 14mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; font-size: 10pt; color: #111;
       margin: 0 auto; max-width: 190mm; padding: 8mm 0; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
h2 { font-size: 12pt; margin: 7mm 0 2mm; break-after: avoid; page-break-after: avoid; }
header { display: flex; justify-content: space-between; align-items: flex-start; gap: 8mm; }
.parties { display: flex; justify-content: space-between; gap: 8mm; margin-top: 5mm; }
.parties div { width: 48%; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 1mm 4mm; margin: 0; }
dt { color: #555; } dd { margin: 0; }
table { width: 100%; border-collapse: collapse; margin-top: 2mm; }
thead { display: table-header-group; }
tfoot { display: table-row-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
th, td { text-align: left; padding: 1.2mm 1.5mm; border-bottom: 0.2mm solid #ccc;
         vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
tr.subtotal td { font-weight: 600; border-bottom: 0.4mm solid #888; }
.total { margin-top: 6mm; font-size: 13pt; font-weight: 700; text-align: right; }
.draft-mark { color: #b00; font-weight: 700; letter-spacing: 2mm; }
.watermark { position: fixed; top: 40%; left: 0; right: 0; text-align: center;
             font-size: 90pt; color: rgba(180, 0, 0, 0.12); transform: rotate(-30deg);
             z-index: -1; }
.muted { color: #555; }
@media print { body { padding: 0; max-width: none; } }
"""

# The seller and the account, the same on an invoice and a note (`{% include "parties.html" %}`).
PARTIES = """<section class="parties">
  <div id="seller">
    <h2>From</h2>
    {% if doc.seller %}
    <strong>{{ doc.seller.name }}</strong><br>
    {% for line in doc.seller.address %}{{ line }}<br>{% endfor %}
    {% if doc.seller.tax_id %}Tax id: {{ doc.seller.tax_id }}{% endif %}
    {% else %}<span class="muted">(no seller in the catalog)</span>{% endif %}
  </div>
  <div id="account">
    <h2>Bill to</h2>
    <dl>{% for label, value in doc.account %}<dt>{{ label }}</dt><dd>{{ value }}</dd>
    {% endfor %}</dl>
  </div>
</section>
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{% if doc.draft %}DRAFT invoice{% else %}Invoice {{ doc.number }}{% endif %}
 {{ doc.account_id }} {{ doc.period }}</title>
<style>{{ style }}</style>
</head>
<body data-number="{{ doc.number }}" data-draft="{{ 'yes' if doc.draft else 'no' }}">
{% if doc.draft %}<div class="watermark" aria-hidden="true">DRAFT</div>{% endif %}
<header>
  <div>
    {% if doc.draft %}
    <h1><span class="draft-mark">DRAFT</span> invoice</h1>
    <p class="muted">Not a final invoice: no number, no issue or due date. It may still change.</p>
    {% else %}
    <h1>Invoice {{ doc.number }}</h1>
    {% endif %}
  </div>
  <dl id="dates">
    {% if not doc.draft %}
    <dt>Invoice number</dt><dd>{{ doc.number }}</dd>
    <dt>Issued on</dt><dd>{{ doc.issued_on }}</dd>
    <dt>Due on</dt><dd>{{ doc.due_on }}</dd>
    {% endif %}
    <dt>Period</dt><dd>{{ doc.period }} ({{ doc.period_start }} to {{ doc.period_end }})</dd>
    <dt>Currency</dt><dd>{{ doc.currency }}</dd>
  </dl>
</header>
{% include "parties.html" %}

{% if doc.groups %}
<h2>Subscriptions and fees, by add-on</h2>
<table id="fees">
  <thead><tr><th>Add-on / line</th><th>Type</th><th>Term</th><th>Proration</th>
    <th class="num">Qty</th><th class="num">Amount</th></tr></thead>
  <tbody>
  {% for group in doc.groups %}
    <tr class="group"><td colspan="6"><strong>{{ group.name }}</strong>
      <span class="muted">{{ group.addon_id }}</span></td></tr>
    {% for row in group.rows %}
    <tr class="line"><td>{{ row.description }}</td><td>{{ row.line_type }}</td>
      <td class="nowrap">{{ row.term }}</td><td class="nowrap">{{ row.proration }}</td>
      <td class="num">{{ row.quantity }}</td><td class="num amount">{{ row.amount }}</td></tr>
    {% endfor %}
    <tr class="subtotal"><td colspan="5">Subtotal {{ group.name }}</td>
      <td class="num">{{ group.subtotal }}</td></tr>
  {% endfor %}
  </tbody>
</table>
{% endif %}

{% if doc.usage %}
<h2>Usage, by service and destination group</h2>
<table id="usage">
  <thead><tr><th>Service</th><th>Destination group</th><th class="num">Quantity</th>
    <th class="num">Usage</th><th class="num">Discount</th><th>Discounted by</th>
    <th class="num">Net</th></tr></thead>
  <tbody>
  {% for row in doc.usage %}
    <tr class="line"><td>{{ row.service }}</td><td>{{ row.destination_group }}</td>
      <td class="num">{{ row.quantity }}</td><td class="num amount">{{ row.usage }}</td>
      <td class="num amount">{{ row.discount }}</td><td>{{ row.discounted_by }}</td>
      <td class="num">{{ row.net }}</td></tr>
  {% endfor %}
    <tr class="subtotal"><td colspan="6">Subtotal usage</td>
      <td class="num">{{ doc.usage_total }}</td></tr>
  </tbody>
</table>
{% endif %}

<p class="total" id="total">Total {{ doc.total }} {{ doc.currency }}</p>

{% if doc.notes %}
<h2>Notes correcting this invoice</h2>
<table id="notes">
  <thead><tr><th>Number</th><th>Kind</th><th>Issued on</th><th>Due on</th><th>Line</th>
    <th class="num">Amount</th></tr></thead>
  <tbody>
  {% for note in doc.notes %}
    {% for line in note.lines %}
    <tr class="line"><td>{{ note.number }}</td><td>{{ note.kind }}</td>
      <td>{{ note.issued_on }}</td><td>{{ note.due_on }}</td><td>{{ line.description }}</td>
      <td class="num">{{ line.amount }}</td></tr>
    {% endfor %}
    <tr class="subtotal"><td colspan="5">{{ note.kind }} {{ note.number }} total</td>
      <td class="num">{{ note.total }}</td></tr>
  {% endfor %}
  </tbody>
</table>
<p class="total" id="balance">Total with corrections {{ doc.balance }} {{ doc.currency }}</p>
{% endif %}
</body>
</html>
"""

_ENV = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                   lstrip_blocks=True, loader=DictLoader({"parties.html": PARTIES}))
_TEMPLATE = _ENV.from_string(TEMPLATE)


def render_invoice(doc: InvoiceDocument) -> str:
    """The invoice as one self-contained HTML page (no external file, font or script)."""
    return _TEMPLATE.render(doc=doc, style=STYLE)


# A credit or debit note printed on its own (SPEC §9): the same stylesheet and environment.
NOTE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ doc.kind }} {{ doc.number }} {{ doc.account_id }} {{ doc.period }}</title>
<style>{{ style }}</style>
</head>
<body data-number="{{ doc.number }}" data-corrects="{{ doc.corrects }}">
<header>
  <div>
    <h1>{{ doc.kind }} {{ doc.number }}</h1>
    {% if doc.corrects %}
    <p>Corrects invoice {{ doc.corrects }}</p>
    {% else %}
    <p class="muted">The period had no invoice: this note stands alone.</p>
    {% endif %}
  </div>
  <dl id="dates">
    <dt>Number</dt><dd>{{ doc.number }}</dd>
    <dt>Issued on</dt><dd>{{ doc.issued_on }}</dd>
    <dt>Due on</dt><dd>{{ doc.due_on }}</dd>
    <dt>Period</dt><dd>{{ doc.period }} ({{ doc.period_start }} to {{ doc.period_end }})</dd>
    <dt>Currency</dt><dd>{{ doc.currency }}</dd>
  </dl>
</header>
{% include "parties.html" %}

<h2>Lines</h2>
<table id="lines">
  <thead><tr><th>Line</th><th>Type</th><th>Term</th><th>Proration</th><th>Reason</th>
    <th class="num">Qty</th><th class="num">Amount</th></tr></thead>
  <tbody>
  {% for line in doc.lines %}
    <tr class="line"><td>{{ line.fee.description }}</td><td>{{ line.fee.line_type }}</td>
      <td class="nowrap">{{ line.fee.term }}</td><td class="nowrap">{{ line.fee.proration }}</td>
      <td>{{ line.reason }}</td><td class="num">{{ line.fee.quantity }}</td>
      <td class="num amount">{{ line.fee.amount }}</td></tr>
  {% endfor %}
  </tbody>
</table>

<p class="total" id="total">{{ doc.kind }} total {{ doc.total }} {{ doc.currency }}</p>
{% if doc.corrects %}
<p class="total muted" id="invoice-total">Invoice {{ doc.corrects }} total {{ doc.invoice_total }}
 {{ doc.currency }}</p>
<p class="total" id="balance">Total with corrections {{ doc.balance }} {{ doc.currency }}</p>
{% endif %}
</body>
</html>
"""

# The same note as plain text, for a terminal or an e-mail: at most 80 columns.
NOTE_TEXT = """{{ doc.kind | upper }} {{ doc.number }}
{% if doc.corrects %}Corrects invoice {{ doc.corrects }}
{% else %}The period had no invoice: this note stands alone.
{% endif %}
Issued on {{ doc.issued_on }}, due on {{ doc.due_on }}
Period {{ doc.period }} ({{ doc.period_start }} to {{ doc.period_end }}), {{ doc.currency }}
{% if doc.seller %}From: {{ doc.seller.name | wordwrap(72, wrapstring=nl ~ "      ") }}
{% for line in doc.seller.address %}      {{ line | wordwrap(72, wrapstring=nl ~ "      ") }}
{% endfor %}{% if doc.seller.tax_id %}      Tax id: {{ doc.seller.tax_id }}
{% endif %}{% endif %}
{% for label, value in doc.account %}{{ "%-14s" | format(label ~ ":") }} {{ value | wordwrap(64,
    wrapstring=nl ~ " " * 15) }}
{% endfor %}

Lines
{% for line in doc.lines %}
- {{ line.fee.description | wordwrap(76, wrapstring=nl ~ "  ") }}
{% if line.reason %}  reason: {{ line.reason | wordwrap(68, wrapstring=nl ~ "          ") }}
{% endif %}
  {{ "%-16s %-26s %-13s %19s" | format(line.fee.line_type, line.fee.term, line.fee.proration,
                                       line.fee.amount) }}
{% endfor %}

{{ "%-58s %19s" | format(doc.kind ~ " total (" ~ doc.currency ~ ")", doc.total) }}
{% if doc.corrects %}
{{ "%-58s %19s" | format("Invoice " ~ doc.corrects ~ " total", doc.invoice_total) }}
{{ "%-58s %19s" | format("Total with corrections", doc.balance) }}
{% endif %}
"""

_NOTE = _ENV.from_string(NOTE_TEMPLATE)
_TEXT_ENV = Environment(autoescape=False, undefined=StrictUndefined, trim_blocks=True,
                        lstrip_blocks=True, keep_trailing_newline=True)
_NOTE_TEXT = _TEXT_ENV.from_string(NOTE_TEXT)


def render_note(doc: NoteDocument) -> str:
    """A credit or debit note as one self-contained HTML page, styled as the invoice."""
    return _NOTE.render(doc=doc, style=STYLE)


def render_note_text(doc: NoteDocument) -> str:
    """A credit or debit note as plain text, at most 80 columns."""
    return _NOTE_TEXT.render(doc=doc, nl="\n")
