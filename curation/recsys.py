"""``curate recsys``: the official recommendation-benchmark cut of the reviews, out of core.

As the Amazon Reviews 2023 benchmark scripts define it (``../shared/reference``, bottom):

- **rating_only**: one row per (user, item), the earliest review kept (equal timestamps: the
  one earlier in the file), columns ``user_id, parent_asin, rating, timestamp``;
- **k-core**: users and items with fewer than k interactions removed, again and again, until
  none is left (the fixed point; k = 0 keeps everything);
- **last_out** split: per user in time order (ties: file order), the last interaction is
  test, the one before it valid, the rest train (a user with one interaction has only a test
  row, with two a valid and a test row);
- **timestamp** split: test from 1658002729837 ms, valid from 1628643414042 ms, train before.

Everything runs in DuckDB with integer ids for users and items, so a category of tens of
millions of reviews is filtered without holding it in Python. Counts reconcile: review rows
= interactions + later duplicates of a (user, item) + rows missing a field; interactions =
k-core + removed by the k-core; k-core = train + valid + test.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import UserError
from curation.manifest import atomic_file

VALID_FROM_MS = 1628643414042
TEST_FROM_MS = 1658002729837
SPLIT_METHODS = ("last_out", "timestamp")
RATING_COLUMNS = ("user_id", "parent_asin", "rating", "timestamp")
SPLIT_NAMES = ("train", "valid", "test")
# A table "interactions" holds: user_id, parent_asin, rating, timestamp, ord (file order).


@dataclass
class KCoreResult:
    k: int
    rounds: int
    interactions_in: int
    interactions_out: int
    users: int
    items: int

    @property
    def density(self) -> float:
        return self.interactions_out / (self.users * self.items) if self.users and self.items \
            else 0.0


def kcore(con: Any, k: int, source: str = "interactions", target: str = "kcore") -> KCoreResult:
    """Filter the table ``source`` to its k-core, as the table ``target`` (same columns).

    Users and items become dense integers first; each round keeps the rows whose user and
    item both still have at least k rows, until a round removes nothing."""
    if k < 0:
        raise UserError(f"--core must be 0 or more, got {k}")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _users AS
            SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)::INTEGER AS u
            FROM (SELECT DISTINCT user_id FROM {source});
        CREATE OR REPLACE TEMP TABLE _items AS
            SELECT parent_asin, (row_number() OVER (ORDER BY parent_asin) - 1)::INTEGER AS i
            FROM (SELECT DISTINCT parent_asin FROM {source});
        CREATE OR REPLACE TEMP TABLE _edges AS
            SELECT u, i, s.ord FROM {source} AS s
            JOIN _users USING (user_id) JOIN _items USING (parent_asin);
    """)
    count = con.execute("SELECT count(*) FROM _edges").fetchone()[0]
    start, rounds = count, 0
    while k > 0:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _next AS
            SELECT e.* FROM _edges AS e
            WHERE e.u IN (SELECT u FROM _edges GROUP BY u HAVING count(*) >= {k})
              AND e.i IN (SELECT i FROM _edges GROUP BY i HAVING count(*) >= {k});
            DROP TABLE _edges;
            ALTER TABLE _next RENAME TO _edges;
        """)
        rounds += 1
        remaining = con.execute("SELECT count(*) FROM _edges").fetchone()[0]
        if remaining == count:
            break
        count = remaining
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {target} AS
        SELECT s.* FROM {source} AS s SEMI JOIN _edges AS e ON s.ord = e.ord;
        DROP TABLE _edges; DROP TABLE _users; DROP TABLE _items;
    """)
    users, items = con.execute(
        f"SELECT count(DISTINCT user_id), count(DISTINCT parent_asin) FROM {target}").fetchone()
    return KCoreResult(k, rounds, start, count, users, items)


def split_sql(method: str, source: str = "kcore") -> str:
    """SELECT of ``source`` with a column ``split`` (train, valid, test)."""
    if method == "last_out":
        return f"""
            SELECT *, CASE row_number() OVER (PARTITION BY user_id ORDER BY timestamp DESC,
                                                                             ord DESC)
                          WHEN 1 THEN 'test' WHEN 2 THEN 'valid' ELSE 'train' END AS split
            FROM {source}"""
    if method == "timestamp":
        return f"""
            SELECT *, CASE WHEN timestamp >= {TEST_FROM_MS} THEN 'test'
                           WHEN timestamp >= {VALID_FROM_MS} THEN 'valid'
                           ELSE 'train' END AS split
            FROM {source}"""
    raise UserError(f"unknown split {method!r}; choose from {', '.join(SPLIT_METHODS)}")


