"""An image-text alignment: two small towers that project the cached image and text features
of the frozen encoders into one space, trained with a symmetric InfoNCE loss (CLIP's) on the
(text, image) pairs of a slice's train split.

Each tower standardises its features (train means and deviations), maps them linearly (or by
one hidden GELU layer, ``hidden`` > 0) to ``dim`` and normalises to unit length; the score of a
(text, image) pair is the cosine of their vectors. A batch's loss is the mean of the
text->image and image->text cross-entropies over its similarity matrix times a learned scale;
with sample weights each pair's two terms are weighted (every item of the batch is still a
negative for the others). Only items whose image was decoded take part.

Writes ``CATALOG/alignment/<slice>/model/`` (``projection.safetensors``: both towers, the
standardisation and the scale; ``manifest.json``: the encoders, the settings, the inputs'
fingerprints and the recall on the val split). It reads the embedding cache and never runs
the encoders, except to fill the cache for items it does not hold yet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.catalog import Catalog
from curation.errors import UserError
from curation.manifest import read_record, sha256_file
from curation.paths import MANIFEST
from curation.slices import Slice
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, NO_IMAGE_ENCODER

PROJECTION_FILE = "projection.safetensors"
RECALL_KS = (1, 10, 100)


@dataclass(frozen=True)
class AlignConfig:
    dim: int = 128  # the shared space's size
    hidden: int = 0  # 0: linear towers; else one hidden GELU layer of this width
    epochs: int = 60
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07  # the learned scale starts at 1 / temperature
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.hidden < 0 or self.lr <= 0 or self.temperature <= 0:
            raise UserError("hidden must be >= 0, lr and temperature > 0")


@dataclass
class Alignment:
    """Both towers as arrays: ``project_images`` / ``project_texts`` give unit vectors."""

    tensors: dict[str, np.ndarray]
    hidden: int

    def _tower(self, prefix: str, features: np.ndarray) -> np.ndarray:
        t = self.tensors
        x = (np.asarray(features, dtype=np.float32) - t[f"{prefix}_mean"]) / t[f"{prefix}_std"]
        if self.hidden:
            x = _gelu(x @ t[f"{prefix}.0.weight"].T + t[f"{prefix}.0.bias"])
            x = x @ t[f"{prefix}.2.weight"].T + t[f"{prefix}.2.bias"]
        else:
            x = x @ t[f"{prefix}.0.weight"].T + t[f"{prefix}.0.bias"]
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return (x / np.maximum(norms, 1e-12)).astype(np.float32)

    def project_images(self, features: np.ndarray) -> np.ndarray:
        return self._tower("image", features)

    def project_texts(self, features: np.ndarray) -> np.ndarray:
        return self._tower("text", features)

    @property
    def dim(self) -> int:
        key = "image.2.bias" if self.hidden else "image.0.bias"
        return int(self.tensors[key].shape[0])


def _gelu(x: np.ndarray) -> np.ndarray:
    # the tanh form, as the torch tower uses (nn.GELU(approximate="tanh"))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def train_alignment(
    image_features: np.ndarray,
    text_features: np.ndarray,
    weights: np.ndarray | None = None,
    config: AlignConfig = AlignConfig(),
) -> tuple[Alignment, list[float]]:
    """Fit both towers on paired rows (row i of each is one item). Returns the alignment and
    the mean loss per epoch."""
    import torch
    from torch import nn

    if len(image_features) != len(text_features):
        raise ValueError("image and text features must be paired row by row")
    if len(image_features) < 2:
        raise UserError(f"an alignment needs at least 2 items with an image, got "
                        f"{len(image_features)}")
    if weights is not None and (not np.all(np.isfinite(weights)) or np.any(weights < 0)
                                or weights.sum() <= 0):
        raise UserError("sample weights must be finite, non-negative and not all 0")
    torch.manual_seed(config.seed)
    tensors: dict[str, np.ndarray] = {}
    towers = {}
    inputs = {}
    for prefix, features in (("image", image_features), ("text", text_features)):
        x = np.asarray(features, dtype=np.float32)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std < 1e-6, 1.0, std).astype(np.float32)
        tensors[f"{prefix}_mean"], tensors[f"{prefix}_std"] = mean, std
        inputs[prefix] = torch.from_numpy((x - mean) / std)
        layers: list[nn.Module] = (
            [nn.Linear(x.shape[1], config.hidden), nn.GELU(approximate="tanh"),
             nn.Linear(config.hidden, config.dim)] if config.hidden
            else [nn.Linear(x.shape[1], config.dim)])
        towers[prefix] = nn.Sequential(*layers)
    log_scale = nn.Parameter(torch.tensor(math.log(1 / config.temperature)))
    params = [*towers["image"].parameters(), *towers["text"].parameters(), log_scale]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    w = torch.ones(len(image_features)) if weights is None else \
        torch.from_numpy(np.asarray(weights, dtype=np.float32))
    generator = torch.Generator().manual_seed(config.seed)
    n = len(image_features)
    losses: list[float] = []
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        total, seen = 0.0, 0
        for start in range(0, n, config.batch_size):
            rows = order[start : start + config.batch_size]
            if len(rows) < 2:  # one pair has no negative
                continue
            img = nn.functional.normalize(towers["image"](inputs["image"][rows]), dim=1)
            txt = nn.functional.normalize(towers["text"](inputs["text"][rows]), dim=1)
            logits = txt @ img.T * log_scale.clamp(max=math.log(100)).exp()
            target = torch.arange(len(rows))
            per_pair = (nn.functional.cross_entropy(logits, target, reduction="none")
                        + nn.functional.cross_entropy(logits.T, target, reduction="none")) / 2
            bw = w[rows]
            if bw.sum() <= 0:
                continue
            loss = (per_pair * bw).sum() / bw.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
        losses.append(total / max(seen, 1))
    for prefix, tower in towers.items():
        for name, value in tower.state_dict().items():
            tensors[f"{prefix}.{name}"] = value.detach().numpy().astype(np.float32)
    tensors["log_scale"] = np.array([float(log_scale.detach())], dtype=np.float32)
    return Alignment(tensors, config.hidden), losses


def own_ranks(text_vectors: np.ndarray, image_vectors: np.ndarray, targets: np.ndarray,
              chunk: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank, score, margin) of each text's target image among all ``image_vectors``: rank 1
    when no image scores higher; the score its cosine; the margin how many standard
    deviations it lies above the mean of the text's cosines to all images (a text that is
    close to every image gets no credit for it). Exact, in chunks of texts."""
    ranks = np.empty(len(text_vectors), dtype=np.int64)
    scores = np.empty(len(text_vectors), dtype=np.float32)
    margins = np.empty(len(text_vectors), dtype=np.float64)
    for start in range(0, len(text_vectors), chunk):
        sims = text_vectors[start : start + chunk] @ image_vectors.T
        own = sims[np.arange(len(sims)), targets[start : start + chunk]]
        ranks[start : start + chunk] = 1 + (sims > own[:, None]).sum(axis=1)
        scores[start : start + chunk] = own
        spread = np.maximum(sims.std(axis=1), 1e-12)
        margins[start : start + chunk] = (own - sims.mean(axis=1)) / spread
    return ranks, scores, margins


