"""``curate train``: one run of EffiMiniVLM on a slice with a weighting, frozen or finetuned.

A run is opened (its config checked against the folder, its items, weights and model
loaded, a checkpoint resumed), trained epoch by epoch (each epoch ends in a checkpoint, so an
interrupted run resumes from its last finished epoch and ends exactly as an uninterrupted one:
per-epoch shuffles are seeded by (seed, epoch)), then finished (the best epoch scored on val
and test, the outputs written, the manifest last). ``training.run_folder`` lists the files.

- ``metrics.json``: val and test scores (PLCC, PLCC+, Spearman, MAE, RMSE, CES with the
  model's own parameters and FLOPs), per category and per rating-count decile, the history;
- ``predictions.parquet``: every item of the slice with its prediction (best epoch);
- ``training_dynamics.parquet``: each train item's prediction and loss in every epoch (from
  the batch it was trained in), for data maps;
- ``model.safetensors``: the best weights (frozen mode: the head, and a random image
  encoder's calibrated batch norms in ``encoder_state.safetensors``).

The loss is ``config.loss``, a spec of ``training.loss_registry`` (default ``huber``, the
paper's weighted Huber). A loss with rating bins (``clce``) fits their edges once on the train
items; they and its classifier (``ce > 0``, optimised with the model) are checkpointed with the
run, and the manifest records the loss's spec, parameters and edges. The model files never
hold the classifier: it is a training aid, not part of the model.

``metrics.json`` and ``manifest.json`` also say what ran: ``encoders_ran`` (each tower's
configured name, the weights actually loaded, whether pretrained) and how many items had an
image actually decoded (``items_with_image``; ``items_without_image`` the rest): in frozen mode
from the embedding cache's has_image, in finetune mode from the images the loader decoded in
the final pass over every item. A text-only model (image encoder ``none``) reads no image, so
none of its items has one.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from curation.catalog import Catalog
from curation.errors import UserError
from curation.manifest import atomic_file, sha256_file, versions, write_json_atomic
from curation.progress import progress_bar
from curation.slices import Slice
from training import distributed
from training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import TARGET, ItemDataset, data_loader, load_training_items
from training.embeddings import batch_norm_state, calibration_paths, embedding_cache
from training.loss import TrainingLoss
from training.loss_registry import DEFAULT_LOSS, fit_bin_edges, parse_loss
from training.metrics import evaluate, pearson
from training.model import (
    MAX_TOKENS,
    LoadedModel,
    efficiency,
    is_random_image_encoder,
    model_for_run,
)
from training.run_folder import RunFolder
from training.tracking import TRACKING_FILE, Tracker, Tracking

SPLIT_NAMES = ("train", "val", "test")


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

    def forward_with_embedding(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, the head's penultimate activation)."""
        output, hidden = self.head.forward_with_embedding(inputs)
        return output.squeeze(-1), hidden


