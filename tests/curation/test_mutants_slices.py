"""Slices: what the fair draws of 2026-12-05 to 2026-12-08 (1212 to 1214, 1222, 1224, 1228,
1229, 1234, 1236, 1238 to 1243, 1246, 1249, 1252, 1254, 1255, 1257, 1258, 1260 and 1261;
tests/mutation/draw.py) left alive, written after each draw (their results stay in
tests/mutation/report.md as they were)."""

from __future__ import annotations

from curation.slices import HF_SPLITS, Slice, build_slice, dataset_card
from tests.conftest import copy_catalog


def _half(split_catalog, tmp_path) -> Slice:
    """A copy of the split catalog with a slice of half its train items, named half."""
    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.5, name="half")
    return Slice.open(root, "half")


def test_the_dataset_card_says_what_a_slice_is(split_catalog, tmp_path):
    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.5)
    card = dataset_card(Slice.open(root, "default-frac0.5-seed0"),
                        dict.fromkeys(HF_SPLITS.values(), 3), [], 0)
    assert ("A slice of the Amazon Reviews 2023 corpus cut by Curate (`curate export hf`): every "
            "train item whose stratum threshold lies at or below the fraction, and the whole "
            "validation and test splits.") in card.splitlines()


def test_a_split_left_empty_is_counted_zero_in_the_manifest(split_catalog, tmp_path):
    """Draw 1212 (2026-12-06): a split with no item was counted 1 in the manifest's rows."""
    import polars as pl

    from curation.slices import Exclusion

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    train = (pl.read_parquet(root / "splits/default/seed0/assignments.parquet")
             .filter(pl.col("split") == "train")["parent_asin"].to_list())
    result = build_slice(root, 0.5, exclude=Exclusion(train, "everything"))
    frame = pl.read_parquet(Slice.open(root, result.name).path)
    counts = dict(frame.group_by("split").len().iter_rows())
    assert "train" not in counts and counts["val"] > 0
    assert result.manifest["rows"] == {"train": 0, "val": counts["val"], "test": counts["test"]}


def test_diff_slices_counts_the_items_in_both(split_catalog, tmp_path):
    """Draw 1212: the per-split count of items in both slices lost its name (`both`), which
    `curate slices diff` prints."""
    import polars as pl
    from typer.testing import CliRunner

    from curate.cli import app
    from curation.slices import diff_slices

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    counts = {}
    for frac, name in ((0.2, "small"), (0.6, "large")):
        build_slice(root, frac, name=name)
        frame = pl.read_parquet(Slice.open(root, name).path)
        counts[name] = dict(frame.group_by("split").len().iter_rows())
    diff = diff_slices(root, "small", "large")
    assert {s: d["both"] for s, d in diff["per_split"].items()} == counts["small"]
    out = CliRunner().invoke(app, ["slices", "diff", "small", "large", "--catalog", str(root)])
    assert out.exit_code == 0, out.output
    only_large = counts["large"]["train"] - counts["small"]["train"]
    assert f"{'train':<6} {0:>30,} {only_large:>30,} {counts['small']['train']:>9,}" in (
        out.output.splitlines())


def test_the_manifest_accounts_for_every_flagged_item(split_catalog, tmp_path):
    """Draw 1213 (2026-12-06): the count of flagged items lost its name in the manifest's
    `excluded` record (flagged = dropped from train + kept in val/test + not in the train)."""
    import polars as pl

    from curation.slices import Exclusion

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.4, name="plain")
    frame = pl.read_parquet(Slice.open(root, "plain").path)
    train = sorted(frame.filter(pl.col("split") == "train")["parent_asin"])
    val = sorted(frame.filter(pl.col("split") == "val")["parent_asin"])
    flagged = [*train[:4], *val[:2], "NOT-AN-ITEM", train[0]]  # one named twice
    result = build_slice(root, 0.4, exclude=Exclusion(flagged, "plain"))
    assert result.manifest["excluded"] == {
        "label_issues": {"audited_slice": "plain", "flagged": 7, "dropped_from_train": 4,
                         "kept_in_val_test": 2, "not_in_slice_train": 1},
        "dropped_from_train": 4,
    }


