"""``curate train``: one run of EffiMiniVLM on a slice with a weighting, frozen or finetuned.

A run folder holds:

- ``config.json``: everything that decides the result (a rerun with another config is refused);
- ``checkpoint/``: the last finished epoch (weights, optimizer, RNG, early-stopping state) and
  the best epoch's weights, as safetensors; an interrupted run resumes from it and ends
  exactly as an uninterrupted one (per-epoch shuffles are seeded by (seed, epoch)); removed
  when the run completes unless asked to keep it;
- ``metrics.json``: val and test scores (PLCC, PLCC+, Spearman, MAE, RMSE, CES with the
  model's own parameters and FLOPs), per category and per rating-count decile, the history;
- ``predictions.parquet``: every item of the slice with its prediction (best epoch);
- ``training_dynamics.parquet``: each train item's prediction and loss in every epoch (from
  the batch it was trained in), for data maps;
- ``model.safetensors``: the best weights (frozen mode: the head, and a random image
  encoder's calibrated batch norms in ``encoder_state.safetensors``);
- ``manifest.json``: inputs' fingerprints, counts, versions; written last, so its presence
  says the run is complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from curation.catalog import Catalog
from curation.images import resolve_image_paths
from curation.manifest import sha256_file, versions, write_json_atomic
from curation.paths import CatalogLayout
from curation.progress import progress_bar
from training.data import TARGET, ItemDataset, data_loader, load_training_items
from training.embeddings import CALIBRATION_IMAGES, EmbeddingCache, batch_norm_state
from training.loss import DEFAULT_HUBER_DELTA, weighted_huber
from training.metrics import evaluate, pearson
from training.model import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    MAX_TOKENS,
    EffiMiniVLM,
    LoadedModel,
    build_model,
    count_flops,
    count_parameters,
    efficiency,
    is_random_image_encoder,
)

MODES = ("frozen", "finetune")
# finetune is the paper's recipe. frozen trains only the head on cached embeddings, which
# wants a larger step and more epochs (these are this project's defaults, not the paper's).
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "finetune": {"epochs": 10, "batch_size": 32, "lr": 2e-5, "patience": 1},
    "frozen": {"epochs": 30, "batch_size": 64, "lr": 1e-3, "patience": 3},
}


@dataclass(frozen=True)
class TrainConfig:
    catalog: str
    slice: str
    weights: str
    mode: str = "frozen"
    seed: int = 42
    image_encoder: str = DEFAULT_IMAGE_ENCODER
    text_encoder: str = DEFAULT_TEXT_ENCODER
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    patience: int | None = None
    weight_decay: float = 0.01
    warmup: float = 0.1
    clip: float = 1.0
    huber_delta: float = DEFAULT_HUBER_DELTA
    renormalise: bool = False

    def resolved(self) -> TrainConfig:
        """The config with the mode's defaults filled in (and checked)."""
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        filled = {k: v if v is not None else MODE_DEFAULTS[self.mode].get(k)
                  for k, v in asdict(self).items()}
        config = TrainConfig(**filled)
        checks = {
            "epochs": config.epochs >= 1,
            "batch_size": config.batch_size >= 1,
            "lr": config.lr > 0,
            "patience": config.patience >= 1,
            "warmup": 0 <= config.warmup < 1,
            "clip": config.clip > 0,
            "huber_delta": config.huber_delta > 0,
        }
        for name, ok in checks.items():
            if not ok:
                option = name.replace("_", "-")
                raise ValueError(f"--{option} {getattr(config, name)} is out of range")
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, Any]
    resumed_from_epoch: int = 0
    already_complete: bool = False
    notes: list[str] = field(default_factory=list)


def lr_at(step: int, total: int, warmup_share: float, base: float) -> float:
    """Linear warm-up over the first share of steps, then cosine decay to 0 (as
    transformers' get_cosine_schedule_with_warmup, which the paper uses)."""
    warmup = int(warmup_share * total)
    if step < warmup:
        return base * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


# --- checkpoints ------------------------------------------------------------------------------


