"""`curate validate` renders its results into CATALOG/validation/report.html, a page that
needs no network (great-expectations' Data Docs load their styles from CDNs), checked as
HTML and in a real headless browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curation.slices import Slice, build_slice
from curation.validation_page import page_path, write_validation_page
from tests.conftest import copy_catalog, shared_scope
from tests.headless_browser import dump_dom, needs_chromium, read_dom, screenshot, spread

PLANTED = 7.0  # an average rating outside [1, 5], set by hand in slice "small"


@pytest.fixture(scope=shared_scope)  # as split_catalog: per test while mutmut maps tests
def validated(split_catalog, tmp_path_factory) -> tuple[Path, str, str]:
    """A real `curate validate` of the items and two slices of one seed, one of them edited
    by hand: the catalog, the planted item and the command's output."""
    root = copy_catalog(split_catalog, tmp_path_factory.mktemp("validation_page") / "catalog")
    build_slice(root, 0.2, seed=3, name="small")
    build_slice(root, 0.5, seed=3, name="large")
    path = Slice.open(root, "small").path
    frame = pl.read_parquet(path)
    victim = frame.filter(pl.col("split") == "train")["parent_asin"][0]
    frame.with_columns(pl.when(pl.col("parent_asin") == victim).then(PLANTED)
                       .otherwise(pl.col("average_rating")).alias("average_rating")
                       ).write_parquet(path)
    out = CliRunner().invoke(app, ["validate", "--catalog", str(root)])
    assert out.exit_code == 1, out.output
    return root, victim, out.output


def _results(root: Path) -> dict[str, dict]:
    records = [json.loads(p.read_text()) for p in (root / "validation").glob("*.json")]
    return {r["target"]: r for r in records}


def test_every_target_gets_a_table_with_each_expectation_and_the_failing_rows(validated):
    root, victim, _ = validated
    page = page_path(root / "validation")
    dom = read_dom(page.read_text())
    results = _results(root)
    summary, *checks = dom.tables
    assert summary.column("target") == ["items", "slice:large", "slice:small"]
    assert summary.column("result") == ["passed", "passed", "FAILED"]
    met = [f"{r['expectations'] - len(r['failures'])}/{r['expectations']}"
           for r in (results[t] for t in summary.column("target"))]
    assert summary.column("expectations met") == met
    assert [t.section for t in checks] == ["target-items", "target-slice-large",
                                           "target-slice-small"]
    for table, target in zip(checks, summary.column("target"), strict=True):
        record = results[target]
        gx = [r["expectation_config"]["type"] for run in record["results"]
              for r in run["results"]]
        # each of great-expectations' results, in order, then the checks made outside it
        assert [e.split()[0] for e in table.column("expectation")[: len(gx)]] == gx
        assert len(table.rows) == record["expectations"]
        failed = [row for row, cls in zip(table.rows, table.row_classes, strict=True)
                  if "failed" in cls]
        assert len(failed) == len(record["failures"]) == table.column("result").count("FAILED")
    small = dict(zip(checks[2].column("expectation"), checks[2].rows, strict=False))
    rating = next(r for r in checks[2].rows if r[:3] == ["expect_column_values_to_be_between",
                                                         "average_rating", "FAILED"])
    assert f"parent_asin={victim}" in rating[-1] and f"average_rating={PLANTED:g}" in rating[-1]
    assert rating[3].startswith("1 of ") and "unexpected" in rating[3]
    assert small["file_matches_its_manifest"][2] == "FAILED"  # the hand edit, outside GX
    assert "were written" in small["file_matches_its_manifest"][-1]
    # the passing slice: its file check counted, as met
    assert checks[1].rows[-1][:3] == ["other checks (made outside great-expectations)", "",
                                      "met"]


def test_the_page_is_one_file_that_loads_nothing(validated):
    page = page_path(validated[0] / "validation").read_text()
    assert not re.search(r"""(src|href)=["'](?!#)""", page) and "<link" not in page
    assert "<style>" in page and "<script>" in page


def test_a_folder_without_results_says_what_to_run_and_names_what_it_left_out(tmp_path):
    (tmp_path / "notes.json").write_text("[1, 2]\n")
    (tmp_path / "broken.json").write_text("{not json")
    page = write_validation_page(tmp_path).read_text()
    assert "No validation results yet: run <code>curate validate</code>" in page
    assert "Not results, left out: broken.json, notes.json." in page


@needs_chromium
def test_the_page_in_a_browser(validated, tmp_path):
    """What a user sees: a page that is not blank, every table with its rows, and a click on
    the result header bringing the failures to the top."""
    page, profile = page_path(validated[0] / "validation"), tmp_path / "profile"
    grey, inked = spread(screenshot(page, tmp_path / "validation.png", profile))
    assert grey > 20 and inked > 0.03, (grey, inked)
    dom = read_dom(dump_dom(page, profile))
    assert dom.body.get("data-ready") == "true"
    assert len(dom.tables) == 4 and all(t.rows for t in dom.tables)
    small = dom.tables[3]
    assert small.column("result")[:2] != ["FAILED", "FAILED"]  # as written: in suite order
    small = read_dom(dump_dom(page, profile, {"sort": "result"})).tables[3]
    assert small.sorted_by == {"result": "ascending"}
    assert small.column("result")[:2] == ["FAILED", "FAILED"]
    assert set(small.column("result")[2:]) == {"met"}
