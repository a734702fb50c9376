"""Planted user tastes tied to item content, written as a recommendation benchmark.

The truth: each item has one *topic* (a scent: lavender, citrus, ...) that its text names,
a product type that its text also names but no user cares about, and a popularity; each
user has a taste, a Dirichlet draw over the topics (most of the mass on one or two). A user
picks items with probability proportional to ``popularity x exp(affinity x taste[topic])``,
without replacement, so what a user liked says which topics they like, and an item's text
says its topic.

Time: warm items are on sale from the start, ``cold_fraction`` of the items only from
``TEST_FROM_MS`` (so none of their interactions is in train), and each interaction's
timestamp is uniform over the item's time on sale. The official ``timestamp`` split
(``curation.recsys.split_sql``) then puts every interaction of a cold item in test: an
ID-only model has learnt nothing of them, a model that reads the text can place them.

The folder has the layout of ``curate recsys export`` (``<category>.csv``, the splits as CSV
and Parquet, ``<category>.items.parquet`` with ``model_text``, ``manifest.json``) plus the
truth: ``truth_items.parquet`` (topic, product type, popularity, cold) and
``truth_users.parquet`` (taste per topic).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from curation.errors import UserError
from curation.manifest import replace_path, sha256_file, versions, write_json_atomic
from curation.recsys import (
    RATING_COLUMNS,
    SPLIT_METHODS,
    SPLIT_NAMES,
    TEST_FROM_MS,
    VALID_FROM_MS,
    _connect,
    _copy,
    split_sql,
)

TOPICS = (
    ("lavender", "calming floral lavender"),
    ("citrus", "fresh zesty lemon and orange"),
    ("coconut", "tropical creamy coconut"),
    ("mint", "cooling peppermint"),
    ("vanilla", "sweet warm vanilla"),
    ("charcoal", "detoxifying activated charcoal"),
    ("rose", "romantic rose petal"),
    ("argan", "nourishing Moroccan argan oil"),
    ("tea tree", "clarifying tea tree"),
    ("cucumber", "soothing cucumber and aloe"),
    ("honey", "rich golden honey"),
    ("sandalwood", "woody sandalwood"),
)
PRODUCT_TYPES = ("shampoo", "face cream", "body lotion", "soap bar", "serum", "lip balm",
                 "sheet mask", "hand cream")
ADJECTIVES = ("gentle", "daily", "luxury", "organic", "travel size", "classic", "deluxe",
              "everyday")
YEAR_MS = 365 * 24 * 3600 * 1000
START_MS = VALID_FROM_MS - 3 * YEAR_MS
END_MS = TEST_FROM_MS + YEAR_MS
TRUTH_ITEMS = "truth_items.parquet"
TRUTH_USERS = "truth_users.parquet"


@dataclass(frozen=True)
class TastesConfig:
    users: int = 400
    items: int = 300
    topics: int = 8  # the first ``topics`` of TOPICS
    interactions_per_user: float = 12.0  # Poisson mean (at least 3 each)
    cold_fraction: float = 0.2
    affinity: float = 6.0  # how sharply a taste picks its topics
    concentration: float = 0.3  # Dirichlet: smaller, fewer topics per user
    split: str = "timestamp"
    category: str = "Synth_Tastes"
    seed: int = 0


@dataclass
class TastesSummary:
    folder: Path
    counts: dict[str, int]


def _check(config: TastesConfig) -> None:
    if not 1 <= config.topics <= len(TOPICS):
        raise UserError(f"topics must be 1 to {len(TOPICS)}, got {config.topics}")
    if config.users < 1 or config.items < 4:
        raise UserError("need at least 1 user and 4 items")
    if not 0 <= config.cold_fraction < 1:
        raise UserError(f"cold_fraction must be in [0, 1), got {config.cold_fraction}")
    if config.split not in SPLIT_METHODS:
        raise UserError(f"unknown split {config.split!r}; choose from {', '.join(SPLIT_METHODS)}")


def item_text(topic: int, product: int, adjective: int, number: int) -> tuple[str, str]:
    """(title, model_text) of an item, in ``curate clean``'s model-text format."""
    word, phrase = TOPICS[topic]
    title = f"{ADJECTIVES[adjective].capitalize()} {word} {PRODUCT_TYPES[product]} no. {number}"
    text = (f"Main category: All Beauty\nTitle: {title}\n"
            f"Features: {phrase} scent | {PRODUCT_TYPES[product]}\n"
            f"Description: A {ADJECTIVES[adjective]} {PRODUCT_TYPES[product]} with a {phrase} "
            f"fragrance.")
    return title, text


