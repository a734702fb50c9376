"""What a user sees of the command line: --version, shell completion, short summaries by
default with the detail under --verbose, --json and --quiet, `curate sql --max-rows` and the
prompt's banner and .views."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from tests.conftest import copy_catalog

runner = CliRunner()
HALF = "default-frac0.5-seed0"


@pytest.fixture(scope="module")
def catalog(split_catalog, tmp_path_factory) -> Path:
    """A copy of the split catalog with one slice (HALF) and its effiminivlm weights."""
    root = copy_catalog(split_catalog, tmp_path_factory.mktemp("manners") / "catalog")
    for args in (["build-slice", "--frac", "0.5", "--no-validate"],
                 ["weights", "compute", "--slice", HALF, "--strategy", "effiminivlm"]):
        result = runner.invoke(app, [*args, "-c", str(root)])
        assert result.exit_code == 0, result.output
    return root


def test_version_names_curate_and_the_libraries_without_importing_torch():
    code = ("import sys; from typer.testing import CliRunner; from curate.cli import app; "
            "r = CliRunner().invoke(app, ['--version']); print(r.output); "
            "print('torch imported:', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[0] == f"curate {version('curate')}"
    for library in ("duckdb", "polars", "pyarrow"):
        assert f"  {library} {version(library)}" in out
    assert "  torch " in out  # its version, or "not installed"
    assert "torch imported: False" in out


def test_shell_completion_is_enabled_and_said_in_help(monkeypatch):
    # With shellingham installed, typer guesses the shell from the parent processes and ignores
    # the name given; under a parent that is no shell (nohup, some CI runners) it finds none.
    # Typer's own switch makes --show-completion take the shell's name instead.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    helped = runner.invoke(app, ["--help"])
    assert helped.exit_code == 0
    assert "--install-completion" in helped.output and "--show-completion" in helped.output
    assert "Shell completion" in helped.output
    script = runner.invoke(app, ["--show-completion", "bash"])
    assert script.exit_code == 0, script.output
    assert "_curate_completion" in script.output


def test_build_slice_prints_a_few_lines_and_every_stratum_under_verbose(catalog, tmp_path):
    root = copy_catalog(catalog, tmp_path / "catalog")
    args = ["build-slice", "--frac", "0.3", "--no-validate", "-c", str(root)]
    short = runner.invoke(app, args)
    assert short.exit_code == 0, short.output
    lines = short.output.strip().splitlines()
    assert len(lines) <= 8, short.output
    assert lines[0].startswith("slice default-frac0.3-seed0: train ")
    assert "largest deviation" in short.output and "--verbose" in short.output
    # the view's name is not the slice's: it says so
    assert "slice_default_frac0_3_seed0 (not slice_default-frac0.3-seed0" in short.output
    strata = json.loads(runner.invoke(app, ["slices", "show", "default-frac0.3-seed0", "-c",
                                            str(root), "--json"]).output)["strata"]
    assert len(strata) > 20  # so a line per stratum would be many
    verbose = runner.invoke(app, [*args, "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    for s in strata:
        assert s["stratum"][:48] in verbose.output
    assert "kept" in verbose.output  # the funnel's table
    quiet = runner.invoke(app, [*args, "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""
    document = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert document["slice"]["rows"]["train"] == int(lines[0].split("train ")[1].split(",")[0])
    both = runner.invoke(app, [*args, "--json", "--quiet"])
    assert both.exit_code == 2 and "--quiet and --json" in both.output


def test_slices_show_is_short_and_whole_under_verbose_or_json(catalog):
    base = ["slices", "show", HALF, "-c", str(catalog)]
    short = runner.invoke(app, base)
    assert short.exit_code == 0, short.output
    assert len(short.output.strip().splitlines()) <= 8
    assert '"frac": 0.5' in short.output and "rows: train " in short.output
    manifest = json.loads((catalog / "slices" / HALF / "manifest.json").read_text())
    assert json.loads(runner.invoke(app, [*base, "--json"]).output) == manifest
    assert json.loads(runner.invoke(app, [*base, "--verbose"]).output) == manifest
    assert runner.invoke(app, [*base, "--quiet"]).output == ""
    listed = runner.invoke(app, ["slices", "list", "-c", str(catalog), "--json"])
    assert [m["name"] for m in json.loads(listed.output)] == [HALF]
    assert runner.invoke(app, ["slices", "list", "-c", str(catalog), "-q"]).output == ""


def test_weights_describe_compare_and_list_take_json_quiet_and_verbose(catalog, tmp_path):
    base = ["weights", "describe", "--slice", HALF, "effiminivlm", "-c", str(catalog)]
    short, verbose = runner.invoke(app, base), runner.invoke(app, [*base, "--verbose"])
    assert short.exit_code == 0 and verbose.exit_code == 0, short.output
    described = json.loads(runner.invoke(app, [*base, "--json"]).output)["effiminivlm"]
    strata = described["mass_per_stratum"]
    assert len(short.output.splitlines()) == 4 + 3  # 4 lines of figures, 3 strata
    assert len(verbose.output.splitlines()) == 4 + len(strata)
    assert described["train_rows"] == pl.read_parquet(
        catalog / "slices" / HALF / "items.parquet").filter(pl.col("split") == "train").height
    assert runner.invoke(app, [*base, "--quiet"]).output == ""
    compare = ["weights", "compare", "--slice", HALF, "uniform", "effiminivlm", "-c",
               str(catalog), "--out", str(tmp_path / "plots")]
    compared = json.loads(runner.invoke(app, [*compare, "--json"]).output)
    assert set(compared["strategies"]) == {"uniform", "effiminivlm"}
    assert compared["strategies"]["effiminivlm"]["ess_share"] == pytest.approx(
        described["ess_share"])
    assert all(Path(p).exists() for p in compared["plots"])
    assert runner.invoke(app, [*compare, "--quiet"]).output == ""
    listed = json.loads(runner.invoke(app, ["weights", "list", "--json"]).output)
    assert {"uniform", "effiminivlm"} <= {s["strategy"] for s in listed}
    # the strategies a study fits on its embeddings are listed, and said to be study-only
    assert {s["strategy"] for s in listed if s["study_only"]} == {"learned", "prune"}
    shown = runner.invoke(app, ["weights", "list"]).output
    assert re.search(r"learned +\[\w+\] \(study only\) params: ", shown)


def test_verify_json_and_quiet(catalog, tmp_path):
    good = runner.invoke(app, ["verify", "-c", str(catalog), "--quick", "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout)
    assert report["ok"] and report["files_checked"] > 0 and report["problems"] == []
    root = copy_catalog(catalog, tmp_path / "catalog")
    items = root / "slices" / HALF / "items.parquet"
    items.write_bytes(items.read_bytes()[:-10])  # damaged
    bad = runner.invoke(app, ["verify", "-c", str(root), "--quick", "--json"])
    assert bad.exit_code == 1
    assert any(p["path"].endswith("items.parquet") for p in json.loads(bad.stdout)["problems"])
    quiet = runner.invoke(app, ["verify", "-c", str(root), "--quick", "--quiet"])
    assert quiet.exit_code == 1 and quiet.output == ""


def test_images_stats_json(catalog, tmp_path):
    root = copy_catalog(catalog, tmp_path / "catalog")
    fetched = runner.invoke(app, ["images", "fetch", "--slice", HALF, "-c", str(root)])
    assert fetched.exit_code == 0, fetched.output
    stats = json.loads(runner.invoke(app, ["images", "stats", "-c", str(root), "--json"]).output)
    assert stats["urls"] == sum(row["urls"] for row in stats["by_status"]) > 0
    assert runner.invoke(app, ["images", "stats", "-c", str(root), "-q"]).output == ""


def test_sql_max_rows_is_honoured(catalog):
    query = "SELECT range AS i FROM range(100)"
    shown = runner.invoke(app, ["sql", query, "-c", str(catalog), "--max-rows", "60"])
    assert shown.exit_code == 0, shown.output
    numbers = [int(line.strip("│ ")) for line in shown.output.splitlines()
               if line.startswith("│") and line.strip("│ ").isdigit()]
    assert numbers == list(range(60))  # every row, none elided
    assert "more than 60 rows" in shown.output
    whole = runner.invoke(app, ["sql", query, "-c", str(catalog), "--max-rows", "100"])
    assert "99" in whole.output and "more than" not in whole.output
    bad = runner.invoke(app, ["sql", query, "-c", str(catalog), "--max-rows", "0"])
    assert bad.exit_code == 2 and "--max-rows" in bad.output


def test_the_prompt_banner_is_short_and_views_lists_the_views(catalog, monkeypatch, capsys):
    from curate import sql

    lines = iter([".views", "SELECT 41 + 1 AS answer;", ".quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt: next(lines))
    sql.interactive(catalog)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"curate sql on {catalog} (read-only): views reviews, items")
    assert out[1] == ".views lists them; end statements with ';'; .quit leaves"
    listing = "\n".join(out[2:])
    view = "slice_default_frac0_5_seed0"
    assert f"{view}" in listing and f"renamed from slice_{HALF}" in listing
    assert "weights_default_frac0_5_seed0__effiminivlm" in listing
    assert "quarantine" in listing and "42" in listing
