"""What decides a training run: ``TrainConfig`` and each mode's defaults (no torch here, so
the command line and the study can build configs without loading it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from curation.errors import UserError
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from training.loss_registry import DEFAULT_LOSS, parse_loss

DEFAULT_HUBER_DELTA = 1.0
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
    seed: int = 0
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
    loss: str = DEFAULT_LOSS  # a loss spec (training.loss_registry), canonical once resolved

    def resolved(self) -> TrainConfig:
        """The config with the mode's defaults filled in and its loss spec in canonical form
        (and checked)."""
        if self.mode not in MODES:
            raise UserError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        filled = {k: v if v is not None else MODE_DEFAULTS[self.mode].get(k)
                  for k, v in asdict(self).items()}
        filled["loss"] = parse_loss(self.loss).spec
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
                raise UserError(f"--{option} {getattr(config, name)} is out of range")
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
