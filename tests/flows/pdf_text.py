"""The text of a PDF that headless Chromium printed (Skia), in pure Python, for tests.

Skia writes PDF 1.4 without object streams: each page's content stream (Flate) shows glyph ids
(`<hex> Tj`, `[...] TJ`) of Type0 fonts with Identity-H encoding, and each font's ToUnicode CMap
maps its ids back to text. One text object (`BT` ... `ET`) becomes one line."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

_OBJ = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_TOKEN = re.compile(
    rb"/([\w.+-]+)\s+[-\d.]+\s+Tf|<([0-9A-Fa-f]*)>\s*Tj|\[(.*?)\]\s*TJ|\bET\b", re.S
)


def _stream(body: bytes) -> bytes:
    raw = _STREAM.search(body)
    assert raw is not None, "no stream"
    return zlib.decompress(raw.group(1)) if b"FlateDecode" in body else raw.group(1)


def _cmap(text: bytes) -> dict[int, str]:
    """A ToUnicode CMap's bfchar and bfrange entries."""
    mapping: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
        for lo, hi, dst in re.findall(
            rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
        ):
            start = int(dst, 16)
            for offset, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                mapping[code] = chr(start + offset)
    return mapping


def _ref(body: bytes, key: bytes) -> int | None:
    found = re.search(rb"/" + key + rb"\s+(\d+) 0 R", body)
    return int(found.group(1)) if found else None


def pdf_pages(path: Path) -> list[str]:
    """The text of each page, one line per text object."""
    objects = {int(n): body for n, body in _OBJ.findall(path.read_bytes())}
    pages = []
    for body in objects.values():
        if not re.search(rb"/Type\s*/Page\b(?!s)", body):
            continue
        fonts_block = re.search(rb"/Font\s*<<(.*?)>>", body, re.S)
        fonts = {}
        for name, ref in re.findall(rb"/([\w.+-]+)\s+(\d+) 0 R", fonts_block.group(1)):
            unicode_ref = _ref(objects[int(ref)], b"ToUnicode")
            fonts[name] = _cmap(_stream(objects[unicode_ref])) if unicode_ref else {}
        contents = re.search(rb"/Contents\s*(\[.*?\]|\d+ 0 R)", body, re.S).group(1)
        lines, line, font = [], [], {}
        for ref in re.findall(rb"(\d+) 0 R", contents):
            for match in _TOKEN.finditer(_stream(objects[int(ref)])):
                if match.group(1) is not None:
                    font = fonts.get(match.group(1), {})
                    continue
                if match.group(0) == b"ET":
                    lines.append("".join(line))
                    line = []
                    continue
                hexes = [match.group(2)] if match.group(2) is not None else re.findall(
                    rb"<([0-9A-Fa-f]*)>", match.group(3))
                for text in hexes:
                    line += [font.get(int(text[i:i + 4], 16), "?")
                             for i in range(0, len(text), 4)]
        pages.append("\n".join(lines))
    return pages


def chromium() -> str:
    """Debian's chromium (installed by .ci/run); skip only where it cannot be installed."""
    import os
    import shutil
    import subprocess

    import pytest

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
            shell=True, capture_output=True, timeout=900, check=False,
        )
        found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed and cannot be installed here")
    return found


def print_to_pdf(page: Path, pdf: Path, paper: str | None = None) -> list[str]:
    """Print `page` to `pdf` with headless Chromium (its default paper is Letter; `paper`,
    e.g. "A4", is set on a copy of the page by an `@page size` rule); returns the pages' text.
    `subprocess.run` waits for the browser, which ends with its helper processes."""
    import subprocess

    if paper:
        copy = pdf.with_suffix(f".{paper}.html")
        copy.write_text(page.read_text(encoding="utf-8").replace(
            "</style>", f"@page {{ size: {paper}; }}</style>", 1), encoding="utf-8")
        page = copy
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    )
    return pdf_pages(pdf)


def media_box(pdf: Path) -> tuple[float, float]:
    """The first page's size in points (Letter 612 x 792, A4 about 595 x 842)."""
    found = re.search(rb"/MediaBox\s*\[0 0 ([\d.]+) ([\d.]+)\]", pdf.read_bytes())
    assert found is not None
    return float(found.group(1)), float(found.group(2))