def _connect(spill: Path) -> Any:
    import duckdb

    from curation.catalog import duckdb_config

    return duckdb.connect(config=duckdb_config(spill))


def _copy(con: Any, select: str, order: str, path: Path) -> None:
    """CSV with a header in the official columns, or Parquet, sorted: the same input gives the
    same bytes."""
    from curation.catalog import sql_literal

    options = "FORMAT csv, HEADER true" if path.suffix == ".csv" else \
        "FORMAT parquet, COMPRESSION zstd"
    con.execute(f"COPY ({select} ORDER BY {order}) TO {sql_literal(str(path))} ({options})")


# --- from a rating-only CSV ---------------------------------------------------------------


def kcore_csv(source: Path | str, k: int, out: Path | str) -> KCoreResult:
    """k-core of a rating-only CSV (``user_id,parent_asin,rating,timestamp``, with or without
    a header), written in the input's row order."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    with open(source, encoding="utf-8") as fh:
        first = fh.readline().strip()
    header = first.split(",")[:4] == list(RATING_COLUMNS)
    if len(first.split(",")) < 4:
        raise UserError(f"{source}:1: expected 4 columns ({', '.join(RATING_COLUMNS)}), "
                        f"got {first[:80]!r}")
    from curation.catalog import sql_literal

    con = _connect(out.parent / ".curate-spill")
    try:
        columns = ", ".join(f"'{c}': '{t}'" for c, t in zip(
            RATING_COLUMNS, ("VARCHAR", "VARCHAR", "DOUBLE", "BIGINT"), strict=True))
        try:
            con.execute(f"""
                CREATE TEMP TABLE interactions AS
                SELECT *, row_number() OVER () AS ord FROM read_csv({sql_literal(str(source))},
                    header = {str(header).lower()}, columns = {{{columns}}}, auto_detect = false)
            """)
        except Exception as exc:  # DuckDB's conversion errors name the line
            first_line = str(exc).strip().splitlines()[0]
            raise UserError(f"{source}: {first_line}") from None
        result = kcore(con, k)
        with atomic_file(out) as tmp:
            _copy(con, f"SELECT {', '.join(RATING_COLUMNS)} FROM kcore", "ord", tmp)
    finally:
        con.close()
    return result


# --- from the catalog ----------------------------------------------------------------------


@dataclass
class ExportResult:
    folder: Path
    category: str
    core: int
    split: str
    counts: dict[str, int] = field(default_factory=dict)
    kcore: KCoreResult | None = None
    seconds: float = 0.0


def export(
    catalog_root: Path | str,
    category: str,
    core: int,
    split: str,
    out: Path | str,
    *,
    profile: str = "default",
) -> ExportResult:
    """Write ``OUT/<category>-<core>core-<split>/``: the k-core rating table and its split as
    CSV (official columns) and Parquet, an item table (cleaned text, image URL and cached
    image path), and a manifest."""
    import shutil

    import polars as pl

    from curation.catalog import Catalog
    from curation.images import resolve_image_paths
    from curation.manifest import replace_path, sha256_file, versions, write_json_atomic

    if split not in SPLIT_METHODS:
        raise UserError(f"unknown split {split!r}; choose from {', '.join(SPLIT_METHODS)}")
    if not re.fullmatch(r"[A-Za-z0-9_&-]+", category):
        raise UserError(f"category {category!r}: expected a raw file's category name")
    started = time.perf_counter()
    catalog = Catalog.open(catalog_root)
    known = sorted(e["category"] for e in catalog.sources.values() if e["kind"] == "reviews")
    if category not in known:
        raise UserError(f"no reviews of category {category!r} in the catalog (it has: "
                        f"{', '.join(known) or 'none'})")
    name = f"{category}-{core}core-{split}"
    final = Path(out) / name
    staging = Path(out) / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    con = catalog.connect(read_only=True)
    try:
        counts: dict[str, int] = {}
        counts["review_rows"] = con.execute(
            "SELECT count(*) FROM reviews WHERE category = ?", [category]).fetchone()[0]
        con.execute(f"""
            CREATE TEMP TABLE _complete AS
            SELECT user_id, parent_asin, rating, timestamp, source_line AS ord
            FROM reviews
            WHERE category = '{category}' AND user_id IS NOT NULL AND parent_asin IS NOT NULL
              AND rating IS NOT NULL AND timestamp IS NOT NULL;
            CREATE TEMP TABLE interactions AS
            SELECT * FROM _complete
            QUALIFY row_number() OVER (PARTITION BY user_id, parent_asin
                                       ORDER BY timestamp, ord) = 1;
        """)
        complete = con.execute("SELECT count(*) FROM _complete").fetchone()[0]
        con.execute("DROP TABLE _complete")
        counts["missing_field"] = counts["review_rows"] - complete
        counts["interactions"] = con.execute("SELECT count(*) FROM interactions").fetchone()[0]
        counts["later_duplicates"] = complete - counts["interactions"]
        result = kcore(con, core)
        counts["kcore"] = result.interactions_out
        counts["removed_by_kcore"] = counts["interactions"] - result.interactions_out
        con.execute(f"CREATE TEMP TABLE split_rows AS {split_sql(split)}")
        for s in SPLIT_NAMES:
            counts[s] = con.execute("SELECT count(*) FROM split_rows WHERE split = ?",
                                    [s]).fetchone()[0]
        if counts["review_rows"] != counts["interactions"] + counts["later_duplicates"] \
                + counts["missing_field"] or counts["kcore"] != sum(counts[s] for s in SPLIT_NAMES):
            raise RuntimeError(f"{category}: the counts do not reconcile: {counts}")

        columns = ", ".join(RATING_COLUMNS)
        order = "user_id, timestamp, ord"
        for suffix in (".csv", ".parquet"):
            _copy(con, f"SELECT {columns} FROM kcore", order, staging / f"{category}{suffix}")
            for s in SPLIT_NAMES:
                _copy(con, f"SELECT {columns} FROM split_rows WHERE split = '{s}'", order,
                      staging / f"{category}.{s}{suffix}")
        items = _item_table(con, catalog, category, profile)
        paths = resolve_image_paths(items["main_image_url"].to_list(), catalog.layout)
        items = items.with_columns(image_path=pl.Series(paths, dtype=pl.String))
        items.write_parquet(staging / f"{category}.items.parquet", compression="zstd")
        counts["items_with_metadata"] = int(items["title"].is_not_null().sum())
        counts["items_with_image"] = int(items["image_path"].is_not_null().sum())
    finally:
        con.close()
    manifest = {
        "stage": "recsys_export",
        "parameters": {"category": category, "core": core, "split": split, "profile": profile,
                       "valid_from_ms": VALID_FROM_MS, "test_from_ms": TEST_FROM_MS},
        "inputs": {key: entry["fingerprint"] for key, entry in sorted(catalog.sources.items())
                   if entry["kind"] == "reviews" and entry["category"] == category},
        "counts": counts,
        "stats": {"users": result.users, "items": result.items,
                  "interactions": result.interactions_out, "density": result.density,
                  "kcore_rounds": result.rounds},
        "outputs": {p.name: sha256_file(p) for p in sorted(staging.iterdir())},
        "versions": versions(),
    }
    write_json_atomic(staging / "manifest.json", manifest)
    replace_path(staging, final)
    return ExportResult(final, category, core, split, counts, result,
                        time.perf_counter() - started)


def _item_table(con: Any, catalog: Any, category: str, profile: str) -> Any:
    """The k-core's items with their cleaned text and main image URL where the catalog has
    silver items of ``profile`` (else only the ids, and a note in the counts)."""
    from curation.catalog import parquet_source

    silver = catalog.layout.silver_items(profile)
    if silver.exists():
        select = f"""
            SELECT k.parent_asin, s.title, s.main_category, s.model_text, s.main_image_url,
                   s.average_rating, s.rating_number
            FROM (SELECT DISTINCT parent_asin FROM kcore) AS k
            LEFT JOIN {parquet_source(silver)} AS s USING (parent_asin)
            ORDER BY k.parent_asin"""
    else:
        select = """
            SELECT parent_asin, NULL::VARCHAR AS title, NULL::VARCHAR AS main_category,
                   NULL::VARCHAR AS model_text, NULL::VARCHAR AS main_image_url,
                   NULL::DOUBLE AS average_rating, NULL::BIGINT AS rating_number
            FROM (SELECT DISTINCT parent_asin FROM kcore) ORDER BY parent_asin"""
    return con.sql(select).pl()
