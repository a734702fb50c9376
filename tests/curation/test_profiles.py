"""Profiles live side by side: switching between them reads what is on disk, and cleans or
splits again only when an input changed."""

from __future__ import annotations

import shutil

from curation.catalog import Catalog
from curation.slices import Slice, build_slice


def _stamp(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def test_switching_profiles_recleans_nothing_already_on_disk(messy_catalog, tmp_path):
    root = tmp_path / "catalog"
    shutil.copytree(messy_catalog, root)
    build_slice(root, 0.5)
    build_slice(root, 0.5, profile="effiminivlm")
    layout = Catalog.open(root).layout
    written = {p: _stamp(p) for p in (layout.silver_items("default"),
                                      layout.silver_items("effiminivlm"),
                                      layout.split_assignments("default", 0),
                                      layout.split_assignments("effiminivlm", 0))}
    again = build_slice(root, 0.3)  # back to the default profile
    assert {p: _stamp(p) for p in written} == written  # nothing cleaned or split again
    catalog = Catalog.open(root)
    assert catalog.tables["silver_items"]["profile"] == "default"  # the views follow
    assert catalog.tables["splits"]["profile"] == "default"
    assert Slice.open(catalog, again.name).profile == "default"
    # a slice of each profile holds only that profile's silver items
    for name, profile in (("default-frac0.5-seed0", "default"),
                          ("effiminivlm-frac0.5-seed0", "effiminivlm")):
        import polars as pl

        items = Slice.open(catalog, name).items(["parent_asin"])
        silver = pl.read_parquet(layout.silver_items(profile), columns=["parent_asin"])
        assert set(items["parent_asin"]) <= set(silver["parent_asin"])
    # a new split of a profile that the views do not show is a split of that profile
    build_slice(root, 0.5, profile="effiminivlm", name="shown")  # views: effiminivlm
    build_slice(root, 0.5, split_seed=3)  # default is cleaned already: only split
    assert layout.split_assignments("default", 3).exists()
    assert not layout.split_assignments("effiminivlm", 3).exists()


def test_changed_bronze_is_cleaned_and_split_again(tmp_path):
    from curation.ingest import ingest
    from curation.synth import SynthConfig, synthesize

    corpus, root = tmp_path / "corpus", tmp_path / "catalog"
    synthesize(corpus, SynthConfig(n_items=200, seed=4, images=False,
                                   categories=("All_Beauty", "Video_Games")))
    ingest(str(corpus / "raw"), root)
    build_slice(root, 0.5)
    layout = Catalog.open(root).layout
    silver, split = layout.silver_items("default"), layout.split_assignments("default", 0)
    before = {p: _stamp(p) for p in (silver, split)}
    build_slice(root, 0.4)  # nothing changed: nothing redone
    assert {p: _stamp(p) for p in before} == before
    meta = corpus / "raw" / "meta_categories" / "meta_Video_Games.jsonl"
    meta.write_text("".join(meta.read_text().splitlines(keepends=True)[:-5]))  # 5 items gone
    ingest(str(corpus / "raw"), root)
    build_slice(root, 0.4)
    assert all(_stamp(p) != before[p] for p in before)  # cleaned and split again
    rows = Catalog.open(root).sources["items/Video_Games"]["rows_ingested"]
    import polars as pl

    kept = pl.read_parquet(silver).filter(pl.col("category") == "Video_Games").height
    assert kept <= rows


def test_a_deleted_table_folder_drops_its_view_and_says_so(messy_catalog, tmp_path, capsys):
    import duckdb

    root = tmp_path / "catalog"
    shutil.copytree(messy_catalog, root)
    build_slice(root, 0.5)
    catalog = Catalog.open(root)
    silver = catalog.layout.silver_items("default")
    shutil.rmtree(silver.parent)  # a user deletes silver/default by hand
    catalog.refresh_views()
    assert "silver_items" in capsys.readouterr().err
    con = duckdb.connect(str(catalog.layout.database), read_only=True)
    views = {row[0] for row in con.execute("select view_name from duckdb_views()").fetchall()}
    con.close()
    assert "silver_items" not in views and "items" in views
    build_slice(root, 0.4)  # and the next command cleans again instead of failing
    assert silver.exists()
