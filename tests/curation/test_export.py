"""`curate export hf` and `build-slice --export-hf`: a DatasetDict on disk with the slice's
splits, an Image feature that decodes the corpus's image files, weight columns equal to
weighting.compute's, and a dataset card with the manifest's facts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curation.slices import build_slice
from tests.conftest import copy_catalog, shared_scope

datasets = pytest.importorskip("datasets")

runner = CliRunner()
HALF = "default-frac0.5-seed0"


@pytest.fixture(scope=shared_scope)  # as split_catalog: per test while mutmut maps tests
def catalog(split_catalog, tmp_path_factory) -> Path:
    root = copy_catalog(split_catalog, tmp_path_factory.mktemp("export") / "catalog")
    build_slice(root, 0.5)
    return root


@pytest.fixture(scope=shared_scope)
def exported(catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "half"
    result = runner.invoke(app, ["export", "hf", HALF, str(out), "-c", str(catalog),
                                 "--weights", "effiminivlm", "--weights", "lds:sigma=3"])
    assert result.exit_code == 0, result.output
    assert "saved slice default-frac0.5-seed0 as a datasets.DatasetDict" in result.output
    return out


def test_splits_and_rows_match_the_manifest(catalog, exported):
    manifest = json.loads((catalog / "slices" / HALF / "manifest.json").read_text())
    dataset = datasets.load_from_disk(str(exported))
    assert set(dataset) == {"train", "validation", "test"}
    assert {split: dataset[split].num_rows for split in dataset} == {
        "train": manifest["rows"]["train"], "validation": manifest["rows"]["val"],
        "test": manifest["rows"]["test"]}
    items = pl.read_parquet(catalog / "slices" / HALF / "items.parquet")
    train = dataset["train"]
    assert sorted(train["parent_asin"]) == sorted(
        items.filter(pl.col("split") == "train")["parent_asin"].to_list())
    assert set(items.columns) <= set(train.column_names)


def test_the_image_feature_decodes_the_corpus_image_files(catalog, exported):
    from PIL import Image

    from curation.images import resolve_image_paths

    train = datasets.load_from_disk(str(exported))["train"]
    assert isinstance(train.features["image"], datasets.Image)
    row = next(r for r in train if r["image"] is not None)
    path = resolve_image_paths([row["main_image_url"]])[0]
    assert path is not None and row["main_image_url"].startswith("file://")
    with Image.open(path) as original:
        assert np.array_equal(np.asarray(row["image"].convert("RGB")),
                              np.asarray(original.convert("RGB")))
    with_image = sum(r is not None for r in train["image"])
    assert 0 < with_image <= train.num_rows


def test_weight_columns_equal_weighting_compute(catalog, exported):
    import weighting

    dataset = datasets.load_from_disk(str(exported))
    items = pl.read_parquet(catalog / "slices" / HALF / "items.parquet")
    for column, spec in (("weight_effiminivlm", "effiminivlm"),
                         ("weight_lds_sigma-3", "lds:sigma=3")):
        expected = dict(zip(items["parent_asin"], weighting.compute(items, spec), strict=True))
        for split in dataset:
            part = dataset[split]
            got = dict(zip(part["parent_asin"], part[column], strict=True))
            assert got == pytest.approx({k: expected[k] for k in got})


def test_the_dataset_card_holds_the_manifests_facts(catalog, exported):
    manifest = json.loads((catalog / "slices" / HALF / "manifest.json").read_text())
    card = (exported / "README.md").read_text()
    for fact in ("profile: `default`", "fraction: 0.5", "seed: 0",
                 manifest["outputs"]["items.parquet"], f"| train | {manifest['rows']['train']:,} |",
                 f"| validation | {manifest['rows']['val']:,} |", "research use",
                 "Hou et al. 2024", "`weight_effiminivlm`"):
        assert fact in card, fact


def test_the_card_counts_the_items_with_an_image_and_ends_its_table(exported):
    """Draw 1214 (2026-12-06, tests/mutation): the card counted the items without an image
    as those with one, and a line of text glued to the split table (a Markdown renderer
    reads it as one more row)."""
    dataset = datasets.load_from_disk(str(exported))
    with_image = sum(r is not None for split in dataset for r in dataset[split]["image"])
    total = sum(dataset[split].num_rows for split in dataset)
    assert 0 < with_image < total  # some corpus images are missing: both counts matter
    lines = (exported / "README.md").read_text().splitlines()
    assert f"- images: {with_image:,} of {total:,} items carry an `image` (Image feature)" in lines
    last_row = max(i for i, line in enumerate(lines) if line.startswith("| test |"))
    assert lines[last_row + 1] == ""


def test_push_without_the_network_is_one_line(catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["export", "hf", HALF, str(tmp_path / "out"), "-c",
                                 str(catalog), "--push", "nobody/nothing"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: --push nobody/nothing: could not push")
    assert "Traceback" not in result.output
    assert (tmp_path / "out" / "dataset_dict.json").exists()  # saved before the push


def test_build_slice_export_hf_writes_the_same_export(catalog, tmp_path):
    root = copy_catalog(catalog, tmp_path / "catalog")
    out = tmp_path / "hf"
    result = runner.invoke(app, ["build-slice", "--frac", "0.3", "--no-validate", "-c",
                                 str(root), "--export-hf", str(out)])
    assert result.exit_code == 0, result.output
    dataset = datasets.load_from_disk(str(out))
    manifest = json.loads((root / "slices" / "default-frac0.3-seed0" / "manifest.json")
                          .read_text())
    assert dataset["validation"].num_rows == manifest["rows"]["val"]
    assert "fraction: 0.3" in (out / "README.md").read_text()


def test_an_unknown_slice_a_foreign_folder_or_a_link_is_refused(catalog, exported, tmp_path):
    missing = runner.invoke(app, ["export", "hf", "nope", str(tmp_path / "o"), "-c",
                                  str(catalog)])
    assert missing.exit_code == 2 and "no slice named 'nope'" in missing.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    foreign = runner.invoke(app, ["export", "hf", HALF, str(tmp_path / "mine"), "-c",
                                  str(catalog)])
    assert foreign.exit_code == 2 and "not a dataset export" in foreign.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "link").symlink_to(exported)  # replacing would go through the link
    linked = runner.invoke(app, ["export", "hf", HALF, str(tmp_path / "link"), "-c",
                                 str(catalog)])
    assert linked.exit_code == 2, linked.output
    assert linked.output.strip().splitlines() == [
        f"error: {tmp_path / 'link'} is a link; give the folder it points to or a new one"]
    assert (exported / "dataset_dict.json").exists()
