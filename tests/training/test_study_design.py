"""Study designs: k-fold cross-fitting and the ridge head, end to end through `curate study`,
and the checks a config gets before any work."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")

from typer.testing import CliRunner

from curate.cli import app
from curation.ingest import ingest
from curation.slices import Slice, build_slice
from curation.split import stable_hash
from curation.synth import SynthConfig, synthesize
from tests.conftest import shared_file
from training.study.crossfit import assign_folds, nested_selection
from training.study.grid import run_study
from training.study.report import build_report

TINY = {"image_encoder": "tiny-efficientnet", "text_encoder": "tiny-minilm"}


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("design")
    synthesize(root / "corpus", SynthConfig(n_items=700, seed=3))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    return root / "catalog"


def write_config(path: Path, catalog: Path, *, evaluation: dict | None = None,
                 trainer: dict | None = None, report: dict | None = None,
                 **top: object) -> Path:
    body = {"name": "d", "catalog": str(catalog), "out": str(path.parent / "study"),
            "fractions": [0.5, 1.0], "strategies": ["uniform", "effiminivlm"],
            "seeds": [0, 1, 2], **top}
    tables = {"evaluation": evaluation or {}, "trainer": {**TINY, **(trainer or {})},
              "report": {"fits": False, **(report or {})}}
    lines = [f"{k} = {json.dumps(v)}" for k, v in body.items()]
    for name, table in tables.items():
        lines += [f"[{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_nested_selection_is_build_slices_rule(split_catalog, tmp_path):
    """The in-memory slices of a fold's training part are cut by build-slice's own rule:
    on the split's train items both pick the same items, with and without a category top-up."""
    catalog = shutil.copytree(split_catalog, tmp_path / "catalog")
    every = Slice.open(catalog, build_slice(catalog, 1.0, seed=0).name).items(
        ["parent_asin", "split", "stratum", "category"])
    train = every.filter(pl.col("split") == "train")
    for fraction, seed, minimum in ((0.3, 0, 0), (0.3, 5, 0), (0.1, 2, 40)):
        built = Slice.open(catalog, build_slice(catalog, fraction, seed=seed,
                                                min_per_category=minimum).name).items(
            ["parent_asin", "split"]).filter(pl.col("split") == "train")
        chosen = train.filter(nested_selection(train, fraction, seed, minimum))
        assert sorted(chosen["parent_asin"]) == sorted(built["parent_asin"])


def test_folds_are_stratified_keep_groups_whole_and_differ_by_repeat():
    keys = [f"B{i:05d}" for i in range(600)]
    group_ids = [k if i % 10 else keys[i - 1] for i, k in enumerate(keys)]  # some pairs
    groups = pl.DataFrame({
        "parent_asin": keys,
        "group_id": group_ids,
        "category": ["x" if stable_hash(2, g) % 3 else "y" for g in group_ids],
        "rating_bin": ["4-4.5" if stable_hash(1, g) % 2 else "4.5-5" for g in group_ids],
    })
    folds = assign_folds(groups, 5, repeat=0)
    assert folds.height == 600 and folds["fold"].is_between(0, 4).all()
    placed = groups.join(folds, on="parent_asin")
    assert placed.group_by("group_id").agg(pl.col("fold").n_unique())["fold"].max() == 1
    for _, stratum in placed.group_by("category", "rating_bin"):
        sizes = stratum["fold"].value_counts()["count"]
        # each fold holds total/5 items to within a group (of at most 2) at either end
        assert sizes.max() - sizes.min() <= 4 and len(sizes) == 5
    again = assign_folds(groups, 5, repeat=0)
    other = assign_folds(groups, 5, repeat=1)
    assert again.equals(folds) and not other.equals(folds)