def test_an_export_replaces_the_earlier_export_in_its_folder(split_catalog, tmp_path):
    """Draw 1213: exporting again into the folder of an earlier export failed (the earlier
    one was not removed) instead of replacing it, as export_hf promises."""
    import datasets

    from curation.slices import export_hf

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    out = tmp_path / "export"
    for frac, name in ((0.2, "small"), (0.6, "large")):
        build_slice(root, frac, name=name)
    export_hf(Slice.open(root, "small"), out, images=False)
    export_hf(Slice.open(root, "large"), out, images=False)
    large = Slice.open(root, "large").manifest["rows"]
    exported = datasets.load_from_disk(str(out))
    assert exported["train"].num_rows == large["train"] > Slice.open(
        root, "small").manifest["rows"]["train"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "export"]  # no staging left


def test_a_slice_without_both_audits_flagged_items_names_each():
    """Draw 1214: the suffixes of two exclusions were joined with other text."""
    from curation.slices import slice_name

    assert slice_name("default", 0.4, 0, excluded=["label_issues", "misaligned"]) == (
        "default-frac0.4-seed0-nolabelissues-nomisaligned")
    assert slice_name("default", 0.4, 0, excluded=["misaligned"]) == (
        "default-frac0.4-seed0-nomisaligned")


def test_a_slice_name_with_excluded_true_names_the_label_issues():
    """Draw 1249 (2026-12-07): `excluded=True`, which slice_name documents as the label
    issues, gave the name of a slice that excludes nothing."""
    from curation.slices import slice_name

    assert slice_name("default", 0.4, 0, excluded=True) == "default-frac0.4-seed0-nolabelissues"
    assert slice_name("default", 0.4, 0, excluded=False) == "default-frac0.4-seed0"


def test_a_slice_name_joins_its_strata_with_dots():
    """Draw 1257 (2026-12-08): the strata of a slice cut by several were joined with other
    text; the name gives them in the order given, then the minimum and the exclusions."""
    from curation.slices import slice_name

    assert slice_name("default", 0.4, 0, strata=("main_category", "rating_bin")) == (
        "default-frac0.4-seed0-by-main_category.rating_bin")
    assert slice_name("effiminivlm", 0.1, 3, split_seed=2, min_per_category=10,
                      strata=("count_bin", "main_category", "rating_bin"),
                      excluded=["misaligned"]) == (
        "effiminivlm-frac0.1-seed3-split2-by-count_bin.main_category.rating_bin-min10"
        "-nomisaligned")


def test_the_dataset_card_whole(split_catalog, tmp_path):
    """The card an export writes, every line (the fair draws kept finding one more of its
    details that no test read): YAML front matter, the slice's facts from its manifest, the
    split table and the licence."""
    import hashlib

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.25, seed=2, min_per_category=3, name="carded")
    slice_ = Slice.open(root, "carded")
    sha = hashlib.sha256(slice_.path.read_bytes()).hexdigest()
    counts = {"train": 1234, "validation": 56, "test": 7}
    expected = [
        "---", "license: other", "pretty_name: carded", "---", "", "# carded", "",
        "A slice of the Amazon Reviews 2023 corpus cut by Curate (`curate export hf`): every "
        "train item whose stratum threshold lies at or below the fraction, and the whole "
        "validation and test splits.",
        "",
        "- profile: `default`",
        "- fraction: 0.25",
        "- seed: 2 (split seed 0)",
        "- strata: main_category, rating_bin, count_bin",
        "- minimum per category: 3",
        f"- items file SHA-256: `{sha}`",
        "- weight columns: `w_a`, `w_b`",
        "- images: 1,000 of 1,297 items carry an `image` (Image feature)",
        "",
        "| split | rows |", "|---|---|", "| train | 1,234 |", "| validation | 56 |",
        "| test | 7 |",
        "",
        "## Licence",
        "",
        "The Amazon Reviews 2023 data are released for research use only; see "
        "https://amazon-reviews-2023.github.io/ and cite Hou et al. 2024, \"Bridging Language "
        "and Items for Retrieval and Recommendation\" (arXiv:2403.03952).",
        "",
    ]
    assert dataset_card(slice_, counts, ["w_a", "w_b"], 1000).split("\n") == expected
    plain = dataset_card(slice_, counts, [], 0).split("\n")
    assert plain[expected.index("- weight columns: `w_a`, `w_b`")] == "- weight columns: none"
    assert "- images: none on this machine (no `image` column)" in plain