class _Finetune:
    """End to end: images decoded and text tokenised by DataLoader workers. Whether each row's
    image decoded is noted as its batches pass (``decoded``, ``seen``)."""

    def __init__(self, loaded: LoadedModel, items: pl.DataFrame, workers: int):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.dataset = ItemDataset(items["model_text"].to_list(), items["image_path"].to_list(),
                                   loaded.model.image_size)
        self.workers = workers
        self.decoded = np.zeros(items.height, dtype=bool)
        self.seen = np.zeros(items.height, dtype=bool)

    @property
    def trainable(self) -> torch.nn.Module:
        return self.model

    def batches(self, rows: np.ndarray, batch_size: int):  # type: ignore[no-untyped-def]
        loader = data_loader(self.dataset, self.tokenizer, MAX_TOKENS, batch_size, self.workers,
                             order=rows.tolist())
        for batch in loader:
            rows_in_batch = batch.index.numpy()
            self.decoded[rows_in_batch] = batch.has_image.numpy() > 0
            self.seen[rows_in_batch] = True
            yield batch.index, batch

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.model(inputs.pixel_values, inputs.input_ids, inputs.attention_mask,
                          inputs.has_image)

    def forward_with_embedding(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, the head's penultimate activation)."""
        return self.model.forward_with_embedding(inputs.pixel_values, inputs.input_ids,
                                                 inputs.attention_mask, inputs.has_image)


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


# --- the run: open, one epoch at a time, finish ----------------------------------------------


@dataclass
class _OpenRun:
    """What a run carries from one epoch to the next."""

    config: TrainConfig
    folder: RunFolder
    slice_: Slice
    weights_id: str
    items: pl.DataFrame
    splits: dict[str, np.ndarray]
    loaded: LoadedModel
    params: int
    flops: int
    engine: _Frozen | _Finetune
    loss: TrainingLoss
    optimizer: torch.optim.Optimizer
    target: torch.Tensor
    weight: torch.Tensor
    total_steps: int
    state: dict[str, Any]
    encoding: dict[str, Any]
    notes: list[str]
    with_image: int | None  # items with an image decoded (finetune: known once all are seen)
    resumed_from: int = 0
    ranks: distributed.Ranks = distributed.SINGLE  # torchrun's processes (training.distributed)

    @property
    def done(self) -> bool:
        return self.state["epoch"] >= self.config.epochs or self.state["stopped_early"]


def _weights_for(slice_: Slice, weights: str) -> str:
    """The weights id to use: an existing table, or the spec computed now."""
    from weighting.catalog_io import compute_weights, weights_id

    layout = slice_.catalog.layout
    if layout.weights_file(slice_.name, weights).exists():
        return weights
    wid = weights_id(weights)
    if not layout.weights_file(slice_.name, wid).exists():
        compute_weights(slice_, weights)
    return wid


def _open(config: TrainConfig, folder: RunFolder, workers: int,
          log: Callable[[str], None],
          ranks: distributed.Ranks = distributed.SINGLE) -> _OpenRun | RunResult:
    """Check the folder against the config, load what the run reads, build its engine and
    optimizer, resume its last checkpoint; a complete run's RunResult instead."""
    wanted = asdict(config)
    if ranks.world > 1 and (config.mode != "finetune" or parse_loss(config.loss).needs_embedding):
        raise UserError("several processes (torchrun) train --mode finetune with the huber "
                        "loss only")
    if folder.config.exists():
        # a folder from before losses had names trained with the one there was
        existing = {"loss": DEFAULT_LOSS, **folder.read_config()}
        if existing != wanted:
            changed = sorted(k for k in wanted if existing.get(k) != wanted[k])
            raise UserError(
                f"{folder.path} holds a run with another config (differs in "
                f"{', '.join(changed)}); choose another --out or delete it"
            )
        if folder.is_complete():
            return RunResult(folder.path, folder.read_metrics(), already_complete=True)
    if ranks.is_main:
        folder.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder.config, wanted)

    torch.use_deterministic_algorithms(True, warn_only=True)
    slice_ = Slice.open(Catalog.open(config.catalog), config.slice)
    if not ranks.is_main:  # rank 0 computes missing weights (the catalog takes one writer)
        _barrier(ranks)
    weights_id = _weights_for(slice_, config.weights)
    if ranks.is_main:
        _barrier(ranks)
    items = load_training_items(slice_, weights_id)
    splits = {s: np.flatnonzero((items["split"] == s).to_numpy()) for s in SPLIT_NAMES}
    for name, rows in splits.items():
        if len(rows) < 2:
            raise UserError(f"slice {config.slice!r} has {len(rows)} {name} items; need >= 2")
    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        log(f"note: {line}")

    loaded, params, flops = model_for_run(config.image_encoder, config.text_encoder,
                                          config.seed, shared_encoders=config.mode == "frozen")
    text_only = loaded.model.image_encoder is None
    if text_only:
        note("text-only model (image encoder none): no image is read")
    elif config.mode == "finetune" and (no_file := int(items["image_path"].is_null().sum())):
        note(f"{no_file:,} of {items.height:,} items have no local image file (black image, "
             "image features zeroed)")
    encoding: dict[str, Any] = {}
    engine: _Frozen | _Finetune
    with_image: int | None = 0 if text_only else None
    if config.mode == "frozen":
        cache = embedding_cache(slice_, loaded)
        embedded = cache.embed(items["model_text"].to_list(), items["image_path"].to_list(),
                               workers=workers)
        encoding = {"encoder_key": embedded.encoder_key, "encoded_now": embedded.encoded_now,
                    "cached": items.height - embedded.encoded_now,
                    "seconds": round(embedded.seconds_encoding, 3),
                    "precision": embedded.precision}
        log(f"embeddings: {embedded.encoded_now:,} encoded, {encoding['cached']:,} from the "
            f"cache ({cache.dir})")
        with_image = embedded.with_image
        if not text_only and with_image < items.height:
            note(_no_image_note(items.height - with_image, items.height))
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

            calibrate_batch_norms(loaded.model.image_encoder, calibration_paths(slice_),
                                  loaded.model.image_size)
        engine = _Finetune(loaded, items, workers)

    plan = parse_loss(config.loss)
    train_targets = items[TARGET].to_numpy()[splits["train"]]
    loss = TrainingLoss(plan, huber_delta=config.huber_delta, renormalise=config.renormalise,
                        edges=fit_bin_edges(plan, train_targets),
                        width=loaded.model.head[-1].in_features)
    optimizer = torch.optim.AdamW(_trained_parameters(engine, loss), lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(splits["train"]) / config.batch_size)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_plcc": None, "best_epoch": 0,
                             "bad_epochs": 0, "history": [], "stopped_early": False}
    resumed_from = 0
    if has_checkpoint(folder.last_epoch):
        state = load_checkpoint(folder.last_epoch, engine.trainable, optimizer, loss=loss,
                                rank=ranks.rank)
        resumed_from = state["epoch"]
        log(f"resuming {folder.path} after epoch {resumed_from}")
    return _OpenRun(
        config, folder, slice_, weights_id, items, splits, loaded, params, flops, engine, loss,
        optimizer,
        target=torch.from_numpy(items[TARGET].to_numpy().astype(np.float32)),
        weight=torch.from_numpy(items["weight"].fill_null(0.0).to_numpy().astype(np.float32)),
        total_steps=steps_per_epoch * config.epochs, state=state, encoding=encoding,
        notes=notes, with_image=with_image, resumed_from=resumed_from, ranks=ranks,
    )


