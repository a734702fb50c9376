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


def _corpus(tmp_path: Path) -> Path:
    rng = random.Random(1)
    meta = tmp_path / "raw" / "meta_categories"
    meta.mkdir(parents=True)
    with open(meta / "meta_All_Beauty.jsonl", "w") as out:
        for i in range(ITEMS):
            out.write(json.dumps({"parent_asin": f"B{i:09d}", "title": f"item {i}",
                                  "average_rating": round(rng.uniform(1, 5), 1),
                                  "rating_number": rng.randint(0, 99),
                                  "features": ["x" * rng.randint(0, 40)]}) + "\n")
            if i % 997 == 0:
                out.write('{"parent_asin": "X", "average_rating": "five"}\nnot json\n')
    (tmp_path / "raw" / "review_categories").mkdir()
    (tmp_path / "raw" / "review_categories" / "All_Beauty.jsonl").write_text(
        json.dumps({"parent_asin": "B000000001", "rating": 5.0, "user_id": "u",
                    "timestamp": 1}) + "\n")
    return tmp_path / "raw"


def test_two_fresh_ingests_write_identical_files(tmp_path, monkeypatch):
    _corpus(tmp_path)
    monkeypatch.setenv(THREADS_ENV, "4")  # four lanes even on a 2-core machine
    first, second = tmp_path / "first", tmp_path / "second"
    ingest(str(tmp_path / "raw"), first)
    ingest(str(tmp_path / "raw"), second)
    hashes = _hashes(first)
    assert len(hashes) >= 2 and hashes == _hashes(second)


def test_the_same_bytes_whatever_the_lanes(tmp_path, monkeypatch):
    """Blocks typed on four lanes at once, the next file begun while the last blocks of one
    are typed, give the files that one lane gives, block after block."""
    import curation.framing

    raw = _corpus(tmp_path)
    monkeypatch.setattr(curation.framing, "CHUNK_BYTES", 128 << 10)  # a dozen blocks
    monkeypatch.setenv(THREADS_ENV, "1")
    one = ingest(str(raw), tmp_path / "one")
    monkeypatch.setenv(THREADS_ENV, "4")
    four = ingest(str(raw), tmp_path / "four")
    assert [r.key for r in four] == ["items/All_Beauty", "reviews/All_Beauty"]
    assert [(r.rows_ingested, r.lines_quarantined) for r in four] == [
        (r.rows_ingested, r.lines_quarantined) for r in one]
    assert four[0].lines_quarantined == 2 * 21
    hashes = _hashes(tmp_path / "one")
    assert len([h for h in hashes if h.startswith("bronze/items/")]) >= 12
    assert hashes == _hashes(tmp_path / "four")


def test_a_block_that_runs_duckdb_out_of_memory_beside_others_is_typed_again_alone(
        tmp_path, monkeypatch):
    """Four lanes under an 80 MB limit (each read_json buffers 32 MiB): the blocks that run
    out of memory beside the others are typed again alone, not taken for blocks read_json
    refused (typed line by line, counted as fallbacks), and the files are one lane's."""
    import curation.framing
    import curation.ingest
    from curation.catalog import MEMORY_LIMIT_ENV, Catalog

    rng = random.Random(5)
    meta = tmp_path / "raw" / "meta_categories"
    meta.mkdir(parents=True)
    with open(meta / "meta_Toys_and_Games.jsonl", "w") as out:
        for i in range(3000):  # about 10 MB of long item lines
            out.write(json.dumps({
                "parent_asin": f"B{i:09d}", "title": "t" * rng.randint(0, 300),
                "description": ["d" * rng.randint(0, 3000) for _ in range(rng.randint(0, 4))],
                "average_rating": 4.5}) + "\n")
    monkeypatch.setattr(curation.framing, "CHUNK_BYTES", 1 << 20)
    alone = []
    real_alone = curation.ingest._Gate.alone
    monkeypatch.setattr(curation.ingest._Gate, "alone",
                        lambda gate: alone.append(1) or real_alone(gate))
    monkeypatch.setenv(THREADS_ENV, "1")
    ingest(str(tmp_path / "raw"), tmp_path / "one")
    assert not alone
    monkeypatch.setattr(curation.ingest, "LANE_MEMORY", 1 << 20)  # as many lanes as threads
    monkeypatch.setenv(THREADS_ENV, "4")
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "80MB")
    ingest(str(tmp_path / "raw"), tmp_path / "four")
    assert alone  # some block did run out of memory beside the others
    entry = Catalog.open(tmp_path / "four").sources["items/Toys_and_Games"]
    assert (entry["fallback_blocks"], entry["rows_ingested"]) == (0, 3000)
    assert _hashes(tmp_path / "one") == _hashes(tmp_path / "four")
