"""A benchmark folder as integer-indexed interaction matrices.

A folder written by ``curate recsys export`` (or ``curation.synth.tastes``) holds
``<category>.{train,valid,test}.parquet`` (``user_id, parent_asin, rating, timestamp``),
``<category>.items.parquet`` (``parent_asin, model_text, image_path``, ...) and
``manifest.json``. Users and items become integers in sorted id order, so the same folder
gives the same matrices. Every interaction is positive feedback (implicit, as the official
benchmark uses it); the rating is kept in the files but not used.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from curation.errors import UserError
from curation.manifest import read_record
from curation.recsys import RATING_COLUMNS, SPLIT_NAMES

ITEM_SUFFIX = ".items.parquet"
EVAL_SPLITS = ("valid", "test")


@dataclass
class Benchmark:
    folder: Path
    category: str
    split_method: str  # last_out, timestamp, or what the manifest says
    user_ids: list[str]
    item_ids: list[str]
    matrices: dict[str, sp.csr_matrix]  # train / valid / test: users x items, 1.0 per pair
    item_text: list[str | None]
    image_paths: list[str | None]
    manifest: dict[str, Any] = field(default_factory=dict)
    text_source: str = "items table"

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def train(self) -> sp.csr_matrix:
        return self.matrices["train"]

    def item_train_counts(self) -> np.ndarray:
        return np.asarray(self.train.sum(axis=0)).ravel()

    def cold_items(self) -> np.ndarray:
        """Items with no train interaction (bool per item)."""
        return self.item_train_counts() == 0

    def seen_before(self, split: str) -> sp.csr_matrix:
        """What a user is known to have had before ``split``: train for valid, train + valid
        for test. These are left out of the user's ranking."""
        if split == "valid":
            return self.train
        if split == "test":
            return (self.train + self.matrices["valid"]).tocsr()
        raise ValueError(f"no ranking for split {split!r}")


def _category(folder: Path) -> str:
    trains = sorted(folder.glob("*.train.parquet"))
    if len(trains) != 1:
        raise UserError(f"{folder}: expected one <category>.train.parquet (a folder written by "
                        f"`curate recsys export`), found {len(trains)}")
    return trains[0].name.removesuffix(".train.parquet")


def model_text_from_table(frame: pl.DataFrame) -> pl.Series:
    """Item text in the model's format (``Main category / Title / Features / Description``,
    as ``curate clean`` writes ``model_text``) from a metadata table with some of the columns
    ``main_category, title, features, details, description``. A partial export without
    ``features`` (the shared All_Beauty item file) gets its ``details`` dict's ``key: value``
    pairs as features."""
    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        return "" if value is None else str(value).strip()

    def listed(text: str) -> list[str]:
        if text.startswith(("[", "{")):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return [text]
            if isinstance(parsed, dict):
                return [f"{k}: {v}" for k, v in parsed.items()]
            if isinstance(parsed, list):
                return [str(v) for v in parsed if v is not None]
        return [text] if text else []

    texts = []
    for row in frame.iter_rows(named=True):
        features = listed(cell(row, "features")) or listed(cell(row, "details"))
        texts.append(
            f"Main category: {cell(row, 'main_category')}\n"
            f"Title: {cell(row, 'title')}\n"
            f"Features: {' | '.join(features)}\n"
            f"Description: {' '.join(listed(cell(row, 'description')))}")
    return pl.Series("model_text", texts, dtype=pl.String)


def _read_item_text(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else \
        pl.read_csv(path, infer_schema=False)
    if "parent_asin" not in frame.columns:
        raise UserError(f"{path}: no parent_asin column (it has {', '.join(frame.columns)})")
    if "model_text" not in frame.columns:
        frame = frame.with_columns(model_text_from_table(frame))
    return frame.select("parent_asin", "model_text").unique("parent_asin", keep="first")


def load_benchmark(folder: Path | str, *, item_text: Path | str | None = None) -> Benchmark:
    """Read a benchmark folder. ``item_text``: a CSV or Parquet of item metadata (with
    ``parent_asin``; ``model_text``, or ``title``/``description``/``details``/... to build
    it) whose text replaces the items table's, for a benchmark cut from a catalog without
    cleaned items."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    category = _category(folder)
    manifest_path = folder / "manifest.json"
    manifest = read_record(manifest_path) if manifest_path.exists() else {}
    frames = {}
    for split in SPLIT_NAMES:
        path = folder / f"{category}.{split}.parquet"
        if not path.exists():
            raise UserError(f"{folder}: {path.name} is missing")
        frame = pl.read_parquet(path)
        missing = [c for c in RATING_COLUMNS if c not in frame.columns]
        if missing:
            raise UserError(f"{path}: lacks the columns {', '.join(missing)}")
        frames[split] = frame
    items_path = folder / f"{category}{ITEM_SUFFIX}"
    if items_path.exists():
        items = pl.read_parquet(items_path)
    else:  # a folder with ratings only: the items are those of the interactions
        items = pl.DataFrame({"parent_asin": sorted(set().union(
            *(set(f["parent_asin"].to_list()) for f in frames.values())))})
    for column in ("model_text", "image_path"):
        if column not in items.columns:
            items = items.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    items = items.sort("parent_asin")
    text_source = "items table"
    if item_text is not None:
        text = _read_item_text(Path(item_text)).rename({"model_text": "_given"})
        items = items.join(text, on="parent_asin", how="left").with_columns(
            pl.coalesce("_given", "model_text").alias("model_text")).drop("_given")
        text_source = str(item_text)
    item_ids = items["parent_asin"].to_list()
    item_index = {a: i for i, a in enumerate(item_ids)}
    user_ids = sorted(set().union(*(set(f["user_id"].to_list()) for f in frames.values())))
    user_index = {u: i for i, u in enumerate(user_ids)}
    matrices = {}
    for split, frame in frames.items():
        unknown = set(frame["parent_asin"].to_list()) - item_index.keys()
        if unknown:
            raise UserError(f"{folder}: {len(unknown)} items of {split} are not in "
                            f"{items_path.name} (e.g. {sorted(unknown)[0]})")
        rows = np.fromiter((user_index[u] for u in frame["user_id"].to_list()), np.int64,
                           frame.height)
        cols = np.fromiter((item_index[a] for a in frame["parent_asin"].to_list()), np.int64,
                           frame.height)
        matrix = sp.csr_matrix((np.ones(frame.height, np.float32), (rows, cols)),
                               shape=(len(user_ids), len(item_ids)))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0  # a repeated pair is still one interaction
        matrices[split] = matrix
    split_method = str(manifest.get("parameters", {}).get("split", "unknown"))
    return Benchmark(folder, category, split_method, user_ids, item_ids, matrices,
                     items["model_text"].to_list(), items["image_path"].to_list(), manifest,
                     text_source)
