"""``curate predict``: a finished run's model on a slice or on the challenge's test input,
written as the challenge's submission CSV (item_id, score, params, flops)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from curation.progress import progress_bar
from training.config import TrainConfig
from training.data import ItemDataset, data_loader
from training.model import MAX_TOKENS, LoadedModel, build_model
from training.run_folder import RunFolder

SUBMISSION_COLUMNS = ("item_id", "score", "params", "flops")


def load_run_model(run: Path | str) -> tuple[LoadedModel, dict[str, Any]]:
    """The run's best model, whole (frozen runs: the encoders as trained against, with a
    random image encoder's calibrated batch norms, and the saved head)."""
    from safetensors.torch import load_file

    folder = RunFolder(Path(run))
    folder.require_complete()
    config = TrainConfig.from_dict(folder.read_config())
    metrics = folder.read_metrics()
    loaded = build_model(config.image_encoder, config.text_encoder, config.seed)
    model = loaded.model
    if config.mode == "frozen":
        model.head.load_state_dict(load_file(str(folder.model)))
        if folder.encoder_state.exists():
            model.image_encoder.load_state_dict(load_file(str(folder.encoder_state)),
                                                strict=False)
    else:
        model.load_state_dict(load_file(str(folder.model)))
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
