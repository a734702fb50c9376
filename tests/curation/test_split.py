from __future__ import annotations

import hashlib
import shutil

import duckdb
import polars as pl
import pytest

from curation.catalog import Catalog
from curation.clean import clean
from curation.errors import UserError
from curation.ingest import ingest
from curation.integrity import IntegrityError
from curation.split import build_split, read_split_manifest, stable_hash, stable_hash_sql
from tests.conftest import break_a_page, write_raw


def _assignments(root) -> pl.DataFrame:
    con = Catalog.open(root).connect()
    try:
        return con.sql("SELECT * FROM splits").pl()
    finally:
        con.close()


def test_stable_hash_is_the_same_in_sql_and_python():
    [(got,)] = duckdb.sql(f"SELECT {stable_hash_sql(7, chr(39) + 'B0ABC' + chr(39))}").fetchall()
    assert got == stable_hash(7, "B0ABC")
    assert stable_hash(7, "B0ABC") != stable_hash(8, "B0ABC")


def test_stable_hash_is_the_documented_sha256():
    # The first 64 bits of sha256("7:B0ABC") as an unsigned integer, computed outside Python:
    # printf '7:B0ABC' | sha256sum -> eca766062cfc1685..., and 0xeca766062cfc1685 with bc.
    known = 17052710690772227717
    [(in_sql,)] = duckdb.sql(f"SELECT {stable_hash_sql(7, chr(39) + 'B0ABC' + chr(39))}").fetchall()
    assert stable_hash(7, "B0ABC") == in_sql == known


def test_the_split_manifest_says_how_items_were_hashed_and_cut(split_catalog):
    """Draw 1233 (2026-12-07): the manifest's hash rule lost its key unseen."""
    manifest = read_split_manifest(Catalog.open(split_catalog).layout, "default", 0)
    assert manifest["hash"] == "first 64 bits of sha256('<seed>:<group_id>')"
    assert (manifest["seed"], manifest["shares"]) == (0, {"train": 0.8, "val": 0.1, "test": 0.1})


def test_each_item_in_one_split_in_the_overall_shares(split_catalog):
    splits = _assignments(split_catalog)
    silver = Catalog.open(split_catalog)
    assert splits["parent_asin"].is_unique().all()
    con = silver.connect()
    [(n_silver,)] = con.sql("SELECT count(*) FROM silver_items").fetchall()
    con.close()
    assert splits.height == n_silver
    shares = splits.group_by("split").len().with_columns(pl.col("len") / splits.height)
    share = dict(shares.iter_rows())
    assert abs(share["train"] - 0.8) < 0.02 and abs(share["val"] - 0.1) < 0.02


# Strata of (category, rating bin) with 7 to 120 items; every title and image unique, so each
# item is its own group and the cut is exact.
STRATA = {
    ("Toys_and_Games", 4.7): 120,
    ("Toys_and_Games", 3.2): 60,
    ("Toys_and_Games", 1.5): 45,
    ("Video_Games", 4.2): 80,
    ("Video_Games", 2.5): 7,
}


def _rating_bin(rating: float) -> str:
    for upper, name in ((2, "1-2"), (3, "2-3"), (4, "3-4"), (4.5, "4-4.5")):
        if rating < upper:
            return name
    return "4.5-5"


def _sha_rank(seed: int, key: str) -> int:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:16], 16)


