"""`curate demo`, end to end on a small corpus with the tiny encoders and a small grid: what a
user sees (each step's line, the study's runs, the report's files) and a rerun that skips the
finished runs."""

from __future__ import annotations

import os
import re

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")

import polars as pl
from typer.testing import CliRunner

from curate.cli import app
from curate.demo import DEMO_QUERIES, STEPS, demo_study_config
from training.study.config import load_study_config, study_template

ITEMS = 400
GRID = ["--fractions", "0.5,1", "--image-encoder", "tiny-efficientnet",
        "--text-encoder", "tiny-minilm"]
FOLDS = 5
RUNS = FOLDS * 2 * 2 * 1  # folds x fractions x the demo's two weightings x its one seed
STEP_LINES = [
    f"1/{STEPS} synth: {ITEMS} items with planted mess",
    f"2/{STEPS} ingest",
    f"3/{STEPS} clean (default profile)",
    f"4/{STEPS} nested slices of the train split: (0.2, 0.4, 1.0)",
    f"5/{STEPS} validate the items and every slice (great-expectations)",
    f"6/{STEPS} sample weights on default-frac0.4-seed0",
    f"7/{STEPS} study (kfold): frozen EffiMiniVLM over 5 folds x 2 fractions x 2 weightings x "
    "1 seed(s)",
    f"8/{STEPS} report: curves, fits, intervals",
    f"9/{STEPS} exploration queries",
    f"10/{STEPS} verify: every output against what the catalog recorded",
]


def steps_in_order(output: str) -> list[int]:
    return [output.find(line) for line in STEP_LINES]


def test_the_demo_runs_end_to_end_and_a_rerun_skips_finished_runs(tmp_path):
    runner = CliRunner()
    workdir = tmp_path / "demo"
    args = ["demo", "--workdir", str(workdir), "--items", str(ITEMS), "--workers", "0", *GRID]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = first.output
    positions = steps_in_order(out)
    assert -1 not in positions, [s for s, p in zip(STEP_LINES, positions, strict=True) if p < 0]
    assert positions == sorted(positions)  # each step once, in order

    # ingest's ledger balances in what the user reads
    read, rows, quarantined = (int(v.replace(",", "")) for v in re.search(
        r"([\d,]+) lines read = ([\d,]+) rows ingested \+ ([\d,]+) quarantined", out).groups())
    assert read == rows + quarantined and quarantined > 0  # the corpus has planted mess
    assert "expectations met" in out and "FAILED" not in out
    # every slice the demo cut is validated, the study's among them (it builds none of its own)
    slices = sorted(p.name for p in (workdir / "catalog" / "slices").iterdir())
    assert slices == [f"default-frac{f}-seed0" for f in ("0.2", "0.4", "1")]
    for name in slices:
        assert re.search(rf"slice:{name}: \d+/\d+ expectations met", out), name

    # the study: a line per fold with the time left, every run trained
    unit_lines = re.findall(r"\[(\d+)/(\d+)\] r0-f\d: 4 runs, test PLCC .*about (\d+) s left",
                            out)
    assert [(int(i), int(n)) for i, n, _ in unit_lines] == [(i, FOLDS)
                                                             for i in range(1, FOLDS + 1)]
    assert int(unit_lines[-1][2]) == 0
    assert f"{RUNS} runs trained, 0 already complete" in out
    assert "fit uniform" not in out  # 2 fractions: the demo's config turns the fits off

    # the report and the config it was run from
    report = workdir / "study" / "report"
    assert f"report: {report / 'report.md'}" in out
    for name in ("report.md", "report.html", "results.csv", "summary.csv", "fits.json",
                 "scaling_error_plcc.png", "scaling_test_rmse.png"):
        assert (report / name).stat().st_size > 0, name
    results = pl.read_csv(report / "results.csv")
    assert results.height == RUNS
    assert sorted(set(results["fraction"])) == [0.5, 1.0]
    assert set(results["strategy"]) == {"uniform", "effiminivlm"}
    config, folder = load_study_config(workdir / "study.toml")
    assert config.fractions == (0.5, 1.0) and config.seeds == (0,)
    assert (config.design, config.folds) == ("kfold", FOLDS)
    assert config.trainer["image_encoder"] == "tiny-efficientnet"
    assert folder == workdir / "study"
    for name in DEMO_QUERIES:
        assert f"-- {name}" in out
    assert f"explore further: curate sql --catalog {workdir / 'catalog'}" in out
    assert re.search(r"\n    [\d,]+ files checked \(SHA-256\): all as recorded\n", out)

    finished = {p.parent.name: p.stat().st_mtime_ns
                for p in (workdir / "study" / "crossfit").glob("*/runs.parquet")}
    assert len(finished) == FOLDS
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"0 runs trained, {RUNS} already complete" in again.output
    assert "r0-f0: 4 runs" not in again.output  # no unit line: none ran
    assert -1 not in steps_in_order(again.output)
    for name, mtime in finished.items():  # untouched
        assert (workdir / "study" / "crossfit" / name / "runs.parquet").stat().st_mtime_ns == mtime


def test_the_demos_defaults_are_the_templates_in_the_kfold_design(tmp_path):
    """Without options the demo's study is the template's but for the design: 5 folds x 7
    fractions x 2 weightings x 1 seed, the full model (what the README describes)."""
    path = tmp_path / "study.toml"
    path.write_text(demo_study_config())
    config, _ = load_study_config(path)
    template = tmp_path / "template.toml"
    template.write_text(study_template("demo", "catalog", "study"))
    default, _ = load_study_config(template)
    assert (config.design, config.folds, config.repeats, config.seeds) == ("kfold", 5, 1, (0,))
    assert (config.fractions, config.strategies, config.trainer) == (
        default.fractions, default.strategies, default.trainer)
    holdout, _ = load_study_config(template.with_name("h.toml")) if template.with_name(
        "h.toml").write_text(demo_study_config(seeds=(0, 1, 2), design="holdout")) else (0, 0)
    assert holdout.design == "holdout" and holdout.seeds == (0, 1, 2)
    help_text = CliRunner().invoke(app, ["demo", "--help"]).output
    assert "--fractions" in help_text and "--image-encoder" in help_text
    assert "--design" in help_text
    bad = CliRunner().invoke(app, ["demo", "--design", "loo"])
    assert bad.exit_code != 0 and "--design must be one of holdout, kfold, got 'loo'" in (
        bad.output)


def test_the_demo_ends_with_a_command_a_fresh_shell_can_run(tmp_path, monkeypatch):
    """scripts/demo runs .venv/bin/curate, which a fresh shell does not have on its PATH: the
    closing line names that path, and the bare name once the PATH holds it."""
    from curate.demo import curate_command

    script = tmp_path / ".venv" / "bin" / "curate"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(script)])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert curate_command() == ".venv/bin/curate"
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert curate_command() == "curate"
