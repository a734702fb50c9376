"""The study report as a page: report.md rendered by markdown-it-py inside a jinja2 template
(training.study.pages.html_page), then opened in a real headless browser as a user would."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from curation.ingest import ingest
from curation.synth import SynthConfig, synthesize
from tests.headless_browser import (
    dump_dom,
    first_number,
    needs_chromium,
    read_dom,
    screenshot,
    spread,
)
from training.study.pages import PLOTS_BESIDE, html_page

SCORES = "test-scores-per-fraction-and-strategy"  # the id of PLOTS_BESIDE's section

MARKDOWN = f"""# Study `s`: data scaling and sample weighting

- catalog: `c`, a note with <script>alert(1)</script> in it
- **not pretrained**: said in bold

## {PLOTS_BESIDE}

| fraction | strategy | train items | test PLCC | |
|---:|---|---:|---:|---|
| 1 | `effiminivlm` | 1,024 | -0.3 [-0.5, 0.1] | worse |
| 0.5 | `uniform` | 140 | 0.249 [0.162, 0.336] | |
| 0.25 | `capped_count:c=50` | 60 | n/a | |

## Findings

- a finding

## Plots

![scaling_a](scaling_a.png)
![scaling_b](scaling_b.png)

Tables: `results.csv`.
"""


def _plots(folder: Path) -> list[Path]:
    paths = []
    for name, colour in (("scaling_a.png", "red"), ("scaling_b.png", "blue")):
        Image.new("RGB", (60, 40), colour).save(folder / name)
        paths.append(folder / name)
    return paths


def _markdown_tables(markdown: str) -> list[list[list[str]]]:
    """Each Markdown table's rows (header first, the alignment row left out), cells without
    their backticks: what a reader of the page should see in its tables."""
    tables: list[list[list[str]]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            cells = [c.strip().replace("`", "") for c in line.strip()[1:-1].split("|")]
            if not all(set(c) <= set("-:") and c for c in cells):
                tables[-1].append(cells)
        previous = line
    return tables


def test_the_page_has_the_markdowns_tables_and_the_plots_beside_the_scores(tmp_path):
    page = html_page(MARKDOWN, _plots(tmp_path))
    dom = read_dom(page)
    [table] = dom.tables
    [expected] = _markdown_tables(MARKDOWN)
    assert [table.headers, *table.rows] == expected
    assert table.section == SCORES
    # the plots, inline, beside the table they illustrate (not at the end), in their order
    assert [(i["alt"], i["section"]) for i in dom.images] == [("scaling_a", SCORES),
                                                              ("scaling_b", SCORES)]
    assert all(i["src"].startswith("data:image/png;base64,") for i in dom.images)
    assert (dom.images[0]["width"], dom.images[0]["height"]) == ("60", "40")
    assert page.index("scaling_b") < page.index(">Findings</h2>")
    assert "shown beside the table they illustrate" in page  # where the plots section was
    # the Markdown's own formatting, and its raw HTML escaped, not run
    assert "<strong>not pretrained</strong>" in page and "<code>uniform</code>" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # one file: nothing it loads from elsewhere; cells (intervals) do not wrap
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page) and "<link" not in page
    assert re.search(r"th, td \{[^}]*white-space: nowrap", page)


def test_without_a_scores_table_the_plots_stay_where_the_markdown_puts_them(tmp_path):
    markdown = MARKDOWN.replace(PLOTS_BESIDE, "Other scores")
    dom = read_dom(html_page(markdown, _plots(tmp_path)))
    assert [i["section"] for i in dom.images] == ["plots", "plots"]
    # an image that is not one of the plots stays a link to the file beside the page
    page = html_page(markdown + "\n![extra](extra.png)\n", _plots(tmp_path))
    assert '<img src="extra.png" alt="extra"' in page


@needs_chromium
@pytest.mark.parametrize(("header", "order", "expected"), [
    ("train items", "", ["60", "140", "1,024"]),  # as numbers, not as text
    ("test PLCC", "", ["-0.3 [-0.5, 0.1]", "0.249 [0.162, 0.336]", "n/a"]),  # by the first
    ("test PLCC", "desc", ["0.249 [0.162, 0.336]", "-0.3 [-0.5, 0.1]", "n/a"]),  # n/a last
    ("strategy", "", ["capped_count:c=50", "effiminivlm", "uniform"]),
])
def test_a_click_on_a_header_sorts_the_table_in_a_browser(tmp_path, header, order, expected):
    page = tmp_path / "report.html"
    page.write_text(html_page(MARKDOWN, _plots(tmp_path)))
    query = {"sort": header, **({"order": order} if order else {})}
    [table] = read_dom(dump_dom(page, tmp_path / "profile", query)).tables
    assert table.sorted_by == {header: "descending" if order else "ascending"}
    assert table.column(header) == expected


@pytest.fixture(scope="module")
def study_report(tmp_path_factory) -> Path:
    """A real study's report folder: 300 items, the tiny text encoder alone, the ridge head, no
    fits (about 10 s)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("torch")
    from training.study.grid import run_study
    from training.study.report import build_report

    root = tmp_path_factory.mktemp("report_pages")
    synthesize(root / "corpus", SynthConfig(n_items=300, seed=3))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    config = root / "study.toml"
    config.write_text("\n".join([
        'name = "pages"', f"catalog = {json.dumps(str(root / 'catalog'))}",
        f"out = {json.dumps(str(root / 'study'))}", "fractions = [0.25, 0.5, 0.75, 1.0]",
        'strategies = ["uniform", "effiminivlm"]', "seeds = [0, 1, 2]", "[trainer]",
        'head = "ridge"', 'image_encoder = "none"', 'text_encoder = "tiny-minilm"',
        "[report]", "fits = false",
    ]) + "\n")
    result = run_study(config, log=lambda _: None)
    return build_report(result.folder).folder / "report"


