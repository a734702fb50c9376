"""`curate recsys`: the official benchmark's rating tables, k-cores and splits."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from curate.cli import app
from curation.ingest import ingest
from curation.recsys import TEST_FROM_MS, VALID_FROM_MS, export, kcore, kcore_csv
from curation.synth import SynthConfig, synthesize
from tests.conftest import shared_file, write_raw

OFFICIAL_5CORE = "All_Beauty.5core.rating_only.csv"
REAL_REVIEWS = "All_Beauty.5core.reviews.partial.jsonl"


def brute_force_kcore(pairs: list[tuple[str, str]], k: int) -> set[tuple[str, str]]:
    """The fixed point by its definition: drop any pair whose user or item has < k pairs."""
    kept = set(pairs)
    while True:
        users = Counter(u for u, _ in kept)
        items = Counter(i for _, i in kept)
        smaller = {(u, i) for u, i in kept if users[u] >= k and items[i] >= k}
        if smaller == kept:
            return kept
        kept = smaller


def test_the_official_5core_is_a_fixed_point_byte_for_byte(tmp_path):
    official = shared_file(OFFICIAL_5CORE)
    result = kcore_csv(official, 5, tmp_path / "again.csv")
    assert (result.interactions_in, result.interactions_out) == (2535, 2535)
    assert (result.users, result.items, result.rounds) == (253, 356, 1)
    assert (tmp_path / "again.csv").read_bytes() == official.read_bytes()
    assert kcore_csv(official, 6, tmp_path / "six.csv").interactions_out < 2535


def test_real_review_lines_give_the_official_5core(tmp_path):
    """The 2,544 real All_Beauty review lines hold 9 later duplicates of a (user, item); the
    earliest kept and a 5-core taken, the rows are exactly those of the official file."""
    raw = tmp_path / "raw" / "review_categories"
    raw.mkdir(parents=True)
    (raw / "All_Beauty.jsonl").write_bytes(shared_file(REAL_REVIEWS).read_bytes())
    ingest(str(tmp_path / "raw"), tmp_path / "catalog")
    result = export(tmp_path / "catalog", "All_Beauty", 5, "last_out", tmp_path / "out")
    with open(shared_file(OFFICIAL_5CORE)) as fh:
        official = list(csv.reader(fh))
    with open(result.folder / "All_Beauty.csv") as fh:
        ours = list(csv.reader(fh))
    assert ours[0] == official[0] == ["user_id", "parent_asin", "rating", "timestamp"]
    assert sorted(ours[1:]) == sorted(official[1:])
    c = result.counts
    assert (c["review_rows"], c["later_duplicates"], c["missing_field"]) == (2544, 9, 0)
    assert c["train"] + c["valid"] + c["test"] == 2535 and c["test"] == c["valid"] == 253
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["stats"]["users"] == 253 and manifest["stats"]["items"] == 356
    assert pl.read_parquet(result.folder / "All_Beauty.parquet").height == 2535


@given(
    pairs=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=60, unique=True),
    k=st.integers(1, 4),
)
@settings(max_examples=80, deadline=None)
def test_kcore_equals_the_brute_force_fixed_point(pairs, k):
    named = [(f"u{u}", f"i{i}") for u, i in pairs]
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE interactions (user_id VARCHAR, parent_asin VARCHAR, "
                "rating DOUBLE, timestamp BIGINT, ord BIGINT)")
    if named:
        con.executemany("INSERT INTO interactions VALUES (?, ?, 5.0, 0, ?)",
                        [(u, i, n) for n, (u, i) in enumerate(named)])
    result = kcore(con, k)
    got = set(con.execute("SELECT user_id, parent_asin FROM kcore").fetchall())
    assert got == brute_force_kcore(named, k)
    assert result.interactions_out == len(got)
    again = kcore(con, k, source="kcore", target="twice")  # a k-core is a fixed point
    assert again.interactions_out == len(got) and again.rounds <= 1


def test_kcore_of_a_synthetic_corpus_matches_the_reference(tmp_path):
    corpus = tmp_path / "corpus"
    synthesize(corpus, SynthConfig(n_items=600, seed=3, categories=("All_Beauty",),
                                   users_per_item=0.6, images=False))
    ingest(str(corpus / "raw"), tmp_path / "catalog")
    result = export(tmp_path / "catalog", "All_Beauty", 3, "timestamp", tmp_path / "out")
    lines = [json.loads(line) for line in
             (corpus / "raw/review_categories/All_Beauty.jsonl").read_text().splitlines()]
    earliest: dict[tuple[str, str], tuple[int, int]] = {}
    for n, r in enumerate(lines):  # earliest review per (user, item); ties: file order
        key = (r["user_id"], r["parent_asin"])
        if key not in earliest or (r["timestamp"], n) < earliest[key]:
            earliest[key] = (r["timestamp"], n)
    expected = brute_force_kcore(list(earliest), 3)
    ours = pl.read_parquet(result.folder / "All_Beauty.parquet")
    assert set(ours.select("user_id", "parent_asin").iter_rows()) == expected
    assert len(expected) > 50  # the corpus has a non-trivial 3-core
    assert result.counts["interactions"] == len(earliest)


def _timeline(tmp_path: Path, reviews: list[dict]) -> Path:
    raw = write_raw(tmp_path, reviews={"Toys_and_Games": reviews})
    ingest(str(raw), tmp_path / "catalog")
    return tmp_path / "catalog"


def review(user: str, item: str, ts: int, rating: float = 5.0) -> dict:
    return {"user_id": user, "parent_asin": item, "timestamp": ts, "rating": rating,
            "title": "t", "text": "x", "asin": item, "helpful_vote": 0,
            "verified_purchase": True, "images": []}


def _rows(folder: Path, split: str) -> list[tuple[str, str]]:
    frame = pl.read_parquet(folder / f"Toys_and_Games.{split}.parquet")
    return list(frame.select("user_id", "parent_asin").iter_rows())


def test_last_out_on_hand_made_timelines_with_ties(tmp_path):
    catalog = _timeline(tmp_path, [
        review("A", "a1", 10), review("A", "a2", 20), review("A", "a3", 30),
        review("A", "a4", 30),  # tie with a3 at the end: the later line is the last
        review("B", "b1", 5),  # one interaction: test only
        review("C", "c2", 9), review("C", "c1", 7),  # two: valid then test, by time
        review("D", "d1", 1, rating=1.0), review("D", "d1", 2, rating=4.0),  # later duplicate
        review("D", "d2", 2), review("D", "d3", 2), review("D", "d4", 2),  # all tied
    ])
    result = export(catalog, "Toys_and_Games", 0, "last_out", tmp_path / "out")
    folder = result.folder
    assert sorted(_rows(folder, "test")) == [("A", "a4"), ("B", "b1"), ("C", "c2"), ("D", "d4")]
    assert sorted(_rows(folder, "valid")) == [("A", "a3"), ("C", "c1"), ("D", "d3")]
    assert sorted(_rows(folder, "train")) == [("A", "a1"), ("A", "a2"), ("D", "d1"), ("D", "d2")]
    kept = pl.read_parquet(folder / "Toys_and_Games.parquet").filter(pl.col("user_id") == "D")
    assert kept.filter(pl.col("parent_asin") == "d1")["rating"].to_list() == [1.0]  # earliest
    assert result.counts["later_duplicates"] == 1


def test_timestamp_split_boundaries(tmp_path):
    catalog = _timeline(tmp_path, [
        review("A", "before", VALID_FROM_MS - 1), review("A", "at_valid", VALID_FROM_MS),
        review("A", "last_valid", TEST_FROM_MS - 1), review("A", "at_test", TEST_FROM_MS),
        review("B", "late", TEST_FROM_MS + 5),
    ])
    folder = export(catalog, "Toys_and_Games", 0, "timestamp", tmp_path / "out").folder
    assert _rows(folder, "train") == [("A", "before")]
    assert sorted(_rows(folder, "valid")) == [("A", "at_valid"), ("A", "last_valid")]
    assert sorted(_rows(folder, "test")) == [("A", "at_test"), ("B", "late")]


def test_a_rerun_gives_the_same_bytes_and_the_item_table_joins_metadata(messy_catalog, tmp_path):
    import shutil

    from curation.clean import clean

    catalog = tmp_path / "catalog"
    shutil.copytree(messy_catalog, catalog)
    clean(catalog)
    a = export(catalog, "All_Beauty", 2, "last_out", tmp_path / "a")
    b = export(catalog, "All_Beauty", 2, "last_out", tmp_path / "b")
    for path in sorted(a.folder.iterdir()):
        if path.name != "manifest.json":
            assert path.read_bytes() == (b.folder / path.name).read_bytes(), path.name
    items = pl.read_parquet(a.folder / "All_Beauty.items.parquet")
    assert items["parent_asin"].n_unique() == a.kcore.items
    assert items["model_text"].is_not_null().sum() > 0  # cleaned text joined
    assert items["image_path"].is_not_null().sum() > 0  # file:// images found locally
    counts = a.counts
    assert counts["review_rows"] == counts["interactions"] + counts["later_duplicates"] \
        + counts["missing_field"]


def test_commands_and_their_errors(messy_catalog, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["recsys", "export", "-c", str(messy_catalog), "--category",
                                 "All_Beauty", "--core", "0", "--split", "timestamp", "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "review rows =" in result.output and "density" in result.output
    result = runner.invoke(app, ["recsys", "export", "-c", str(messy_catalog), "--category",
                                 "Books"])
    assert result.exit_code == 2 and "no reviews of category 'Books'" in result.output
    result = runner.invoke(app, ["recsys", "export", "-c", str(messy_catalog), "--category",
                                 "All_Beauty", "--split", "random"])
    assert result.exit_code == 2 and "unknown split 'random'" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,parent_asin,rating,timestamp\nu1,i1,5.0,12\nu2,i2,5.0,soon\n")
    result = runner.invoke(app, ["recsys", "kcore", str(bad), "--out", str(tmp_path / "k.csv")])
    assert result.exit_code == 2 and str(bad) in result.output
    assert "Traceback" not in result.output


def test_equal_timestamps_keep_the_earlier_line_and_incomplete_rows_are_counted(tmp_path):
    no_rating = review("B", "b1", 5) | {"rating": None}
    no_user = review("C", "c1", 5) | {"user_id": None}
    no_time = review("D", "d1", 5) | {"timestamp": None}
    catalog = _timeline(tmp_path, [
        review("A", "a1", 10, rating=2.0), review("A", "a1", 10, rating=5.0),  # same time
        review("A", "a2", 11), no_rating, no_user, no_time,
    ])
    result = export(catalog, "Toys_and_Games", 0, "last_out", tmp_path / "out")
    c = result.counts
    assert (c["review_rows"], c["missing_field"], c["later_duplicates"]) == (6, 3, 1)
    assert (c["interactions"], c["kcore"]) == (2, 2)
    with open(result.folder / "Toys_and_Games.csv") as fh:
        rows = list(csv.reader(fh))[1:]
    assert rows == [["A", "a1", "2.0", "10"], ["A", "a2", "5.0", "11"]]  # the earlier line


def test_kcore_csv_reads_a_file_without_a_header_and_keeps_its_row_order(tmp_path):
    rows = [("u2", "i1", "5.0", "3"), ("u1", "i1", "4.0", "1"), ("u1", "i2", "3.0", "2"),
            ("u2", "i2", "1.0", "4"), ("u3", "i1", "2.0", "5")]  # u3 has one row: not in the 2-core
    bare = tmp_path / "bare.csv"
    bare.write_text("".join(",".join(r) + "\n" for r in rows))
    result = kcore_csv(bare, 2, tmp_path / "out.csv")
    with open(tmp_path / "out.csv") as fh:
        out = [tuple(r) for r in csv.reader(fh)]
    assert out[0] == ("user_id", "parent_asin", "rating", "timestamp")
    assert out[1:] == [r for r in rows if r[0] != "u3"]  # the first line is data, order kept
    assert (result.interactions_in, result.interactions_out, result.users) == (5, 4, 2)
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("u1,i1,5.0\n")
    result = CliRunner().invoke(app, ["recsys", "kcore", str(narrow), "--out",
                                      str(tmp_path / "n.csv")])
    assert result.exit_code == 2 and "expected 4 columns" in result.output


def test_a_negative_core_is_refused(messy_catalog, tmp_path):
    result = CliRunner().invoke(app, ["recsys", "export", "-c", str(messy_catalog),
                                      "--category", "All_Beauty", "--core", "-1", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "--core must be 0 or more" in result.output
    assert not (tmp_path / "out" / "All_Beauty--1core-last_out").exists()


def test_counts_that_do_not_reconcile_stop_the_export_before_anything_is_written(
        tmp_path, monkeypatch):
    """A split that loses rows (planted here: one that drops each user's first interaction)
    must not give a benchmark whose splits do not add up to its k-core."""
    import curation.recsys as recsys

    catalog = _timeline(tmp_path, [review("A", "a1", 1), review("A", "a2", 2),
                                   review("B", "b1", 3)])
    real_split = recsys.split_sql
    monkeypatch.setattr(recsys, "split_sql", lambda method, source="kcore": (
        f"SELECT * FROM ({real_split(method, source)}) "
        "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY timestamp) > 1"))
    with pytest.raises(RuntimeError, match="do not reconcile"):
        export(catalog, "Toys_and_Games", 0, "last_out", tmp_path / "out")
    assert not (tmp_path / "out" / "Toys_and_Games-0core-last_out").exists()


def test_kcore_csv_names_what_is_wrong_with_its_input(tmp_path):
    from curation.errors import UserError

    missing = tmp_path / "missing.csv"
    with pytest.raises(UserError) as caught:
        kcore_csv(missing, 5, tmp_path / "out.csv")
    assert str(caught.value) == f"{missing}: no such file"
    narrow = tmp_path / "narrow.csv"
    line = "u" * 100 + ",i1,5.0"
    narrow.write_text(line + "\n")
    with pytest.raises(UserError) as caught:
        kcore_csv(narrow, 5, tmp_path / "out.csv")
    assert str(caught.value) == (f"{narrow}:1: expected 4 columns (user_id, parent_asin, "
                                 f"rating, timestamp), got {line[:80]!r}")
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,parent_asin,rating,timestamp\nu1,i1,five,100\n")
    with pytest.raises(UserError) as caught:
        kcore_csv(bad, 5, tmp_path / "out.csv")
    # DuckDB's first line, which names the line of the file
    assert str(caught.value) == f"{bad}: Conversion Error: CSV Error on Line: 2"
    assert not (tmp_path / "out.csv").exists()


def test_export_errors_name_the_choices(messy_catalog, tmp_path):
    from curation.errors import UserError
    from curation.recsys import split_sql

    with pytest.raises(UserError) as caught:
        export(messy_catalog, "All_Beauty", 0, "random", tmp_path / "out")
    assert str(caught.value) == "unknown split 'random'; choose from last_out, timestamp"
    with pytest.raises(UserError) as caught:
        split_sql("random")
    assert str(caught.value) == "unknown split 'random'; choose from last_out, timestamp"
    with pytest.raises(UserError) as caught:
        export(messy_catalog, "../All_Beauty", 0, "last_out", tmp_path / "out")
    assert str(caught.value) == "category '../All_Beauty': expected a raw file's category name"
    with pytest.raises(UserError) as caught:
        export(messy_catalog, "Books", 0, "last_out", tmp_path / "out")
    known = sorted({e["category"] for e in json.loads(
        (messy_catalog / "catalog.json").read_text())["sources"].values()
        if e["kind"] == "reviews"})
    assert len(known) > 1
    assert str(caught.value) == \
        f"no reviews of category 'Books' in the catalog (it has: {', '.join(known)})"
    metadata_only = tmp_path / "meta_only"
    ingest(write_raw(metadata_only, meta={"Toys_and_Games": [
        {"parent_asin": "a1", "title": "t", "average_rating": 4.0, "rating_number": 3}]}),
        metadata_only / "catalog")
    with pytest.raises(UserError) as caught:
        export(metadata_only / "catalog", "Toys_and_Games", 0, "last_out", tmp_path / "out")
    assert str(caught.value) == \
        "no reviews of category 'Toys_and_Games' in the catalog (it has: none)"


def test_an_interrupted_export_is_replaced_and_an_open_catalog_is_only_read(tmp_path):
    import subprocess
    import sys

    from curation.catalog import Catalog

    catalog = _timeline(tmp_path, [review("A", "a1", 1), review("A", "a2", 2)])
    Catalog.open(catalog).connect().close()  # views current: nothing left to write
    staging = tmp_path / "out" / ".Toys_and_Games-0core-last_out.staging"
    staging.mkdir(parents=True)
    (staging / "half-written.csv").write_text("u")
    # another process (curate sql, say) holds the catalog open read-only meanwhile
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; "
         "con = duckdb.connect(sys.argv[1], read_only=True); print('open', flush=True); "
         "time.sleep(60)", str(catalog / "catalog.duckdb")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        result = export(catalog, "Toys_and_Games", 0, "last_out", tmp_path / "out")
    finally:
        holder.kill()
        holder.wait()
    assert not staging.exists()
    assert "half-written.csv" not in {p.name for p in result.folder.iterdir()}
    assert result.counts["kcore"] == 2


def test_the_export_manifest_records_parameters_inputs_counts_and_outputs(tmp_path):
    import hashlib

    import pyarrow.parquet as pq

    from curation.recsys import KCoreResult

    reviews = [review("A", "a1", 1), review("A", "a2", 2), review("A", "a3", 3),
               review("B", "a1", 4), review("B", "a2", 5), review("C", "a3", 6)]
    raw = write_raw(tmp_path, meta={"Toys_and_Games": [{"parent_asin": "a1", "title": "t"}]},
                    reviews={"Toys_and_Games": reviews, "Books": [review("A", "b1", 1)]})
    ingest(str(raw), tmp_path / "catalog")
    result = export(tmp_path / "catalog", "Toys_and_Games", 2, "last_out", tmp_path / "out")
    # C's one review goes, then a3 (left with A alone): the 2-core is A and B on a1 and a2
    assert result.kcore == KCoreResult(2, 3, 6, 4, 2, 2)
    assert (result.folder.name, result.category, result.core, result.split) == \
        ("Toys_and_Games-2core-last_out", "Toys_and_Games", 2, "last_out")
    assert 0 < result.seconds < 600
    assert (result.counts["interactions"], result.counts["kcore"],
            result.counts["removed_by_kcore"]) == (6, 4, 2)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    sources = json.loads((tmp_path / "catalog" / "catalog.json").read_text())["sources"]
    toys_reviews = {k: e["fingerprint"] for k, e in sources.items()
                    if e["kind"] == "reviews" and e["category"] == "Toys_and_Games"}
    assert len(toys_reviews) == 1 and len(sources) == 3
    files = sorted(p for p in result.folder.iterdir() if p.name != "manifest.json")
    assert {k: v for k, v in manifest.items() if k != "versions"} == {
        "stage": "recsys_export",
        "parameters": {"category": "Toys_and_Games", "core": 2, "split": "last_out",
                       "profile": "default", "valid_from_ms": VALID_FROM_MS,
                       "test_from_ms": TEST_FROM_MS},
        "inputs": toys_reviews,
        "counts": result.counts,
        "stats": {"users": 2, "items": 2, "interactions": 4, "density": 1.0,
                  "kcore_rounds": 3},
        "outputs": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }
    assert manifest["versions"]
    items = pl.read_parquet(result.folder / "Toys_and_Games.items.parquet")
    assert items.schema["image_path"] == pl.String  # no image anywhere: still a text column
    for path in files:
        metadata = pq.ParquetFile(path).metadata if path.suffix == ".parquet" else None
        if metadata and metadata.num_row_groups:  # (the empty train split has none)
            assert metadata.row_group(0).column(0).compression == "ZSTD", path.name


def test_the_item_table_finds_images_fetched_into_the_catalog(tmp_path):
    from curation.catalog import Catalog
    from curation.clean import clean
    from curation.images import read_status

    url = "http://images.example/a1.jpg"
    meta = [{"parent_asin": "a1", "title": "A thing", "average_rating": 4.0,
             "rating_number": 2, "main_category": "Toys",
             "images": [{"large": url, "hi_res": None, "thumb": None, "variant": "MAIN"}]}]
    raw = write_raw(tmp_path, meta={"Toys_and_Games": meta},
                    reviews={"Toys_and_Games": [review("A", "a1", 1), review("B", "a1", 2)]})
    ingest(str(raw), tmp_path / "catalog")
    clean(tmp_path / "catalog")
    layout = Catalog.open(tmp_path / "catalog").layout
    # as `curate images fetch` leaves it: the image in the cache, its row in the status table
    (layout.images / "ab").mkdir(parents=True)
    (layout.images / "ab" / "a1.jpg").write_bytes(b"jpeg")
    status = read_status(layout)
    row = {c: None for c in status.columns} | {"url": url, "status": "ok", "path": "ab/a1.jpg"}
    pl.concat([status, pl.DataFrame([row], schema=status.schema)]).write_parquet(
        layout.image_status)
    result = export(tmp_path / "catalog", "Toys_and_Games", 0, "last_out", tmp_path / "out")
    items = pl.read_parquet(result.folder / "Toys_and_Games.items.parquet")
    assert items["image_path"].to_list() == [str(layout.images / "ab" / "a1.jpg")]
    assert result.counts["items_with_image"] == 1


def test_paths_with_a_quote_are_read_and_written(tmp_path):
    folder = tmp_path / "it's"
    catalog = _timeline(folder, [review("A", "a1", 1), review("A", "a2", 2)])
    assert export(catalog, "Toys_and_Games", 0, "last_out", folder / "out").counts["kcore"] == 2
    source = folder / "rating's.csv"
    source.write_text("u1,i1,5.0,1\nu1,i2,4.0,2\n")
    assert kcore_csv(source, 0, folder / "out's.csv").interactions_out == 2
    assert (folder / "out's.csv").read_text().count("\n") == 3


def test_a_zero_core_keeps_everything_without_a_round_and_a_one_core_in_one(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE TABLE interactions AS SELECT * FROM (VALUES ('u1', 'i1', 5.0, 1, 1), "
                "('u1', 'i2', 4.0, 2, 2), ('u2', 'i1', 3.0, 3, 3)) "
                "AS t(user_id, parent_asin, rating, timestamp, ord)")
    from curation.recsys import KCoreResult

    assert kcore(con, 0) == KCoreResult(0, 0, 3, 3, 2, 2)
    assert kcore(con, 1) == KCoreResult(1, 1, 3, 3, 2, 2)  # one round that removes nothing
    # u2 and i2 have one row each; without them u1 and i1 have one; then nothing is left
    assert kcore(con, 2) == KCoreResult(2, 3, 3, 0, 0, 0)
    assert con.execute("SELECT count(*) FROM kcore").fetchone() == (0,)
