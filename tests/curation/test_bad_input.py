"""Bad input gets one clear line naming the file, line or parameter, or is handled as the user
meant: never a traceback, never a silently wrong result."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from curation.catalog import CatalogError
from curation.clean import clean
from curation.ingest import ingest


def _curate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "curate", *args], capture_output=True,
                          text=True, timeout=120)


def _item(asin: str, **extra: object) -> str:
    return json.dumps({"parent_asin": asin, "title": f"item {asin}", "main_category": "Beauty",
                       "features": ["f"], "description": ["d"], "average_rating": 4.0,
                       "rating_number": 3, **extra}) + "\n"


def test_a_byte_order_mark_before_the_first_line_is_not_part_of_it(tmp_path):
    meta = tmp_path / "raw" / "meta_categories"
    meta.mkdir(parents=True)
    (meta / "meta_All_Beauty.jsonl").write_bytes(b"\xef\xbb\xbf" + (_item("A") + _item("B"))
                                                 .encode())
    [result] = ingest(str(tmp_path / "raw"), tmp_path / "catalog")
    assert (result.rows_ingested, result.lines_quarantined) == (2, 0)


def test_a_catalog_option_naming_a_file_or_someone_elses_folder_is_one_line(tmp_path):
    raw = tmp_path / "raw" / "meta_categories"
    raw.mkdir(parents=True)
    (raw / "meta_All_Beauty.jsonl").write_text(_item("A"))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    done = _curate("ingest", str(tmp_path / "raw"), "-c", str(a_file))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {a_file} is a file, not a catalog folder"
    with pytest.raises(CatalogError, match=r"holds no catalog\.json but other files"):
        ingest(str(tmp_path / "raw"), tmp_path)  # the folder holding the corpus itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "raw"]  # untouched


def test_a_damaged_catalog_json_is_one_line(tmp_path):
    raw = tmp_path / "raw" / "meta_categories"
    raw.mkdir(parents=True)
    (raw / "meta_All_Beauty.jsonl").write_text(_item("A"))
    ingest(str(tmp_path / "raw"), tmp_path / "catalog")
    (tmp_path / "catalog" / "catalog.json").write_text('{"format": 1, "sour')
    done = _curate("sql", "SELECT 1", "-c", str(tmp_path / "catalog"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "catalog.json: not valid JSON" in done.stderr


def test_a_review_with_a_rating_out_of_range_is_counted_where_it_went(tmp_path):
    raw = tmp_path / "raw"
    (raw / "meta_categories").mkdir(parents=True)
    (raw / "review_categories").mkdir(parents=True)
    (raw / "meta_categories" / "meta_All_Beauty.jsonl").write_text(_item("A"))
    reviews = [{"rating": r, "parent_asin": "A", "user_id": f"u{i}", "timestamp": 1 + i,
                "title": "t", "text": "x", "helpful_vote": 0, "verified_purchase": True}
               for i, r in enumerate([5.0, 3.0, 7.0, 0.0])]
    reviews.append({k: v for k, v in reviews[0].items() if k != "rating"} | {"user_id": "u9"})
    (raw / "review_categories" / "All_Beauty.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in reviews))
    ingest(str(raw), tmp_path / "catalog")
    result = clean(tmp_path / "catalog")
    silver = pl.read_parquet(result.out_dir / "items.parquet")
    assert silver["review_count"].to_list() == [2] and silver["review_rating_mean"][0] == 4.0
    left_out = pl.read_parquet(result.out_dir / "review_rejections.parquet")
    assert left_out.select("source_line", "rule", "rating").rows() == [
        (3, "rating_out_of_range", 7.0), (4, "rating_out_of_range", 0.0),
        (5, "rating_missing", None)]
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["reviews"] == {"rows_in": 5, "used": 2, "left_out": {
        "rating_missing": 1, "rating_out_of_range": 2}}
