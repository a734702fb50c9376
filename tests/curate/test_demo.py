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
GRID = ["--fractions", "0.5,1", "--seeds", "0,1,2", "--image-encoder", "tiny-efficientnet",
        "--text-encoder", "tiny-minilm"]
RUNS = 2 * 2 * 3  # fractions x the demo's two weightings x seeds
STEP_LINES = [
    f"1/{STEPS} synth: {ITEMS} items with planted mess",
    f"2/{STEPS} ingest",
    f"3/{STEPS} clean (default profile)",
    f"4/{STEPS} nested slices of the train split",
    f"5/{STEPS} validate (great-expectations)",
    f"6/{STEPS} sample weights on",
    f"7/{STEPS} study: frozen EffiMiniVLM over 2 fractions x 2 weightings x 3 seeds",
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

    # the study: a line per run, every one trained
    run_lines = re.findall(r"\[(\d+)/(\d+)\] frac\S+: test PLCC", out)
    assert len(run_lines) == RUNS and all(int(total) == RUNS for _, total in run_lines)
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
    assert config.fractions == (0.5, 1.0) and config.seeds == (0, 1, 2)
    assert config.trainer["image_encoder"] == "tiny-efficientnet"
    assert folder == workdir / "study"
    for name in DEMO_QUERIES:
        assert f"-- {name}" in out
    assert f"explore further: curate sql --catalog {workdir / 'catalog'}" in out
    assert re.search(r"\n    [\d,]+ files checked \(SHA-256\): all as recorded\n", out)

    finished = {p.parent.name: p.stat().st_mtime_ns
                for p in (workdir / "study" / "runs").glob("*/manifest.json")}
    assert len(finished) == RUNS
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"0 runs trained, {RUNS} already complete" in again.output
    assert "frac0.5__uniform__seed0: test PLCC" not in again.output  # no run line: none ran
    assert -1 not in steps_in_order(again.output)
    for name, mtime in finished.items():  # untouched
        assert (workdir / "study" / "runs" / name / "manifest.json").stat().st_mtime_ns == mtime


def test_the_demos_defaults_are_the_templates():
    """Without options the demo's study is the template's: 7 fractions x 2 x 3 seeds, the
    full model (what the README describes)."""
    assert demo_study_config() == study_template("demo", "catalog", "study")
    help_text = CliRunner().invoke(app, ["demo", "--help"]).output
    assert "--fractions" in help_text and "--image-encoder" in help_text
