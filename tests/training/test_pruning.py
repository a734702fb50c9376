"""Pruning arms and learned weights in a study: the selection, the checks before any work, and
the report's sections, end to end through `curate study`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")

from typer.testing import CliRunner

from curate.cli import app
from curation.ingest import ingest
from curation.synth import SynthConfig, synthesize
from tests.training.test_calibration import study_data
from tests.training.test_study_design import write_config
from training.study.crossfit import _UnitFits, nested_selection, unit_parts, units


def test_a_prune_arm_keeps_the_top_items_as_many_as_the_random_slice_nested():
    data = study_data(600, np.random.default_rng(4))
    unit = units("kfold", 3, 1)[1]
    parts = unit_parts(data, unit, "kfold", 3)
    fits = _UnitFits(data, parts["train"], unit)
    count = data.items["rating_number"].to_numpy()
    before: set[int] = set()
    for fraction in (0.1, 0.3, 0.6, 1.0):
        random_rows = parts["train"][nested_selection(
            data.items[parts["train"]], fraction, 0).to_numpy()]
        kept, weight = fits.rows_and_weights("prune:score=rating_count", random_rows, 0,
                                             fraction)
        assert len(kept) == len(random_rows) and np.all(weight == 1.0)
        dropped = np.setdiff1d(parts["train"], kept)
        assert not len(dropped) or count[kept].min() >= count[dropped].max()
        assert before <= set(kept.tolist())  # fractions nest, as random slices do
        before = set(kept.tolist())
    assert not set(before) & set(parts["test"].tolist())


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pruning")
    synthesize(root / "corpus", SynthConfig(n_items=300, seed=8, images=False))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    return root / "catalog"


@pytest.mark.slow
def test_learned_and_pruning_arms_run_in_a_kfold_study_and_are_reported(catalog, tmp_path):
    config = write_config(tmp_path / "study.toml", catalog,
                          strategies=["uniform", "learned", "prune:score=rating_count"],
                          fractions=[0.2, 0.4, 0.7, 1.0], seeds=[0],
                          evaluation={"design": "kfold", "folds": 3},
                          trainer={"head": "ridge", "image_encoder": "none"},
                          report={"fits": True, "bootstrap": 20})
    out = CliRunner().invoke(app, ["study", "run", str(config)])
    assert out.exit_code == 0, out.output
    report = tmp_path / "study" / "report"
    markdown = (report / "report.md").read_text()
    for section in ("## Learned weights", "## Pruning against random slices",
                    "learned_weight.png", "pruning_error_plcc.png"):
        assert section in markdown
    assert (report / "learned_weight.png").stat().st_size > 10_000
    results = pl.read_csv(report / "results.csv")
    sizes = results.pivot("strategy", index=["fold", "fraction"], values="train_items")
    assert (sizes["uniform"] == sizes["prune:score=rating_count"]).all()
    verdict = json.loads((report / "pruning.json").read_text())[0]
    assert verdict["random"] == "uniform" and verdict["verdict"]
    curves = json.loads((report / "learned_curves.json").read_text())
    assert len(curves) == 3 * 4  # one per fold and fraction (one seed)
    pairs = pl.read_csv(report / "pairs.csv")
    assert pairs.filter(pl.col("fraction") == 1.0).height == 3  # every pair of the 3 arms
    # the same runs give the same report: the fits' bootstrap draws rows in a fixed order
    first = {name: (report / name).read_bytes() for name in ("fits.json", "pruning.json")}
    again = CliRunner().invoke(app, ["study", "report", str(tmp_path / "study")])
    assert again.exit_code == 0, again.output
    for name, content in first.items():
        assert (report / name).read_bytes() == content, name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"strategies": ["effiminivlm", "prune:score=rating_count"]},
         "weighted by 'uniform': add 'uniform' to strategies"),
        ({"strategies": ["uniform", "prune:score=stars"]}, "score must be one of"),
        ({"strategies": ["uniform", "learned"], "trainer": {"head": "mlp"}},
         "is fitted on the cached embeddings in memory"),
        ({"strategies": ["uniform", "learned*lds"]}, "not multiplied"),
        ({"strategies": ["uniform", "learned:monotone=2"]}, "monotone must be 0 or 1"),
    ],
)
def test_bad_learned_or_pruning_arms_are_one_clear_line(catalog, tmp_path, overrides, message):
    trainer = overrides.pop("trainer", {"head": "ridge"})
    config = write_config(tmp_path / "study.toml", catalog, trainer=trainer, **overrides)
    out = CliRunner().invoke(app, ["study", "run", str(config)])
    assert out.exit_code == 2 and message in out.output, out.output
    assert "Traceback" not in out.output


def test_weights_compute_says_learned_is_fitted_in_a_study(catalog):
    from curation.slices import build_slice

    build_slice(catalog, 0.5, name="half")
    out = CliRunner().invoke(app, ["weights", "compute", "--catalog", str(catalog), "--slice",
                                   "half", "--strategy", "learned"])
    assert out.exit_code == 2 and "run it in a study" in out.output
    assert "Traceback" not in out.output


def test_the_fits_rows_do_not_depend_on_the_order_runs_come_in():
    """The fits' bootstrap draws rows by place: the k-fold rows it is given must come in one
    order whatever order the runs were read in (a report twice gave other intervals)."""
    from training.study.report import _fit_rows

    rng = np.random.default_rng(0)
    runs = pl.DataFrame({
        "fraction": np.repeat([0.25, 0.5, 1.0], 12), "strategy": ["a", "b"] * 18,
        "repeat": np.zeros(36, dtype=int), "fold": np.tile(np.repeat([0, 1, 2], 2), 6),
        "seed": np.repeat(np.arange(6), 6) % 2, "train_items": rng.integers(10, 99, 36),
        "error_plcc": rng.uniform(size=36), "test_rmse": rng.uniform(size=36)})
    expected = _fit_rows(runs, "kfold")
    for seed in range(5):
        shuffled = runs.sample(fraction=1.0, shuffle=True, seed=seed)
        assert _fit_rows(shuffled, "kfold").equals(expected)
