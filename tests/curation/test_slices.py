from __future__ import annotations

import shutil

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from curate.cli import app
from curation.slices import Slice, build_slice, diff_slices
from curation.validate import validate_slice

runner = CliRunner()


@pytest.fixture(scope="module")
def catalog(split_catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("slices") / "catalog"
    shutil.copytree(split_catalog, root)
    return root


def _train(root, name) -> set[str]:
    frame = pl.read_parquet(Slice.open(root, name).path)
    return set(frame.filter(pl.col("split") == "train")["parent_asin"])


fractions = st.floats(min_value=0.01, max_value=1.0).map(lambda f: round(f, 3))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=fractions, b=fractions, seed=st.integers(0, 3), min_per_category=st.sampled_from([0, 40]))
def test_smaller_slices_lie_inside_larger_ones(catalog, a, b, seed, min_per_category):
    small, large = sorted((a, b))
    names = [f"prop-{i}" for i in range(2)]
    for name, frac in zip(names, (small, large), strict=True):
        build_slice(catalog, frac, seed=seed, min_per_category=min_per_category, name=name)
    assert _train(catalog, names[0]) <= _train(catalog, names[1])
    diff = diff_slices(catalog, *names)
    assert diff["a_inside_b"]
    assert diff["per_split"]["val"]["only_a"] == diff["per_split"]["val"]["only_b"] == 0


def test_each_stratum_within_one_item_of_its_share(catalog):
    result = build_slice(catalog, 0.37, seed=5, name="share-check")
    assert result.manifest["strata"]
    for s in result.manifest["strata"]:
        assert abs(s["selected"] - 0.37 * s["train_items"]) <= 1, s
    frame = pl.read_parquet(Slice.open(catalog, "share-check").path)
    assert frame.filter(pl.col("split") == "train").height == sum(
        s["selected"] for s in result.manifest["strata"]
    )


def test_min_per_category_tops_up_small_categories(catalog):
    build_slice(catalog, 0.05, seed=1, min_per_category=30, name="min-cat")
    train = pl.read_parquet(Slice.open(catalog, "min-cat").path).filter(pl.col("split") == "train")
    counts = dict(train.group_by("category").len().iter_rows())
    assert all(n >= 30 for n in counts.values()), counts


def test_val_and_test_are_whole_and_identical_for_every_fraction(catalog):
    frames = [
        pl.read_parquet(Slice.open(catalog, build_slice(catalog, f, name=f"vt-{f}").name).path)
        for f in (0.1, 0.6)
    ]
    held = [f.filter(pl.col("split") != "train").select("parent_asin", "split") for f in frames]
    assert held[0].equals(held[1]) and held[0].height > 0


def test_rerun_gives_byte_identical_parquet(catalog):
    build_slice(catalog, 0.4, seed=2, name="again")
    first = Slice.open(catalog, "again").path.read_bytes()
    build_slice(catalog, 0.4, seed=2, name="again")
    assert Slice.open(catalog, "again").path.read_bytes() == first


def test_validation_passes_and_catches_a_hand_edited_row(catalog):
    build_slice(catalog, 0.3, seed=9, name="edited")
    assert validate_slice(catalog, "edited").success
    path = Slice.open(catalog, "edited").path
    frame = pl.read_parquet(path)
    victim = frame["parent_asin"][3]
    frame = frame.with_columns(
        pl.when(pl.col("parent_asin") == victim)
        .then(7.0)
        .otherwise(pl.col("average_rating"))
        .alias("average_rating")
    )
    frame.write_parquet(path)
    report = validate_slice(catalog, "edited")
    assert not report.success
    [failure] = report.failures
    assert failure.expectation == "expect_column_values_to_be_between"
    assert failure.column == "average_rating" and failure.unexpected == 1
    assert failure.examples[0]["parent_asin"] == victim
    assert report.json_path.exists() and report.docs_path.exists()
    result = runner.invoke(app, ["validate", "-c", str(catalog), "--slice", "edited"])
    assert result.exit_code == 1
    assert "FAILED expect_column_values_to_be_between(average_rating): 1 of" in result.output
    assert victim in result.output


def test_build_slice_command_prints_a_summary_and_validates(catalog, tmp_path):
    out = tmp_path / "hf"
    result = runner.invoke(
        app,
        [
            "build-slice",
            "--frac",
            "0.4",
            "-c",
            str(catalog),
            "--name",
            "cli-slice",
            "--export-hf",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for text in (
        "slice cli-slice: train",
        "stratum",
        "rejections per rule",
        "duplicate_parent_asin",
        "15/15 expectations met",
    ):
        assert text in result.output
    import datasets

    dataset = datasets.load_from_disk(str(out))
    assert dataset.num_rows == pl.read_parquet(Slice.open(catalog, "cli-slice").path).height
    listing = runner.invoke(app, ["slices", "list", "-c", str(catalog)])
    assert "cli-slice" in listing.output and "frac=0.4" in listing.output
    shown = runner.invoke(app, ["slices", "show", "cli-slice", "-c", str(catalog)])
    assert '"frac": 0.4' in shown.output
    query = runner.invoke(
        app,
        ["sql", "SELECT count(*) AS n FROM slice_cli_slice", "-c", str(catalog), "--format", "csv"],
    )
    assert query.output.splitlines()[1] == str(dataset.num_rows)
    missing = runner.invoke(app, ["slices", "show", "nope", "-c", str(catalog)])
    assert missing.exit_code == 2 and "no slice named 'nope'" in missing.output


def test_bad_parameters_are_clear_errors(catalog):
    for args, message in (
        (["--frac", "1.5"], "--frac must lie in (0, 1]"),
        (["--frac", "0.4", "--strata", "colour"], "unknown strata ['colour']"),
        (["--frac", "0.4", "--profile", "nope"], "unknown profile 'nope'"),
    ):
        result = runner.invoke(app, ["build-slice", *args, "-c", str(catalog)])
        assert result.exit_code == 2 and message in result.output, result.output
