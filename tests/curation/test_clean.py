from __future__ import annotations

import json
import math
import time

import polars as pl
import pytest

from curation.catalog import Catalog
from curation.clean import EFFIMINIVLM_EXCLUDED, clean
from curation.ingest import ingest
from tests.conftest import copy_catalog, shared_file, write_raw


def _silver(root, sql="SELECT * FROM silver_items"):
    con = Catalog.open(root).connect()
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def authors_keep(record: dict, category: str) -> bool:
    """The EffiMiniVLM authors' rules, written independently of the SQL (see curation.clean)."""

    def text(value) -> bool:
        return isinstance(value, str) and value.strip() != ""

    def listed(value) -> bool:
        return isinstance(value, list) and any(text(v) for v in value)

    if category in EFFIMINIVLM_EXCLUDED:
        return False
    if not (text(record.get("main_category")) and text(record.get("title"))):
        return False
    if not (listed(record.get("features")) and listed(record.get("description"))):
        return False
    if record.get("average_rating") is None or record.get("rating_number") is None:
        return False
    chars = (
        len(record["title"])
        + len(" ".join(record["features"]))
        + len(" ".join(record["description"]))
    )
    if chars <= 30:
        return False
    images = record.get("images") or []
    return any(text(im.get("hi_res")) or text(im.get("large")) for im in images)


def _item(asin: str, **changes) -> dict:
    record = {
        "main_category": "Toys & Games",
        "title": "A sturdy wooden puzzle",
        "average_rating": 4.3,
        "rating_number": 12,
        "features": ["Made with durable components"],
        "description": ["A puzzle for all."],
        "price": None,
        "images": [
            {
                "thumb": "http://x/t.jpg",
                "large": "http://x/l.jpg",
                "variant": "MAIN",
                "hi_res": "http://x/h.jpg",
            }
        ],
        "videos": [],
        "store": "Acme",
        "categories": [],
        "details": {},
        "parent_asin": asin,
    }
    record.update(changes)
    return record


EDGE_CASES = [
    _item("KEEP_FULL"),
    _item("EXACTLY_30", title="abcdefghij", features=["abcdefghij"], description=["abcdefghij"]),
    _item("THIRTY_ONE", title="abcdefghij", features=["abcdefghij"], description=["abcdefghijk"]),
    # Two features joined with a space: 10 + len("abcde abcd") + 10 = 30, so rejected.
    _item("JOINED_30", title="abcdefghij", features=["abcde", "abcd"], description=["abcdefghij"]),
    _item("EMPTY_FEATURES", features=[]),
    _item("BLANK_FEATURE", features=["   "]),
    _item("EMPTY_DESCRIPTION", description=[]),
    _item("NULL_DESCRIPTION", description=None),
    _item(
        "NULL_HI_RES",
        images=[{"thumb": None, "large": "http://x/l.jpg", "variant": "MAIN", "hi_res": None}],
    ),
    _item("NO_IMAGES", images=[]),
    _item(
        "NULL_URLS",
        images=[{"thumb": "http://x/t.jpg", "large": None, "variant": "MAIN", "hi_res": None}],
    ),
    _item("NULL_MAIN_CATEGORY", main_category=None),
    _item("EMPTY_MAIN_CATEGORY", main_category=""),
    _item("BLANK_TITLE", title="   "),
    _item("NO_AVERAGE", average_rating=None),
    _item("NO_COUNT", rating_number=None),
    _item("HTML_ONLY_DESCRIPTION", description=["<p></p>"]),
    _item("ZERO_COUNT", rating_number=0),
]


def test_effiminivlm_profile_keeps_exactly_what_the_authors_rules_keep(tmp_path):
    excluded = [_item("EXCLUDED_CATEGORY")]
    raw = write_raw(tmp_path, meta={"Toys_and_Games": EDGE_CASES, "Gift_Cards": excluded})
    ingest(str(raw), tmp_path / "cat")
    started = time.perf_counter()
    result = clean(tmp_path / "cat", "effiminivlm")
    assert 0 < result.seconds <= time.perf_counter() - started  # `curate clean` prints it
    expected = {r["parent_asin"] for r in EDGE_CASES if authors_keep(r, "Toys_and_Games")}
    kept = set(_silver(tmp_path / "cat")["parent_asin"])
    assert kept == expected
    assert {"KEEP_FULL", "THIRTY_ONE", "NULL_HI_RES", "ZERO_COUNT"} <= kept
    assert not {"EXACTLY_30", "JOINED_30", "EXCLUDED_CATEGORY"} & kept
    rejected = _silver(tmp_path / "cat", "SELECT parent_asin, rule FROM rejections")
    rules = dict(rejected.iter_rows())
    assert rules["EXACTLY_30"] == "text_too_short"
    assert rules["EXCLUDED_CATEGORY"] == "category_not_selected"
    assert rules["NULL_URLS"] == "no_image"
    assert rules["JOINED_30"] == "text_too_short"
    assert result.kept + rejected.height == len(EDGE_CASES) + 1