def test_an_image_file_that_does_not_decode_gets_no_image_in_the_export(tmp_path):
    """Draw 1222 (2026-12-07): a main image whose file is there but does not open as an image
    was embedded anyway, and every reader of the export then failed at decoding it."""
    import datasets
    import numpy as np
    from PIL import Image

    from curation.clean import clean
    from curation.ingest import ingest
    from curation.slices import export_hf
    from curation.split import build_split
    from tests.conftest import write_raw

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    items = []
    for i in range(40):
        path = pictures / f"{i}.png"
        Image.fromarray(np.full((8, 8, 3), i * 6, dtype=np.uint8)).save(path)
        items.append({"main_category": "Toys & Games", "title": f"Unique title {i}",
                      "average_rating": 4.0, "rating_number": 5, "parent_asin": f"B{i:04d}",
                      "images": [{"large": path.as_uri(), "hi_res": None, "thumb": None,
                                  "variant": "MAIN"}]})
    broken = pictures / "7.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a cut file: Pillow cannot read it
    root = tmp_path / "catalog"
    ingest(str(write_raw(tmp_path, meta={"Toys_and_Games": items})), root)
    clean(root)
    build_split(root, seed=0)
    result = build_slice(root, 1.0)
    out = export_hf(Slice.open(root, result.name), tmp_path / "hf")
    dataset = datasets.load_from_disk(str(out))
    rows = {r["parent_asin"]: r["image"] for split in dataset for r in dataset[split]}
    assert rows["B0007"] is None
    assert all(rows[f"B{i:04d}"] is not None for i in range(40) if i != 7)
    assert np.asarray(rows["B0003"].convert("RGB"))[0, 0].tolist() == [18, 18, 18]


def test_a_slice_without_exclusions_has_no_excluded_record(split_catalog, tmp_path):
    """Draw 1222 (2026-12-07): a slice cut without exclusions got an ``excluded`` record of
    nothing dropped, so its manifest, and the bytes of every such slice cut before, changed."""
    import json

    from curation.slices import Exclusion

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    plain = build_slice(root, 0.5)
    manifest = json.loads((root / "slices" / plain.name / "manifest.json").read_text())
    assert "excluded" not in manifest
    flagged = build_slice(root, 0.5, exclude=Exclusion(["nothing-here"], "audit"))
    manifest = json.loads((root / "slices" / flagged.name / "manifest.json").read_text())
    assert manifest["excluded"]["dropped_from_train"] == 0  # given, even empty, it is recorded


def test_a_slice_whose_manifest_is_damaged_is_built_again_with_a_note_on_stderr(
        split_catalog, tmp_path, capsys):
    """Draw 1224 (2026-12-07): the note went to stdout, where `--json` output is read."""
    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.5, name="half")
    manifest = root / "slices" / "half" / "manifest.json"
    manifest.write_text("{ not json")
    capsys.readouterr()
    build_slice(root, 0.5, name="half")
    out, err = capsys.readouterr()
    assert "; building it again" in err and "building it again" not in out
    assert Slice.open(root, "half").manifest["parameters"]["frac"] == 0.5