def test_each_stratum_is_cut_at_the_shares_in_hash_order(tmp_path):
    meta: dict[str, list[dict]] = {}
    for (category, rating), n in STRATA.items():
        meta.setdefault(category, []).extend(
            {
                "main_category": "x",
                "title": f"{category} {rating} item {i}",
                "average_rating": rating,
                "rating_number": 3,
                "images": [{"large": f"http://img/{category}/{rating}/{i}.jpg"}],
                "parent_asin": f"{category[:2].upper()}{rating}-{i:03d}",
            }
            for i in range(n)
        )
    ingest(str(write_raw(tmp_path, meta=meta)), tmp_path / "cat")
    clean(tmp_path / "cat")
    seed = 3
    build_split(tmp_path / "cat", seed=seed)
    got = _assignments(tmp_path / "cat")
    # Independently: within a stratum, rank r (from 0) in order of the documented hash goes to
    # train while (r + 0.5) / n < 0.8, then val while < 0.9, then test.
    expected = {}
    for (category, rating), n in STRATA.items():
        asins = sorted(
            (r["parent_asin"] for r in meta[category] if r["average_rating"] == rating),
            key=lambda a: (_sha_rank(seed, a), a),
        )
        for r, asin in enumerate(asins):
            share = (r + 0.5) / n
            expected[asin] = "train" if share < 0.8 else "val" if share < 0.9 else "test"
    assert dict(got.select("parent_asin", "split").iter_rows()) == expected
    strata = got.group_by("category", "rating_bin").agg(
        pl.len().alias("n"),
        (pl.col("split") == "train").sum().alias("train"),
        (pl.col("split") == "val").sum().alias("val"),
    )
    assert {(c, _rating_bin(r)): n for (c, r), n in STRATA.items()} == {
        (c, b): n for c, b, n in strata.select("category", "rating_bin", "n").iter_rows()
    }
    checked = 0
    for row in strata.filter(pl.col("n") >= 40).iter_rows(named=True):
        assert abs(row["train"] - 0.8 * row["n"]) <= 0.5, row
        assert abs(row["val"] - 0.1 * row["n"]) <= 1, row
        checked += 1
    assert checked == 4  # the loop ran over every large stratum


def test_near_duplicates_stay_in_one_split(tmp_path):
    def item(asin, title, image):
        return {
            "main_category": "Toys & Games",
            "title": title,
            "average_rating": 4.0,
            "rating_number": 5,
            "features": ["x"],
            "description": ["y"],
            "images": [{"large": image, "hi_res": None, "thumb": None, "variant": "MAIN"}],
            "parent_asin": asin,
        }

    items = [item(f"B{i:04d}", f"Unique title {i}", f"http://img/{i}.jpg") for i in range(200)]
    # Planted: same title up to case and punctuation; a shared image; a chain through both.
    items += [
        item("DUP_A1", "Red Kite, Large!", "http://img/a1.jpg"),
        item("DUP_A2", "red kite large", "http://img/a2.jpg"),
        item("DUP_B1", "Blue ball", "http://img/shared.jpg"),
        item("DUP_B2", "Green bat", "http://img/shared.jpg"),
        item("DUP_C1", "Yellow yo-yo", "http://img/c.jpg"),
        item("DUP_C2", "yellow yo yo", "http://img/c2.jpg"),
        item("DUP_C3", "Purple top", "http://img/c2.jpg"),
    ]
    raw = write_raw(tmp_path, meta={"Toys_and_Games": items})
    ingest(str(raw), tmp_path / "cat")
    clean(tmp_path / "cat")
    seen_split_counts = set()
    layout = Catalog.open(tmp_path / "cat").layout
    for seed in range(5):
        result = build_split(tmp_path / "cat", seed=seed)
        assert result.leaking_keys == 0
        # the three planted groups, counted in the result and the manifest
        assert result.groups_with_duplicates == 3
        assert read_split_manifest(layout, "default", seed)["near_duplicate_groups"] == 3
        splits = dict(_assignments(tmp_path / "cat").select("parent_asin", "split").iter_rows())
        # the result names the folder it wrote, and its assignments are the ones in use
        written = pl.read_parquet(result.path / "assignments.parquet")
        assert dict(written.select("parent_asin", "split").iter_rows()) == splits
        for group in (("DUP_A1", "DUP_A2"), ("DUP_B1", "DUP_B2"), ("DUP_C1", "DUP_C2", "DUP_C3")):
            assert len({splits[a] for a in group}) == 1, (seed, group)
        seen_split_counts.add(tuple(sorted(splits[a] for a in ("DUP_A1", "DUP_B1", "DUP_C1"))))
    assert len(seen_split_counts) > 1  # the seed does move groups around


