"""copy_sorted stays within DuckDB's memory limit on rows much wider than its keys."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq

from curation.sorting import copy_sorted, memory_limit_bytes

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
    with pytest.raises(RuntimeError, match="do not match one row of the select each"):
        copy_sorted(con, select, "k", tmp_path / "b.parquet", key="k",
                    keys="SELECT k FROM t UNION ALL SELECT -1")
    # as many rows as keys, but one key held twice and another by none
    with pytest.raises(RuntimeError, match="do not match one row of the select each"):
        copy_sorted(con, "SELECT unnest([1, 1, 3]) AS k", "k", tmp_path / "c.parquet", key="k",
                    keys="SELECT unnest([1, 2, 3]) AS k")
    assert not (tmp_path / "c.parquet").exists()
    # the settings lowered or changed meanwhile are put back (the limit as DuckDB shows it,
    # to a tenth of a MiB)
    assert abs(memory_limit_bytes(con) - 256 * 10**6) < 0.2 * 2**20
    assert con.execute("SELECT current_setting('preserve_insertion_order'), "
                       "current_setting('disabled_optimizers')").fetchone() == (True, "")
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


def test_order_from_the_keys_query_and_a_null_key(tmp_path):
    # slices sort on a column only the keys query has (the split); a NULL key is a key
    con = _connect(tmp_path, "256MB")
    con.execute("""
        CREATE TABLE ranked AS SELECT * FROM (VALUES ('a', 'test'), ('b', 'train'),
            ('c', 'train'), (NULL, 'val')) AS v(id, split)""")
    out = tmp_path / "sorted.parquet"
    assert copy_sorted(
        con, "SELECT id, upper(coalesce(id, '?')) AS shown FROM ranked",
        "CASE split WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END, id", out, key="id",
        keys="SELECT id, split FROM ranked") == 4
    assert pq.read_table(out).to_pydict() == {"id": ["b", "c", None, "a"],
                                              "shown": ["B", "C", "?", "A"]}
    con.close()


def test_a_damaged_input_is_duckdbs_error(tmp_path):
    # DuckDB's errors reach the scatter through Arrow's stream as bare OSErrors: they must
    # arrive as DuckDB's, which blame_damaged_inputs checks the inputs on
    import pytest

    con = _connect(tmp_path, "256MB")
    source = tmp_path / "source.parquet"
    con.execute(f"""
        COPY (SELECT i AS k, md5(i::VARCHAR) || repeat(sha256(i::VARCHAR), 8) AS text
              FROM range(60000) AS t(i))
        TO '{source}' (FORMAT parquet, ROW_GROUP_SIZE 10000, COMPRESSION zstd)""")
    column = pq.ParquetFile(source).metadata.row_group(5).column(1)
    with open(source, "r+b") as fh:  # the last row group's text, not the keys, made garbage
        fh.seek(column.data_page_offset + 64)
        fh.write(bytes(range(256)) * 4)
    with pytest.raises(duckdb.Error):
        copy_sorted(con, f"SELECT * FROM '{source}'", "k", tmp_path / "out.parquet", key="k")
    con.close()


def test_a_filtered_select_joined_like_cleans_under_a_small_limit(tmp_path):
    # DuckDB guesses a filtered select's size: left to choose, it built the join's hash table
    # on the wide rows and failed here under limits up to 200 MB (the old way passed at 48)
    outputs = []
    for limit in ("48MB", "1GB"):
        con = _connect(tmp_path, "1GB")
        con.execute("""
            CREATE TEMP TABLE judged AS
            SELECT 'B' || lpad(hash(i)::VARCHAR, 20, '0') AS parent_asin,
                   repeat(md5(i::VARCHAR), 22) AS text, [md5(i::VARCHAR), 'x'] AS feats,
                   CASE WHEN i % 20 = 0 THEN 'bad' END AS _rule
            FROM range(100000) AS t(i)""")
        con.execute("""
            CREATE TEMP TABLE reviews AS
            SELECT 'B' || lpad(hash(i % 10000)::VARCHAR, 20, '0') AS parent_asin,
                   (i % 7)::BIGINT AS helpful_vote
            FROM range(200000) AS t(i)""")
        con.execute(f"SET memory_limit = '{limit}'")
        out = tmp_path / f"{limit}.parquet"
        rows = copy_sorted(con, """
            SELECT j.parent_asin, j.text, j.feats, coalesce(r.votes, 0) AS votes
            FROM judged AS j LEFT JOIN (SELECT parent_asin, sum(helpful_vote) AS votes
                                        FROM reviews GROUP BY parent_asin) AS r
                USING (parent_asin)
            WHERE j._rule IS NULL""", "parent_asin", out, key="parent_asin",
            keys="SELECT parent_asin FROM judged WHERE _rule IS NULL")
        assert rows == 95000
        con.close()
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
