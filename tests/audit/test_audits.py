"""The audits on corpora with planted label errors and near-duplicates, and on real rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("cleanlab")

import polars as pl
from typer.testing import CliRunner

from audit.data_map import data_map_audit
from audit.duplicates import duplicates_audit
from audit.label_quality import flagged_items, label_quality_audit
from curate.cli import app
from curation.ingest import ingest
from curation.slices import Exclusion, Slice, build_slice
from curation.synth import SynthConfig, synthesize
from tests.conftest import shared_file
from training.config import TrainConfig
from training.trainer import train
from weighting.catalog_io import compute_weights

TINY = {"image_encoder": "tiny-efficientnet", "text_encoder": "tiny-minilm"}
FULL = "default-frac1-seed0"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    """2,000 items, 5% with a planted wrong average_rating, 2% relisted as near-copies."""
    root = tmp_path_factory.mktemp("audit")
    synthesize(root / "corpus", SynthConfig(n_items=2000, seed=5, label_noise=0.05,
                                            near_duplicates=0.02))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    build_slice(root / "catalog", 1.0)
    truth = pl.read_parquet(root / "corpus" / "ground_truth" / "items.parquet")
    return root / "catalog", truth


def test_label_quality_flags_recover_the_planted_label_errors(planted):
    catalog, truth = planted
    result = label_quality_audit(catalog, FULL, **TINY)
    table = pl.read_parquet(result.folder / "items.parquet").join(
        truth.select("parent_asin", "label_replaced"), on="parent_asin", how="left")
    flagged = table["is_label_issue"].to_numpy()
    wrong = table["label_replaced"].fill_null(False).to_numpy()
    precision = (flagged & wrong).sum() / max(flagged.sum(), 1)
    recall = (flagged & wrong).sum() / wrong.sum()
    print(f"{wrong.sum()} planted, {flagged.sum()} flagged: precision {precision:.2f}, "
          f"recall {recall:.2f}")
    # a random flagging of as many items would have precision ~0.05
    assert precision >= 0.7 and recall >= 0.7
    # the lowest cleanlab scores are mostly planted errors too
    worst = table.sort("label_quality").head(int(wrong.sum()))
    assert worst["label_replaced"].fill_null(False).mean() >= 0.6
    assert "flagged:" in (result.folder / "summary.md").read_text()

    # the weighting strategy and the slice option that use the flags
    flagged_weights = compute_weights(Slice.open(catalog, FULL), "label_quality:drop_flagged=1")
    weights = pl.read_parquet(flagged_weights.path).join(
        table.select("parent_asin", "is_label_issue"), on="parent_asin")
    assert (weights.filter(pl.col("is_label_issue"))["weight"] == 0).all()
    assert (weights.filter(~pl.col("is_label_issue"))["weight"] > 0).all()
    small = build_slice(catalog, 0.5, exclude=Exclusion(flagged_items(catalog, FULL), FULL))
    assert small.name == "default-frac0.5-seed0-nolabelissues"
    plain = build_slice(catalog, 0.5)
    clean_train = set(pl.read_parquet(small.path / "items.parquet").filter(
        pl.col("split") == "train")["parent_asin"])
    plain_items = pl.read_parquet(plain.path / "items.parquet")
    plain_train = set(plain_items.filter(pl.col("split") == "train")["parent_asin"])
    flagged_ids = set(table.filter(pl.col("is_label_issue"))["parent_asin"])
    assert clean_train == plain_train - flagged_ids  # inside the plain slice, flags out
    assert small.manifest["rows"]["test"] == plain.manifest["rows"]["test"]  # test whole


def test_planted_near_duplicates_are_all_reported_and_regrouped(planted):
    catalog, truth = planted
    copies = truth.filter(pl.col("near_duplicate_of").is_not_null())
    silver = set(pl.read_parquet(catalog / "silver/default/items.parquet")["parent_asin"])
    expected = {tuple(sorted(p)) for p in copies.select("near_duplicate_of", "parent_asin")
                .iter_rows() if p[0] in silver and p[1] in silver}
    assert len(expected) >= 20
    result = duplicates_audit(catalog)
    pairs = pl.read_parquet(result.folder / "pairs.parquet")
    found = {(a, b) for a, b in pairs.filter(pl.col("kind").is_in(["near_text",
                                                                   "same_image_bytes"]))
             .select("a", "b").iter_rows()}
    assert expected <= found  # every planted pair, whether its copy has an image or not
    assert found <= expected  # and nothing else: unrelated items are not near-duplicates
    near = {(a, b) for a, b in pairs.filter(pl.col("kind") == "near_text")
            .select("a", "b").iter_rows()}
    assert near == expected
    leaking = pairs.filter(pl.col("cross_split") & pl.col("kind").is_in(["near_text"]))
    assert leaking.height > 0  # the split's exact rules could not keep them together

    regrouped = duplicates_audit(catalog, regroup=True)
    again = duplicates_audit(catalog)
    assert regrouped.regrouped and again.cross_split == 0


def test_no_near_duplicates_on_a_corpus_without_any(tmp_path):
    synthesize(tmp_path / "corpus", SynthConfig(n_items=2000, seed=5))
    ingest(str(tmp_path / "corpus" / "raw"), tmp_path / "catalog")
    build_slice(tmp_path / "catalog", 1.0)
    result = duplicates_audit(tmp_path / "catalog")
    assert result.by_kind["near_text"] == 0 and result.by_kind["same_image_bytes"] == 0
    assert result.cross_split == 0


def test_a_data_map_puts_planted_errors_in_the_hard_region(planted, tmp_path):
    catalog, truth = planted
    config = TrainConfig(catalog=str(catalog), slice=FULL, weights="uniform", mode="frozen",
                         seed=0, epochs=8, patience=8, **TINY)
    train(config, tmp_path / "run", log=lambda _: None)
    folder = data_map_audit(catalog, tmp_path / "run")
    table = pl.read_parquet(folder / "items.parquet").join(
        truth.select("parent_asin", "label_replaced"), on="parent_asin", how="left")
    share = table["label_replaced"].fill_null(False).mean()
    by_region = {r: table.filter(pl.col("region") == r)["label_replaced"].fill_null(False).mean()
                 for r in ("easy", "ambiguous", "hard")}
    print(f"planted share: {share:.3f} overall, by region {by_region}")
    assert by_region["easy"] < share / 5  # mislabelled items are almost never learnt easily
    assert by_region["hard"] > 1.5 * share  # they gather where the model stays wrong
    error = table.group_by("label_replaced").agg(pl.col("mean_error").median())
    median = dict(zip(error["label_replaced"].fill_null(False), error["mean_error"],
                      strict=True))
    assert median[True] > 2 * median[False]
    assert set(table["region"]) == {"easy", "ambiguous", "hard"}
    assert (folder / "data_map.png").stat().st_size > 0
    weights = pl.read_parquet(compute_weights(Slice.open(catalog, FULL), "data_map").path).join(
        table.select("parent_asin", "region"), on="parent_asin", how="left")
    assert (weights.filter(pl.col("region") == "hard")["weight"] == 0).all()
    assert (weights.filter(pl.col("region") != "hard")["weight"] == 1).all()


def test_a_strategy_without_its_audit_says_which_command_to_run(planted):
    catalog, _ = planted
    build_slice(catalog, 0.3, seed=9)
    with pytest.raises(ValueError, match=r"run curate train .* data-map"):
        compute_weights(Slice.open(catalog, "default-frac0.3-seed9"), "data_map:hard=0.5")


def test_the_audit_commands_on_the_real_metadata_lines(tmp_path):
    raw = tmp_path / "raw" / "meta_categories"
    raw.mkdir(parents=True)
    (raw / "meta_Health_and_Personal_Care.jsonl").write_bytes(
        shared_file("meta_Health_and_Personal_Care.head1001.jsonl").read_bytes())
    catalog = tmp_path / "catalog"
    runner = CliRunner()
    steps = [
        ["ingest", str(tmp_path / "raw"), "-c", str(catalog)],
        ["build-slice", "--frac", "1", "-c", str(catalog), "--no-validate"],
        ["audit", "label-quality", "--slice", FULL, "-c", str(catalog), "--image-encoder",
         "tiny-efficientnet", "--text-encoder", "tiny-minilm", "--workers", "0"],
        ["audit", "duplicates", "-c", str(catalog)],
        ["train", "--slice", FULL, "--weights", "uniform", "-c", str(catalog),
         "--image-encoder", "tiny-efficientnet", "--text-encoder", "tiny-minilm",
         "--epochs", "3", "--patience", "3", "--out", str(tmp_path / "run"), "--workers", "0"],
        ["audit", "data-map", "--run", str(tmp_path / "run"), "-c", str(catalog)],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert "1,001 items" in runner.invoke(app, ["audit", "label-quality", "--slice", FULL, "-c",
                                                str(catalog), "--image-encoder",
                                                "tiny-efficientnet", "--text-encoder",
                                                "tiny-minilm", "--workers", "0"]).output
    views = runner.invoke(app, ["sql", "-c", str(catalog), "--format", "json",
                                "SELECT (SELECT count(*) FROM audit_label_quality__"
                                "default_frac1_seed0) AS lq, (SELECT count(*) FROM "
                                "audit_duplicates__default) AS dup, (SELECT count(*) FROM "
                                "audit_data_map__default_frac1_seed0) AS dm"])
    assert views.exit_code == 0, views.output
    counts = json.loads(views.output.strip().splitlines()[-1])  # one JSON object per row
    assert counts["lq"] == 1001 and counts["dm"] > 700
    for audit, subject in (("label_quality", FULL), ("duplicates", "default"),
                           ("data_map", FULL)):
        assert (catalog / "audit" / audit / subject / "summary.md").read_text().startswith("#")
