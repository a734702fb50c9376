"""A real headless browser for the pages' tests: Debian's chromium, offline.

``needs_chromium`` skips a test, saying why, where chromium is not installed (``.ci/run``
installs it). ``screenshot`` and ``dump_dom`` open a page as a user would (``file://``, no
network: the background-networking flags keep chromium from trying), ``tables`` and
``images`` read the DOM after the page's scripts ran, ``spread`` says whether a screenshot
shows anything.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
WINDOW = (1400, 2000)


def _run(profile: Path, *args: str) -> str:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def url(page: Path, query: dict[str, str] | None = None) -> str:
    params = "&".join(f"{k}={quote(v)}" for k, v in (query or {}).items())
    return page.resolve().as_uri() + (f"?{params}" if params else "")


def screenshot(page: Path, png: Path, profile: Path) -> Path:
    _run(profile, f"--screenshot={png}", url(page))
    assert png.exists(), f"chromium wrote no screenshot of {page}"
    return png


def dump_dom(page: Path, profile: Path, query: dict[str, str] | None = None) -> str:
    """The DOM once the page has loaded and its scripts ran."""
    return _run(profile, "--dump-dom", url(page, query))


def spread(png: Path) -> tuple[float, float]:
    """The standard deviation of a screenshot's grey levels and its share of pixels that are
    not near white: both 0 for a blank page."""
    from PIL import Image, ImageStat

    grey = Image.open(png).convert("L")
    inked = sum(grey.histogram()[:200]) / (grey.width * grey.height)
    return ImageStat.Stat(grey).stddev[0], inked


@dataclass
class Table:
    section: str  # the id of the <section> the table stands in ("" outside one)
    headers: list[str] = field(default_factory=list)
    sorted_by: dict[str, str] = field(default_factory=dict)  # header -> aria-sort
    rows: list[list[str]] = field(default_factory=list)
    row_classes: list[str] = field(default_factory=list)

    def column(self, header: str) -> list[str]:
        i = self.headers.index(header)
        return [row[i] for row in self.rows]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[Table] = []
        self.images: list[dict[str, str]] = []
        self.body: dict[str, str] = {}
        self.sections: list[str] = []
        self.cell: list[str] | None = None
        self.in_head = False
        self.sort = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append(named.get("id", ""))
        elif tag == "body":
            self.body = named
        elif tag == "img":
            self.images.append({**named, "section": self.sections[-1] if self.sections else ""})
        elif tag == "table":
            self.tables.append(Table(self.sections[-1] if self.sections else ""))
        elif tag == "thead":
            self.in_head = True
        elif tag == "tbody":
            self.in_head = False
        elif tag == "tr" and self.tables and not self.in_head:
            self.tables[-1].rows.append([])
            self.tables[-1].row_classes.append(named.get("class", ""))
        elif tag in ("td", "th") and self.tables:
            self.cell, self.sort = [], named.get("aria-sort", "")
        elif tag in ("br", "div") and self.cell is not None:  # a line of its own in a cell
            self.cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self.sections:
            self.sections.pop()
        elif tag in ("td", "th") and self.cell is not None:
            text = " ".join("".join(self.cell).split())
            table = self.tables[-1]
            if self.in_head:
                table.headers.append(text)
                if self.sort:
                    table.sorted_by[text] = self.sort
            else:
                table.rows[-1].append(text)
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def read_dom(dom: str) -> _Reader:
    """The tables (headers, rows of cell texts, sort state), the images' attributes and the
    body's attributes of a dumped DOM."""
    reader = _Reader()
    reader.feed(dom)
    return reader


def first_number(text: str) -> float | None:
    """The number a cell sorts by: the first one in it ("0.249 [0.162, 0.336]" -> 0.249)."""
    import re

    match = re.search(r"[-+]?\d[\d,]*(?:\.\d+)?", text)
    return float(match.group().replace(",", "")) if match else None
