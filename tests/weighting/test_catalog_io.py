from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curation.slices import Slice, build_slice
from tests.conftest import shared_scope
from weighting.catalog_io import compute_weights, load_weights

runner = CliRunner()


@pytest.fixture(scope=shared_scope)  # per test under mutmut's stats run, as the catalogs
def sliced(split_catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("weights") / "catalog"
    shutil.copytree(split_catalog, root)
    build_slice(root, 0.5, name="half")
    return root


def test_compute_writes_a_table_a_manifest_and_a_view(sliced):
    half = Slice.open(sliced, "half")
    table = compute_weights(half, "effiminivlm")
    items = half.items()
    weights = load_weights(half, table.weights_id)
    assert weights.columns == ["parent_asin", "split", "weight"]
    assert weights.height == items.height and weights["weight"].is_finite().all()
    manifest = json.loads((table.path.parent / "manifest.json").read_text())
    assert manifest["statistics_from"] == "train split only"
    [term] = manifest["fit"]["terms"]
    train_n = items.filter(pl.col("split") == "train")["rating_number"].fill_null(0)
    assert term["stats"]["mean_log1p_n"] == pytest.approx(train_n.log1p().mean(), rel=1e-12)
    d = manifest["diagnostics"]
    w = weights.filter(pl.col("split") == "train")["weight"]
    assert d["effective_sample_size"] == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert sum(m["mass"] for m in d["mass_per_count_decile"]) == pytest.approx(1.0)
    result = runner.invoke(
        app,
        [
            "sql",
            "SELECT count(*) FROM weights_half__effiminivlm",
            "-c",
            str(sliced),
            "--format",
            "csv",
        ],
    )
    assert result.output.splitlines()[1] == str(items.height)


def test_weights_commands(sliced, tmp_path):
    listed = runner.invoke(app, ["weights", "list"])
    assert listed.exit_code == 0 and "inverse_variance" in listed.output
    assert "favours" in listed.output and "beta=0.999" in listed.output
    computed = runner.invoke(
        app,
        [
            "weights",
            "compute",
            "--slice",
            "half",
            "--strategy",
            "sqrt_count:cap=5*lds",
            "--normalise",
            "-c",
            str(sliced),
        ],
    )
    assert computed.exit_code == 0, computed.output
    wid = computed.output.split()[1]
    described = runner.invoke(
        app, ["weights", "describe", "--slice", "half", wid, "-c", str(sliced)]
    )
    assert described.exit_code == 0 and "ESS" in described.output and "mean 1," in described.output
    assert "mass per stratum" in described.output and "/ 4-4.5 /" in described.output
    out = tmp_path / "plots"
    compared = runner.invoke(
        app,
        [
            "weights",
            "compare",
            "--slice",
            "half",
            "uniform",
            "effiminivlm",
            "wilson",
            "-c",
            str(sliced),
            "--out",
            str(out),
        ],
    )
    assert compared.exit_code == 0, compared.output
    lines = {line.split()[0]: line for line in compared.output.splitlines()[1:4]}
    assert "100.0%" in lines["uniform"]  # uniform weights: ESS = every item
    for png in ("weight_vs_rating_number.png", "weight_histograms.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(
        app, ["weights", "compute", "--slice", "half", "--strategy", "nope", "-c", str(sliced)]
    )
    assert bad.exit_code == 2 and "valid strategies" in bad.output
    flat = runner.invoke(app, ["weights", "compute", "--slice", "half", "--strategy",
                               "sqrt_count", "--clip", ",0", "-c", str(sliced)])
    assert flat.exit_code == 2 and flat.output.strip().splitlines()[-1] == (
        "error: --clip: an upper bound of 0 makes every weight 0, so nothing would train; "
        "give one above 0")
    missing = runner.invoke(
        app, ["weights", "describe", "--slice", "half", "absent", "-c", str(sliced)]
    )
    assert missing.exit_code == 2 and "no weights 'absent'" in missing.output