def _trained_parameters(engine: _Frozen | _Finetune,
                        loss: TrainingLoss) -> list[torch.nn.Parameter]:
    """The model's trainable parameters, then the loss's (its classifier, if any): a Huber
    run's optimizer holds exactly the model's."""
    return [p for p in [*engine.trainable.parameters(), *loss.parameters()] if p.requires_grad]


def _no_image_note(without: int, items: int) -> str:
    return (f"{without:,} of {items:,} items have no image that could be read (black image, "
            "image features zeroed)")


def _epoch(run: _OpenRun, log: Callable[[str], None]) -> int:
    """Train one epoch, record each train item's prediction and loss, score val, keep the
    best weights, and checkpoint. Returns the epoch's number."""
    from safetensors.torch import save_file

    config, state, engine, optimizer = run.config, run.state, run.engine, run.optimizer
    train_rows = run.splits["train"]
    module = engine.trainable
    trainable = _trained_parameters(engine, run.loss)
    epoch = state["epoch"] + 1
    started = time.perf_counter()
    shuffle = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = train_rows[torch.randperm(len(train_rows), generator=shuffle).numpy()]
    module.train()
    run.loss.train()
    rows_seen, predictions, losses, total_loss = [], [], [], 0.0
    ranks = run.ranks
    with progress_bar(f"epoch {epoch}/{config.epochs}", total=len(order)) as advance:
        if ranks.world == 1:
            for index, inputs in engine.batches(order, config.batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(state["step"], run.total_steps, config.warmup, config.lr)
                prediction, embedding = engine.forward_with_embedding(inputs)
                loss, per_item = run.loss(prediction, embedding, run.target[index],
                                          run.weight[index])
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
        else:
            for start in range(0, len(order), config.batch_size):
                total_loss += _distributed_step(run, trainable, order[start:start
                                                + config.batch_size], rows_seen, predictions,
                                                losses)
                advance(len(order[start:start + config.batch_size]))
            # every train item's prediction and loss, from the rank that trained it
            gathered: list[Any] = [None] * ranks.world
            import torch.distributed as dist

            dist.all_gather_object(gathered, (rows_seen, predictions, losses))
            rows_seen = [a for g in gathered for a in g[0]]
            predictions = [a for g in gathered for a in g[1]]
            losses = [a for g in gathered for a in g[2]]
    rows = np.concatenate(rows_seen)
    items = run.items
    part = run.folder.epoch_dynamics_part(epoch)
    part.parent.mkdir(parents=True, exist_ok=True)
    dynamics = pl.DataFrame({
        "parent_asin": items["parent_asin"].gather(rows),
        "epoch": pl.Series([epoch] * len(rows), dtype=pl.Int32),
        "prediction": np.concatenate(predictions),
        "target": items[TARGET].to_numpy()[rows],
        "loss": np.concatenate(losses),
        "weight": items["weight"].to_numpy()[rows],
    }).sort("parent_asin")
    if ranks.is_main:
        dynamics.write_parquet(part)
    val_target = items[TARGET].to_numpy()[run.splits["val"]]
    val_plcc = pearson(_predict(engine, run.splits["val"], config.batch_size), val_target)
    val_plcc = distributed.from_main(val_plcc if math.isfinite(val_plcc) else -1.0, ranks)
    improved = state["best_plcc"] is None or val_plcc > state["best_plcc"]
    if improved:
        state.update(best_plcc=val_plcc, best_epoch=epoch, bad_epochs=0)
        if ranks.is_main:
            with atomic_file(run.folder.best_weights) as tmp:
                save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
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
    rank_rngs = distributed.gather_objects(torch.get_rng_state(), ranks)  # every rank's dropout
    if ranks.is_main:
        save_checkpoint(run.folder.last_epoch, module, optimizer, state, loss=run.loss,
                        rank_rngs=rank_rngs)
    _barrier(ranks)  # the other ranks read the best weights and checkpoint only once written
    return epoch


def _barrier(ranks: distributed.Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _distributed_step(run: _OpenRun, trainable: list[torch.nn.Parameter], batch: np.ndarray,
                      rows_seen: list[np.ndarray], predictions: list[np.ndarray],
                      losses: list[np.ndarray]) -> float:
    """One step on this rank's shard of a global batch (training.distributed): the shard's
    loss scaled to its share of the global batch's, the gradients summed over the ranks, so
    every rank steps as one process would on the whole batch. Returns the global batch's loss
    times its size (as the one-process loop adds up)."""
    config, state, optimizer, ranks = run.config, run.state, run.optimizer, run.ranks
    for group in optimizer.param_groups:
        group["lr"] = lr_at(state["step"], run.total_steps, config.warmup, config.lr)
    mine = distributed.shard(batch, ranks)
    global_weight = float(run.weight[torch.from_numpy(batch)].sum())
    optimizer.zero_grad(set_to_none=True)
    share = 0.0
    for index, inputs in run.engine.batches(mine, max(1, len(mine))):
        prediction, embedding = run.engine.forward_with_embedding(inputs)
        loss, per_item = run.loss(prediction, embedding, run.target[index], run.weight[index])
        scale = distributed.shard_loss_scale(len(index), len(batch),
                                             float(run.weight[index].sum()), global_weight,
                                             config.renormalise)
        (loss * scale).backward()
        share = float(loss.detach()) * scale
        rows_seen.append(index.numpy())
        predictions.append(prediction.detach().double().numpy())
        losses.append(per_item.double().numpy())
    distributed.sum_gradients(trainable, ranks)
    torch.nn.utils.clip_grad_norm_(trainable, config.clip)
    optimizer.step()
    state["step"] += 1
    return distributed.all_sum(share, ranks) * len(batch)


def _finish(run: _OpenRun, keep_checkpoint: bool) -> RunResult:
    """Score the best epoch on every item, write the outputs and, last, the manifest."""
    from safetensors.torch import load_file

    config, state = run.config, run.state
    run.engine.trainable.load_state_dict(load_file(str(run.folder.best_weights)))
    items = run.items.with_columns(pl.Series("prediction", _predict(
        run.engine, np.arange(run.items.height), config.batch_size)))
    with_image = run.with_image
    if with_image is None:  # finetune: the pass just made over every item decoded its images
        engine = run.engine
        with_image = int(engine.decoded.sum()) if isinstance(engine, _Finetune) else 0
        run.with_image = with_image
        if items.height - with_image > int(items["image_path"].is_null().sum()):
            run.notes.append(_no_image_note(items.height - with_image, items.height))
    metrics = {
        split: evaluate(items.filter(pl.col("split") == split), run.params, run.flops)
        for split in ("val", "test")
    }
    cost, factor = efficiency(run.params, run.flops)
    metrics.update({
        "params": run.params,
        "flops": run.flops,
        "cost_c": cost,
        "efficiency_e": factor,
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "stopped_early": state["stopped_early"],
        "history": state["history"],
        "encoding": run.encoding,
        "encoders_ran": run.loaded.describe(),
        "items_with_image": with_image,
        "items_without_image": items.height - with_image,
    })
    if run.ranks.is_main:
        _write_outputs(run, items, metrics)
        if not keep_checkpoint:
            shutil.rmtree(run.folder.checkpoint, ignore_errors=True)
    _barrier(run.ranks)
    return RunResult(run.folder.path, metrics, resumed_from_epoch=run.resumed_from,
                     notes=run.notes)


def train(
    config: TrainConfig,
    out: Path | str,
    *,
    workers: int = 1,
    on_epoch_end: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
    keep_checkpoint: bool = False,
    track: Tracking | None = None,
) -> RunResult:
    """Train (or resume, or find complete) the run ``config`` in the folder ``out``.

    Once the run is complete its ``checkpoint/`` folder (last epoch with optimizer state,
    per-epoch dynamics) is removed unless ``keep_checkpoint``: what a complete run needs is in
    model.safetensors and training_dynamics.parquet. With ``track`` the run is mirrored into an
    MLflow store (``training.tracking``; a resumed run into the same MLflow run), which changes
    none of its outputs."""
    config = config.resolved()
    ranks = distributed.from_env()
    distributed.init(ranks)
    if not ranks.is_main:  # rank 0 speaks for the run and mirrors it
        log, track = _quiet, None
    tracker = None
    if track is not None:  # before anything is read or trained: a missing mlflow, a bad store
        tracker = Tracker(track, config, log)
    opened = _open(config, RunFolder(Path(out)), workers, log, ranks)
    if isinstance(opened, RunResult):
        return opened
    tracked = None if tracker is None else tracker.start(
        opened.folder.path, opened.config, opened.weights_id, opened.loaded.describe(),
        opened.state["history"])
    try:
        while not opened.done:
            epoch = _epoch(opened, log)
            if tracked is not None:
                tracked.log_epoch(opened.state["history"][-1])
            if on_epoch_end is not None:
                on_epoch_end(epoch)
        result = _finish(opened, keep_checkpoint)
    except BaseException as error:
        if tracked is not None:
            tracked.interrupted(error)
        raise
    if tracked is not None:
        tracked.finish(result.metrics)
    return result


def _quiet(_: str) -> None:
    """A rank other than 0 says nothing: rank 0 speaks for the run."""


def _write_outputs(run: _OpenRun, items: pl.DataFrame, metrics: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder, config = run.folder, run.config
    predictions = items.select("parent_asin", "split", "category", "rating_number",
                               pl.col(TARGET).alias("target"), "prediction", "weight")
    with atomic_file(folder.predictions) as tmp:
        predictions.write_parquet(tmp, compression="zstd")
    dynamics = sorted(folder.epoch_dynamics.glob("epoch-*.parquet"))
    with atomic_file(folder.dynamics) as tmp:
        pl.concat([pl.read_parquet(p) for p in dynamics]).write_parquet(tmp, compression="zstd")
    engine = run.engine
    state = engine.folded_state() if isinstance(engine, _Frozen) else engine.trainable.state_dict()
    with atomic_file(folder.model) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    if config.mode == "frozen" and is_random_image_encoder(run.loaded.image_source):
        save_file(batch_norm_state(run.loaded.model.image_encoder), str(folder.encoder_state))
    write_json_atomic(folder.metrics, metrics)
    # tracking.json (training.tracking) says where the run is mirrored, not what it made
    outputs = {p.name: sha256_file(p) for p in sorted(folder.path.iterdir())
               if p.is_file() and p != folder.manifest and p.name != TRACKING_FILE}
    layout = run.slice_.catalog.layout
    write_json_atomic(folder.manifest, {
        "stage": "train",
        "config": asdict(config),
        "weights_id": run.weights_id,
        "loss": {"spec": run.loss.plan.spec, "name": run.loss.plan.name,
                 "params": run.loss.plan.params, "bin_edges": run.loss.bin_edges()},
        "encoders": {"image": run.loaded.image_source, "text": run.loaded.text_source},
        "encoders_ran": run.loaded.describe(),
        "inputs": {
            "slice": sha256_file(run.slice_.path),
            "weights": sha256_file(layout.weights_file(config.slice, run.weights_id)),
        },
        "counts": {
            **{f"{s}_items": int((items["split"] == s).sum()) for s in SPLIT_NAMES},
            "items_with_image": metrics["items_with_image"],
            "items_without_image": metrics["items_without_image"],
        },
        "notes": run.notes,
        "outputs": outputs,
        "versions": versions(),
    })
