"""The audits on corpora with planted label errors and near-duplicates, and on real rows."""

from __future__ import annotations

import json
import os
import re
import shutil
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
from training.embeddings import embed_slice
from training.trainer import train
from weighting.catalog_io import compute_weights

TINY = {"image_encoder": "tiny-efficientnet", "text_encoder": "tiny-minilm"}
FULL = "default-frac1-seed0"


@pytest.fixture(scope="module")
def planted_source(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    """2,000 items, 5% with a planted wrong average_rating, 2% relisted as near-copies; the
    full slice built and every item embedded by the tiny encoders. Tests never change it: each
    gets its own copy (``planted``)."""
    root = tmp_path_factory.mktemp("audit")
    synthesize(root / "corpus", SynthConfig(n_items=2000, seed=5, label_noise=0.05,
                                            near_duplicates=0.02))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    build_slice(root / "catalog", 1.0)
    # Embedded once here, so that every test finds the same cache (cached and freshly computed
    # embeddings differ in the 7th digit, which can move an item across a region's threshold).
    embed_slice(Slice.open(root / "catalog", FULL), **TINY)
    truth = pl.read_parquet(root / "corpus" / "ground_truth" / "items.parquet")
    return root / "catalog", truth


@pytest.fixture
def planted(planted_source, tmp_path) -> tuple[Path, pl.DataFrame]:
    """A copy of the planted catalog for one test: regrouping the split, building slices or
    writing audits and weights in one test cannot change what another measures, whatever the
    order they run in."""
    source, truth = planted_source
    catalog = tmp_path / "catalog"
    shutil.copytree(source, catalog)
    return catalog, truth


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


def test_label_quality_by_cleanlearning_lets_cleanlab_decide(planted):
    """`--method cleanlearning`: the scores are the same cleanlab scores, the flags are the
    ones cleanlab's CleanLearning.find_label_issues gives on the same standardised embeddings
    (its own refits decide how many), and the summary and manifest say so."""
    import numpy as np
    from cleanlab.regression.learn import CleanLearning
    from sklearn.linear_model import Ridge, RidgeCV

    from audit.label_quality import ALPHAS

    catalog, _ = planted
    runner = CliRunner()
    base = ["audit", "label-quality", "--slice", FULL, "-c", str(catalog), "--image-encoder",
            "tiny-efficientnet", "--text-encoder", "tiny-minilm", "--workers", "0"]
    residual = runner.invoke(app, base)
    assert residual.exit_code == 0, residual.output
    folder = catalog / "audit" / "label_quality" / FULL
    by_residual = pl.read_parquet(folder / "items.parquet")

    result = runner.invoke(app, [*base, "--method", "cleanlearning"])
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(folder / "items.parquet")
    flagged = int(table["is_label_issue"].sum())
    assert re.search(rf"{table.height:,} items; .* {flagged:,} flagged", result.output), \
        result.output
    assert "by cleanlab CleanLearning.find_label_issues" in (folder / "summary.md").read_text()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parameters"]["method"] == "cleanlearning"
    assert manifest["counts"]["flagged"] == flagged

    # the same scores as the residual method; the flags are cleanlab's, computed here again
    both = by_residual.join(table, on="parent_asin", suffix="_cl")
    assert both.height == table.height == by_residual.height
    assert (both["label_quality"] == both["label_quality_cl"]).all()
    items, embedded = embed_slice(Slice.open(catalog, FULL), **TINY)
    features = embedded.features
    standardised = (features - features.mean(axis=0)) / np.maximum(features.std(axis=0), 1e-8)
    labels = items["average_rating"].to_numpy().astype(np.float64)
    alpha = float(RidgeCV(alphas=ALPHAS).fit(standardised, labels).alpha_)
    issues = CleanLearning(model=Ridge(alpha=alpha), cv_n_folds=5, seed=0).find_label_issues(
        standardised, labels)
    expected = dict(zip(items["parent_asin"], issues["is_label_issue"].to_numpy().astype(bool),
                        strict=True))
    assert {a: v for a, v in table.select("parent_asin", "is_label_issue").iter_rows()} == \
        expected
    print(f"cleanlearning flagged {flagged} of {table.height} (the residual rule "
          f"{int(by_residual['is_label_issue'].sum())})")
    assert flagged != int(by_residual["is_label_issue"].sum())  # not the residual rule's flags

    bad = runner.invoke(app, [*base, "--method", "nope"])
    assert bad.exit_code == 2 and "unknown method 'nope'; choose from residual, " \
        "cleanlearning" in bad.output


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
