"""Nested, stratified, reproducible slices of the train split.

Within each stratum of the train split, items are ranked by a stable hash of
(slice seed, parent_asin); an item of rank r in a stratum of n items gets the threshold
f = (r - 0.5) / n, and the slice for a fraction F holds the items with f <= F. So:

- for one seed, every smaller slice lies inside every larger one (f does not depend on F);
- each stratum holds round(F x n) items, within half an item of its exact share;
- ``--min-per-category N`` tops a category up to N items (or all it has) in the order of
  (f, hash), which keeps the nesting (the paper's authors took max(F x n, 10,000) per
  category, drawn independently for each fraction).

The val and test splits are in every slice, whole and identical.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.catalog import Catalog, copy_sorted
from curation.clean import SILVER_ITEMS, clean
from curation.manifest import replace_path, sha256_file, versions, write_json_atomic
from curation.split import (
    COUNT_BIN_SQL,
    RATING_BIN_SQL,
    SPLIT_NAMES,
    SPLITS,
    build_split,
    split_dir,
    stable_hash_sql,
)

STRATA_SQL = {
    "main_category": "coalesce(nullif(main_category, ''), '(none)')",
    "category": "category",
    "rating_bin": RATING_BIN_SQL,
    "count_bin": COUNT_BIN_SQL,
}
DEFAULT_STRATA = ("main_category", "rating_bin", "count_bin")
SLICE_VIEW_PREFIX = "slice_"


@dataclass
class SliceResult:
    name: str
    path: Path
    manifest: dict[str, Any]
    seconds: float


def slice_name(profile: str, frac: float, seed: int) -> str:
    return f"{profile}-frac{frac:g}-seed{seed}"


def view_name(name: str) -> str:
    return SLICE_VIEW_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", name)


def slices_root(catalog: Catalog) -> Path:
    return catalog.layout.root / "slices"


def _ensure_inputs(catalog_root: Path, profile: str, split_seed: int) -> Catalog:
    catalog = Catalog.open(catalog_root)
    silver = catalog.tables.get(SILVER_ITEMS)
    if silver is None or silver["profile"] != profile:
        clean(catalog_root, profile)
        catalog = Catalog.open(catalog_root)
    split = catalog.tables.get(SPLITS)
    wanted = split_dir(catalog, profile, split_seed)
    current_silver = sha256_file(catalog.layout.root / catalog.tables[SILVER_ITEMS]["files"][0])
    if (
        split is None
        or split.get("seed") != split_seed
        or split.get("profile") != profile
        or _split_input(wanted) != current_silver
    ):
        build_split(catalog_root, seed=split_seed)
        catalog = Catalog.open(catalog_root)
    return catalog


def _split_input(path: Path) -> str | None:
    manifest = path / "manifest.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text())["inputs"][SILVER_ITEMS]


def build_slice(
    catalog_root: Path | str,
    frac: float,
    *,
    seed: int = 0,
    strata: tuple[str, ...] = DEFAULT_STRATA,
    min_per_category: int = 0,
    profile: str = "default",
    split_seed: int = 0,
    name: str | None = None,
    exclude_label_issues: str | None = None,
) -> SliceResult:
    """Cut a slice of the train split (plus the whole val and test) into slices/<name>/.

    ``exclude_label_issues`` names a slice audited with ``curate audit label-quality``: its
    flagged items leave this slice's train split (val and test stay whole, so scores remain
    comparable). They are dropped after the thresholds are drawn, so such a slice lies inside
    the plain slice of the same fraction and seed, and inside every larger such slice."""
    if not 0 < frac <= 1:
        raise ValueError(f"--frac must lie in (0, 1], got {frac}")
    unknown = [s for s in strata if s not in STRATA_SQL]
    if unknown or not strata:
        raise ValueError(f"unknown strata {unknown}; choose from {', '.join(STRATA_SQL)}")
    if min_per_category < 0:
        raise ValueError("--min-per-category must be 0 or more")
    started = time.perf_counter()
    catalog_root = Path(catalog_root)
    catalog = _ensure_inputs(catalog_root, profile, split_seed)
    excluded: list[str] = []
    if exclude_label_issues is not None:
        from audit.label_quality import flagged_items

        excluded = flagged_items(catalog_root, exclude_label_issues)
    default_name = slice_name(profile, frac, seed) + ("-nolabelissues" if excluded or
                                                      exclude_label_issues else "")
    name = name or default_name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"slice name {name!r}: use letters, digits, '.', '_' and '-' only")
    root = catalog.layout.root
    staging = root / ".staging" / f"slice-{name}"
    staging.mkdir(parents=True, exist_ok=True)
    out_dir = slices_root(catalog) / name
    stratum = " || ' / ' || ".join(f"({STRATA_SQL[s]})" for s in strata)
    output = staging / "items.parquet"
    con = catalog.connect(read_only=True)
    try:
        # Rank on narrow keys: sorting the wide rows (text) for the windows costs far more.
        con.execute(f"""
            CREATE TEMP TABLE ranked AS
            WITH keys AS (
                SELECT s.parent_asin, s.category, a.split, {stratum} AS stratum,
                       {stable_hash_sql(seed, "s.parent_asin")} AS h
                FROM {SILVER_ITEMS} AS s JOIN {SPLITS} AS a USING (parent_asin)
            ), train AS (
                SELECT *,
                       (row_number() OVER (PARTITION BY stratum ORDER BY h, parent_asin) - 0.5)
                         / count(*) OVER (PARTITION BY stratum) AS slice_threshold
                FROM keys WHERE split = 'train'
            ), per_category AS (  -- a GROUP BY: a FILTER window aggregate is far slower
                SELECT category,
                       count(*) FILTER (WHERE slice_threshold <= {frac}) AS category_share,
                       count(*) AS category_items
                FROM train GROUP BY category
            ), capped AS (
                SELECT t.*, c.category_share, c.category_items,
                       row_number() OVER (
                           PARTITION BY t.category ORDER BY t.slice_threshold, t.h, t.parent_asin
                       ) AS category_rank
                FROM train AS t JOIN per_category AS c USING (category)
            )
            SELECT parent_asin, split, stratum, slice_threshold,
                   category_rank <= greatest(category_share,
                                             least({min_per_category}, category_items)) AS selected
            FROM capped
            UNION ALL
            SELECT parent_asin, split, stratum, NULL::DOUBLE, true FROM keys WHERE split <> 'train'
        """)
        if excluded:
            import pyarrow as pa

            con.register("_excluded", pa.table({"parent_asin": pa.array(excluded, pa.string())}))
            con.execute("UPDATE ranked SET selected = false WHERE split = 'train' AND "
                        "parent_asin IN (SELECT parent_asin FROM _excluded)")
        copy_sorted(
            con,
            f"""
                SELECT s.*, r.split, {RATING_BIN_SQL} AS rating_bin, {COUNT_BIN_SQL} AS count_bin,
                       r.stratum, r.slice_threshold
                FROM {SILVER_ITEMS} AS s JOIN ranked AS r USING (parent_asin)
                WHERE r.selected""",
            "CASE r.split WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END, parent_asin",
            output,
        )
        per_stratum = con.execute(f"""
            SELECT stratum, count(*) AS train_items,
                   count(*) FILTER (WHERE selected) AS selected,
                   round({frac} * count(*), 3)::DOUBLE AS exact_share
            FROM ranked WHERE split = 'train' GROUP BY stratum ORDER BY stratum
        """).fetchall()
        per_split = dict(
            con.execute(
                "SELECT split, count(*) FROM ranked WHERE selected GROUP BY split"
            ).fetchall()
        )
    finally:
        con.close()
    manifest: dict[str, Any] = {
        "stage": "slice",
        "name": name,
        "parameters": {
            "frac": frac,
            "seed": seed,
            "strata": list(strata),
            "min_per_category": min_per_category,
            "exclude_label_issues": exclude_label_issues,
            "profile": profile,
            "split_seed": split_seed,
        },
        "inputs": {
            SILVER_ITEMS: sha256_file(root / catalog.tables[SILVER_ITEMS]["files"][0]),
            SPLITS: sha256_file(root / catalog.tables[SPLITS]["files"][0]),
        },
        "rows": {s: per_split.get(s, 0) for s in SPLIT_NAMES},
        "strata": [
            {"stratum": s, "train_items": n, "selected": k, "exact_share": e}
            for s, n, k, e in per_stratum
        ],
        "outputs": {"items.parquet": sha256_file(output)},
        "versions": versions(),
    }
    write_json_atomic(staging / "manifest.json", manifest)
    replace_path(staging, out_dir)
    catalog = Catalog.open(catalog_root)
    catalog.tables[view_name(name)] = {"files": [f"slices/{name}/items.parquet"], "slice": name}
    catalog.save()
    return SliceResult(name, out_dir, manifest, time.perf_counter() - started)


def list_slices(catalog_root: Path | str) -> list[dict[str, Any]]:
    catalog = Catalog.open(catalog_root)
    out = []
    for manifest in sorted(slices_root(catalog).glob("*/manifest.json")):
        out.append(json.loads(manifest.read_text()))
    return out


def load_slice_manifest(catalog_root: Path | str, name: str) -> dict[str, Any]:
    catalog = Catalog.open(catalog_root)
    path = slices_root(catalog) / name / "manifest.json"
    if not path.exists():
        names = ", ".join(m["name"] for m in list_slices(catalog_root)) or "none yet"
        raise ValueError(f"no slice named {name!r} (slices: {names})")
    return json.loads(path.read_text())


def slice_file(catalog_root: Path | str, name: str) -> Path:
    load_slice_manifest(catalog_root, name)
    return Path(catalog_root) / "slices" / name / "items.parquet"


def diff_slices(catalog_root: Path | str, a: str, b: str) -> dict[str, Any]:
    """Per split: items only in a, only in b, in both; and whether one lies inside the other."""
    import duckdb

    fa, fb = slice_file(catalog_root, a), slice_file(catalog_root, b)
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT coalesce(x.split, y.split) AS split,
               count(*) FILTER (WHERE y.parent_asin IS NULL) AS only_a,
               count(*) FILTER (WHERE x.parent_asin IS NULL) AS only_b,
               count(*) FILTER (WHERE x.parent_asin IS NOT NULL AND y.parent_asin IS NOT NULL)
                   AS both_
        FROM (SELECT parent_asin, split FROM '{fa}') AS x
        FULL JOIN (SELECT parent_asin, split FROM '{fb}') AS y
          ON x.parent_asin = y.parent_asin AND x.split = y.split
        GROUP BY 1 ORDER BY 1
    """).fetchall()
    per_split = {s: {"only_a": oa, "only_b": ob, "both": bo} for s, oa, ob, bo in rows}
    return {
        "per_split": per_split,
        "a_inside_b": all(v["only_a"] == 0 for v in per_split.values()),
        "b_inside_a": all(v["only_b"] == 0 for v in per_split.values()),
    }


def export_hf(catalog_root: Path | str, name: str, out_dir: Path | str) -> Path:
    """Save a slice as a ``datasets.Dataset`` on disk (``datasets.load_from_disk``)."""
    try:
        import datasets
    except ImportError as exc:
        raise ValueError(
            "--export-hf needs the datasets package: pip install 'curate[hub]'"
        ) from exc
    dataset = datasets.Dataset.from_parquet(str(slice_file(catalog_root, name)))
    dataset.save_to_disk(str(out_dir))
    return Path(out_dir)