def test_effiminivlm_profile_matches_the_reference_on_real_rows(tmp_path):
    real = shared_file("meta_Health_and_Personal_Care.head1001.jsonl")
    records = [json.loads(line) for line in real.read_text().splitlines()]
    raw = write_raw(tmp_path, meta={"Health_and_Personal_Care": records})
    ingest(str(raw), tmp_path / "cat")
    clean(tmp_path / "cat", "effiminivlm")
    seen, expected = set(), set()
    for r in records:  # one row per parent_asin: the first line of each
        if r["parent_asin"] not in seen and authors_keep(r, "Health_and_Personal_Care"):
            expected.add(r["parent_asin"])
        seen.add(r["parent_asin"])
    assert set(_silver(tmp_path / "cat")["parent_asin"]) == expected


@pytest.mark.parametrize("profile", ["default", "effiminivlm"])
def test_funnel_reconciles_per_rule_on_real_rows(tmp_path, profile):
    real = shared_file("meta_Health_and_Personal_Care.head1001.jsonl")
    raw = write_raw(
        tmp_path,
        meta={
            "Health_and_Personal_Care": [json.loads(line) for line in real.read_text().splitlines()]
        },
    )
    ingest(str(raw), tmp_path / "cat")
    result = clean(tmp_path / "cat", profile)
    assert result.rows_in == 1001
    for step, following in zip(result.funnel, result.funnel[1:], strict=False):
        assert step["in"] == step["kept"] + step["rejected"]
        assert following["in"] == step["kept"]
    assert result.funnel[-1]["kept"] == result.kept == _silver(tmp_path / "cat").height
    rejected = _silver(tmp_path / "cat", "SELECT rule, count(*) AS n FROM rejections GROUP BY 1")
    assert dict(rejected.iter_rows()) == {
        s["rule"]: s["rejected"] for s in result.funnel if s["rejected"]
    }


def test_text_is_normalised_and_fields_parsed(tmp_path):
    items = [
        _item(
            "HTML",
            title="  Big   <b>red</b>  kite ",
            features=[" Light ", "", "Strong &amp; <i>safe</i>"],
            description=["<p>Flies&nbsp;high.</p>", "Lasts   long."],
            price="$1,299.00",
            details={"Brand": "Acme"},
        ),
        _item("TEXT_PRICE", price="from $5.00", details=json.dumps({"Brand": "Kite Co"})),
        _item("NONE_PRICE", price="None"),
        _item(
            "LARGE_ONLY",
            images=[
                {"thumb": None, "large": " ", "variant": "MAIN", "hi_res": None},
                {"thumb": None, "large": "http://x/2.jpg", "variant": "PT01", "hi_res": None},
            ],
        ),
    ]
    reviews = [
        {
            "rating": 5.0,
            "parent_asin": "HTML",
            "helpful_vote": 2,
            "verified_purchase": True,
            "timestamp": 1000,
        },
        {
            "rating": 3.0,
            "parent_asin": "HTML",
            "helpful_vote": 1,
            "verified_purchase": False,
            "timestamp": 3000,
        },
        {"rating": 9.0, "parent_asin": "HTML", "timestamp": 5000},
    ]  # out of range: ignored
    raw = write_raw(tmp_path, meta={"Toys_and_Games": items}, reviews={"Toys_and_Games": reviews})
    ingest(str(raw), tmp_path / "cat")
    clean(tmp_path / "cat", "default")
    rows = {r["parent_asin"]: r for r in _silver(tmp_path / "cat").iter_rows(named=True)}
    html = rows["HTML"]
    assert html["title"] == "Big red kite"
    assert html["features_text"] == "Light | Strong & safe"
    assert html["description_text"] == "Flies high. Lasts long."
    assert html["model_text"] == (
        "Main category: Toys & Games\nTitle: Big red kite\n"
        "Features: Light | Strong & safe\n"
        "Description: Flies high. Lasts long."
    )
    assert html["price"] == 1299.0 and html["brand"] == "Acme"
    assert html["main_image_url"] == "http://x/h.jpg" and html["has_image"]
    assert html["review_count"] == 2 and html["review_rating_mean"] == 4.0
    assert math.isclose(html["review_rating_std"], math.sqrt(2.0))
    assert html["helpful_votes"] == 3 and html["verified_share"] == 0.5
    assert (html["first_review_ms"], html["last_review_ms"]) == (1000, 3000)
    assert rows["TEXT_PRICE"]["price"] is None and rows["TEXT_PRICE"]["brand"] == "Kite Co"
    assert rows["NONE_PRICE"]["price"] is None
    assert rows["LARGE_ONLY"]["main_image_url"] == "http://x/2.jpg"
    assert rows["LARGE_ONLY"]["review_count"] == 0


