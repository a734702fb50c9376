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
    assert copy_sorted(con, select, "k", out, key="k") == ROWS
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0
    # the limit lowered while Python sorted the runs is put back
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "143.0 MiB"
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
        copy_sorted(con, select, "k", out, key="k")
        con.close()
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_keys_query_gives_the_same_bytes_and_must_match_the_rows(tmp_path):
    import pytest

    con = _connect(tmp_path, "256MB")
    con.execute("""
        CREATE TABLE t AS
        SELECT ('0x' || left(sha256(i::VARCHAR), 15))::BIGINT AS k, repeat('y', i % 53) AS text
        FROM range(20000) AS t(i)""")
    select = "SELECT k, text || '!' AS text FROM t"
    run_twice = tmp_path / "run_twice.parquet"
    given = tmp_path / "given.parquet"
    assert copy_sorted(con, select, "k", run_twice, key="k") == 20000
    assert copy_sorted(con, select, "k", given, key="k", keys="SELECT k FROM t") == 20000
    assert given.read_bytes() == run_twice.read_bytes()
    assert pq.read_table(given)["text"][0].as_py().endswith("!")
    # keys that miss a row of the select, or name one it lacks: an error, not a silent loss
    with pytest.raises(RuntimeError, match="a row its keys do not"):
        copy_sorted(con, select, "k", tmp_path / "a.parquet", key="k",
                    keys="SELECT k FROM t WHERE k % 7 <> 0")
    with pytest.raises(RuntimeError, match="rows written for 20001 keys"):
        copy_sorted(con, select, "k", tmp_path / "b.parquet", key="k",
                    keys="SELECT k FROM t UNION ALL SELECT -1")
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()[0] == 0
    assert not list(tmp_path.glob(".*.sort"))  # no scratch left behind
    con.close()


def test_column_types_are_those_duckdb_writes_to_parquet(tmp_path):
    # a sum of BIGINTs is a HUGEINT: DuckDB's Parquet writer stores it as DOUBLE (silver's
    # helpful_votes), its Arrow export as decimal128; the file must not depend on the path
    con = _connect(tmp_path, "256MB")
    select = """
        SELECT i AS k, 'x' AS "odd ""name", sum(i) OVER () AS "odd ""total"
        FROM range(100) AS t(i)"""
    copy_sorted(con, select, "k", tmp_path / "sorted.parquet", key="k")
    con.execute(f"COPY ({select}) TO '{tmp_path / 'plain.parquet'}' (FORMAT parquet)")
    sorted_schema = pq.read_schema(tmp_path / "sorted.parquet")
    assert str(sorted_schema.field('odd "total').type) == "double"
    assert sorted_schema.types == pq.read_schema(tmp_path / "plain.parquet").types
    con.close()
