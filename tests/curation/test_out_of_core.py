"""Every stage runs with DuckDB's memory limit far below the size of the data it moves, and
gives the same bytes as with plenty of memory: a stage that cannot spill fails here, in CI,
not at a user's with the real corpus."""

from __future__ import annotations

import json
import random
import shutil

import pyarrow.parquet as pq
import pytest

from curation.catalog import MEMORY_LIMIT_ENV, THREADS_ENV, Catalog
from curation.ingest import ingest
from curation.recsys import export
from curation.slices import Slice, build_slice
from weighting.catalog_io import compute_weights

ITEMS = 100_000
LIMIT_MB = 48
WORDS = [f"w{i}" for i in range(5000)]


def _write_corpus(raw, items: int) -> None:
    """Items with real-sized text (a 100-word description, 3 features) and reviews with
    repeat users, for a k-core."""
    rng = random.Random(0)
    (raw / "meta_categories").mkdir(parents=True)
    (raw / "review_categories").mkdir(parents=True)
    with open(raw / "meta_categories" / "meta_All_Beauty.jsonl", "w") as out:
        for i in range(items):
            out.write(json.dumps({
                "parent_asin": f"B{i:09d}", "main_category": "All Beauty",
                "title": f"item {i} " + " ".join(rng.choices(WORDS, k=8)),
                "features": [" ".join(rng.choices(WORDS, k=20)) for _ in range(3)],
                "description": [" ".join(rng.choices(WORDS, k=100))],
                "average_rating": round(rng.uniform(1, 5), 1),
                "rating_number": rng.randint(0, 500),
                "images": [{"hi_res": f"https://example.com/{i}.jpg", "large": None,
                            "thumb": None, "variant": "MAIN"}],
            }) + "\n")
    with open(raw / "review_categories" / "All_Beauty.jsonl", "w") as out:
        for j in range(items * 2):
            out.write(json.dumps({
                "rating": float(rng.randint(1, 5)), "title": "t", "text": "x",
                "parent_asin": f"B{rng.randrange(items // 10):09d}",
                "user_id": f"U{rng.randrange(items // 8)}", "timestamp": 1_600_000_000_000 + j,
                "helpful_vote": 0, "verified_purchase": True,
            }) + "\n")


def _run_stages(root, out):
    build_slice(root, 0.4)  # clean, split and slice
    slice_ = Slice.open(root, "default-frac0.4-seed0")
    compute_weights(slice_, "effiminivlm")
    export(root, "All_Beauty", 5, "last_out", out)
    layout = Catalog.open(root).layout
    return {
        "silver": layout.silver_items("default").read_bytes(),
        "split": layout.split_assignments("default", 0).read_bytes(),
        "slice": slice_.path.read_bytes(),
        "weights": layout.weights_file(slice_.name, "effiminivlm").read_bytes(),
        "kcore": (out / "All_Beauty-5core-last_out" / "All_Beauty.csv").read_bytes(),
    }


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    base = tmp_path_factory.mktemp("out-of-core")
    _write_corpus(base / "raw", ITEMS)
    ingest(str(base / "raw"), base / "catalog")
    return base


def test_every_stage_spills_under_a_small_memory_limit(ingested, tmp_path, monkeypatch):
    roomy = tmp_path / "roomy"
    shutil.copytree(ingested / "catalog", roomy)
    expected = _run_stages(roomy, tmp_path / "recsys-roomy")

    silver = pq.ParquetFile(Catalog.open(roomy).layout.silver_items("default")).metadata
    moved = sum(silver.row_group(i).total_byte_size for i in range(silver.num_row_groups))
    assert moved > 4 * LIMIT_MB * 2**20  # the data is far larger than the limit below

    tight = tmp_path / "tight"
    shutil.copytree(ingested / "catalog", tight)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, f"{LIMIT_MB}MB")
    monkeypatch.setenv(THREADS_ENV, "1")  # DuckDB needs some 30 MB per thread of its own
    got = _run_stages(tight, tmp_path / "recsys-tight")
    assert got == expected  # same bytes whatever the memory limit
