"""The frozen-mode embedding cache: each item is encoded once by the frozen encoders.

Layout: ``CATALOG/embeddings/<encoder key>/`` holds ``encoder.json`` (what the key stands
for), ``calibration.safetensors`` (a random image encoder's batch-norm statistics) and
``part-<hash>.parquet`` shards of (content_key, has_image, features). The encoder key hashes
the image and text encoders' names, the image size, the token limit and, for a random image
encoder, the calibration images; the content key hashes an item's text and image bytes. So
another slice, weighting or seed reuses every embedding it can, and a changed text or image
is encoded again. Shards are written whole (temporary name, then rename), every few thousand
items, so that an interrupted encoding keeps what it finished.

Items are encoded in order of their token count (``by_token_count``: batches of texts of about
the same length, so little padding) and stored under their content keys: the order changes
the time and the floats' last bits (a batch's padding). ``CURATE_ENCODE_PRECISION=bfloat16``
encodes under bfloat16 autocast (other features: its own key).

A text-only model (image encoder ``none``) has a key of its own (its description names no
image encoder and another feature size), reads no image, and keys its items by text alone.
``has_image`` is True only where an image was decoded, so a cache says how many items the
image encoder actually saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curation.catalog import parquet_source
from curation.errors import UserError
from curation.images import resolve_image_paths
from curation.manifest import atomic_file, write_json_atomic
from curation.progress import progress_bar
from curation.slices import Slice
from curation.split import stable_hash_sql
from training.data import Batch, ItemDataset, data_loader, load_pixels, read_bytes
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, ENCODE_BATCH_SIZE
from training.model import MAX_TOKENS, LoadedModel, is_random_image_encoder, model_for_run

CALIBRATION_IMAGES = 256
SHARD_ITEMS = 4096
CALIBRATION_FILE = "calibration.safetensors"
# Frozen encoding in float32 (default) or under bfloat16 autocast: several times faster where
# the hardware has bfloat16 units (GPUs; CPUs with AMX), other features (bench/encode.py).
PRECISION_ENV = "CURATE_ENCODE_PRECISION"
ENCODE_PRECISIONS = ("float32", "bfloat16")


def encode_precision() -> str:
    """The frozen encoders' precision: ``CURATE_ENCODE_PRECISION``, float32 if unset."""
    value = os.environ.get(PRECISION_ENV, "").strip().lower() or "float32"
    if value not in ENCODE_PRECISIONS:
        raise UserError(f"{PRECISION_ENV}={value!r}: choose one of {', '.join(ENCODE_PRECISIONS)}")
    return value


# Config fields that name a version or a path, not the architecture.
_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "architectures",
                         "_attn_implementation_autoset", "_attn_implementation", "torch_dtype",
                         "dtype")


