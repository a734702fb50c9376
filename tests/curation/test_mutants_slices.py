"""Slices: what the fair draws of 2026-12-05 and 2026-12-06 (1212; tests/mutation/draw.py) left
alive, written after each draw (their results stay in tests/mutation/report.md as they were)."""

from __future__ import annotations

from curation.slices import HF_SPLITS, Slice, build_slice, dataset_card
from tests.conftest import copy_catalog


def test_the_dataset_card_says_what_a_slice_is(split_catalog, tmp_path):
    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.5)
    card = dataset_card(Slice.open(root, "default-frac0.5-seed0"),
                        dict.fromkeys(HF_SPLITS.values(), 3), [], 0)
    assert ("A slice of the Amazon Reviews 2023 corpus cut by Curate (`curate export hf`): every "
            "train item whose stratum threshold lies at or below the fraction, and the whole "
            "validation and test splits.") in card.splitlines()


def test_a_split_left_empty_is_counted_zero_in_the_manifest(split_catalog, tmp_path):
    """Draw 1212 (2026-12-06): a split with no item was counted 1 in the manifest's rows."""
    import polars as pl

    from curation.slices import Exclusion

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    train = (pl.read_parquet(root / "splits/default/seed0/assignments.parquet")
             .filter(pl.col("split") == "train")["parent_asin"].to_list())
    result = build_slice(root, 0.5, exclude=Exclusion(train, "everything"))
    frame = pl.read_parquet(Slice.open(root, result.name).path)
    counts = dict(frame.group_by("split").len().iter_rows())
    assert "train" not in counts and counts["val"] > 0
    assert result.manifest["rows"] == {"train": 0, "val": counts["val"], "test": counts["test"]}


def test_diff_slices_counts_the_items_in_both(split_catalog, tmp_path):
    """Draw 1212: the per-split count of items in both slices lost its name (`both`), which
    `curate slices diff` prints."""
    import polars as pl
    from typer.testing import CliRunner

    from curate.cli import app
    from curation.slices import diff_slices

    root = copy_catalog(split_catalog, tmp_path / "catalog")
    counts = {}
    for frac, name in ((0.2, "small"), (0.6, "large")):
        build_slice(root, frac, name=name)
        frame = pl.read_parquet(Slice.open(root, name).path)
        counts[name] = dict(frame.group_by("split").len().iter_rows())
    diff = diff_slices(root, "small", "large")
    assert {s: d["both"] for s, d in diff["per_split"].items()} == counts["small"]
    out = CliRunner().invoke(app, ["slices", "diff", "small", "large", "--catalog", str(root)])
    assert out.exit_code == 0, out.output
    only_large = counts["large"]["train"] - counts["small"]["train"]
    assert f"{'train':<6} {0:>30,} {only_large:>30,} {counts['small']['train']:>9,}" in (
        out.output.splitlines())
