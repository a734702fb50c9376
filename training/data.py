"""What the trainer reads: a slice's items, their weights, their images and their text.

- Items come from a slice (the text built by ``curate clean``); the target is average_rating.
- Weights are joined by parent_asin from a weights table; a train item without a weight is an
  error, never a silent 1 (validation and test are scored unweighted, as in the paper).
- Images: ``file://`` URLs are read where they point; http(s) URLs are read from the image
  cache that ``curate images fetch`` fills. An item without a readable image is fed a black
  image with its image features zeroed by the has_image flag, as the paper does, and counted.
  "Has an image" means an image was decoded: a file that exists but does not decode counts as
  none. A text-only model (image size None) reads no image at all.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.errors import UserError
from curation.images import resolve_image_paths
from curation.slices import Slice

TARGET = "average_rating"
ITEM_COLUMNS = (
    "parent_asin",
    "split",
    "category",
    "main_category",
    "model_text",
    TARGET,
    "rating_number",
    "main_image_url",
)
# ImageNet normalisation, as EfficientNet was trained.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# The columns of the challenge's test-input CSV.
CHALLENGE_COLUMNS = ("parent_asin", "main_category", "title", "features", "description",
                     "image_paths")


def load_training_items(slice_: Slice, weights_id: str) -> pl.DataFrame:
    """The slice's items with ``weight`` (train rows) and ``image_path`` (local file or null)."""
    from weighting.catalog_io import load_weights

    items = slice_.items(ITEM_COLUMNS)
    weights = load_weights(slice_, weights_id).select("parent_asin", "weight")
    if weights["parent_asin"].is_duplicated().any():
        raise UserError(f"weights {weights_id!r} of slice {slice_.name!r} repeat a parent_asin")
    frame = items.join(weights, on="parent_asin", how="left")
    train = frame.filter(pl.col("split") == "train")
    missing = train.filter(pl.col("weight").is_null())
    if missing.height:
        raise UserError(
            f"weights {weights_id!r} have no weight for {missing.height:,} train items of slice "
            f"{slice_.name!r} (first: {missing['parent_asin'][0]}); recompute them with "
            "curate weights compute"
        )
    bad = train.filter(~pl.col("weight").is_finite() | (pl.col("weight") < 0))
    if bad.height:
        raise UserError(
            f"weights {weights_id!r}: {bad.height:,} train weights are negative or not finite "
            f"(first: {bad['parent_asin'][0]} = {bad['weight'][0]})"
        )
    if float(train["weight"].sum()) <= 0:
        raise UserError(f"weights {weights_id!r}: every train weight is 0")
    paths = resolve_image_paths(frame["main_image_url"].to_list(), slice_.catalog.layout)
    return frame.with_columns(pl.Series("image_path", paths, dtype=pl.String))