def test_a_split_whose_manifest_is_damaged_is_made_again_with_a_note_on_stderr(
        split_catalog, tmp_path, capsys):
    """Draw 1234 (2026-12-07): the note of a damaged split (or silver) manifest, made again
    by build-slice, went to stdout, where `--json` output is read."""
    import json

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    manifest = root / "splits" / "default" / "seed0" / "manifest.json"
    good = json.loads(manifest.read_text())
    manifest.write_text("{ not json")
    capsys.readouterr()
    build_slice(root, 0.5, name="half")
    out, err = capsys.readouterr()
    assert "making it again" in err and "making it again" not in out
    assert "splits/default/seed0/manifest.json" in err
    assert json.loads(manifest.read_text())["outputs"] == good["outputs"]  # the same split


def test_a_slice_named_in_capitals_opens_and_a_path_is_no_name(split_catalog, tmp_path):
    """Draw 1236 (2026-12-07): the name check of Slice.open refused capitals, which
    build-slice's own check allows, unseen."""
    import pytest

    from curation.errors import UserError

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.5, name="Half-A")
    assert Slice.open(root, "Half-A").manifest["name"] == "Half-A"
    with pytest.raises(UserError, match=r"^no slice named '\.\./Half-A' \(slices: Half-A\)$"):
        Slice.open(root, "../Half-A")


def test_both_audits_exclusions_are_counted_each_and_an_item_both_flagged_leaves_once(
        split_catalog, tmp_path):
    """Draw 1228 (2026-12-07): with both audits' exclusions, the second audit's items
    replaced the first's, and the slice failed to build."""
    import polars as pl

    from curation.slices import Exclusion

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.4, name="plain")
    frame = pl.read_parquet(Slice.open(root, "plain").path)
    train = sorted(frame.filter(pl.col("split") == "train")["parent_asin"])
    result = build_slice(root, 0.4, exclude=[Exclusion(train[:3], "plain"),
                                             Exclusion(train[2:5], "plain", kind="misaligned")])
    assert result.name == "default-frac0.4-seed0-nolabelissues-nomisaligned"
    counted = {"audited_slice": "plain", "flagged": 3, "dropped_from_train": 3,
               "kept_in_val_test": 0, "not_in_slice_train": 0}
    assert result.manifest["excluded"] == {"label_issues": counted, "misaligned": counted,
                                           "dropped_from_train": 5}
    left = pl.read_parquet(Slice.open(root, result.name).path)
    kept = set(left.filter(pl.col("split") == "train")["parent_asin"])
    assert kept == set(train) - set(train[:5])


def test_an_audit_that_flagged_nothing_is_counted_zero(split_catalog, tmp_path):
    """Draw 1228: an exclusion naming no item was counted as one item kept in val/test."""
    from curation.slices import Exclusion

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    result = build_slice(root, 0.4, exclude=Exclusion([], "plain", kind="misaligned"))
    assert result.manifest["excluded"] == {
        "misaligned": {"audited_slice": "plain", "flagged": 0, "dropped_from_train": 0,
                       "kept_in_val_test": 0, "not_in_slice_train": 0},
        "dropped_from_train": 0,
    }


def test_an_export_goes_into_an_empty_or_new_folder_and_refuses_a_file(split_catalog,
                                                                         tmp_path):
    """Draws 1228 and 1229: an export into an existing empty folder was refused, one into a
    file was a traceback (NotADirectoryError) instead of the one line, and one whose parent
    folder did not exist yet failed."""
    import datasets
    import pytest

    from curation.errors import UserError
    from curation.slices import export_hf

    half = _half(split_catalog, tmp_path)
    rows = half.manifest["rows"]["train"]
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "not" / "yet" / "there"):
        export_hf(half, out, images=False)
        assert datasets.load_from_disk(str(out))["train"].num_rows == rows
    (tmp_path / "a-file").write_text("keep me")
    with pytest.raises(UserError, match="a-file exists and is not a dataset export"):
        export_hf(half, tmp_path / "a-file", images=False)
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_a_plain_slice_records_its_parameters_as_slices_always_have(split_catalog, tmp_path):
    """Draw 1228: the key of the label-issues exclusion, recorded as None for a plain slice so
    that manifests keep the bytes of earlier versions, was renamed unseen (and the slice
    already built under the old key would then be refused as another slice of its name)."""
    import json

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    result = build_slice(root, 0.5, seed=4, min_per_category=3)
    manifest = json.loads((root / "slices" / result.name / "manifest.json").read_text())
    assert manifest["parameters"] == {
        "frac": 0.5, "seed": 4, "strata": ["main_category", "rating_bin", "count_bin"],
        "min_per_category": 3, "exclude_label_issues": None, "profile": "default",
        "split_seed": 0}


