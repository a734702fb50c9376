from __future__ import annotations

import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail at once, use the fallbacks

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from curate.cli import app  # noqa: E402
from training.model import (  # noqa: E402
    build_model,
    ces,
    count_flops,
    count_parameters,
    efficiency,
)


@pytest.fixture(scope="module")
def loaded():
    return build_model()


def test_default_model_has_the_papers_size_and_cost(loaded):
    params = count_parameters(loaded.model)
    assert abs(params - 27.7e6) <= 0.3e6
    assert count_parameters(loaded.model.head) == pytest.approx(0.99e6, rel=0.01)
    flops = count_flops(loaded)
    assert abs(flops - 6.8e9) <= 0.5e9
    assert loaded.text_source.startswith("sentence-transformers/all-MiniLM-L6-v2")


def test_a_missing_image_contributes_nothing(loaded):
    model = loaded.model.eval()
    tokens = loaded.tokenizer(["Title: a kite", "Title: a kite"], return_tensors="pt")
    torch.manual_seed(0)
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        fused = model.encode(
            images, tokens["input_ids"], tokens["attention_mask"], torch.tensor([1.0, 0.0])
        )
        pooled = model.image_encoder(pixel_values=images).pooler_output
    image_part = fused[:, : model.image_dim]
    assert torch.equal(image_part[0], pooled[0])  # with an image: the encoder's features
    assert not image_part[1].any()  # without: zeroed by the flag
    assert fused.shape == (2, 1280 + 384)
    with torch.no_grad():  # so the prediction cannot depend on a missing image's pixels
        other = model(
            torch.rand(2, 3, 224, 224),
            tokens["input_ids"],
            tokens["attention_mask"],
            torch.tensor([0.0, 0.0]),
        )
        same = model(
            images, tokens["input_ids"], tokens["attention_mask"], torch.tensor([0.0, 0.0])
        )
    assert torch.equal(other, same)


def test_ces_follows_the_formula():
    params, flops = 27_710_000, 6_810_000_000
    cost = math.sqrt(params / 1e9) * math.sqrt(flops / 20e9)
    assert efficiency(params, flops) == (pytest.approx(cost), 1.10)  # capped for this model
    assert ces(0.36, params, flops) == pytest.approx(0.396)
    assert ces(-0.2, params, flops) == 0.0
    big_c = math.sqrt(383e6 / 1e9) * math.sqrt(20.7e9 / 20e9)
    assert efficiency(383_000_000, 20_700_000_000)[1] == pytest.approx(
        min(1 + 0.05 * math.log(1 / big_c), 1.10)
    )
    assert efficiency(4_000_000_000, 100e9)[1] == pytest.approx(
        1 / (1 + 2 * math.log(math.sqrt(4) * math.sqrt(5)))
    )


def test_model_info_command():
    result = CliRunner().invoke(app, ["model", "info"])
    assert result.exit_code == 0, result.output
    assert "27.7" in result.output and "GFLOPs" in result.output and "E(C) = 1.100" in result.output