def load_pixels(path: str | None, size: int) -> tuple[np.ndarray, bool]:
    """(normalised CHW float32 pixels, whether there was an image). No image or an unreadable
    one gives the normalised black image and False."""
    from PIL import Image

    if path is not None:
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(rgb, dtype=np.float32) / 255.0
            return ((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy(), True
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    black = np.zeros((size, size, 3), dtype=np.float32)
    return ((black - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy(), False


def read_bytes(path: str | None) -> bytes:
    if path is None:
        return b""
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


@dataclass
class Batch:
    index: Any  # LongTensor of row positions
    pixel_values: Any  # None where the dataset reads no images (a text-only model)
    has_image: Any  # 1.0 where an image was decoded, else 0.0
    input_ids: Any
    attention_mask: Any


class ItemDataset:
    """Rows of (text, image path); a torch Dataset by protocol (torch imported lazily). With
    ``image_size`` None (a text-only model) no image is opened: no pixels, has_image False."""

    def __init__(self, texts: Sequence[str], image_paths: Sequence[str | None],
                 image_size: int | None):
        self.texts = list(texts)
        self.image_paths = list(image_paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, bool, str]:
        if self.image_size is None:
            return i, None, False, self.texts[i]
        pixels, has_image = load_pixels(self.image_paths[i], self.image_size)
        return i, pixels, has_image, self.texts[i]


class Collate:
    """Stacks pixels and tokenises the batch's texts (in the DataLoader's workers)."""

    def __init__(self, tokenizer: Any, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def __call__(self, rows: list[tuple[int, np.ndarray | None, bool, str]]) -> Batch:
        import torch

        tokens = self.tokenizer(
            [r[3] for r in rows],
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return Batch(
            index=torch.tensor([r[0] for r in rows], dtype=torch.long),
            pixel_values=None if rows[0][1] is None
            else torch.from_numpy(np.stack([r[1] for r in rows])),
            has_image=torch.tensor([r[2] for r in rows], dtype=torch.float32),
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
        )


def data_loader(
    dataset: ItemDataset,
    tokenizer: Any,
    max_tokens: int,
    batch_size: int,
    workers: int,
    order: Sequence[int] | None = None,
) -> Any:
    """Batches in ``order`` (default: as stored). Decoding and tokenising run in ``workers``
    processes so that the model is not kept waiting."""
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers are the parallelism
    sampler = list(range(len(dataset))) if order is None else list(order)
    return torch.utils.data.DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=Collate(tokenizer, max_tokens),
        persistent_workers=False,
        # its own generator: a DataLoader otherwise draws its workers' seed from the global
        # RNG, and a run's dropout would depend on whether its items had to be encoded first
        generator=torch.Generator().manual_seed(0),
    )


def _as_list(value: Any) -> list[str]:
    """A features/description cell of the challenge CSV: a list written as JSON or Python, or
    plain text."""
    if value is None:
        return []
    text = str(value).strip()
    if text.startswith("["):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, list):
                return [str(v) for v in parsed if v is not None]
    return [text] if text else []


def _read_strict_csv(path: Path) -> pl.DataFrame:
    """A CSV of text columns (empty cells null), every row checked: a broken quote, a row
    with another number of fields, an empty or repeated parent_asin is an error naming its
    line (a prediction per item id, never two, never one silently shifted)."""
    import csv

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if not header:
                raise UserError(f"{path}: empty (expected a header: "
                                f"{', '.join(CHALLENGE_COLUMNS)})")
            if len(set(header)) != len(header):
                raise UserError(f"{path}:1: a column named twice in the header")
            rows, first_line, seen = [], [], {}
            while True:
                line = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    break
                if len(row) != len(header):
                    raise UserError(f"{path}:{line}: {len(row)} fields where the header has "
                                    f"{len(header)}")
                rows.append(row)
                first_line.append(line)
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    columns = {name: [row[i] or None for row in rows] for i, name in enumerate(header)}
    for asin, line in zip(columns.get("parent_asin", []), first_line, strict=True):
        if asin is None:
            raise UserError(f"{path}:{line}: empty parent_asin")
        if asin in seen:
            raise UserError(f"{path}:{line}: parent_asin {asin} again (first on line "
                            f"{seen[asin]}): one row per item")
        seen[asin] = line
    return pl.DataFrame(columns, schema=dict.fromkeys(header, pl.String))


def read_challenge_csv(path: Path | str, image_root: Path | str | None) -> pl.DataFrame:
    """The challenge's test-input CSV as trainer items (model_text built exactly as clean does;
    the first of the ';'-separated image paths, relative to ``image_root``)."""
    import duckdb

    from curation.clean import DESCRIPTION_TEXT, FEATURES_TEXT, MODEL_TEXT, TEXT_MACROS

    path = Path(path)
    raw = _read_strict_csv(path)
    absent = [c for c in CHALLENGE_COLUMNS if c not in raw.columns]
    if absent:
        raise UserError(f"{path}: missing column(s) {', '.join(absent)} (expected "
                        f"{', '.join(CHALLENGE_COLUMNS)})")
    root = Path(image_root) if image_root is not None else path.parent
    first_images = [
        str(root / first) if (first := (cell or "").split(";")[0].strip()) else None
        for cell in raw["image_paths"].to_list()
    ]
    table = raw.select("parent_asin", "main_category", "title").with_columns(
        pl.Series("features", [_as_list(v) for v in raw["features"].to_list()],
                  dtype=pl.List(pl.String)),
        pl.Series("description", [_as_list(v) for v in raw["description"].to_list()],
                  dtype=pl.List(pl.String)),
    ).to_arrow()
    con = duckdb.connect()
    con.execute(TEXT_MACROS)
    con.register("challenge", table)
    text = con.sql(f"""
        SELECT {MODEL_TEXT} AS model_text FROM (
            SELECT curate_clean_text(main_category) AS main_category_clean,
                   curate_clean_text(title) AS title_clean,
                   {FEATURES_TEXT.format(column="features")} AS features_text,
                   {DESCRIPTION_TEXT.format(column="description")} AS description_text
            FROM challenge)""").to_arrow_table()
    return pl.DataFrame({
        "parent_asin": raw["parent_asin"],
        "split": pl.Series(["test"] * raw.height, dtype=pl.String),
        "category": raw["main_category"],
        "main_category": raw["main_category"],
        "model_text": pl.from_arrow(text["model_text"]),
        TARGET: pl.Series([None] * raw.height, dtype=pl.Float64),
        "rating_number": pl.Series([None] * raw.height, dtype=pl.Int64),
        "image_path": pl.Series(resolve_image_paths(first_images), dtype=pl.String),
    })