def test_a_real_reports_page_shows_every_table_of_its_markdown(study_report):
    markdown = (study_report / "report.md").read_text()
    dom = read_dom((study_report / "report.html").read_text())
    expected = _markdown_tables(markdown)
    assert len(expected) >= 2  # the scores and every pair
    assert [[t.headers, *t.rows] for t in dom.tables] == expected
    assert [i["alt"] for i in dom.images] == ["scaling_error_plcc", "scaling_test_rmse"]
    assert {i["section"] for i in dom.images} == {SCORES}


@needs_chromium
def test_the_report_in_a_browser(study_report, tmp_path):
    """What a user sees: a page that is not blank, its tables with their rows, the plots
    decoded beside the scores, and a click on a header sorting by number."""
    page, profile = study_report / "report.html", tmp_path / "profile"
    grey, inked = spread(screenshot(page, tmp_path / "report.png", profile))
    assert grey > 20 and inked > 0.03, (grey, inked)

    dom = read_dom(dump_dom(page, profile))
    assert dom.body.get("data-ready") == "true" and dom.body["data-images-decoded"] == "2/2"
    assert all(i["data-decoded"] == "true" and int(i["data-natural-width"]) > 100
               and i["section"] == SCORES for i in dom.images)
    scores = dom.tables[0]
    assert scores.section == SCORES and len(scores.rows) == 4 * 2
    assert all(len(t.rows) > 0 for t in dom.tables)

    # ?sort=<header> clicks that header once the page has loaded (twice with order=desc)
    by_items = read_dom(dump_dom(page, profile, {"sort": "train items"})).tables[0]
    assert by_items.sorted_by == {"train items": "ascending"}
    sizes = [first_number(v) for v in by_items.column("train items")]
    assert sizes == sorted(sizes) and sorted(by_items.rows) == sorted(scores.rows)
    assert sizes != sorted(sizes, key=str)  # as numbers: 60 before 120, not after
    by_plcc = read_dom(dump_dom(page, profile, {"sort": "test PLCC", "order": "desc"})).tables[0]
    assert by_plcc.sorted_by == {"test PLCC": "descending"}
    means = [first_number(v) for v in by_plcc.column("test PLCC")]  # an interval's first number
    assert means == sorted(means, reverse=True) and len(set(means)) > 1
