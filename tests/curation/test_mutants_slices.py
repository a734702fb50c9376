"""Slices: what the fair draw of 2026-12-05 (tests/mutation/draw.py) left alive, written after
that draw (its result stays in tests/mutation/report.md as it was)."""

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