def recall_at(ranks: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """Share of queries whose target ranks within k, per k."""
    return {f"recall@{k}": float((ranks <= k).mean()) if len(ranks) else float("nan")
            for k in ks}


# --- a slice's towers and the catalog's alignment -----------------------------------------------


@dataclass
class SliceFeatures:
    """A slice's items (stored order) with both towers' cached features, image rows only."""

    items: pl.DataFrame  # parent_asin, split, title, model_text, image_path, ...
    image: np.ndarray
    text: np.ndarray
    encoders: dict[str, str]
    encoder_key: str
    encoders_ran: dict[str, Any] = field(default_factory=dict)


def slice_features(slice_: Slice, *, image_encoder: str = DEFAULT_IMAGE_ENCODER,
                   text_encoder: str = DEFAULT_TEXT_ENCODER, workers: int = 1) -> SliceFeatures:
    """The slice's items whose image was decoded, with their cached image and text features
    (the cache is filled first for items it lacks)."""
    from training.embeddings import embed_slice, encoders_ran
    from training.model import model_for_run

    if image_encoder == NO_IMAGE_ENCODER:
        raise UserError("an alignment needs an image encoder (got 'none')")
    items, embedded = embed_slice(slice_, image_encoder=image_encoder,
                                  text_encoder=text_encoder, workers=workers)
    loaded, _, _ = model_for_run(image_encoder, text_encoder, seed=0, shared_encoders=True)
    image_dim = loaded.model.image_dim
    keep = embedded.has_image
    if not keep.any():
        raise UserError(f"slice {slice_.name!r} has no item with a decoded image "
                        "(curate images fetch)")
    features = embedded.features[keep]
    return SliceFeatures(items.filter(pl.Series(keep)), features[:, :image_dim],
                         features[:, image_dim:],
                         {"image_encoder": image_encoder, "text_encoder": text_encoder},
                         embedded.encoder_key, encoders_ran(embedded))


def encode_texts(texts: Sequence[str], *, image_encoder: str = DEFAULT_IMAGE_ENCODER,
                 text_encoder: str = DEFAULT_TEXT_ENCODER, batch_size: int = 64) -> np.ndarray:
    """The text tower's features (the CLS token, as the cache holds them) of free texts: a
    query and its entities, which no cache holds."""
    import torch

    from training.model import MAX_TOKENS, model_for_run

    loaded, _, _ = model_for_run(image_encoder, text_encoder, seed=0, shared_encoders=True)
    model = loaded.model.eval()
    blocks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tokens = loaded.tokenizer(list(texts[start : start + batch_size]), padding=True,
                                      truncation=True, max_length=MAX_TOKENS,
                                      return_tensors="pt")
            blocks.append(model._text_features(tokens["input_ids"], tokens["attention_mask"])
                          .numpy().astype(np.float32))
    dim = loaded.model.text_dim
    return np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=np.float32)