def test_a_kfold_ridge_study_reports_every_pair_and_resumes(small_catalog, tmp_path):
    config = write_config(tmp_path / "study.toml", small_catalog,
                          strategies=["uniform", "effiminivlm", "capped_count:c=50"],
                          evaluation={"design": "kfold", "folds": 3, "repeats": 2},
                          trainer={"head": "ridge"})
    lines: list[str] = []
    result = run_study(config, log=lines.append)
    assert result.trained == 6 * 2 * 3 * 3 and result.skipped == 0  # units x fractions x ...
    report = build_report(result.folder)
    pairs = report.comparison.pairs
    assert pairs.height == 2 * 3  # 3 pairs at each of 2 fractions
    assert set(pairs["decision"]) <= {"a better", "b better", "cannot tell"}
    assert (pairs["p_holm"] >= pairs["p"]).all()
    # every item was a test item once per repeat
    predictions = pl.read_parquet(result.folder / "crossfit" / "*" / "predictions.parquet")
    per_item = predictions.filter((pl.col("fraction") == 1.0) & (pl.col("seed") == 0)
                                  & (pl.col("strategy") == "uniform")).group_by(
        "parent_asin").len()
    items = Slice.open(small_catalog, "default-frac1-seed0").items(["parent_asin"]).height
    assert per_item.height == items and (per_item["len"] == 2).all()
    markdown = (result.folder / "report" / "report.md").read_text()
    for phrase in ("design: k-fold cross-fitting, 3 folds x 2 repeat(s)",
                   "Nadeau-Bengio corrected resampled t", "head: ridge",
                   "tiny-efficientnet (not pretrained)", "## Every pair of strategies",
                   "Tiers (within a tier"):
        assert phrase in markdown
    ran = json.loads((result.folder / "study.json").read_text())["ran"]
    assert ran["design"] == "kfold" and ran["items"] == items
    assert 0 < ran["items_with_image"] <= items
    # the summary's intervals are the corrected t over the 6 fold values
    row = report.summary.filter((pl.col("fraction") == 1.0)
                                & (pl.col("strategy") == "uniform")).row(0, named=True)
    assert row["test_plcc_low"] < row["test_plcc_mean"] < row["test_plcc_high"]

    again = run_study(config, log=lambda _: None)
    assert again.trained == 0 and again.skipped == result.trained
    changed = write_config(tmp_path / "study.toml", small_catalog,
                           strategies=["uniform", "effiminivlm"],
                           evaluation={"design": "kfold", "folds": 3, "repeats": 2},
                           trainer={"head": "ridge"})
    out = CliRunner().invoke(app, ["study", "run", str(changed)])
    assert out.exit_code == 2 and "another plan (differs in strategies)" in out.output

    out = CliRunner().invoke(app, ["study", "report", str(result.folder),
                                   "--baseline", "effiminivlm"])
    assert out.exit_code == 0, out.output
    assert "PLCC - `effiminivlm`" in (result.folder / "report" / "report.md").read_text()
    out = CliRunner().invoke(app, ["study", "report", str(result.folder), "--baseline", "x"])
    assert out.exit_code == 2 and "not one of the study's strategies" in out.output


def test_holdout_intervals_include_the_test_items(small_catalog, tmp_path):
    """With the ridge head every seed trains the same model at fraction 1: an interval over
    seeds alone would have zero width. The holdout interval bootstraps the test items too."""
    config = write_config(tmp_path / "study.toml", small_catalog, trainer={"head": "ridge"})
    result = run_study(config, log=lambda _: None)
    report = build_report(result.folder)
    full = report.results.filter(pl.col("fraction") == 1.0)
    assert full.group_by("strategy").agg(pl.col("test_plcc").n_unique())["test_plcc"].max() == 1
    pair = report.comparison.pairs.filter(pl.col("fraction") == 1.0).row(0, named=True)
    assert pair["plcc_diff_high"] - pair["plcc_diff_low"] > 0.005
    row = report.summary.filter((pl.col("fraction") == 1.0)
                                & (pl.col("strategy") == "uniform")).row(0, named=True)
    assert row["test_plcc_high"] - row["test_plcc_low"] > 0.02
    assert "they do not include drawing another training set" in (
        result.folder / "report" / "report.md").read_text()


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory) -> Path:
    """The shared real metadata of two categories, no reviews, no image files."""
    root = tmp_path_factory.mktemp("real")
    meta = root / "raw" / "meta_categories"
    meta.mkdir(parents=True)
    for name in ("meta_Health_and_Personal_Care.head1001.jsonl",
                 "meta_Subscription_Boxes.jsonl"):
        shutil.copy(shared_file(name), meta / name.replace(".head1001", ""))
    ingest(str(root / "raw"), root / "catalog")
    return root / "catalog"


