"""copy_sorted stays within DuckDB's memory limit on rows much wider than its keys."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq

from curation.sorting import copy_sorted

ROWS = 200_000  # about 220 MB of text, sorted under a 150 MB limit (the old way failed at 300 MB)


def _connect(tmp_path, limit: str):
    spill = tmp_path / "spill"
    spill.mkdir(exist_ok=True)
    return duckdb.connect(
        config={"memory_limit": limit, "temp_directory": str(spill), "threads": 2}
    )


def test_sorts_wide_rows_past_the_memory_limit(tmp_path):
    con = _connect(tmp_path, "150MB")
    select = f"""
        SELECT ('0x' || left(sha256(i::VARCHAR), 15))::BIGINT AS k, i,
               repeat(md5(i::VARCHAR), 32) AS text, [i, i + 1, i + 2] AS ids
        FROM range({ROWS}) AS t(i)"""
    out = tmp_path / "sorted.parquet"
    assert copy_sorted(con, select, "k", out) == ROWS
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0
    table = pq.read_table(out)
    keys = table["k"].to_pylist()
    assert keys == sorted(keys) and len(set(keys)) == ROWS
    assert table["text"][0].as_py() == table["text"][0].as_py()[:32] * 32
    con.close()


def test_same_bytes_whatever_the_chunking(tmp_path, monkeypatch):
    import curation.sorting as sorting

    select = """
        SELECT ('0x' || left(sha256(i::VARCHAR), 15))::BIGINT AS k, repeat('x', i % 97) AS text
        FROM range(50000) AS t(i)"""
    outputs = []
    for share in (1, 64):
        monkeypatch.setattr(sorting, "SORT_RUN_SHARE", share)
        con = _connect(tmp_path, "256MB")
        out = tmp_path / f"share{share}.parquet"
        copy_sorted(con, select, "k", out)
        con.close()
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