@dataclass
class AlignResult:
    folder: Path
    train_pairs: int
    val_recall: dict[str, float]
    seconds: float
    losses: list[float]


def align_slice(
    catalog: Catalog | Path | str,
    slice_name: str,
    *,
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    weights_id: str | None = None,
    config: AlignConfig = AlignConfig(),
    workers: int = 1,
) -> AlignResult:
    """Train the alignment on the slice's train pairs (weighted by ``weights_id``'s table if
    given) and write it to ``CATALOG/alignment/<slice>/model/``."""
    from safetensors.numpy import save_file

    started = time.perf_counter()
    catalog = Catalog.of(catalog)
    slice_ = Slice.open(catalog, slice_name)
    table = None
    if weights_id is not None:  # an unknown id fails before any encoding
        from weighting.catalog_io import load_weights

        table = load_weights(slice_, weights_id)
    data = slice_features(slice_, image_encoder=image_encoder, text_encoder=text_encoder,
                          workers=workers)
    train = (data.items["split"] == "train").to_numpy()
    if train.sum() < 2:
        raise UserError(f"slice {slice_name!r} has {int(train.sum())} train items with an "
                        "image; an alignment needs at least 2")
    weights = None
    inputs = {"slice": sha256_file(slice_.path)}
    if table is not None:
        column = "weight" if "weight" in table.columns else table.columns[-1]
        joined = data.items.select("parent_asin").join(
            table.select("parent_asin", column), on="parent_asin", how="left")
        weights = joined[column].fill_null(0.0).to_numpy().astype(np.float64)[train]
        inputs["weights"] = sha256_file(catalog.layout.weights_file(slice_name, weights_id))
    alignment, losses = train_alignment(data.image[train], data.text[train], weights, config)
    val = (data.items["split"] == "val").to_numpy()
    ranks, _, _ = own_ranks(alignment.project_texts(data.text[val]),
                         alignment.project_images(data.image[val]), np.arange(int(val.sum())))
    val_recall = recall_at(ranks)
    folder = catalog.layout.alignment_dir(slice_name)
    with catalog.publish(folder, f"align-{slice_name}") as staged:
        save_file(alignment.tensors, str(staged.path / PROJECTION_FILE))
        staged.manifest = {
            "stage": "align", "slice": slice_name, "encoders": data.encoders,
            "encoder_key": data.encoder_key, "encoders_ran": data.encoders_ran,
            "parameters": asdict(config), "weights": weights_id, "inputs": inputs,
            "counts": {"train_pairs": int(train.sum()), "val_pairs": int(val.sum())},
            "final_loss": losses[-1] if losses else None,
            "val_recall": val_recall,
            "val_recall_among": "the val split's images",
        }
    return AlignResult(folder, int(train.sum()), val_recall, time.perf_counter() - started,
                       losses)


def load_alignment(catalog: Catalog | Path | str, slice_name: str
                   ) -> tuple[Alignment, dict[str, Any]]:
    """The slice's alignment and its manifest; a missing one is a UserError saying how to
    make it."""
    from safetensors.numpy import load_file

    folder = Catalog.of(catalog).layout.alignment_dir(slice_name)
    if not (folder / MANIFEST).exists():
        raise UserError(f"no alignment for slice {slice_name!r}: run curate align train "
                        f"--slice {slice_name} first")
    manifest = read_record(folder / MANIFEST)
    tensors = load_file(str(folder / PROJECTION_FILE))
    return Alignment(tensors, int(manifest["parameters"]["hidden"])), manifest
