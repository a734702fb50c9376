"""The slice suite's cross-table expectations, each shown failing on one planted row.

The value-level expectations (a rating outside [1, 5], ...) are shown in test_slices.py; here,
the ones that compare a slice with other tables: every val and test item of the split table
is in the slice, each item's split is the split table's, and each train item lies inside the
next larger slice of the same settings.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curation.catalog import Catalog
from curation.slices import Slice, build_slice
from curation.validate import validate_slice
from tests.conftest import copy_catalog, record_outputs, shared_scope

SEED = 3


@pytest.fixture(scope=shared_scope)  # per test under mutmut's stats run, as the catalogs
def validated(split_catalog, tmp_path_factory) -> Path:
    """Slices "small" (20%) and "large" (50%) of one seed, and "donor" (45% of another seed:
    between them in size, but not of the same settings). Tests edit copies of it."""
    root = copy_catalog(split_catalog, tmp_path_factory.mktemp("validate") / "catalog")
    build_slice(root, 0.2, seed=SEED, name="small")
    build_slice(root, 0.5, seed=SEED, name="large")
    build_slice(root, 0.45, seed=SEED + 1, name="donor")
    return root


@pytest.fixture
def catalog(validated, tmp_path) -> Path:
    return copy_catalog(validated, tmp_path / "catalog")


def _items(root: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(Slice.open(root, name).path)


def _write_as_built(root: Path, frame: pl.DataFrame) -> None:
    """Write "small" and record it in its manifest, as if build-slice had written it (a bug
    there, not a hand edit, which the file check would catch on its own)."""
    path = Slice.open(root, "small").path
    frame.write_parquet(path)
    record_outputs(path.parent)


def _drop_a_val_item(root: Path) -> str:
    frame = _items(root, "small")
    victim = frame.filter(pl.col("split") == "val")["parent_asin"][0]
    _write_as_built(root, frame.filter(pl.col("parent_asin") != victim))
    return victim


def _move_an_item_to_another_split(root: Path) -> str:
    frame = _items(root, "small")
    victim = frame.filter(pl.col("split") == "val")["parent_asin"][0]
    _write_as_built(root, frame.with_columns(
        pl.when(pl.col("parent_asin") == victim)
        .then(pl.lit("test"))
        .otherwise(pl.col("split"))
        .alias("split")
    ))
    return victim


def _add_a_train_item_the_larger_slice_lacks(root: Path) -> str:
    small, large, donor = (_items(root, n) for n in ("small", "large", "donor"))
    outside = donor.filter(
        (pl.col("split") == "train") & ~pl.col("parent_asin").is_in(large["parent_asin"].implode())
    )
    # A real train item of the split table, whole and well formed, only not in "large". It is
    # in "donor", a larger slice but of another seed, which the check must not consult.
    row = outside.head(1)
    _write_as_built(root, pl.concat([small, row]))
    return row["parent_asin"][0]


def test_the_slice_as_built_validates_clean(catalog):
    report = validate_slice(catalog, "small")  # "donor" is larger but not its next larger
    assert report.success, report.summary()


@pytest.mark.parametrize(
    "plant,column",
    [
        (_drop_a_val_item, "in_slice"),
        (_move_an_item_to_another_split, "split_matches"),
        (_add_a_train_item_the_larger_slice_lacks, "inside_next_larger"),
    ],
    ids=["holdout", "split-equality", "nesting"],
)
def test_a_planted_row_fails_its_expectation_and_only_that(catalog, plant, column):
    victim = plant(catalog)
    report = validate_slice(catalog, "small")
    assert not report.success
    [failure] = report.failures
    assert (failure.expectation, failure.column) == ("expect_column_values_to_be_in_set", column)
    assert failure.unexpected == 1
    assert [e["parent_asin"] for e in failure.examples] == [victim]
    assert all("split" in e for e in failure.examples)  # an example says where the item is


def test_the_validate_command_names_the_row_outside_the_larger_slice(catalog):
    victim = _add_a_train_item_the_larger_slice_lacks(catalog)
    result = CliRunner().invoke(app, ["validate", "-c", str(catalog), "--slice", "small"])
    assert result.exit_code == 1, result.output
    assert "FAILED expect_column_values_to_be_in_set(inside_next_larger): 1 of" in result.output
    assert f"parent_asin={victim}" in result.output


def test_the_items_suite_passes_on_silver_and_names_a_planted_bad_item(split_catalog, tmp_path):
    import json

    from curation.clean import silver_shown
    from curation.validate import validate_all, validate_items

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    silver = silver_shown(Catalog.open(root))[1]
    frame = pl.read_parquet(silver)
    report = validate_items(root)
    assert (report.target, report.rows, report.expectations) == ("items", frame.height, 11)
    assert report.success
    assert report.summary() == f"items: 11/11 expectations met on {frame.height:,} rows"

    victim = frame.sort("parent_asin")["parent_asin"][5]
    planted = frame.with_columns(
        pl.when(pl.col("parent_asin") == victim).then(7.0).otherwise(pl.col("average_rating"))
        .alias("average_rating"))
    planted.write_parquet(silver)
    row = planted.filter(pl.col("parent_asin") == victim).row(0, named=True)
    [report] = validate_all(root)  # the items suite and no slice (there is none)
    assert report.target == "items" and not report.success
    [failure] = report.failures
    assert (failure.expectation, failure.column, failure.unexpected) == (
        "expect_column_values_to_be_between", "average_rating", 1)
    assert failure.examples == [{c: row[c] for c in
                                 ("parent_asin", "average_rating", "rating_number",
                                  "main_image_url")}]
    saved = json.loads((root / "validation" / "items.json").read_text())
    assert report.json_path == root / "validation" / "items.json"
    assert (saved["target"], saved["success"], saved["rows"]) == ("items", False, frame.height)
    assert saved["expectations"] == 11
    [saved_failure] = saved["failures"]
    assert (saved_failure["column"], saved_failure["unexpected"]) == ("average_rating", 1)
    assert saved_failure["examples"][0]["parent_asin"] == victim


def test_validating_again_updates_the_gx_project_in_place(catalog):
    """A rerun reuses each target's asset and its one batch definition (the Data Docs list
    every run of a suite under one name), and gives the same report."""
    import great_expectations as gx

    first = validate_slice(catalog, "small")
    again = validate_slice(catalog, "small")
    assert (again.success, again.rows, again.expectations) == (
        first.success, first.rows, first.expectations)
    context = gx.get_context(mode="file", project_root_dir=str(catalog / "validation"))
    assets = context.data_sources.get("curate").assets
    assert sorted(a.name for a in assets) == ["slice-small", "slice-small-holdout"]
    assert all([b.name for b in a.batch_definitions] == ["all"] for a in assets)


def test_the_items_suite_without_silver_items_says_what_to_run(messy_catalog):
    from curation.errors import UserError
    from curation.validate import validate_items

    with pytest.raises(UserError) as error:
        validate_items(messy_catalog)  # ingested, never cleaned
    assert str(error.value) == ("no silver items in the catalog: run `curate clean` (or "
                                "`curate build-slice`) first")
