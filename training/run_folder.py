"""A run folder: which files a ``curate train`` run holds, and whether it is complete.

- ``config.json``: everything that decides the result (a rerun with another config is refused);
- ``checkpoint/``: the last finished epoch (``last/``), the best epoch's weights and each
  epoch's training dynamics; removed when the run completes unless asked to keep it;
- ``metrics.json``, ``predictions.parquet``, ``training_dynamics.parquet``,
  ``model.safetensors`` (and, for a random image encoder in frozen mode, its calibrated batch
  norms in ``encoder_state.safetensors``);
- ``manifest.json``: written last, so its presence says the run is complete (a completion
  marker in the spirit of DataTrove's ``is_rank_completed``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import UserError
from curation.paths import MANIFEST
from training.loss_registry import DEFAULT_LOSS

DEFAULT_RUNS = Path("runs")


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def default(cls, slice_name: str, weights: str, mode: str, seed: int,
                loss: str = DEFAULT_LOSS) -> RunFolder:
        """Where ``curate train`` puts a run when not told: runs/<slice>__<weights>__<mode>__
        seed<N>, and __<loss spec> after it for a loss other than the default."""
        name = f"{slice_name}__{weights}__{mode}__seed{seed}"
        return cls(DEFAULT_RUNS / (name if loss == DEFAULT_LOSS else f"{name}__{loss}"))

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def last_epoch(self) -> Path:
        """The last finished epoch: weights, optimizer and RNG state, early-stopping state."""
        return self.checkpoint / "last"

    @property
    def best_weights(self) -> Path:
        return self.checkpoint / "best.safetensors"

    @property
    def epoch_dynamics(self) -> Path:
        """One Parquet part per finished epoch, gathered into training_dynamics.parquet."""
        return self.checkpoint / "dynamics"

    def epoch_dynamics_part(self, epoch: int) -> Path:
        return self.epoch_dynamics / f"epoch-{epoch:03d}.parquet"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.parquet"

    @property
    def dynamics(self) -> Path:
        return self.path / "training_dynamics.parquet"

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def encoder_state(self) -> Path:
        return self.path / "encoder_state.safetensors"

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    def is_complete(self) -> bool:
        return self.manifest.exists()

    def require_complete(self, what: str = "a finished run") -> None:
        if not self.is_complete():
            raise UserError(f"{self.path} is not {what} (no {MANIFEST}): finish it with "
                            "curate train first")

    def read_config(self) -> dict[str, Any]:
        return json.loads(self.config.read_text())

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics.read_text())

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest.read_text())