def test_an_exclusion_of_an_unknown_kind_says_which_kinds_there_are():
    """Draws 1238 to 1240 (2026-12-07): the error's message could be lost (``ValueError(None)``)
    unseen; the command line only makes known kinds, Python callers can make any."""
    import pytest

    from curation.slices import Exclusion

    with pytest.raises(ValueError) as error:
        Exclusion(["B000000001"], "audited", kind="duplicates")
    assert str(error.value) == "unknown exclusion 'duplicates'; one of label_issues, misaligned"
    assert Exclusion([], "audited", kind="misaligned").parameter == "exclude_misaligned"


def test_a_silver_page_that_no_longer_decompresses_is_named_by_build_slice(split_catalog,
                                                                           tmp_path):
    """Draws 1241 to 1243 (2026-12-07): silver is checked by size before a slice (a page
    damaged in place keeps it), so DuckDB's read fails; build-slice then checks silver and
    the split against their manifests and names the damaged file. That check could be
    dropped or called wrongly unseen (a TypeError's traceback instead)."""
    import pytest

    from curation.catalog import Catalog
    from curation.integrity import IntegrityError
    from tests.conftest import break_a_page

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    silver = Catalog.open(root).layout.silver_items("default")
    break_a_page(silver)
    with pytest.raises(IntegrityError) as caught:
        build_slice(root, 0.5)
    assert str(silver.relative_to(root)) in str(caught.value)
    assert "SHA-256" in str(caught.value)


def test_a_slice_that_left_out_flagged_items_says_so_in_its_parameters():
    """Draws 1241 to 1243 (2026-12-07): the exclusions read back from a manifest could be
    always none, unseen; `curate verify --repair` would then make such a slice again from its
    other parameters, with the flagged items back in, instead of saying it cannot."""
    from curation.slices import exclusion_parameters

    parameters = {"frac": 0.5, "seed": 0, "exclude_label_issues": "audited-slice",
                  "exclude_misaligned": None}
    assert exclusion_parameters(parameters) == {"exclude_label_issues": "audited-slice"}
    assert exclusion_parameters({"frac": 0.5, "seed": 0}) == {}


def test_an_export_starts_from_an_empty_staging_folder(split_catalog, tmp_path):
    """Draw 1246 (2026-12-07): the staging folder that a killed export left was not cleared
    first, so its files were renamed into the next export made under the same process id (as
    containers give again)."""
    import os

    from curation.slices import export_hf

    half = _half(split_catalog, tmp_path)
    out = tmp_path / "export"
    left = out.with_name(f".{out.name}.staging-{os.getpid()}")
    (left / "train").mkdir(parents=True)
    (left / "train" / "data-00001-of-00002.arrow").write_bytes(b"half-written")
    export_hf(half, out, images=False)
    assert not (out / "train" / "data-00001-of-00002.arrow").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "export"]