def _config_digest(*encoders: torch.nn.Module | None) -> str:
    digest = hashlib.sha256()
    for encoder in encoders:
        if encoder is None:  # a text-only model: no image encoder
            digest.update(b"none")
            continue
        config = {k: v for k, v in encoder.config.to_dict().items()
                  if k not in _VOLATILE_CONFIG_KEYS}
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def content_key(text: str, image_bytes: bytes) -> str:
    digest = hashlib.sha256(text.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(image_bytes)
    return digest.hexdigest()[:32]


def content_keys(texts: Sequence[str], image_paths: Sequence[str | None]) -> list[str]:
    return [content_key(t, read_bytes(p)) for t, p in zip(texts, image_paths, strict=True)]


def _batch_norms(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def batch_norm_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The batch-norm running statistics of a module, by their state-dict names."""
    names = {id(m): n for n, m in module.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for bn in _batch_norms(module):
        prefix = names[id(bn)]
        state[f"{prefix}.running_mean"] = bn.running_mean.detach().clone()
        state[f"{prefix}.running_var"] = bn.running_var.detach().clone()
    return state


def calibrate_batch_norms(
    encoder: torch.nn.Module, image_paths: Sequence[str], image_size: int, batch_size: int = 32
) -> None:
    """Set a random image encoder's batch-norm statistics to the exact averages over
    ``image_paths`` (cumulative averaging; no weights change)."""
    norms = _batch_norms(encoder)
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average rather than an exponential one
    encoder.train()
    # train mode runs EfficientNet's stochastic depth: on a forked RNG, so that whether a
    # calibration was cached or computed does not change the run's random stream
    with torch.no_grad(), torch.random.fork_rng():
        for start in range(0, len(image_paths), batch_size):
            chunk = image_paths[start : start + batch_size]
            if len(chunk) < 2:  # batch norm needs two images to have a variance
                break
            pixels = np.stack([load_pixels(p, image_size)[0] for p in chunk])
            encoder(pixel_values=torch.from_numpy(pixels))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    encoder.eval()


@dataclass
class Embeddings:
    features: np.ndarray  # (items, image_dim + text_dim), float32, image part zeroed if no image
    has_image: np.ndarray  # (items,) bool: an image was decoded (always False: text-only)
    encoder_key: str
    encoded_now: int  # items that were not in the cache
    seconds_encoding: float
    image_source: str  # where the encoders' weights came from (LoadedModel's sources)
    text_source: str
    with_image: int  # items of these with an image decoded: has_image.sum()
    encoders: dict[str, dict[str, Any]]  # training.encoders.describe_encoders of them
    precision: str = "float32"  # the encoders' (ENCODE_PRECISIONS)


def encoders_ran(embedded: Embeddings) -> dict[str, Any]:
    """What an ``embed_slice`` (or ``EmbeddingCache.embed``) call ran, for a report:
    ``describe_encoders`` of the encoders (``image`` and ``text``: configured, loaded,
    pretrained, ran, label) plus ``items`` (how many were embedded) and ``with_image`` (how
    many of them had an image decoded; 0 for a text-only model) and ``precision`` (float32
    or bfloat16)."""
    return {**embedded.encoders, "items": len(embedded.has_image),
            "with_image": embedded.with_image, "precision": embedded.precision}


def by_token_count(rows: list[int], texts: Sequence[str], tokenizer: Any,
                   chunk: int = 8192) -> list[int]:
    """``rows`` ordered by their text's token count (at most MAX_TOKENS), ties in their order.

    A batch is padded to its longest text and MiniLM's cost grows faster than the length
    (attention): batches of texts of about the same length skip most of the padding (real
    metadata texts range from 20 to 256 tokens). The order is a function of the texts
    alone, so both engines cut the same batches."""
    counts: list[int] = []
    # in chunks: the token ids of a large slice's every text at once would not fit in memory
    for start in range(0, len(rows), chunk):
        part = [texts[i] for i in rows[start:start + chunk]]
        encoded = tokenizer(part, truncation=True, max_length=MAX_TOKENS)["input_ids"]
        counts += [len(ids) for ids in encoded]
    return [row for _, row in sorted(zip(counts, rows, strict=True), key=lambda pair: pair[0])]


# (features float32 (items, feature_dim), has_image bool (items,)) of one batch, in its order
EncodedBatch = tuple[np.ndarray, np.ndarray]


def encode_batch(model: torch.nn.Module, batch: Batch,
                 precision: str = "float32") -> EncodedBatch:
    """The frozen encoders' fused features of one collated batch, on the model's device, in
    ``precision`` (``ENCODE_PRECISIONS``; stored as float32 either way). Both engines encode
    through here, batch by batch alike, so their floats agree."""
    device = next(model.parameters()).device
    pixels = None if batch.pixel_values is None else batch.pixel_values.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=precision == "bfloat16")
    with torch.no_grad(), autocast:
        fused = model.encode(pixels, batch.input_ids.to(device),
                             batch.attention_mask.to(device), batch.has_image.to(device))
    return fused.float().cpu().numpy(), batch.has_image.numpy() > 0


class EmbeddingCache:
    def __init__(self, root: Path, loaded: LoadedModel, calibration_paths: Sequence[str] = ()):
        self.loaded = loaded
        model = loaded.model
        self.reads_images = model.image_encoder is not None
        description: dict[str, Any] = {
            "image_encoder": loaded.image_source,
            "text_encoder": loaded.text_source,
            "image_size": model.image_size,
            "max_tokens": MAX_TOKENS,
            "feature_dim": model.image_dim + model.text_dim,
            # the encoders' architectures, so that a changed tiny configuration is not mixed up
            "configs": _config_digest(model.image_encoder, model.text_encoder),
        }
        self.precision = encode_precision()
        if self.precision != "float32":  # absent at float32: earlier caches keep their keys
            description["precision"] = self.precision
        self.calibration_paths = list(calibration_paths)
        if is_random_image_encoder(loaded.image_source) and len(self.calibration_paths) < 2:
            # No local train images (URLs not fetched yet): the items' image features are
            # zeroed by the has_image flag anyway, so there is nothing to calibrate for.
            print("note: no local train images to calibrate the random image encoder on "
                  "(curate images fetch); image features are zeroed", file=sys.stderr)
            self.calibration_paths = []
        if is_random_image_encoder(loaded.image_source) and self.calibration_paths:
            calibration = hashlib.sha256()
            for path in self.calibration_paths:
                calibration.update(hashlib.sha256(read_bytes(path)).digest())
            description["calibration_images"] = len(self.calibration_paths)
            description["calibration_sha256"] = calibration.hexdigest()
        self.description = description
        self.key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / self.key

    def prepare_encoders(self) -> None:
        """Load (or compute and store) a random image encoder's calibration, then freeze."""
        from safetensors.torch import load_file, save_file

        model = self.loaded.model
        if "calibration_sha256" in self.description:
            stored = self.dir / CALIBRATION_FILE
            if stored.exists():
                model.image_encoder.load_state_dict(load_file(stored), strict=False)
            else:
                calibrate_batch_norms(model.image_encoder, self.calibration_paths, model.image_size)
                with atomic_file(stored) as tmp:
                    save_file(batch_norm_state(model.image_encoder), str(tmp))
        self.dir.mkdir(parents=True, exist_ok=True)
        encoder_json = self.dir / "encoder.json"
        if not encoder_json.exists():
            write_json_atomic(encoder_json, self.description)
        model.eval()
        for encoder in (model.image_encoder, model.text_encoder):
            for p in encoder.parameters() if encoder is not None else ():
                p.requires_grad_(False)

    def _stored_keys(self) -> set[str]:
        keys: set[str] = set()
        for part in self.dir.glob("part-*.parquet"):
            keys.update(pq.read_table(part, columns=["content_key"]).column(0).to_pylist())
        return keys

    def embed(
        self,
        texts: Sequence[str],
        image_paths: Sequence[str | None],
        batch_size: int = ENCODE_BATCH_SIZE,
        workers: int = 1,
        label: str = "encoding",
        *,
        engine: str = "local",
        ray_address: str = "auto",
    ) -> Embeddings:
        """Features for every item, encoding only those the cache does not hold.

        ``engine="ray"``: the batches are encoded by Ray actors (training.encode_ray); they are
        the local engine's batches and this process writes the shards, so the cache gets the
        same bytes."""
        import time

        self.prepare_encoders()
        if not self.reads_images:  # text only: keyed by the text, no image file read
            image_paths = [None] * len(texts)
        keys = content_keys(texts, image_paths)
        known = self._stored_keys()
        todo: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in known and key not in todo:
                todo[key] = i
        started = time.perf_counter()
        if todo:
            rows = by_token_count([*todo.values()], texts, self.loaded.tokenizer)
            if engine == "ray":
                from training.encode_ray import encode_on_ray

                batches = encode_on_ray(self, [texts[i] for i in rows],
                                        [image_paths[i] for i in rows], batch_size, ray_address)
            else:
                batches = self._encode_locally(rows, texts, image_paths, batch_size, workers)
            self._store(batches, [keys[i] for i in rows], label)
        seconds = time.perf_counter() - started
        features, has_image = self._gather(keys)
        return Embeddings(features, has_image, self.key, len(todo), seconds,
                          self.loaded.image_source, self.loaded.text_source,
                          int(has_image.sum()), self.loaded.describe(), self.precision)

    def _encode_locally(
        self,
        rows: list[int],
        texts: Sequence[str],
        image_paths: Sequence[str | None],
        batch_size: int,
        workers: int,
    ) -> Iterator[EncodedBatch]:
        model = self.loaded.model
        dataset = ItemDataset([texts[i] for i in rows], [image_paths[i] for i in rows],
                              model.image_size)
        # batches of consecutive rows, the last one short: encode_ray.batch_bounds's batches
        for batch in data_loader(dataset, self.loaded.tokenizer, MAX_TOKENS, batch_size, workers):
            yield encode_batch(model, batch, self.precision)

    def _store(self, batches: Iterable[EncodedBatch], keys: list[str], label: str) -> None:
        """Write the encoded batches of ``keys`` (in order) as shards: a shard closes at the
        first batch end at or past SHARD_ITEMS items, whichever engine encoded them."""
        pending_keys: list[str] = []
        pending_features: list[np.ndarray] = []
        pending_images: list[np.ndarray] = []
        done = 0
        bar = progress_bar(label, total=len(keys), unit="items", lines_when_logged=True)
        with bar as advance:
            for features, has_image in batches:
                pending_keys += keys[done : done + len(features)]
                done += len(features)
                pending_features.append(features)
                pending_images.append(has_image)
                advance(len(features))
                if len(pending_keys) >= SHARD_ITEMS:
                    self._write_shard(pending_keys, pending_features, pending_images)
                    pending_keys, pending_features, pending_images = [], [], []
        if done != len(keys):
            raise RuntimeError(f"{done} items encoded of {len(keys)}")
        if pending_keys:
            self._write_shard(pending_keys, pending_features, pending_images)

    def _write_shard(
        self, keys: list[str], features: list[np.ndarray], has_image: list[np.ndarray]
    ) -> None:
        matrix = np.concatenate(features)
        flat = pa.array(matrix.reshape(-1), type=pa.float32())
        table = pa.table({
            "content_key": pa.array(keys, type=pa.string()),
            "has_image": pa.array(np.concatenate(has_image)),
            "features": pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1]),
        })
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        with atomic_file(self.dir / f"part-{name}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def _gather(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        wanted = set(keys)
        position: dict[str, int] = {}
        blocks: list[np.ndarray] = []
        images: list[np.ndarray] = []
        offset = 0
        for part in sorted(self.dir.glob("part-*.parquet")):
            table = pq.read_table(part)
            part_keys = table.column("content_key").to_pylist()
            take = [i for i, k in enumerate(part_keys) if k in wanted and k not in position]
            if not take:
                continue
            column = table.column("features").combine_chunks()
            dim = column.type.list_size
            matrix = column.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
            blocks.append(matrix[take])
            images.append(table.column("has_image").to_numpy(zero_copy_only=False)[take])
            for j, i in enumerate(take):
                position[part_keys[i]] = offset + j
            offset += len(take)
        missing = [k for k in keys if k not in position]
        if missing:
            raise RuntimeError(f"embedding cache {self.dir} lacks {len(missing)} items after "
                               "encoding (was it changed while running?)")
        order = np.array([position[k] for k in keys], dtype=np.int64)
        return np.concatenate(blocks)[order], np.concatenate(images)[order]


# --- a slice's embeddings ---------------------------------------------------------------------


def calibration_paths(slice_: Slice) -> list[str]:
    """Up to CALIBRATION_IMAGES train images of the slice's split, in stable-hash order.

    They come from the split, not the slice, so every slice cut from one split (any fraction,
    any slice seed) calibrates a random image encoder alike and shares one embedding cache."""
    import duckdb

    layout = slice_.catalog.layout
    silver = layout.silver_items(slice_.profile)
    split = layout.split_assignments(slice_.profile, slice_.split_seed)
    candidates = duckdb.sql(f"""
        SELECT s.main_image_url
        FROM {parquet_source(silver)} AS s JOIN {parquet_source(split)} AS a USING (parent_asin)
        WHERE a.split = 'train' AND s.main_image_url IS NOT NULL
        ORDER BY {stable_hash_sql("calibration", "s.parent_asin")}, s.parent_asin
        LIMIT {4 * CALIBRATION_IMAGES}""").fetchall()
    paths = resolve_image_paths([url for (url,) in candidates], layout)
    return [p for p in paths if p is not None][:CALIBRATION_IMAGES]


def embedding_cache(slice_: Slice, loaded: LoadedModel) -> EmbeddingCache:
    """The catalog's embedding cache for these encoders (a random image encoder calibrated on
    the slice's split; no other looks for calibration images)."""
    calibration = calibration_paths(slice_) if is_random_image_encoder(loaded.image_source) \
        else []
    return EmbeddingCache(slice_.catalog.layout.embeddings, loaded, calibration)


def embed_slice(
    slice_: Slice,
    *,
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    columns: Sequence[str] | None = None,
    workers: int = 1,
    batch_size: int = ENCODE_BATCH_SIZE,
    engine: str = "local",
    ray_address: str = "auto",
) -> tuple[pl.DataFrame, Embeddings]:
    """The slice's items (stored order, ``columns`` or all, with ``image_path``) and their
    frozen-encoder features from the embedding cache; items not in it yet are encoded and
    added. The trainer's frozen mode, a study's up-front encoding and the label-quality audit
    all read embeddings through here. ``image_encoder="none"``: text features only.
    ``encoders_ran(embeddings)`` says which encoders ran and how many items had an image.
    ``engine="ray"`` encodes on Ray actors (``ray_address``), into the same cache bytes."""
    loaded, _, _ = model_for_run(image_encoder, text_encoder, seed=0, shared_encoders=True)
    items = slice_.items(columns)
    paths = resolve_image_paths(items["main_image_url"].to_list(), slice_.catalog.layout)
    embedded = embedding_cache(slice_, loaded).embed(
        items["model_text"].to_list(), paths, batch_size, workers, f"encoding {slice_.name}",
        engine=engine, ray_address=ray_address)
    return items.with_columns(pl.Series("image_path", paths, dtype=pl.String)), embedded
