"""What ``curate recsys eval`` can be asked for, and its defaults, without importing torch (the
command line reads these at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from curation.errors import UserError

ID_MODELS = ("pop", "itemknn", "bpr")
CONTENT_KINDS = ("frozen", "twotower", "vbpr")
MODALITIES = ("text", "image", "both")
MODEL_NAMES = ID_MODELS + tuple(f"{k}-{m}" for m in MODALITIES for k in CONTENT_KINDS)
DEFAULT_MODELS = ("pop", "itemknn", "bpr", "frozen-text", "twotower-text", "vbpr-text")
DEFAULT_SEEDS = (0, 1, 2)
BOOTSTRAP = 1000


@dataclass(frozen=True)
class FitConfig:
    dim: int = 64
    epochs: int = 40
    batch_size: int = 512
    lr: float = 0.005
    reg: float = 1e-4  # L2 on the embeddings (and projection) a batch touches
    neighbours: int = 100  # itemknn
    device: str = "cpu"


def model_names(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"pop,bpr"`` (or a list) -> the models, each checked against MODEL_NAMES.

    >>> model_names("pop, vbpr-text")
    ['pop', 'vbpr-text']
    """
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise UserError(f"unknown model {(unknown or [''])[0]!r}; choose from "
                        f"{', '.join(MODEL_NAMES)}")
    if len(set(names)) != len(names):
        raise UserError(f"a model is named twice in {', '.join(names)}")
    return names


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"seeds {text!r}: expected integers separated by commas") from None
    if not seeds:
        raise UserError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"a seed is named twice in {text!r}")
    return seeds