def synthesize_tastes(out: Path | str, config: TastesConfig = TastesConfig()) -> TastesSummary:
    """Write ``OUT/<category>-tastes-<split>/`` (staged, then renamed into place)."""
    _check(config)
    rng = np.random.default_rng(config.seed)
    n_items, n_users, k = config.items, config.users, config.topics
    topic = rng.integers(0, k, n_items)
    product = rng.integers(0, len(PRODUCT_TYPES), n_items)
    adjective = rng.integers(0, len(ADJECTIVES), n_items)
    popularity = rng.lognormal(0.0, 0.5, n_items)
    cold = np.zeros(n_items, dtype=bool)
    cold[rng.permutation(n_items)[: round(config.cold_fraction * n_items)]] = True
    on_sale_from = np.where(cold, TEST_FROM_MS, START_MS)
    taste = rng.dirichlet(np.full(k, config.concentration), n_users)

    users, items, stamps = [], [], []
    for u in range(n_users):
        weight = popularity * np.exp(config.affinity * taste[u, topic])
        count = min(max(3, int(rng.poisson(config.interactions_per_user))), n_items)
        chosen = rng.choice(n_items, size=count, replace=False, p=weight / weight.sum())
        start = on_sale_from[chosen]
        stamps.append(start + (rng.random(count) * (END_MS - start)).astype(np.int64))
        users.append(np.full(count, u))
        items.append(chosen)
    user_col, item_col = np.concatenate(users), np.concatenate(items)
    item_ids = [f"T{i:09d}" for i in range(n_items)]
    user_ids = [f"TASTE{u:06d}" for u in range(n_users)]
    ratings = pl.DataFrame({
        "user_id": [user_ids[u] for u in user_col],
        "parent_asin": [item_ids[i] for i in item_col],
        "rating": np.full(len(user_col), 5.0),
        "timestamp": np.concatenate(stamps),
    }).with_row_index("ord")

    texts = [item_text(int(topic[i]), int(product[i]), int(adjective[i]), i) for i in
             range(n_items)]
    counts_per_item = np.bincount(item_col, minlength=n_items)
    items_frame = pl.DataFrame({
        "parent_asin": item_ids,
        "title": [t for t, _ in texts],
        "main_category": ["All Beauty"] * n_items,
        "model_text": [m for _, m in texts],
        "main_image_url": pl.Series([None] * n_items, dtype=pl.String),
        "average_rating": np.full(n_items, 5.0),
        "rating_number": counts_per_item.astype(np.int64),
        "image_path": pl.Series([None] * n_items, dtype=pl.String),
    })
    truth_items = pl.DataFrame({
        "parent_asin": item_ids, "topic": [TOPICS[t][0] for t in topic],
        "product_type": [PRODUCT_TYPES[p] for p in product], "popularity": popularity,
        "cold": cold, "interactions": counts_per_item.astype(np.int64)})
    truth_users = pl.DataFrame({"user_id": user_ids}).with_columns(
        pl.Series(f"taste_{TOPICS[t][0].replace(' ', '_')}", taste[:, t]) for t in range(k))

    name = f"{config.category}-tastes-{config.split}"
    final = Path(out) / name
    staging = Path(out) / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    counts: dict[str, int] = {"users": n_users, "items": n_items, "cold_items": int(cold.sum()),
                              "interactions": ratings.height}
    spill = staging.parent / f".{name}.spill"  # DuckDB's, if it spills: removed after
    con = _connect(spill)
    try:
        con.register("_ratings", ratings.to_arrow())
        con.execute("CREATE TEMP TABLE kcore AS SELECT * FROM _ratings")
        con.execute(f"CREATE TEMP TABLE split_rows AS {split_sql(config.split)}")
        columns, order = ", ".join(RATING_COLUMNS), "user_id, timestamp, ord"
        for suffix in (".csv", ".parquet"):
            _copy(con, f"SELECT {columns} FROM kcore", order,
                  staging / f"{config.category}{suffix}")
            for s in SPLIT_NAMES:
                _copy(con, f"SELECT {columns} FROM split_rows WHERE split = '{s}'", order,
                      staging / f"{config.category}.{s}{suffix}")
        for s in SPLIT_NAMES:
            counts[s] = con.execute("SELECT count(*) FROM split_rows WHERE split = ?",
                                    [s]).fetchone()[0]
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    items_frame.write_parquet(staging / f"{config.category}.items.parquet", compression="zstd")
    truth_items.write_parquet(staging / TRUTH_ITEMS, compression="zstd")
    truth_users.write_parquet(staging / TRUTH_USERS, compression="zstd")
    manifest = {
        "stage": "synth_tastes",
        "parameters": {**asdict(config), "valid_from_ms": VALID_FROM_MS,
                       "test_from_ms": TEST_FROM_MS},
        "counts": counts,
        "outputs": {p.name: sha256_file(p) for p in sorted(staging.iterdir())},
        "versions": versions(),
    }
    write_json_atomic(staging / "manifest.json", manifest)
    replace_path(staging, final)
    return TastesSummary(final, counts)