def _save_checkpoint(
    folder: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()},
              str(tmp / "weights.safetensors"))
    opt = optimizer.state_dict()
    # contiguous: a channels-last convolution's moments are strided, which safetensors refuses
    tensors = {f"{i}.{k}": v.contiguous() for i, s in opt["state"].items() for k, v in s.items()}
    tensors["rng"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    write_json_atomic(tmp / "state.json", {**state, "param_groups": opt["param_groups"]})
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(
    folder: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(folder / "weights.safetensors")))
    tensors = load_file(str(folder / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng"))
    state = json.loads((folder / "state.json").read_text())
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    return state


# --- the two modes share one loop over "predict these rows" and "train on these rows" ---------


class _Frozen:
    """Head only, on cached embeddings standardised with the train rows' mean and spread (a
    random encoder's features differ in scale by orders of magnitude). The standardisation is
    folded into the head's first layer when the model is saved, so the saved head takes raw
    features like the paper's."""

    def __init__(self, loaded: LoadedModel, features: np.ndarray, train_rows: np.ndarray):
        self.head = loaded.model.head
        mean = features[train_rows].mean(axis=0, dtype=np.float64)
        std = features[train_rows].std(axis=0, dtype=np.float64)
        std = np.where(std > 1e-6, std, 1.0)  # a constant feature is only centred
        self.mean = torch.from_numpy(mean.astype(np.float32))
        self.std = torch.from_numpy(std.astype(np.float32))
        self.features = (torch.from_numpy(features) - self.mean) / self.std

    def folded_state(self) -> dict[str, torch.Tensor]:
        """The head's weights for raw features: W' = W / std, b' = b - W' mean."""
        state = {k: v.detach().clone() for k, v in self.head.state_dict().items()}
        first = next(k for k in state if k.endswith("weight") and state[k].dim() == 2)
        bias = first[: -len("weight")] + "bias"
        state[first] = state[first] / self.std
        state[bias] = state[bias] - state[first] @ self.mean
        return state

    @property
    def trainable(self) -> torch.nn.Module:
        return self.head

    def batches(self, rows: np.ndarray, batch_size: int):  # type: ignore[no-untyped-def]
        for start in range(0, len(rows), batch_size):
            index = torch.from_numpy(rows[start : start + batch_size])
            yield index, self.features[index]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(inputs).squeeze(-1)


class _Finetune:
    """End to end: images decoded and text tokenised by DataLoader workers."""

    def __init__(self, loaded: LoadedModel, items: pl.DataFrame, workers: int):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.dataset = ItemDataset(items["model_text"].to_list(), items["image_path"].to_list(),
                                   loaded.model.image_size)
        self.workers = workers

    @property
    def trainable(self) -> torch.nn.Module:
        return self.model

    def batches(self, rows: np.ndarray, batch_size: int):  # type: ignore[no-untyped-def]
        loader = data_loader(self.dataset, self.tokenizer, MAX_TOKENS, batch_size, self.workers,
                             order=rows.tolist())
        for batch in loader:
            yield batch.index, batch

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.model(inputs.pixel_values, inputs.input_ids, inputs.attention_mask,
                          inputs.has_image)


def _predict(engine: _Frozen | _Finetune, rows: np.ndarray, batch_size: int) -> np.ndarray:
    engine.trainable.eval()
    out = np.empty(len(rows), dtype=np.float64)
    position = {int(r): i for i, r in enumerate(rows)}
    with torch.no_grad():
        for index, inputs in engine.batches(rows, batch_size):
            values = engine.forward(inputs).double().numpy()
            for row, value in zip(index.tolist(), values, strict=True):
                out[position[row]] = value
    return out


# --- the run ----------------------------------------------------------------------------------


# Frozen runs in one process (a study) share the loaded encoders, which they never train, and
# their counts: loading and counting cost seconds per run, training the head less.
_FROZEN_ENCODERS: dict[tuple[str, str], tuple[LoadedModel, int, int]] = {}


def _model_for(config: TrainConfig) -> tuple[LoadedModel, int, int]:
    """(the run's model, its parameters, its FLOPs). The head is new for every run and
    initialised from the run's seed, exactly as build_model does."""
    key = (config.image_encoder, config.text_encoder)
    if config.mode == "frozen" and key in _FROZEN_ENCODERS:
        shared, params, flops = _FROZEN_ENCODERS[key]
        torch.manual_seed(config.seed)
        model = EffiMiniVLM(shared.model.image_encoder, shared.model.text_encoder)
        return LoadedModel(model, shared.tokenizer, shared.image_source,
                           shared.text_source), params, flops
    loaded = build_model(config.image_encoder, config.text_encoder, config.seed)
    params, flops = count_parameters(loaded.model), count_flops(loaded)
    loaded.model.text_encoder.set_attn_implementation("sdpa")  # faster; counted with eager
    if config.mode == "frozen":
        _FROZEN_ENCODERS.clear()  # one pair at a time: each holds ~100 MB
        _FROZEN_ENCODERS[key] = (loaded, params, flops)
    return loaded, params, flops


def _ensure_weights(catalog: str, slice_name: str, weights: str) -> str:
    """The weights id to use: an existing table, or the spec computed now."""
    from weighting.catalog_io import compute_weights, weights_dir, weights_id

    cat = Catalog.open(catalog)
    if (weights_dir(cat, slice_name, weights) / "weights.parquet").exists():
        return weights
    wid = weights_id(weights)
    if not (weights_dir(cat, slice_name, wid) / "weights.parquet").exists():
        compute_weights(catalog, slice_name, weights)
    return wid


def _calibration_paths(config: TrainConfig) -> list[str]:
    """Up to CALIBRATION_IMAGES train images of the slice's split, in stable-hash order.

    They come from the split, not the slice, so every slice cut from one split (any fraction,
    any slice seed) calibrates a random image encoder alike and shares one embedding cache."""
    import duckdb

    from curation.slices import load_slice_manifest
    from curation.split import split_dir, stable_hash_sql

    parameters = load_slice_manifest(config.catalog, config.slice)["parameters"]
    catalog = Catalog.open(config.catalog)
    silver = catalog.layout.silver_dir(parameters["profile"]) / "items.parquet"
    split = split_dir(catalog, parameters["profile"], parameters["split_seed"])
    candidates = duckdb.sql(f"""
        SELECT s.main_image_url
        FROM '{silver}' AS s JOIN '{split / "assignments.parquet"}' AS a USING (parent_asin)
        WHERE a.split = 'train' AND s.main_image_url IS NOT NULL
        ORDER BY {stable_hash_sql("calibration", "s.parent_asin")}, s.parent_asin
        LIMIT {4 * CALIBRATION_IMAGES}""").fetchall()
    paths = resolve_image_paths([url for (url,) in candidates], config.catalog)
    return [p for p in paths if p is not None][:CALIBRATION_IMAGES]


def _slice_for_cache(config: TrainConfig, columns: list[str] | None = None
                     ) -> tuple[TrainConfig, pl.DataFrame, list[str | None], EmbeddingCache]:
    """(resolved config, the slice's items, their local image paths, the embedding cache of
    the config's encoders)."""
    from curation.slices import slice_file

    config = config.resolved()
    items = pl.read_parquet(slice_file(config.catalog, config.slice), columns=columns)
    paths = resolve_image_paths(items["main_image_url"].to_list(), config.catalog)
    loaded, _, _ = _model_for(config)
    cache = EmbeddingCache(CatalogLayout(Path(config.catalog)).embeddings, loaded,
                           _calibration_paths(config))
    return config, items, paths, cache


def slice_embeddings(config: TrainConfig, *, workers: int = 1) -> tuple[pl.DataFrame, np.ndarray]:
    """The slice's items (in stored order, with ``image_path``) and their frozen-encoder
    features, from the embedding cache (items not in it yet are encoded and added)."""
    config, items, paths, cache = _slice_for_cache(config)
    embedded = cache.embed(items["model_text"].to_list(), paths, workers=workers,
                           label=f"encoding {config.slice}")
    return items.with_columns(pl.Series("image_path", paths, dtype=pl.String)), \
        embedded.features


def encode_slice(config: TrainConfig, *, workers: int = 1) -> int:
    """Fill the frozen-mode embedding cache with every item of the config's slice (what its
    runs will read); returns how many were not cached yet."""
    config, items, paths, cache = _slice_for_cache(config, ["model_text", "main_image_url"])
    embedded = cache.embed(items["model_text"].to_list(), paths, workers=workers,
                           label=f"encoding {config.slice}")
    return embedded.encoded_now


def train(
    config: TrainConfig,
    out: Path | str,
    *,
    workers: int = 1,
    on_epoch_end: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
    keep_checkpoint: bool = False,
) -> RunResult:
    """Train (or resume, or find complete) the run ``config`` in the folder ``out``.

    Once the run is complete its ``checkpoint/`` folder (last epoch with optimizer state,
    per-epoch dynamics) is removed unless ``keep_checkpoint``: what a complete run needs is in
    model.safetensors and training_dynamics.parquet."""
    config = config.resolved()
    out = Path(out)
    config_file = out / "config.json"
    wanted = asdict(config)
    if config_file.exists():
        existing = json.loads(config_file.read_text())
        if existing != wanted:
            changed = sorted(k for k in wanted if existing.get(k) != wanted[k])
            raise ValueError(
                f"{out} holds a run with another config (differs in {', '.join(changed)}); "
                "choose another --out or delete it"
            )
        if (out / "manifest.json").exists():
            metrics = json.loads((out / "metrics.json").read_text())
            return RunResult(out, metrics, already_complete=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config_file, wanted)

    torch.use_deterministic_algorithms(True, warn_only=True)
    weights_id = _ensure_weights(config.catalog, config.slice, config.weights)
    items = load_training_items(config.catalog, config.slice, weights_id)
    splits = {s: np.flatnonzero((items["split"] == s).to_numpy()) for s in ("train", "val", "test")}
    for name, rows in splits.items():
        if len(rows) < 2:
            raise ValueError(f"slice {config.slice!r} has {len(rows)} {name} items; need >= 2")
    missing_images = int(items["image_path"].is_null().sum())
    notes = []
    if missing_images:
        notes.append(f"{missing_images:,} of {items.height:,} items have no local image "
                     "(black image, image features zeroed)")
        log(f"note: {notes[-1]}")

    loaded, params, flops = _model_for(config)
    encoding: dict[str, Any] = {}
    engine: _Frozen | _Finetune
    if config.mode == "frozen":
        cache = EmbeddingCache(CatalogLayout(Path(config.catalog)).embeddings, loaded,
                               _calibration_paths(config))
        embedded = cache.embed(items["model_text"].to_list(), items["image_path"].to_list(),
                               workers=workers)
        encoding = {"encoder_key": embedded.encoder_key, "encoded_now": embedded.encoded_now,
                    "cached": items.height - embedded.encoded_now,
                    "seconds": round(embedded.seconds_encoding, 3)}
        log(f"embeddings: {embedded.encoded_now:,} encoded, {encoding['cached']:,} from the "
            f"cache ({cache.dir})")
        engine = _Frozen(loaded, embedded.features, splits["train"])
        # The head starts at the train split's weighted mean rating, not at 0: with few
        # items (small slices) a head that must first climb to ~4 stars is still far off
        # when early stopping (on PLCC, blind to scale) picks its epoch.
        train_rows = items[splits["train"].tolist()]
        start = float((train_rows["weight"] * train_rows[TARGET]).sum()
                      / train_rows["weight"].sum())
        with torch.no_grad():
            engine.head[-1].bias.fill_(start)
    else:
        if is_random_image_encoder(loaded.image_source):
            from training.embeddings import calibrate_batch_norms

            calibrate_batch_norms(loaded.model.image_encoder, _calibration_paths(config),
                                  loaded.model.image_size)
        engine = _Finetune(loaded, items, workers)

    target = torch.from_numpy(items[TARGET].to_numpy().astype(np.float32))
    weight = torch.from_numpy(items["weight"].fill_null(0.0).to_numpy().astype(np.float32))
    val_target = items[TARGET].to_numpy()[splits["val"]]
    module = engine.trainable
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(splits["train"]) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    checkpoint = out / "checkpoint" / "last"
    best_file = out / "checkpoint" / "best.safetensors"
    dynamics_dir = out / "checkpoint" / "dynamics"
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_plcc": None, "best_epoch": 0,
                             "bad_epochs": 0, "history": [], "stopped_early": False}
    resumed_from = 0
    if (checkpoint / "state.json").exists():
        state = _load_checkpoint(checkpoint, module, optimizer)
        resumed_from = state["epoch"]
        log(f"resuming {out} after epoch {resumed_from}")

    from safetensors.torch import load_file, save_file

    asins = items["parent_asin"]
    while state["epoch"] < config.epochs and not state["stopped_early"]:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        shuffle = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order = splits["train"][torch.randperm(len(splits["train"]), generator=shuffle).numpy()]
        module.train()
        rows_seen, predictions, losses, total_loss = [], [], [], 0.0
        with progress_bar(f"epoch {epoch}/{config.epochs}", total=len(order)) as advance:
            for index, inputs in engine.batches(order, config.batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(state["step"], total_steps, config.warmup, config.lr)
                prediction = engine.forward(inputs)
                loss, per_item = weighted_huber(prediction, target[index], weight[index],
                                                config.huber_delta, config.renormalise)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, config.clip)
                optimizer.step()
                state["step"] += 1
                total_loss += float(loss.detach()) * len(index)
                rows_seen.append(index.numpy())
                predictions.append(prediction.detach().double().numpy())
                losses.append(per_item.double().numpy())
                advance(len(index))
        rows = np.concatenate(rows_seen)
        dynamics_dir.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({
            "parent_asin": asins.gather(rows),
            "epoch": pl.Series([epoch] * len(rows), dtype=pl.Int32),
            "prediction": np.concatenate(predictions),
            "target": items[TARGET].to_numpy()[rows],
            "loss": np.concatenate(losses),
            "weight": items["weight"].to_numpy()[rows],
        }).sort("parent_asin").write_parquet(dynamics_dir / f"epoch-{epoch:03d}.parquet")
        val_plcc = pearson(_predict(engine, splits["val"], config.batch_size), val_target)
        val_plcc = val_plcc if math.isfinite(val_plcc) else -1.0
        improved = state["best_plcc"] is None or val_plcc > state["best_plcc"]
        if improved:
            state.update(best_plcc=val_plcc, best_epoch=epoch, bad_epochs=0)
            best_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = best_file.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
            os.replace(tmp, best_file)
        else:
            state["bad_epochs"] += 1
            state["stopped_early"] = state["bad_epochs"] >= config.patience
        state["history"].append({
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "val_plcc": val_plcc,
            "lr_end": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - started, 3),
        })
        state["epoch"] = epoch
        log(f"epoch {epoch}: train loss {total_loss / len(order):.4f}, val PLCC {val_plcc:.4f}"
            + (" (best)" if improved else ""))
        _save_checkpoint(checkpoint, module, optimizer, state)
        if on_epoch_end is not None:
            on_epoch_end(epoch)

    module.load_state_dict(load_file(str(best_file)))
    all_rows = np.arange(items.height)
    items = items.with_columns(pl.Series("prediction", _predict(engine, all_rows,
                                                                 config.batch_size)))
    metrics = {
        split: evaluate(items.filter(pl.col("split") == split), params, flops)
        for split in ("val", "test")
    }
    cost, factor = efficiency(params, flops)
    metrics.update({
        "params": params,
        "flops": flops,
        "cost_c": cost,
        "efficiency_e": factor,
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "stopped_early": state["stopped_early"],
        "history": state["history"],
        "encoding": encoding,
    })
    _write_outputs(out, config, items, weights_id, loaded, engine, metrics, missing_images, notes)
    if not keep_checkpoint:
        shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return RunResult(out, metrics, resumed_from_epoch=resumed_from, notes=notes)