def test_default_profile_on_the_messy_corpus(split_catalog):
    manifest = json.loads((split_catalog / "silver" / "default" / "manifest.json").read_text())
    bronze = _silver(split_catalog, "SELECT count(*) AS n FROM items")["n"][0]
    assert manifest["rows_in"] == bronze
    assert manifest["kept"] + sum(s["rejected"] for s in manifest["funnel"]) == bronze
    silver = _silver(split_catalog)
    assert silver["parent_asin"].is_unique().all()
    assert silver["average_rating"].is_between(1, 5).all()
    by_rule = {s["rule"]: s["rejected"] for s in manifest["funnel"]}
    assert by_rule["duplicate_parent_asin"] > 0  # the corpus has planted duplicate lines


def test_the_manifest_names_the_rules_and_each_view_its_profile(tmp_path):
    """What clean records beside silver, on a catalog of its own (no shared fixture)."""
    raw = write_raw(tmp_path, meta={"All_Beauty": [_item(f"A{i}") for i in range(4)]})
    ingest(str(raw), tmp_path / "cat")
    clean(tmp_path / "cat", "effiminivlm")
    silver = tmp_path / "cat" / "silver" / "effiminivlm"
    manifest = json.loads((silver / "manifest.json").read_text())
    # which rules ran, in the funnel's order, with their SQL and reason
    assert [r["name"] for r in manifest["rules"]] == [s["rule"] for s in manifest["funnel"]]
    assert all(r["reject_when"] and r["reason"] for r in manifest["rules"])
    # each step of the funnel (`build-slice --json` prints it) says why its rule rejects
    assert [s["reason"] for s in manifest["funnel"]] == [r["reason"] for r in manifest["rules"]]
    # each silver view names the profile it shows (`curate sql`'s list of views prints it)
    views = ("silver_items", "rejections", "review_rejections")
    tables = Catalog.open(tmp_path / "cat").tables
    assert {name: tables[name]["profile"] for name in views} == dict.fromkeys(
        views, "effiminivlm")


def test_unknown_profile_is_a_clear_error(split_catalog, tmp_path):
    catalog = copy_catalog(split_catalog, tmp_path / "cat")  # were it to write, not the shared one
    with pytest.raises(
        ValueError, match="unknown profile 'paper'; choose from default, effiminivlm"
    ):
        clean(catalog, "paper")
    assert not (catalog / "silver" / "paper").exists()


def test_silver_is_byte_identical_on_rerun(split_catalog, tmp_path):
    import shutil

    copy = tmp_path / "cat"
    shutil.copytree(split_catalog, copy)
    before = (copy / "silver" / "default" / "items.parquet").read_bytes()
    clean(copy, "default")
    assert (copy / "silver" / "default" / "items.parquet").read_bytes() == before
    assert pl.read_parquet(copy / "silver" / "default" / "items.parquet").height > 0


def test_a_clean_that_keeps_nothing_balances_and_reasons_are_kept_verbatim(tmp_path, monkeypatch):
    """Every item rejected: kept 0, the funnel still balances. A reason holding quotes and
    brackets reaches the rejections table as written."""
    from curation.clean import DUPLICATE, PROFILES, Rule

    rule = Rule("no_rating", "average_rating IS NULL", "the item's rating is missing (or 'null')")
    monkeypatch.setitem(PROFILES, "quoted", [DUPLICATE, rule])
    items = [{"parent_asin": "A", "title": "a"}, {"parent_asin": "A", "title": "again"},
             {"parent_asin": "B", "title": "b"}]
    ingest(str(write_raw(tmp_path, meta={"All_Beauty": items})), tmp_path / "cat")
    result = clean(tmp_path / "cat", "quoted")
    assert (result.rows_in, result.kept) == (3, 0)
    assert [(f["rule"], f["in"], f["rejected"], f["kept"]) for f in result.funnel] == [
        ("duplicate_parent_asin", 3, 1, 2), ("no_rating", 2, 2, 0)]
    assert result.out_dir == Catalog.open(tmp_path / "cat").layout.silver_dir("quoted")
    con = Catalog.open(tmp_path / "cat").connect()
    try:
        rejected = con.execute("SELECT parent_asin, rule, reason FROM rejections "
                               "ORDER BY source_line").fetchall()
        assert con.execute("SELECT count(*) FROM silver_items").fetchone()[0] == 0
    finally:
        con.close()
    assert rejected == [("A", "no_rating", rule.reason),
                        ("A", "duplicate_parent_asin", DUPLICATE.reason),
                        ("B", "no_rating", rule.reason)]
