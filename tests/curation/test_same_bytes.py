"""Same inputs, same bytes: two fresh ingests of one corpus write identical files."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from curation.catalog import THREADS_ENV
from curation.ingest import ingest

ITEMS = 20_000  # several DuckDB vectors per block, read by several threads


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


def test_two_fresh_ingests_write_identical_files(tmp_path, monkeypatch):
    rng = random.Random(1)
    meta = tmp_path / "raw" / "meta_categories"
    meta.mkdir(parents=True)
    with open(meta / "meta_All_Beauty.jsonl", "w") as out:
        for i in range(ITEMS):
            out.write(json.dumps({"parent_asin": f"B{i:09d}", "title": f"item {i}",
                                  "average_rating": round(rng.uniform(1, 5), 1),
                                  "rating_number": rng.randint(0, 99),
                                  "features": ["x" * rng.randint(0, 40)]}) + "\n")
    monkeypatch.setenv(THREADS_ENV, "4")  # parallel reads even on a 2-core machine
    first, second = tmp_path / "first", tmp_path / "second"
    ingest(str(tmp_path / "raw"), first)
    ingest(str(tmp_path / "raw"), second)
    hashes = _hashes(first)
    assert len(hashes) >= 2 and hashes == _hashes(second)
