"""``curate audit duplicates``: exact and near-duplicate items, within and across splits.

Pairs of silver items (of the profile cleaned last) are found four ways:

- ``same_title``: the same normalised title (what the split already keeps together);
- ``same_image_url``: the same main image URL (likewise);
- ``same_image_bytes``: the same image content under different URLs (SHA-256 of the local
  file, or of the fetched bytes from ``curate images fetch``);
- ``near_text``: MinHash signatures (256 permutations) of the word 2-gram shingles of title +
  features + description, banded for locality-sensitive hashing (64 bands of 4 rows: a pair
  at Jaccard 0.6 becomes a candidate with probability 0.9998), each candidate then checked
  by its exact Jaccard similarity (>= ``threshold``, 0.6: product texts are short, so a
  relisting with a few words changed already falls to 0.65; on the synthetic corpus
  unrelated items stay below 0.4).

Each pair is reported with both items' splits: a pair across splits is leakage (the same
product in train and test). ``--regroup`` writes the pairs to
``splits/<profile>/regroup.parquet`` and splits again, so that every pair lands in one split
(``curation/split.py`` reads that file); slices built before must then be built again.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import polars as pl

from audit.outputs import write_audit
from curation.catalog import Catalog
from curation.errors import UserError
from curation.manifest import atomic_file

AUDIT = "duplicates"
KINDS = ("same_title", "same_image_url", "same_image_bytes", "near_text")
PERMUTATIONS = 256
BANDS = 64
ROWS = PERMUTATIONS // BANDS
SHINGLE = 2
DEFAULT_THRESHOLD = 0.6
MAX_BUCKET = 500  # a band bucket larger than this is boilerplate, not duplicates
_PRIME = (1 << 61) - 1
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class DuplicatesResult:
    folder: Path
    items: int
    pairs: int
    cross_split: int
    by_kind: dict[str, int]
    regrouped: bool
    seconds: float


def shingles(text: str, size: int = SHINGLE) -> set[int]:
    """Hashes of the word n-grams of a text (lower case, letters and digits)."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        grams = [" ".join(words)] if words else []
    else:
        grams = [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    return {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
            for g in grams}


def minhash(shingle_sets: list[set[int]], seed: int = 0) -> np.ndarray:
    """(items, PERMUTATIONS) signatures with universal hashing (a x + b) mod p."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, PERMUTATIONS, dtype=np.uint64)
    b = rng.integers(0, _PRIME, PERMUTATIONS, dtype=np.uint64)
    out = np.full((len(shingle_sets), PERMUTATIONS), np.iinfo(np.uint64).max, dtype=np.uint64)
    for i, values in enumerate(shingle_sets):
        if not values:
            continue
        x = np.fromiter(values, dtype=np.uint64) % np.uint64(_PRIME)
        # modular arithmetic in uint64 wraps; that keeps it a fixed hash family, which is all
        # MinHash needs
        hashed = (a[:, None] * x[None, :] + b[:, None]) % np.uint64(_PRIME)
        out[i] = hashed.min(axis=1)
    return out


def near_text_pairs(texts: list[str], threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for the pairs of texts at or above ``threshold``."""
    sets = [shingles(t) for t in texts]
    signatures = minhash(sets)
    candidates: set[tuple[int, int]] = set()
    for band in range(BANDS):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = signatures[:, band * ROWS : (band + 1) * ROWS]
        for i in range(len(texts)):
            if sets[i]:
                buckets[block[i].tobytes()].append(i)
        for members in buckets.values():
            if 1 < len(members) <= MAX_BUCKET:
                for x in range(len(members)):
                    for y in range(x + 1, len(members)):
                        candidates.add((members[x], members[y]))
    pairs = []
    for i, j in sorted(candidates):
        union = len(sets[i] | sets[j])
        jaccard = len(sets[i] & sets[j]) / union if union else 0.0
        if jaccard >= threshold:
            pairs.append((i, j, jaccard))
    return pairs


def _image_digest(url: str | None, fetched: dict[str, str]) -> str | None:
    if not url:
        return None
    if url in fetched:
        return fetched[url]
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
    return None


def _pairs_by_key(frame: pl.DataFrame, key: str, kind: str) -> pl.DataFrame:
    keyed = frame.filter(pl.col(key).is_not_null()).select("parent_asin", key)
    return (keyed.join(keyed, on=key, suffix="_b")
            .filter(pl.col("parent_asin") < pl.col("parent_asin_b"))
            .select(pl.col("parent_asin").alias("a"), pl.col("parent_asin_b").alias("b"))
            .with_columns(kind=pl.lit(kind), similarity=pl.lit(1.0)))


def duplicates_audit(catalog: Catalog | Path | str, *, threshold: float = DEFAULT_THRESHOLD,
                     regroup: bool = False) -> DuplicatesResult:
    """Duplicate pairs among the silver items the views show (the profile and split used
    last); with ``regroup``, split again so that every pair lands in one split."""
    from curation.clean import SILVER_ITEMS
    from curation.images import read_status
    from curation.split import SPLITS, build_split

    if not 0 < threshold <= 1:
        raise UserError(f"--threshold must lie in (0, 1], got {threshold}")
    started = time.perf_counter()
    catalog = Catalog.of(catalog)
    layout = catalog.layout
    if SILVER_ITEMS not in catalog.tables or SPLITS not in catalog.tables:
        raise UserError("the catalog has no split silver items: run curate build-slice (or "
                        "curate clean and a split) first")
    profile = catalog.tables[SILVER_ITEMS]["profile"]
    split_seed = int(catalog.tables[SPLITS].get("seed", 0))
    items = pl.read_parquet(layout.silver_items(profile),
                            columns=["parent_asin", "title", "features_text",
                                     "description_text", "main_image_url"])
    split = pl.read_parquet(layout.split_assignments(catalog.tables[SPLITS]["profile"],
                                                     split_seed),
                            columns=["parent_asin", "split"])
    items = items.join(split, on="parent_asin", how="left").sort("parent_asin")
    status = read_status(layout)
    fetched = {u: h for u, s, h in status.select("url", "status", "source_sha256").iter_rows()
               if s == "ok" and h}
    items = items.with_columns(
        title_key=pl.col("title").str.to_lowercase().str.replace_all(r"[^a-z0-9]+", " ")
        .str.strip_chars().replace("", None),
        image_digest=pl.Series([_image_digest(u, fetched) for u in items["main_image_url"]],
                               dtype=pl.String),
    )
    texts = [" ".join(filter(None, parts)) for parts in
             items.select("title", "features_text", "description_text").iter_rows()]
    near = near_text_pairs(texts, threshold)
    asins = items["parent_asin"].to_list()
    near_frame = pl.DataFrame(
        {"a": [asins[i] for i, _, _ in near], "b": [asins[j] for _, j, _ in near],
         "kind": ["near_text"] * len(near), "similarity": [s for _, _, s in near]},
        schema={"a": pl.String, "b": pl.String, "kind": pl.String, "similarity": pl.Float64})
    pairs = pl.concat([
        _pairs_by_key(items, "title_key", "same_title"),
        _pairs_by_key(items, "main_image_url", "same_image_url"),
        _pairs_by_key(items, "image_digest", "same_image_bytes"),
        near_frame,
    ])
    splits = items.select("parent_asin", "split")
    pairs = (pairs.join(splits.rename({"parent_asin": "a", "split": "split_a"}), on="a")
             .join(splits.rename({"parent_asin": "b", "split": "split_b"}), on="b")
             .with_columns(cross_split=pl.col("split_a") != pl.col("split_b"))
             .sort("kind", "a", "b"))
    by_kind = {k: int((pairs["kind"] == k).sum()) for k in KINDS}
    cross = int(pairs["cross_split"].sum())
    summary = _summary(profile, items.height, pairs, by_kind, threshold)
    folder = write_audit(catalog, AUDIT, profile, pairs, summary, {
        "parameters": {"profile": profile, "threshold": threshold, "permutations": PERMUTATIONS,
                       "bands": BANDS, "shingle_words": SHINGLE, "regroup": regroup},
        "counts": {"items": items.height, "pairs": pairs.height, "cross_split": cross,
                   **by_kind},
    }, table_name="pairs.parquet")
    if regroup:
        with atomic_file(layout.regroup_file(profile)) as tmp:
            pairs.select("a", "b", "kind").unique().sort("a", "b").write_parquet(tmp)
        build_split(catalog, profile=profile, seed=split_seed)
    return DuplicatesResult(folder, items.height, pairs.height, cross, by_kind, regroup,
                            time.perf_counter() - started)


def _summary(profile: str, items: int, pairs: pl.DataFrame, by_kind: dict[str, int],
             threshold: float) -> str:
    lines = [f"# Duplicates among the `{profile}` silver items", "",
             f"- {items:,} items; {pairs.height:,} duplicate pairs, "
             f"{int(pairs['cross_split'].sum()):,} of them across splits (leakage)",
             f"- near_text: MinHash ({PERMUTATIONS} permutations, {BANDS} bands) over word "
             f"{SHINGLE}-grams, exact Jaccard >= {threshold:g}", "",
             "| kind | pairs | across splits |", "|---|---:|---:|"]
    for kind in KINDS:
        part = pairs.filter(pl.col("kind") == kind)
        lines.append(f"| {kind} | {by_kind[kind]:,} | {int(part['cross_split'].sum()):,} |")
    leaks = pairs.filter(pl.col("cross_split")).head(10)
    if leaks.height:
        lines += ["", "First pairs across splits:", "", "| a | b | kind | similarity | splits |",
                  "|---|---|---|---:|---|"]
        for r in leaks.iter_rows(named=True):
            lines.append(f"| {r['a']} | {r['b']} | {r['kind']} | {r['similarity']:.3f} | "
                        f"{r['split_a']} / {r['split_b']} |")
    return "\n".join(lines) + "\n"
