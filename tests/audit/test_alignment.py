"""The alignment audit and its synthetic truth: planted swapped images, the audit's table,
summary, manifest and view, the ``alignment`` weighting it feeds, and the command."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from audit.alignment import alignment_audit, robust_z
from curate.cli import app
from curation.ingest import ingest
from curation.slices import Slice, build_slice
from curation.synth import SynthConfig, synthesize
from weighting.catalog_io import compute_weights

TINY = {"image_encoder": "tiny-efficientnet", "text_encoder": "tiny-minilm"}
FULL = "default-frac1-seed0"


def _meta_lines(corpus: Path) -> dict[str, dict]:
    lines = {}
    for path in sorted((corpus / "raw" / "meta_categories").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            lines[record["parent_asin"]] = record
    return lines


def test_synth_plants_swapped_images_and_records_them(tmp_path):
    summary = synthesize(tmp_path / "c", SynthConfig(n_items=120, seed=4, mismatched_images=0.2,
                                                     categories=("All_Beauty", "Video_Games")))
    truth = pl.read_parquet(tmp_path / "c" / "ground_truth" / "images.parquet")
    meta = _meta_lines(tmp_path / "c")
    swapped = truth.filter(pl.col("image_of").is_not_null())
    assert swapped.height == summary.mismatched_images == 24
    pairs = dict(zip(swapped["parent_asin"].to_list(), swapped["image_of"].to_list(),
                     strict=True))
    assert all(pairs[b] == a for a, b in pairs.items())  # swapped both ways
    for row in truth.iter_rows(named=True):
        record = meta[row["parent_asin"]]
        # the title names the colour and the shape the item's own picture has
        assert f" {row['colour']} {row['shape']} " in record["title"]
        shown = row["image_of"] or row["parent_asin"]
        if row["has_image"]:
            assert record["images"][0]["large"].endswith(f"/{shown}.jpg")
            assert (tmp_path / "c" / "images" / shown[-2:] / f"{shown}.jpg").is_file()
        if row["image_of"]:
            partner = truth.filter(pl.col("parent_asin") == row["image_of"]).row(0, named=True)
            assert (row["shown_colour"], row["shown_shape"]) == (partner["colour"],
                                                                 partner["shape"])


def test_a_default_corpus_records_no_image_truth(tmp_path):
    synthesize(tmp_path / "c", SynthConfig(n_items=30, seed=4))
    truth = tmp_path / "c" / "ground_truth"
    assert not (truth / "images.parquet").exists()
    config = json.loads((truth / "manifest.json").read_text())["config"]
    assert "mismatched_images" not in config and "image_attributes" not in config


@given(st.integers(0, 10_000), st.integers(1, 8))
def test_robust_z_singles_out_far_low_scores(seed, planted):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0.5, 0.05, 200), np.full(planted, -0.5)])
    z = robust_z(scores)
    assert np.all(z[200:] < -3)  # the planted ones, however many of them there are
    assert (z[:200] < -3).sum() <= 4


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    """450 items, 10% showing another item's image, embedded by the tiny encoders and
    audited."""
    root = tmp_path_factory.mktemp("alignment")
    synthesize(root / "corpus", SynthConfig(n_items=450, seed=6, mismatched_images=0.1))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    build_slice(root / "catalog", 1.0)
    alignment_audit(root / "catalog", FULL, folds=3, **TINY)
    return root / "catalog", pl.read_parquet(root / "corpus" / "ground_truth" / "images.parquet")


def test_audit_table_summary_and_manifest(audited):
    catalog, truth = audited
    folder = catalog / "audit" / "alignment" / FULL
    table = pl.read_parquet(folder / "items.parquet")
    items = Slice.open(catalog, FULL).items(["parent_asin"])
    assert table.columns == ["parent_asin", "split", "category", "has_image", "alignment_score",
                             "own_rank", "own_margin", "alignment_z", "is_misaligned"]
    assert sorted(table["parent_asin"].to_list()) == sorted(items["parent_asin"].to_list())
    scored = table.filter(pl.col("has_image"))
    unscored = table.filter(~pl.col("has_image"))
    assert unscored["alignment_score"].is_null().all() and not unscored["is_misaligned"].any()
    assert scored["own_rank"].min() >= 1 and scored["own_rank"].max() <= scored.height
    assert (scored["is_misaligned"] == (scored["alignment_z"] < -3.0)).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"items": table.height, "with_image": scored.height,
                                  "flagged": int(scored["is_misaligned"].sum())}
    assert manifest["parameters"]["folds"] == 3
    assert manifest["encoders_ran"]["image"]["loaded"] == "tiny-efficientnet"
    summary = (folder / "summary.md").read_text()
    assert f"{scored.height:,} with an image" in summary
    # the items showing another's image score lower, and rank their own image lower, than
    # the rest (the tiny random encoders see little more than the category's background)
    joined = scored.join(truth, on="parent_asin")
    swapped = joined.filter(pl.col("image_of").is_not_null())
    kept = joined.filter(pl.col("image_of").is_null())
    assert swapped["alignment_score"].mean() < kept["alignment_score"].mean()
    assert swapped["own_margin"].mean() < kept["own_margin"].mean()
    assert swapped["own_rank"].median() > kept["own_rank"].median()
    runner = CliRunner()
    view = f"audit_alignment__{FULL.replace('-', '_')}"
    shown = runner.invoke(app, ["sql", "-c", str(catalog), f"SELECT count(*) AS n FROM {view}"])
    assert shown.exit_code == 0 and str(table.height) in shown.output


def test_alignment_weighting_reads_the_audit(audited, tmp_path):
    catalog = shutil.copytree(audited[0], tmp_path / "catalog")
    table = pl.read_parquet(catalog / "audit" / "alignment" / FULL / "items.parquet")
    slice_ = Slice.open(catalog, FULL)
    for spec, flagged_weight in (("alignment", 0.0), ("alignment:flagged=0.25", 0.25)):
        weights = compute_weights(slice_, spec)
        frame = pl.read_parquet(weights.path).join(table, on="parent_asin")
        column = next(c for c in frame.columns if c.startswith("weight"))
        assert (frame.filter(pl.col("is_misaligned"))[column] == flagged_weight).all()
        assert (frame.filter(~pl.col("is_misaligned"))[column] == 1.0).all()


def test_audit_command_and_its_errors(audited, tmp_path):
    catalog = shutil.copytree(audited[0], tmp_path / "catalog")
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "alignment", "--slice", FULL, "-c", str(catalog),
                                 "--folds", "2", "--image-encoder", TINY["image_encoder"],
                                 "--text-encoder", TINY["text_encoder"]])
    assert result.exit_code == 0, result.output
    assert "with an image" in result.output and "flagged" in result.output
    bad = runner.invoke(app, ["audit", "alignment", "--slice", FULL, "-c", str(catalog),
                              "--folds", "1"])
    assert bad.exit_code != 0 and "--folds" in bad.output and "Traceback" not in bad.output


def _splits(slice_path: Path) -> dict[str, set[str]]:
    items = pl.read_parquet(slice_path / "items.parquet", columns=["parent_asin", "split"])
    return {s: set(items.filter(pl.col("split") == s)["parent_asin"])
            for s in ("train", "val", "test")}


def test_build_slice_leaves_out_the_misaligned_train_items(audited, tmp_path):
    """`build-slice --exclude-misaligned AUDITED`: the flagged train items leave the slice,
    nothing else does, and the manifest and the output account for every flagged item."""
    catalog = shutil.copytree(audited[0], tmp_path / "catalog")
    table = pl.read_parquet(catalog / "audit" / "alignment" / FULL / "items.parquet")
    flagged = set(table.filter(pl.col("is_misaligned"))["parent_asin"])
    assert flagged  # else this test would show nothing
    result = CliRunner().invoke(app, ["build-slice", "--frac", "0.5", "-c", str(catalog),
                                      "--exclude-misaligned", FULL, "--no-validate"])
    assert result.exit_code == 0, result.output
    name = "default-frac0.5-seed0-nomisaligned"
    assert f"slice {name}:" in result.output
    plain = build_slice(catalog, 0.5)
    kept, whole = _splits(catalog / "slices" / name), _splits(plain.path)
    assert kept["train"] == whole["train"] - flagged  # inside the plain slice, flags out
    assert kept["val"] == whole["val"] and kept["test"] == whole["test"]  # whole
    manifest = Slice.open(catalog, name).manifest
    assert manifest["parameters"]["exclude_misaligned"] == FULL
    assert manifest["parameters"]["exclude_label_issues"] is None
    dropped = len(whole["train"] & flagged)
    in_val_test = len((whole["val"] | whole["test"]) & flagged)
    assert manifest["excluded"] == {"misaligned": {
        "audited_slice": FULL, "flagged": len(flagged), "dropped_from_train": dropped,
        "kept_in_val_test": in_val_test,
        "not_in_slice_train": len(flagged) - dropped - in_val_test}, "dropped_from_train": dropped}
    assert manifest["rows"]["train"] + dropped == plain.manifest["rows"]["train"]
    assert f"left out of train: {dropped:,} items" in result.output
    assert f"alignment audit of {FULL}: {len(flagged):,} = {dropped:,} left out" in result.output
    # a plain slice's manifest records neither (its bytes are what they were)
    assert "exclude_misaligned" not in plain.manifest["parameters"]
    assert "excluded" not in plain.manifest


def test_both_exclusions_leave_out_the_union(audited, tmp_path):
    from audit.label_quality import flagged_items, label_quality_audit

    catalog = shutil.copytree(audited[0], tmp_path / "catalog")
    label_quality_audit(catalog, FULL, folds=3, **TINY)
    label_issues = set(flagged_items(catalog, FULL))
    table = pl.read_parquet(catalog / "audit" / "alignment" / FULL / "items.parquet")
    misaligned = set(table.filter(pl.col("is_misaligned"))["parent_asin"])
    result = CliRunner().invoke(app, ["build-slice", "--frac", "0.5", "-c", str(catalog),
                                      "--exclude-misaligned", FULL, "--exclude-label-issues",
                                      FULL, "--no-validate"])
    assert result.exit_code == 0, result.output
    name = "default-frac0.5-seed0-nolabelissues-nomisaligned"
    whole = _splits(build_slice(catalog, 0.5).path)
    assert _splits(catalog / "slices" / name)["train"] == \
        whole["train"] - label_issues - misaligned
    manifest = Slice.open(catalog, name).manifest
    assert {k: v for k, v in manifest["parameters"].items() if k.startswith("exclude")} == {
        "exclude_label_issues": FULL, "exclude_misaligned": FULL}
    excluded = manifest["excluded"]
    assert excluded["dropped_from_train"] == len(whole["train"] & (label_issues | misaligned))
    for kind, flags in (("label_issues", label_issues), ("misaligned", misaligned)):
        assert excluded[kind]["flagged"] == len(flags)
        assert excluded[kind]["dropped_from_train"] == len(whole["train"] & flags)


def test_exclude_misaligned_errors_are_one_line(audited, tmp_path):
    catalog = shutil.copytree(audited[0], tmp_path / "catalog")
    runner = CliRunner()

    def build(*args: str) -> str:
        result = runner.invoke(app, ["build-slice", "--frac", "0.5", "-c", str(catalog),
                                     "--no-validate", *args])
        assert result.exit_code != 0 and "Traceback" not in result.output
        return result.output

    assert f"no slice named 'nosuch' (slices: {FULL})" in build("--exclude-misaligned",
                                                                "nosuch")
    build_slice(catalog, 0.5, name="half")
    assert ("no alignment audit for 'half': run curate audit alignment --slice half first"
            in build("--exclude-misaligned", "half"))
    # a name stands for one slice: the same name with an exclusion is another slice
    shown = build("--exclude-misaligned", FULL, "--name", "half")
    assert f"exclude_misaligned None -> '{FULL}'" in shown
