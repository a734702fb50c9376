"""``curate predict``: a finished run's model on a slice or on the challenge's test input,
written as the challenge's submission CSV (item_id, score, params, flops)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from curation.progress import progress_bar
from training.data import ItemDataset, data_loader
from training.model import MAX_TOKENS, LoadedModel, build_model
from training.trainer import TrainConfig

SUBMISSION_COLUMNS = ("item_id", "score", "params", "flops")


def load_run_model(run: Path | str) -> tuple[LoadedModel, dict[str, Any]]:
    """The run's best model, whole (frozen runs: the encoders as trained against, with a
    random image encoder's calibrated batch norms, and the saved head)."""
    from safetensors.torch import load_file

    run = Path(run)
    if not (run / "manifest.json").exists():
        raise ValueError(f"{run} is not a finished run (no manifest.json): finish it with "
                         "curate train first")
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    metrics = json.loads((run / "metrics.json").read_text())
    loaded = build_model(config.image_encoder, config.text_encoder, config.seed)
    model = loaded.model
    if config.mode == "frozen":
        model.head.load_state_dict(load_file(str(run / "model.safetensors")))
        calibration = run / "encoder_state.safetensors"
        if calibration.exists():
            model.image_encoder.load_state_dict(load_file(str(calibration)), strict=False)
    else:
        model.load_state_dict(load_file(str(run / "model.safetensors")))
    model.text_encoder.set_attn_implementation("sdpa")
    return loaded, metrics


def predict_items(
    loaded: LoadedModel, items: pl.DataFrame, batch_size: int = 32, workers: int = 1
) -> np.ndarray:
    """Predictions for items with model_text and image_path, in their order."""
    model = loaded.model.eval()
    dataset = ItemDataset(items["model_text"].to_list(), items["image_path"].to_list(),
                          model.image_size)
    out = np.empty(items.height, dtype=np.float64)
    loader = data_loader(dataset, loaded.tokenizer, MAX_TOKENS, batch_size, workers)
    with progress_bar("predicting", total=items.height, lines_when_logged=True) as advance, \
            torch.no_grad():
        for batch in loader:
            values = model(batch.pixel_values, batch.input_ids, batch.attention_mask,
                           batch.has_image)
            out[batch.index.numpy()] = values.double().numpy()
            advance(len(batch.index))
    return out


def submission(
    items: pl.DataFrame, prediction: np.ndarray, params: int, flops: int
) -> pl.DataFrame:
    """The challenge's CSV: score clamped to [1, 5] with 2 decimals, params in millions,
    FLOPs in GFLOPs."""
    return pl.DataFrame({
        "item_id": items["parent_asin"],
        "score": np.round(np.clip(prediction, 1.0, 5.0), 2),
        "params": [round(params / 1e6, 2)] * items.height,
        "flops": [round(flops / 1e9, 2)] * items.height,
    })
