"""Silver items -> a fixed train/val/test split, stratified, with near-duplicates kept together.

Every decision is made by a stable hash: the first 64 bits of SHA-256 over
``"<seed>:<key>"`` (not Python's ``hash`` nor DuckDB's ``hash()``, whose values change
between versions), so the same items and seed give the same split on any machine.

1. Near-duplicate items (the same normalised title, or the same main image URL, and the pairs
   that ``curate audit duplicates --regroup`` found: near-identical text, identical image
   bytes) are joined into groups (union-find over the pairs); a group goes to one split as
   a whole.
2. Within each stratum (category x rating bin) groups are ordered by their hash and cut at
   the split's shares of the stratum's items (80/10/10 by default), so every stratum is split
   in the same proportions, to within one group.
3. A leakage report lists any near-duplicate key still found in two splits (none, by
   construction, unless the input changed under a split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.catalog import Catalog, parquet_source, sql_literal
from curation.errors import UserError
from curation.integrity import blame_damaged_inputs, check_folders
from curation.manifest import read_record, sha256_file
from curation.paths import MANIFEST, CatalogLayout

SPLITS = "splits"  # catalog view names
LEAKAGE = "leakage"
SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SHARES = (0.8, 0.1, 0.1)


def stable_hash_sql(seed: int | str, key_sql: str) -> str:
    """SQL for a stable unsigned 64-bit hash of (seed, key)."""
    return f"('0x' || left(sha256('{seed}:' || {key_sql}), 16))::UBIGINT"


def stable_hash(seed: int | str, key: str) -> int:
    """The same hash in Python (for tests and for users)."""
    import hashlib

    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:16], 16)


RATING_BIN_SQL = """CASE
    WHEN average_rating < 2 THEN '1-2' WHEN average_rating < 3 THEN '2-3'
    WHEN average_rating < 4 THEN '3-4' WHEN average_rating < 4.5 THEN '4-4.5'
    ELSE '4.5-5' END"""
COUNT_BIN_SQL = """CASE
    WHEN rating_number < 10 THEN '0-9' WHEN rating_number < 100 THEN '10-99'
    WHEN rating_number < 1000 THEN '100-999' ELSE '1000+' END"""
NORMALISED_TITLE_SQL = "trim(regexp_replace(lower(title), '[^a-z0-9]+', ' ', 'g'))"


@dataclass
class SplitResult:
    path: Path
    counts: dict[str, int]
    groups_with_duplicates: int
    leaking_keys: int


def _union_find(edges: list[tuple[str, str]]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            parent[rb] = ra  # the smallest parent_asin names the group
    return {x: find(x) for x in parent}


def build_split(
    catalog: Catalog | Path | str,
    *,
    profile: str | None = None,
    seed: int = 0,
    shares: tuple[float, float, float] = DEFAULT_SHARES,
) -> SplitResult:
    """Split one profile's silver items (default: the profile cleaned last) into
    splits/<profile>/seed<S>/, and point the views ``splits`` and ``leakage`` at it."""
    import pyarrow as pa

    from curation.clean import SILVER_ITEMS

    if len(shares) != len(SPLIT_NAMES):
        raise UserError(f"split shares are {len(SPLIT_NAMES)} numbers ("
                        f"{', '.join(SPLIT_NAMES)}), got {shares}")
    if abs(sum(shares) - 1.0) > 1e-9 or min(shares) < 0:
        raise UserError(f"split shares must be non-negative and sum to 1, got {shares}")
    catalog = Catalog.of(catalog)
    layout = catalog.layout
    if profile is None:
        if SILVER_ITEMS not in catalog.tables:
            raise UserError("no silver items in the catalog: run `curate clean` first")
        profile = catalog.tables[SILVER_ITEMS]["profile"]
    silver = layout.silver_items(profile)
    if not silver.exists():
        raise UserError(f"no silver items of profile {profile!r}: run `curate clean --profile "
                        f"{profile}` first")
    out_dir = layout.split_dir(profile, seed)
    regroup = layout.regroup_file(profile)
    with (blame_damaged_inputs(lambda: check_folders([layout.silver_dir(profile)],
                                                     layout.root)),
          catalog.publish(out_dir, f"split-{profile}-{seed}") as staged):
        assignments = staged.path / layout.split_assignments(profile, seed).name
        leakage = staged.path / layout.split_leakage(profile, seed).name
        con = catalog.connect(read_only=True)
        try:
            con.execute(f"""
                CREATE TEMP TABLE keyed AS
                SELECT parent_asin, category, {RATING_BIN_SQL} AS rating_bin,
                       nullif({NORMALISED_TITLE_SQL}, '') AS title_key,
                       nullif(main_image_url, '') AS image_key
                FROM {parquet_source(silver)}
            """)
            edges = con.execute("""
                SELECT parent_asin, min(parent_asin) OVER (PARTITION BY title_key) FROM keyed
                WHERE title_key IS NOT NULL
                QUALIFY count(*) OVER (PARTITION BY title_key) > 1
                UNION ALL
                SELECT parent_asin, min(parent_asin) OVER (PARTITION BY image_key) FROM keyed
                WHERE image_key IS NOT NULL
                QUALIFY count(*) OVER (PARTITION BY image_key) > 1
            """).fetchall()
            if regroup.exists():
                import pyarrow.parquet as pq

                pairs = pq.read_table(regroup, columns=["a", "b"]).to_pylist()
                silver_ids = {r[0] for r in
                              con.execute("SELECT parent_asin FROM keyed").fetchall()}
                edges += [(p["a"], p["b"]) for p in pairs
                          if p["a"] in silver_ids and p["b"] in silver_ids]
            groups = _union_find(edges)
            con.register(
                "grouped",
                pa.table(
                    {
                        "parent_asin": pa.array(list(groups), pa.string()),
                        "group_id": pa.array(list(groups.values()), pa.string()),
                    }
                ),
            )
            train_cut, val_cut = shares[0], shares[0] + shares[1]
            con.execute(f"""
                CREATE TEMP TABLE assigned AS
                WITH items AS (
                    SELECT k.*, coalesce(g.group_id, k.parent_asin) AS group_id
                    FROM keyed AS k LEFT JOIN grouped AS g USING (parent_asin)
                ), grp AS (  -- a group is placed by its first member's stratum
                    SELECT group_id, count(*) AS size,
                           arg_min(category, parent_asin) AS category,
                           arg_min(rating_bin, parent_asin) AS rating_bin,
                           {stable_hash_sql(seed, "group_id")} AS h
                    FROM items GROUP BY group_id
                ), placed AS (
                    SELECT *, sum(size) OVER (PARTITION BY category, rating_bin
                                              ORDER BY h, group_id) - size AS before,
                           sum(size) OVER (PARTITION BY category, rating_bin) AS total
                    FROM grp
                )
                SELECT i.parent_asin, i.category, i.rating_bin, i.group_id,
                       CASE WHEN (p.before + p.size / 2) / p.total < {train_cut} THEN 'train'
                            WHEN (p.before + p.size / 2) / p.total < {val_cut} THEN 'val'
                            ELSE 'test' END AS split
                FROM items AS i JOIN placed AS p USING (group_id)
            """)
            con.execute(
                "COPY (SELECT * FROM assigned ORDER BY parent_asin) "
                f"TO {sql_literal(str(assignments))} (FORMAT parquet, COMPRESSION zstd)"
            )
            con.execute(f"""
                COPY (
                    WITH keys AS (
                        SELECT kind, key, parent_asin, split
                        FROM (SELECT 'title' AS kind, title_key AS key, parent_asin FROM keyed
                              UNION ALL SELECT 'image', image_key, parent_asin FROM keyed)
                        JOIN assigned USING (parent_asin)
                        WHERE key IS NOT NULL
                    ), leaking AS (  -- plain GROUP BYs first: DISTINCT and ordered aggregates
                                     -- over every key do not spill; only leaking keys get a list
                        SELECT kind, key FROM (SELECT DISTINCT kind, key, split FROM keys)
                        GROUP BY kind, key HAVING count(*) > 1
                    )
                    SELECT kind, key, count(DISTINCT split) AS splits, count(*) AS items,
                           list(parent_asin ORDER BY parent_asin) AS parent_asins
                    FROM keys SEMI JOIN leaking USING (kind, key)
                    GROUP BY kind, key
                    ORDER BY kind, key
                ) TO {sql_literal(str(leakage))} (FORMAT parquet)
            """)
            counts = dict(
                con.execute("SELECT split, count(*) FROM assigned GROUP BY 1").fetchall()
            )
            leaking = con.execute(f"SELECT count(*) FROM {parquet_source(leakage)}").fetchone()[0]
            per_stratum = con.execute("""
                SELECT category, rating_bin, split, count(*) FROM assigned
                GROUP BY ALL ORDER BY ALL
            """).fetchall()
        finally:
            con.close()
        dup_groups = len(set(groups.values()))
        staged.manifest = {
            "stage": "split",
            "profile": profile,
            "seed": seed,
            "shares": dict(zip(SPLIT_NAMES, shares, strict=True)),
            "hash": "first 64 bits of sha256('<seed>:<group_id>')",
            "inputs": {SILVER_ITEMS: sha256_file(silver)},
            "counts": {s: counts.get(s, 0) for s in SPLIT_NAMES},
            "near_duplicate_groups": dup_groups,
            "regrouped_from": str(regroup) if regroup.exists() else None,
            "leaking_keys": leaking,
            "per_stratum": [list(row) for row in per_stratum],
        }
        staged.views = split_views(layout, profile, seed)
    return SplitResult(out_dir, {s: counts.get(s, 0) for s in SPLIT_NAMES}, dup_groups, leaking)


def split_views(layout: CatalogLayout, profile: str, seed: int) -> dict[str, dict[str, Any]]:
    """The views ``splits`` and ``leakage`` on one split's files."""
    return {
        SPLITS: {"files": [layout.relative(layout.split_assignments(profile, seed))],
                 "profile": profile, "seed": seed},
        LEAKAGE: {"files": [layout.relative(layout.split_leakage(profile, seed))]},
    }


def read_split_manifest(layout: CatalogLayout, profile: str, seed: int) -> dict[str, Any] | None:
    """The manifest of splits/<profile>/seed<S>/, or None if that split was never made."""

    path = layout.split_dir(profile, seed) / MANIFEST
    return read_record(path) if path.exists() else None
