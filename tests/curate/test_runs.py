"""`curate runs list|show|compare` over real run folders (a tiny real training) and
`open_catalog(...).runs(folder)`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")

from typer.testing import CliRunner

from curate.cli import app
from curation.ingest import ingest
from curation.slices import build_slice
from curation.synth import SynthConfig, synthesize
from training.config import TrainConfig
from training.trainer import train

runner = CliRunner()
HALF = "default-frac0.5-seed0"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder of two finished runs (effiminivlm and uniform weights), the tiny encoders."""
    base = tmp_path_factory.mktemp("runs")
    synthesize(base / "corpus", SynthConfig(n_items=200, seed=3))
    ingest(str(base / "corpus" / "raw"), base / "catalog")
    build_slice(base / "catalog", 0.5)
    for weights in ("effiminivlm", "uniform"):
        config = TrainConfig(catalog=str(base / "catalog"), slice=HALF, weights=weights,
                             image_encoder="tiny-efficientnet", text_encoder="tiny-minilm",
                             epochs=2, seed=0)
        train(config, base / "runs" / weights, workers=0, log=lambda _line: None)
    return base / "runs"


def test_runs_list_shows_each_run_with_its_scores(runs, monkeypatch):
    metrics = json.loads((runs / "uniform" / "metrics.json").read_text())
    listed = runner.invoke(app, ["runs", "list", str(runs)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert len(lines) == 3 and "val PLCC" in lines[0]
    row = next(line for line in lines if line.startswith("uniform "))
    assert f"{metrics['val']['plcc']:.3f}" in row and f"{metrics['test']['rmse']:.3f}" in row
    as_json = json.loads(runner.invoke(app, ["runs", "list", str(runs), "--json"]).output)
    assert [Path(r["run"]).name for r in as_json] == ["effiminivlm", "uniform"]
    uniform = as_json[1]
    assert uniform["test_plcc"] == metrics["test"]["plcc"]
    assert uniform["best_epoch"] == metrics["best_epoch"]
    assert uniform["seconds"] > 0 and uniform["complete"]
    assert uniform["encoders_ran"]["image"].startswith("tiny-efficientnet")
    # no folder given: ./runs
    monkeypatch.chdir(runs.parent)
    here = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    assert [r["weights"] for r in here] == ["effiminivlm", "uniform"]
    assert runner.invoke(app, ["runs", "list", "-q"]).output == ""


def test_a_study_folder_and_an_unfinished_run(runs, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(runs, study / "runs")  # a study keeps its runs in runs/<run>/
    (study / "runs" / "uniform" / "manifest.json").unlink()  # as if stopped half way
    listed = json.loads(runner.invoke(app, ["runs", "list", str(study), "--json"]).output)
    assert {Path(r["run"]).name: r["complete"] for r in listed} == {"effiminivlm": True,
                                                                   "uniform": False}
    shown = runner.invoke(app, ["runs", "show", str(study / "runs" / "uniform")])
    assert shown.exit_code == 0 and "unfinished" in shown.output
    empty = runner.invoke(app, ["runs", "list", str(tmp_path / "nowhere")])
    assert empty.exit_code == 2 and "no such folder" in empty.output


def test_runs_show_short_verbose_and_json(runs):
    run = runs / "effiminivlm"
    metrics = json.loads((run / "metrics.json").read_text())
    short = runner.invoke(app, ["runs", "show", str(run)])
    assert short.exit_code == 0, short.output
    assert f"PLCC {metrics['test']['plcc']:.4f}" in short.output
    assert f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}" in short.output
    assert "weights=effiminivlm" in short.output and "encoders ran" in short.output
    verbose = runner.invoke(app, ["runs", "show", str(run), "--verbose"])
    assert len(verbose.output.splitlines()) >= len(short.output.splitlines()) + 2
    assert "epoch 1: train loss" in verbose.output
    document = json.loads(runner.invoke(app, ["runs", "show", str(run), "--json"]).output)
    assert document["metrics"] == metrics
    assert document["config"] == json.loads((run / "config.json").read_text())
    assert document["manifest"]["stage"] == "train"
    bad = runner.invoke(app, ["runs", "show", str(runs)])
    assert bad.exit_code == 2 and "not a run folder" in bad.output


def test_runs_compare_sets_runs_side_by_side(runs):
    args = ["runs", "compare", str(runs / "effiminivlm"), str(runs / "uniform")]
    compared = runner.invoke(app, args)
    assert compared.exit_code == 0, compared.output
    assert "config differs in: weights effiminivlm / uniform" in compared.output
    document = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert document["config_differences"] == {"weights": ["effiminivlm", "uniform"]}
    assert [r["weights"] for r in document["runs"]] == ["effiminivlm", "uniform"]
    one = runner.invoke(app, ["runs", "compare", str(runs / "uniform")])
    assert one.exit_code == 2 and "two or more" in one.output


def test_the_api_lists_runs(runs):
    from curate import open_catalog

    summaries = open_catalog(runs.parent / "catalog").runs(runs)
    assert [s["weights"] for s in summaries] == ["effiminivlm", "uniform"]
    assert summaries[0]["val_plcc"] == json.loads(
        (runs / "effiminivlm" / "metrics.json").read_text())["val"]["plcc"]