def test_an_export_embeds_the_images_fetched_into_the_catalogs_cache(tmp_path):
    """Draw 1252 (2026-12-07): export_hf looked up http(s) images without the catalog, so the
    images `curate images fetch` had stored were left out of the export (only file:// URLs
    were found)."""
    import shutil

    import datasets
    from PIL import Image

    from curation.clean import clean
    from curation.images import Outcome, _fold_journal, _Journal
    from curation.ingest import ingest
    from curation.slices import export_hf
    from curation.split import build_split
    from curation.synth import SynthConfig, synthesize

    base = "http://images.invalid/"
    corpus = tmp_path / "corpus"
    synthesize(corpus, SynthConfig(n_items=60, seed=3, image_base_url=base,
                                   categories=("All_Beauty",)))
    root = tmp_path / "catalog"
    ingest(str(corpus / "raw"), root)
    clean(root, "default")
    build_split(root, seed=0)
    build_slice(root, 1.0, name="all")
    slice_ = Slice.open(root, "all")
    layout = slice_.catalog.layout
    layout.images.mkdir(parents=True, exist_ok=True)
    journal = _Journal(layout)  # as a fetch records what it stored
    opens = set()
    for asin, url in slice_.items(["parent_asin", "main_image_url"]).iter_rows():
        source = corpus / "images" / url.removeprefix(base) if url else None
        if source is None or not source.is_file():
            continue
        stored = layout.images / "cache" / f"{asin}.jpg"
        stored.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, stored)
        journal.add(Outcome(url, "ok", path=f"cache/{asin}.jpg"))
        try:
            with Image.open(stored) as image:
                image.verify()
            opens.add(asin)
        except (OSError, SyntaxError, ValueError):  # what export_hf's check of a file catches
            pass
    journal.flush()
    _fold_journal(layout)
    exported = datasets.load_from_disk(str(export_hf(slice_, tmp_path / "hf")))
    with_image = {row["parent_asin"] for part in exported.values()
                  for row in part.select_columns(["parent_asin", "image"]) if row["image"]}
    assert opens and with_image == opens


def test_an_export_refuses_weights_that_leave_out_an_item(split_catalog, tmp_path):
    """Draws 1254 and 1255 (2026-12-07): weights joined without `how="left"` dropped the
    items they left out from the export, silently; or the refusal lost its message."""
    import polars as pl
    import pytest

    from curation.errors import UserError
    from curation.slices import export_hf

    slice_ = _half(split_catalog, tmp_path)
    asins = slice_.items(["parent_asin"])["parent_asin"].to_list()
    weights = pl.DataFrame({"parent_asin": asins[1:], "weight": [1.0] * (len(asins) - 1)})
    with pytest.raises(UserError) as refused:
        export_hf(slice_, tmp_path / "hf", weights={"w_count": weights}, images=False)
    assert str(refused.value) == "weights 'w_count' do not cover every item of the slice"
    assert not (tmp_path / "hf").exists()


def test_a_slice_name_outside_the_safe_characters_is_refused_with_why(split_catalog, tmp_path):
    """Draw 1253 (2026-12-07): the refusal of a slice name holding other characters (a path
    separator, a space) lost its message; no test read it."""
    import pytest

    from curation.errors import UserError

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    for name in ("../escape", "two words"):
        with pytest.raises(UserError) as refused:
            build_slice(root, 0.5, name=name)
        assert str(refused.value) == (
            f"slice name {name!r}: use letters, digits, '.', '_' and '-' only")


def test_a_slice_manifest_names_the_silver_items_and_split_it_was_cut_from(split_catalog,
                                                                           tmp_path):
    """Draw 1253 (2026-12-07): the manifest's record of its inputs' checksums was written under
    another key, which no code of the slice reads but a reader of the manifest does."""
    from curation.manifest import sha256_file
    from curation.paths import CatalogLayout

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    result = build_slice(root, 0.5)
    layout = CatalogLayout(root)
    assert Slice.open(root, result.name).manifest["inputs"] == {
        "silver_items": sha256_file(layout.silver_items("default")),
        "splits": sha256_file(layout.split_assignments("default", 0)),
    }