def _write_outputs(
    out: Path,
    config: TrainConfig,
    items: pl.DataFrame,
    weights_id: str,
    loaded: LoadedModel,
    engine: _Frozen | _Finetune,
    metrics: dict[str, Any],
    missing_images: int,
    notes: list[str],
) -> None:
    from safetensors.torch import save_file

    from curation.slices import slice_file
    from weighting.catalog_io import weights_dir

    predictions = items.select("parent_asin", "split", "category", "rating_number",
                               pl.col(TARGET).alias("target"), "prediction", "weight")
    tmp = out / "predictions.parquet.tmp"
    predictions.write_parquet(tmp, compression="zstd")
    os.replace(tmp, out / "predictions.parquet")
    dynamics = sorted((out / "checkpoint" / "dynamics").glob("epoch-*.parquet"))
    tmp = out / "training_dynamics.parquet.tmp"
    pl.concat([pl.read_parquet(p) for p in dynamics]).write_parquet(tmp, compression="zstd")
    os.replace(tmp, out / "training_dynamics.parquet")
    tmp = out / "model.safetensors.tmp"
    state = engine.folded_state() if isinstance(engine, _Frozen) else engine.trainable.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, out / "model.safetensors")
    if config.mode == "frozen" and is_random_image_encoder(loaded.image_source):
        save_file(batch_norm_state(loaded.model.image_encoder),
                  str(out / "encoder_state.safetensors"))
    write_json_atomic(out / "metrics.json", metrics)
    catalog = Catalog.open(config.catalog)
    outputs = {p.name: sha256_file(p) for p in sorted(out.iterdir())
               if p.is_file() and p.name != "manifest.json"}
    write_json_atomic(out / "manifest.json", {
        "stage": "train",
        "config": asdict(config),
        "weights_id": weights_id,
        "encoders": {"image": loaded.image_source, "text": loaded.text_source},
        "inputs": {
            "slice": sha256_file(slice_file(config.catalog, config.slice)),
            "weights": sha256_file(weights_dir(catalog, config.slice, weights_id)
                                   / "weights.parquet"),
        },
        "counts": {
            **{f"{s}_items": int((items["split"] == s).sum()) for s in ("train", "val", "test")},
            "items_without_image": missing_images,
        },
        "notes": notes,
        "outputs": outputs,
        "versions": versions(),
    })