def test_split_is_reproducible_byte_for_byte(split_catalog, tmp_path):
    copy = tmp_path / "cat"
    shutil.copytree(split_catalog, copy)
    path = copy / "splits" / "default" / "seed0" / "assignments.parquet"
    before = path.read_bytes()
    build_split(copy, seed=0)
    assert path.read_bytes() == before
    build_split(copy, seed=1)
    other = pl.read_parquet(copy / "splits" / "default" / "seed1" / "assignments.parquet")
    assert (other["split"] != pl.read_parquet(path)["split"]).any()


def _plain_catalog(root, n=120):
    items = [{"main_category": "Toys & Games", "title": f"Unique title {i}", "average_rating": 4.0,
              "rating_number": 5, "parent_asin": f"B{i:04d}"} for i in range(n)]
    ingest(str(write_raw(root, meta={"Toys_and_Games": items})), root / "cat")
    clean(root / "cat")
    return root / "cat"


def test_pairs_from_a_regroup_file_are_kept_in_one_split(tmp_path):
    root = _plain_catalog(tmp_path)
    layout = Catalog.open(root).layout
    pairs = [("B0001", "B0002"), ("B0003", "B0004"), ("B0005", "B0006"), ("B0007", "GONE")]

    def apart(seed):
        build_split(root, seed=seed)
        splits = dict(_assignments(root).select("parent_asin", "split").iter_rows())
        return [a for a, b in pairs[:3] if splits[a] != splits[b]]

    assert any(apart(seed) for seed in range(5))  # by chance alone, some pair is split apart
    pl.DataFrame({"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}).write_parquet(
        layout.regroup_file("default"))
    for seed in range(5):
        assert apart(seed) == [], seed
        manifest = read_split_manifest(layout, "default", seed)
        assert manifest["seed"] == seed
        assert manifest["regrouped_from"] == str(layout.regroup_file("default"))


def test_pairs_that_chain_make_one_group_named_by_its_smallest_asin(tmp_path):
    """Draw 1234 (2026-12-07): the union-find's path compression never ran in a test (groups
    of shared titles and images are stars, each item joined to the group's smallest ASIN); a
    regroup file whose pairs chain from the largest ASIN down takes it, and a broken
    compression failed the split."""
    root = _plain_catalog(tmp_path)
    regroup = Catalog.open(root).layout.regroup_file("default")
    regroup.parent.mkdir(parents=True)
    chain = [("B0003", "B0004"), ("B0002", "B0003"), ("B0001", "B0002")]
    pl.DataFrame({"a": [a for a, _ in chain], "b": [b for _, b in chain]}).write_parquet(regroup)
    result = build_split(root, seed=0)
    assert result.groups_with_duplicates == 1
    rows = _assignments(root).filter(pl.col("parent_asin").is_in(["B0001", "B0002", "B0003",
                                                                   "B0004"]))
    assert rows["group_id"].to_list() == ["B0001"] * 4
    assert rows["split"].n_unique() == 1


def test_a_regroup_file_adds_its_pairs_to_the_title_and_image_groups(tmp_path):
    # Draw 1220's survivor: the file's pairs replaced the groups of shared titles and images.
    items = [{"main_category": "Toys & Games", "title": f"Unique title {i}", "average_rating": 4.0,
              "rating_number": 5, "parent_asin": f"B{i:04d}"} for i in range(120)]
    for i, title in ((10, "Twin kite"), (11, "twin kite!"), (20, "Twin ball"), (21, "TWIN BALL")):
        items[i]["title"] = title
    for i in (30, 31):  # one main image, two titles
        items[i]["images"] = [{"large": "http://img/same.jpg", "hi_res": None, "thumb": None,
                               "variant": "MAIN"}]
    ingest(str(write_raw(tmp_path, meta={"Toys_and_Games": items})), tmp_path / "cat")
    clean(tmp_path / "cat")
    root = tmp_path / "cat"
    regroup = Catalog.open(root).layout.regroup_file("default")
    regroup.parent.mkdir(parents=True)
    pl.DataFrame({"a": ["B0001"], "b": ["B0002"]}).write_parquet(regroup)
    for seed in range(5):
        result = build_split(root, seed=seed)
        assert result.groups_with_duplicates == 4  # two by title, one by image, one from the file
        splits = dict(_assignments(root).select("parent_asin", "split").iter_rows())
        for a, b in (("B0001", "B0002"), ("B0010", "B0011"), ("B0020", "B0021"),
                     ("B0030", "B0031")):
            assert splits[a] == splits[b], (seed, a, b)


def test_shares_of_zero_give_empty_splits_and_bad_shares_are_refused(tmp_path):
    root = _plain_catalog(tmp_path, n=30)
    result = build_split(root, seed=1, shares=(1.0, 0.0, 0.0))
    assert result.counts == {"train": 30, "val": 0, "test": 0}
    manifest = read_split_manifest(Catalog.open(root).layout, "default", 1)
    assert manifest["counts"] == {"train": 30, "val": 0, "test": 0}
    assert manifest["per_stratum"] == [["Toys_and_Games", "4-4.5", "train", 30]]
    assert manifest["leaking_keys"] == 0 and manifest["regrouped_from"] is None
    # val and test of different shares: rank r of 30 goes to train while (r + 0.5) / 30 < 0.5,
    # then to val while < 0.9 (the train and val shares together), then to test
    unequal = build_split(root, seed=2, shares=(0.5, 0.4, 0.1))
    assert unequal.counts == {"train": 15, "val": 12, "test": 3}
    for shares in ((1.1, -0.1, 0.0), (0.5, 0.3, 0.1)):
        with pytest.raises(UserError, match="split shares must be non-negative and sum to 1"):
            build_split(root, seed=1, shares=shares)
    # two shares (no test split) or four are refused, not cut into a split without test items
    for shares in ((0.5, 0.5), (0.5, 0.3, 0.1, 0.1)):
        with pytest.raises(UserError, match=r"split shares are 3 numbers \(train, val, test\)"):
            build_split(root, seed=1, shares=shares)


def test_a_silver_page_that_no_longer_decompresses_is_named_by_the_split(tmp_path):
    """The split reads silver without hashing it first; when DuckDB cannot read a page, the
    split checks silver against its manifest and names the damaged file (not DuckDB's
    error)."""
    root = _plain_catalog(tmp_path)
    silver = Catalog.open(root).layout.silver_items("default")
    break_a_page(silver)
    with pytest.raises(IntegrityError) as caught:
        build_split(root, seed=1)
    assert str(silver.relative_to(root)) in str(caught.value)
    assert "SHA-256" in str(caught.value)


def test_a_split_before_any_clean_says_to_clean_first(tmp_path):
    items = [{"main_category": "Toys & Games", "title": "t", "parent_asin": "B0001"}]
    ingest(str(write_raw(tmp_path, meta={"Toys_and_Games": items})), tmp_path / "cat")
    with pytest.raises(UserError) as caught:
        build_split(tmp_path / "cat")
    assert str(caught.value) == "no silver items in the catalog: run `curate clean` first"


def test_the_catalog_records_which_split_its_views_show(tmp_path):
    """Draws 1238 to 1240 (2026-12-07): the split's seed could be recorded under another key
    unseen; `curate sql`'s `.views` lists it, and the duplicates audit reads the split of that
    seed (with the key lost, seed 0's, which this catalog lacks)."""
    from curate.sql import view_lines

    root = _plain_catalog(tmp_path, n=30)
    build_split(root, seed=3)
    catalog = Catalog.open(root)
    assert catalog.tables["splits"] == {"files": ["splits/default/seed3/assignments.parquet"],
                                        "profile": "default", "seed": 3}
    assert any(line.split() == ["splits", "profile", "default,", "seed", "3"]
               for line in view_lines(catalog))
    assert _assignments(root).height == 30