def test_a_slice_records_each_strata_train_items_and_how_long_it_took(split_catalog, tmp_path):
    """Draws 1257 and 1258 (2026-12-08): the manifest's train items per stratum were written
    under another key (`curate build-slice --verbose` prints them, and failed), and the
    seconds a build took were the clock plus its start, not the time between."""
    import time

    import polars as pl

    root = copy_catalog(split_catalog, tmp_path / "catalog")

    def train_per_stratum(name: str) -> dict[str, int]:
        frame = pl.read_parquet(Slice.open(root, name).path).filter(pl.col("split") == "train")
        return dict(frame.group_by("stratum").len().iter_rows())

    started = time.perf_counter()
    half = build_slice(root, 0.5)
    took = time.perf_counter() - started
    assert 0 < half.seconds <= took
    assert half.path == root / "slices" / half.name  # the slice run whole: it could be None
    every = train_per_stratum(build_slice(root, 1.0).name)  # every train item of the split
    selected = train_per_stratum(half.name)
    strata = Slice.open(root, half.name).manifest["strata"]
    assert {s["stratum"] for s in strata} == set(every)
    for s in strata:
        n = every[s["stratum"]]
        assert s == {"stratum": s["stratum"], "train_items": n,
                     "selected": selected.get(s["stratum"], 0), "exact_share": 0.5 * n}


def test_a_split_page_that_no_longer_decompresses_is_named_by_build_slice(split_catalog,
                                                                          tmp_path):
    """Draw 1261 (2026-12-08): build-slice's check of its inputs looked for the split of seed
    None, so a damaged split of the seed it reads went unnamed (DuckDB's error instead)."""
    import pytest

    from curation.catalog import Catalog
    from curation.integrity import IntegrityError
    from tests.conftest import break_a_page

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    assignments = Catalog.open(root).layout.split_assignments("default", 0)
    break_a_page(assignments)
    with pytest.raises(IntegrityError) as caught:
        build_slice(root, 0.5)
    assert str(assignments.relative_to(root)) in str(caught.value)
    assert "SHA-256" in str(caught.value)


def test_two_exclusions_of_one_kind_are_refused_with_why(split_catalog, tmp_path):
    """Draw 1260 (2026-12-08): the refusal of two exclusions of one kind could lose its
    message (``ValueError(None)``) unseen; Python callers can hand in any list."""
    import pytest

    from curation.slices import Exclusion

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    twice = [Exclusion(["B000000001"], "a"), Exclusion(["B000000002"], "b")]
    with pytest.raises(ValueError) as error:
        build_slice(root, 0.5, exclude=twice)
    assert str(error.value) == "one exclusion per kind, got ['label_issues', 'label_issues']"
    assert not (root / "slices").exists() or not any((root / "slices").iterdir())


def test_silver_altered_in_place_is_made_again_under_full_checks(split_catalog, tmp_path,
                                                                  monkeypatch, capsys):
    """Slices run whole (2026-12-08): under CURATE_VERIFY=1 build-slice's look at silver
    before reusing it hashed nothing, so silver altered in place, its size kept, was not made
    again (the check of the inputs then refused it instead)."""
    from curation.catalog import Catalog
    from curation.integrity import VERIFY_ENV
    from tests.conftest import alter_a_page_silently

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    silver = Catalog.open(root).layout.silver_items("default")
    before = silver.read_bytes()
    alter_a_page_silently(silver)
    monkeypatch.setenv(VERIFY_ENV, "1")
    build_slice(root, 0.5)
    assert "note: silver/default/items.parquet: " in capsys.readouterr().err
    assert silver.read_bytes() == before  # cleaned again, to the same bytes


def test_an_export_without_images_has_no_image_column(split_catalog, tmp_path):
    """Slices run whole (2026-12-08): the count of items with an image could start at 1, so an
    export without images claimed one in its card."""
    import datasets

    from curation.slices import export_hf

    out = export_hf(_half(split_catalog, tmp_path), tmp_path / "hf", images=False)
    exported = datasets.load_from_disk(str(out))
    assert all("image" not in part.column_names for part in exported.values())
    card = (out / "README.md").read_text().splitlines()
    assert "- images: none on this machine (no `image` column)" in card


