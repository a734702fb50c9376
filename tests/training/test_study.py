"""`curate study`: the grid runs, resumes after a kill, and its report says what the runs say."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

import polars as pl  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from curate.cli import app  # noqa: E402
from curation.ingest import ingest  # noqa: E402
from curation.synth import SynthConfig, synthesize  # noqa: E402
from training.study.config import load_study_config, study_template  # noqa: E402
from training.study.grid import run_study  # noqa: E402
from training.study.report import build_report  # noqa: E402


@pytest.fixture(scope="module")
def study_catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    synthesize(root / "corpus", SynthConfig(n_items=2500, seed=1))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    return root / "catalog"


def write_config(path: Path, catalog: Path, **overrides: object) -> Path:
    body = {
        "name": "t",
        "catalog": str(catalog),
        "out": str(path.parent / "study"),
        "fractions": [0.2, 1.0],
        "strategies": ["uniform"],
        "seeds": [0, 1, 2],
    }
    trainer = {"mode": "frozen", "image_encoder": "tiny-efficientnet",
               "text_encoder": "tiny-minilm"}
    report = {"bootstrap": 100, "fits": False}
    trainer.update(overrides.pop("trainer", {}))  # type: ignore[arg-type]
    report.update(overrides.pop("report", {}))  # type: ignore[arg-type]
    body.update(overrides)
    lines = [f"{k} = {json.dumps(v)}" for k, v in body.items()]
    lines += ["[trainer]"] + [f"{k} = {json.dumps(v)}" for k, v in trainer.items()]
    lines += ["[report]"] + [f"{k} = {json.dumps(v)}" for k, v in report.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_error_falls_with_data_and_the_papers_weighting_beats_uniform(study_catalog, tmp_path):
    """The synthetic corpus gives items with few ratings a noisy average_rating. With the real
    MiniLM text encoder (offline) the frozen model learns, its test error falls from 10% to
    100% of the data, and rating-count weights beat uniform ones: with the weights ignored the
    two strategies would tie exactly, and this test would fail."""
    config = write_config(tmp_path / "study.toml", study_catalog, fractions=[0.1, 1.0],
                          strategies=["uniform", "effiminivlm"], report={"fits": False},
                          trainer={"text_encoder": "nreimers/MiniLMv2-L6-H384-distilled-from-"
                                   "BERT-Large"})
    result = run_study(config, log=lambda _: None)
    assert result.trained == 12 and result.skipped == 0
    report = build_report(result.folder)
    summary = report.summary
    for strategy in ("uniform", "effiminivlm"):
        rows = summary.filter(pl.col("strategy") == strategy).sort("fraction")
        small, full = rows["error_plcc_mean"].to_list()
        print(f"{strategy}: 1 - PLCC {small:.3f} at 10%, {full:.3f} at 100%")
        assert full < small
    paired = summary.filter(pl.col("strategy") == "effiminivlm").sort("fraction")
    print("effiminivlm - uniform, test PLCC:", paired["plcc_vs_baseline_mean"].to_list())
    assert paired["plcc_vs_baseline_mean"][-1] > 0.02  # at 100% of the data

    markdown = (result.folder / "report" / "report.md").read_text()
    assert "`uniform`: test 1 - PLCC falls from" in markdown
    assert "`effiminivlm` against `uniform`, paired difference in test PLCC at every " \
        "fraction: 0.1:" in markdown
    assert "two-way bootstrap over seeds and test items" in markdown
    assert "Scaling fits: not asked for" in markdown
    for name in ("results.parquet", "results.csv", "summary.csv", "pairs.csv", "tiers.json",
                 "fits.json", "report.html", "scaling_error_plcc.png", "scaling_test_rmse.png"):
        assert (result.folder / "report" / name).stat().st_size > 0
    assert pl.read_csv(result.folder / "report" / "results.csv").height == 12
    assert "data:image/png;base64," in (result.folder / "report" / "report.html").read_text()


def test_a_killed_study_resumes_without_redoing_finished_runs(study_catalog, tmp_path):
    config = write_config(tmp_path / "study.toml", study_catalog,
                          fractions=[0.1, 1.0], strategies=["uniform", "sqrt_count"])  # 12 runs
    runs = tmp_path / "study" / "runs"
    command = [sys.executable, "-m", "curate", "study", "run", str(config), "--no-report",
               "--workers", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 240
        while len(list(runs.glob("*/manifest.json"))) < 3:
            assert proc.poll() is None, "the study ended before it could be killed"
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/manifest.json")}
    assert 3 <= len(finished) < 12

    report = build_report(tmp_path / "study")  # a partial study reports what it has
    assert len(report.missing) == 12 - len(finished)
    assert "not finished" in (tmp_path / "study" / "report" / "report.md").read_text()

    result = run_study(config, log=lambda _: None)
    assert result.skipped == len(finished)
    assert result.trained == 12 - len(finished)
    for name, mtime in finished.items():  # untouched, not retrained
        assert (runs / name / "manifest.json").stat().st_mtime_ns == mtime
    assert len(list(runs.glob("*/manifest.json"))) == 12
    again = run_study(config, log=lambda _: None)
    assert again.trained == 0 and again.skipped == 12


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seeds": [0, 1]}, "at least 3 distinct seeds"),
        ({"report": {"fits": True}}, "power-law fits need at least 4 fractions"),
        ({"strategies": ["uniform", "no_such"]}, "unknown weighting strategy 'no_such'"),
        ({"strategies": ["sqrt_count:bogus=1"]}, "has no parameter bogus"),
        ({"fractions": [0.0, 0.5]}, "fractions must lie in (0, 1]"),
        ({"colour": "blue"}, "unknown key(s) colour"),
        ({"trainer": {"mode": "fast"}}, "mode must be frozen or finetune"),
        ({"fractions": ["a", 0.5]}, "every item of fractions must be a number, got 'a'"),
        ({"seeds": [0, 1, "2"]}, "every item of seeds must be an integer, got '2'"),
        ({"min_per_category": "10"}, "min_per_category must be an integer, got '10'"),
        ({"strategies": "uniform"}, "strategies must be a list, got 'uniform'"),
        ({"strategies": ["uniform", "sqrt_count:cap=nan"]}, "cap must be a finite number"),
        # tried on the slices before any encoding: the audit it needs was never made
        ({"strategies": ["uniform", "label_quality"]},
         "strategy 'label_quality' on slice default-frac0.2-seed0: strategy 'label_quality' "
         "needs a label-quality audit"),
    ],
)
def test_a_bad_config_is_one_clear_line(study_catalog, tmp_path, overrides, message):
    config = write_config(tmp_path / "study.toml", study_catalog, **overrides)
    result = CliRunner().invoke(app, ["study", "run", str(config)])
    assert result.exit_code == 2
    assert message in result.output and str(config) in result.output
    assert "Traceback" not in result.output and "embedding cache" not in result.output


def test_the_template_is_a_valid_config_and_report_needs_a_study(tmp_path):
    runner = CliRunner()
    path = tmp_path / "study.toml"
    result = runner.invoke(app, ["study", "template", str(path)])
    assert result.exit_code == 0 and path.read_text() == study_template()
    config, folder = load_study_config(path)
    assert config.fractions == (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
    assert config.baseline == "uniform" and folder == tmp_path / "studies" / "scaling"
    result = runner.invoke(app, ["study", "report", str(tmp_path)])
    assert result.exit_code == 2 and "not a study folder" in result.output
