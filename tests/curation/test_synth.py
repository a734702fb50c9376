from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curation.synth import SynthConfig, star_probabilities, synthesize


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_bytes(tmp_path):
    url = "http://127.0.0.1:8000/"  # image URLs otherwise carry the output folder
    config = SynthConfig(n_items=60, seed=3, mess_rate=0.1, gzip=True, image_base_url=url)
    synthesize(tmp_path / "a", config)
    synthesize(tmp_path / "b", config)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert len([k for k in a if k.startswith("raw/")]) == 12
    assert a == b  # corpus, images and ground truth alike
    other = SynthConfig(n_items=60, seed=4, mess_rate=0.1, gzip=True, image_base_url=url)
    synthesize(tmp_path / "c", other)
    c = _tree_bytes(tmp_path / "c")
    assert any(a[k] != c.get(k) for k in a if k.startswith("raw/"))


def test_layout_and_ground_truth_beside_the_corpus(messy_corpus):
    raw = messy_corpus / "raw"
    assert sorted(p.name for p in (raw / "review_categories").iterdir())[0] == "All_Beauty.jsonl.gz"
    assert (raw / "meta_categories" / "meta_Gift_Cards.jsonl.gz").exists()
    assert not any(p.name.endswith(".parquet") for p in raw.rglob("*"))
    assert (messy_corpus / "ground_truth" / "items.parquet").exists()


def test_rating_counts_are_heavy_tailed_and_targets_noisy(tmp_path):
    synthesize(tmp_path, SynthConfig(n_items=3000, seed=1, images=False))
    truth = pl.read_parquet(tmp_path / "ground_truth" / "items.parquet")
    n = truth["rating_number"]
    assert (n < 10).mean() > 0.6
    assert (n > 10_000).sum() >= 1
    rated = truth.filter(pl.col("rating_number") > 0)
    error = (rated["average_rating"] - rated["true_mean_rating"]).abs()
    few = error.filter(rated["rating_number"] <= 3).mean()
    many = error.filter(rated["rating_number"] >= 100).mean()
    assert few > 3 * many  # few ratings: a noisy target


def test_record_format_matches_the_reference(tmp_path):
    synthesize(tmp_path, SynthConfig(n_items=12, seed=2, categories=("All_Beauty", "Video_Games")))
    meta = json.loads(
        (tmp_path / "raw/meta_categories/meta_All_Beauty.jsonl").read_text().splitlines()[0]
    )
    assert list(meta)[:4] == ["main_category", "title", "average_rating", "rating_number"]
    assert meta["main_category"] == "All Beauty"
    image = meta["images"][0]
    assert set(image) == {"thumb", "large", "variant", "hi_res"}
    assert Path(image["large"].removeprefix("file://")).is_file()
    review = json.loads(
        (tmp_path / "raw/review_categories/All_Beauty.jsonl").read_text().splitlines()[0]
    )
    assert set(review) == {
        "rating",
        "title",
        "text",
        "images",
        "asin",
        "parent_asin",
        "user_id",
        "timestamp",
        "helpful_vote",
        "verified_purchase",
    }
    assert 1e12 < review["timestamp"] < 2e12  # milliseconds


def test_star_probabilities_centre_on_quality():
    means = [float((np.arange(1, 6) * star_probabilities(q)).sum()) for q in (1.5, 3.0, 4.5)]
    assert means[0] < means[1] < means[2]


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown synthetic categories"):
        SynthConfig(categories=("Nope",))