def test_review_strategies_without_reviews_are_refused_or_run_when_allowed(real_catalog,
                                                                           tmp_path):
    config = write_config(tmp_path / "study.toml", real_catalog,
                          strategies=["uniform", "wilson"], trainer={"head": "ridge"})
    out = CliRunner().invoke(app, ["study", "run", str(config)])
    assert out.exit_code == 2
    assert "strategies 'wilson' read review lines, and no item of the catalog has one" in (
        out.output)
    assert "Traceback" not in out.output and "encoding" not in out.output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"report": {"fits": True}}, "power-law fits need at least 4 fractions"),
        ({"evaluation": {"design": "loo"}}, "design must be one of holdout, kfold"),
        ({"evaluation": {"folds": 5}}, "folds is for design = \"kfold\""),
        ({"evaluation": {"design": "kfold", "folds": 1}}, "folds must be an integer >= 2"),
        ({"trainer": {"head": "lasso"}}, "head must be one of mlp, ridge"),
        ({"trainer": {"head": "ridge", "mode": "finetune"}}, "set [trainer] mode = \"frozen\""),
        ({"report": {"level": 1.5}}, "level must be a number in [0.5, 1)"),
        ({"seeds": [0, 0, 1, 2]}, "seeds repeat a value"),
    ],
)
def test_a_bad_design_is_one_clear_line(small_catalog, tmp_path, overrides, message):
    config = write_config(tmp_path / "study.toml", small_catalog, **overrides)
    out = CliRunner().invoke(app, ["study", "run", str(config)])
    assert out.exit_code == 2, out.output
    assert message in out.output and str(config) in out.output


def test_a_reused_slice_of_another_split_is_refused(small_catalog, tmp_path):
    catalog = shutil.copytree(small_catalog, tmp_path / "catalog")
    build_slice(catalog, 0.5, seed=0, split_seed=1, name="default-frac0.5-seed0")
    config = write_config(tmp_path / "study.toml", catalog)
    out = CliRunner().invoke(app, ["study", "run", str(config)])
    assert out.exit_code == 2
    assert ("slice default-frac0.5-seed0 exists with other parameters: split_seed 1 (the "
            "study needs 0)") in out.output


def test_losses_are_a_grid_axis_compared_like_strategies(small_catalog, tmp_path):
    """(strategy x loss) arms, each fitted with the MLP head on every fold, every pair compared."""
    config = write_config(tmp_path / "study.toml", small_catalog, fractions=[1.0],
                          strategies=["uniform"], seeds=[0],
                          losses=["huber", "clce:lambda=0.5,bins=4"],
                          evaluation={"design": "kfold", "folds": 3},
                          trainer={"head": "mlp", "epochs": 3})
    result = run_study(config, log=lambda _: None)
    assert result.trained == 3 * 2
    report = build_report(result.folder)
    arms = set(report.summary["strategy"])
    assert arms == {"uniform + huber", "uniform + clce:lambda=0.5,bins=4"}
    pair = report.comparison.pairs.row(0, named=True)
    assert {pair["a"], pair["b"]} == arms
    markdown = (result.folder / "report" / "report.md").read_text()
    assert "PLCC - `uniform + huber`" in markdown
    ridge = write_config(tmp_path / "ridge.toml", small_catalog, losses=["huber", "clce"],
                         trainer={"head": "ridge"})
    out = CliRunner().invoke(app, ["study", "run", str(ridge)])
    assert out.exit_code == 2 and "loss 'clce' trains the MLP head's embedding" in out.output