def test_an_export_refuses_a_weight_column_named_as_a_slice_column(split_catalog, tmp_path):
    """Slices run whole (2026-12-08): the refusal could lose its message unseen."""
    import polars as pl
    import pytest

    from curation.errors import UserError
    from curation.slices import export_hf

    slice_ = _half(split_catalog, tmp_path)
    asins = slice_.items(["parent_asin"])["parent_asin"].to_list()
    weights = pl.DataFrame({"parent_asin": asins, "weight": [1.0] * len(asins)})
    with pytest.raises(UserError) as refused:
        export_hf(slice_, tmp_path / "hf", weights={"split": weights}, images=False)
    assert str(refused.value) == "weight column 'split' clashes with a column of the slice"


def test_an_export_replaces_a_saved_dataset_and_leaves_the_progress_bars_as_they_were(
        split_catalog, tmp_path):
    """Slices run whole (2026-12-08): a folder holding one saved `datasets.Dataset`
    (dataset_info.json) could be refused as not an export, and the progress bars an export
    turns off were not turned on again after it."""
    import datasets

    from curation.slices import export_hf

    slice_ = _half(split_catalog, tmp_path)
    out = tmp_path / "hf"
    datasets.Dataset.from_dict({"a": [1, 2]}).save_to_disk(str(out))
    was = datasets.is_progress_bar_enabled()
    try:
        for enabled in (True, False):
            (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
            export_hf(slice_, out, images=False)
            assert datasets.is_progress_bar_enabled() is enabled
    finally:
        (datasets.enable_progress_bars if was else datasets.disable_progress_bars)()
    assert set(datasets.load_from_disk(str(out))) == {"train", "validation", "test"}


def test_an_interrupted_export_leaves_no_staging_folder(split_catalog, tmp_path, monkeypatch):
    """Slices run whole (2026-12-08): the staging folder of an export that fails or is
    interrupted (here Ctrl-C while the card is written) was left beside the export."""
    import pytest

    import curation.slices
    from curation.slices import export_hf

    slice_ = _half(split_catalog, tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(curation.slices, "dataset_card", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_hf(slice_, tmp_path / "hf", images=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog"]


def test_a_name_reused_with_several_other_parameters_names_each(split_catalog, tmp_path):
    """Slices run whole (2026-12-08): the parameters that differ were joined with other text
    than ', ' when more than one differed (the tests had changed only one)."""
    import pytest

    from curation.errors import UserError

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.5, name="half")
    with pytest.raises(UserError) as refused:
        build_slice(root, 0.3, seed=2, name="half")
    assert str(refused.value) == (
        "slice 'half' exists with other parameters (frac 0.5 -> 0.3, seed 0 -> 2); give "
        "another --name, or delete slices/half first")


def test_a_slice_file_lists_train_then_val_then_test_each_by_parent_asin(split_catalog,
                                                                          tmp_path):
    """Slices run whole (2026-12-08): the split names in the sort's CASE could be changed
    (upper case: every row then sorts as test) unseen; the tests compared the bytes of two
    runs of the same code, which agree whatever the order."""
    import polars as pl

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    rows = pl.read_parquet(Slice.open(root, build_slice(root, 0.5).name).path,
                           columns=["split", "parent_asin"]).rows()
    assert rows == sorted(rows, key=lambda r: (["train", "val", "test"].index(r[0]), r[1]))
    assert rows[0][0] == "train" and rows[-1][0] == "test"


def test_an_unknown_slice_name_lists_the_slices_there_are(split_catalog, tmp_path):
    """Slices run whole (2026-12-08): the slices the refusal lists were joined with other text
    than ', ' when there was more than one (the tests had one or none)."""
    import pytest

    from curation.errors import UserError

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    with pytest.raises(UserError) as none_yet:
        Slice.open(root, "nope")
    assert str(none_yet.value) == "no slice named 'nope' (slices: none yet)"
    build_slice(root, 0.5, name="half")
    build_slice(root, 0.25, name="quarter")
    with pytest.raises(UserError) as refused:
        Slice.open(root, "nope")
    assert str(refused.value) == "no slice named 'nope' (slices: half, quarter)"
