"""The text-only model (image encoder ``none``), what "has an image" means (an image was
decoded), and the record of which encoders ran. Tiny encoders, a 300-item corpus: seconds."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from curate.cli import app  # noqa: E402
from curation.images import resolve_image_paths  # noqa: E402
from curation.ingest import ingest  # noqa: E402
from curation.slices import Slice, build_slice  # noqa: E402
from curation.synth import SynthConfig, synthesize  # noqa: E402
from tests.conftest import copy_catalog  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.embeddings import embed_slice, encoders_ran  # noqa: E402
from training.encoders import (  # noqa: E402
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    NO_IMAGE_ENCODER,
    OFFLINE_TEXT_ENCODER,
    RANDOM_B0,
    TINY_IMAGE_ENCODER,
    TINY_TEXT_ENCODER,
    describe_encoders,
)
from training.predict import load_run_model  # noqa: E402
from training.trainer import train  # noqa: E402

TEXT_ONLY = {"image_encoder": NO_IMAGE_ENCODER, "text_encoder": TINY_TEXT_ENCODER}
TINY = {"image_encoder": TINY_IMAGE_ENCODER, "text_encoder": TINY_TEXT_ENCODER}
SLICE = "default-frac1-seed0"

# The tiny text encoder's parameters, by hand: a BERT of hidden size 64, 2 layers, feed-forward
# 128, MiniLM's vocabulary (30,522 tokens), 512 positions, 2 token types, no pooler.
HIDDEN, FFN, LAYERS, VOCAB = 64, 128, 2, 30_522
EMBEDDINGS = (VOCAB + 512 + 2) * HIDDEN + 2 * HIDDEN  # token, position, type tables; LayerNorm
LAYER = (4 * (HIDDEN * HIDDEN + HIDDEN)  # query, key, value, attention output
         + 2 * HIDDEN  # LayerNorm
         + (HIDDEN * FFN + FFN) + (FFN * HIDDEN + HIDDEN)  # feed-forward in and out
         + 2 * HIDDEN)  # LayerNorm
TINY_TEXT_PARAMS = EMBEDDINGS + LAYERS * LAYER
# The head on the text's 64 features alone: 64 -> 512 -> 256 -> 1, a LayerNorm after each hidden.
HEAD_PARAMS = (HIDDEN * 512 + 512) + 2 * 512 + (512 * 256 + 256) + 2 * 256 + (256 + 1)


def _catalog(root: Path, seed: int) -> Path:
    synthesize(root / "corpus", SynthConfig(n_items=300, seed=seed))
    catalog = root / "catalog"
    ingest(str(root / "corpus" / "raw"), catalog)
    build_slice(catalog, 1.0)
    return catalog


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _catalog(tmp_path_factory.mktemp("text-only"), seed=12)


@pytest.fixture
def catalog(built: Path, tmp_path: Path) -> Path:
    """A private copy: the tests write embedding caches and runs into it, and the cold-cache
    test must not see another test's cache whatever the order (mutmut ran them sorted)."""
    return copy_catalog(built, tmp_path / "catalog")


_OPENED: list[str] = []
_COUNTING = {"on": False}


def _count_opens(event: str, args: tuple) -> None:
    if _COUNTING["on"] and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_count_opens)  # an audit hook cannot be removed: it counts only when asked


def test_describe_encoders_says_what_is_not_pretrained() -> None:
    offline = describe_encoders(RANDOM_B0, OFFLINE_TEXT_ENCODER,
                                image_encoder=DEFAULT_IMAGE_ENCODER,
                                text_encoder=DEFAULT_TEXT_ENCODER)
    assert offline["image"] == {
        "configured": DEFAULT_IMAGE_ENCODER, "loaded": RANDOM_B0, "pretrained": False,
        "ran": True,
        "label": f"{RANDOM_B0} (not pretrained; stand-in for {DEFAULT_IMAGE_ENCODER})"}
    assert offline["text"]["pretrained"] is True  # all-MiniLM is trained, though not the asked one
    assert offline["text"]["label"] == \
        f"{OFFLINE_TEXT_ENCODER} (stand-in for {DEFAULT_TEXT_ENCODER})"
    tiny = describe_encoders(TINY_IMAGE_ENCODER, TINY_TEXT_ENCODER)
    assert not tiny["image"]["pretrained"] and not tiny["text"]["pretrained"]
    assert tiny["image"]["configured"] == TINY_IMAGE_ENCODER  # not given: the source
    hub = describe_encoders(DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER)
    assert hub["image"]["pretrained"] and hub["image"]["label"] == DEFAULT_IMAGE_ENCODER
    text_only = describe_encoders(NO_IMAGE_ENCODER, TINY_TEXT_ENCODER)["image"]
    assert text_only["loaded"] == NO_IMAGE_ENCODER
    assert not text_only["ran"] and not text_only["pretrained"]


def test_text_only_embeddings_read_no_image_and_have_their_own_cache(catalog: Path) -> None:
    slice_ = Slice.open(catalog, SLICE)
    _OPENED.clear()
    _COUNTING["on"] = True
    try:
        items, embedded = embed_slice(slice_, **TEXT_ONLY)
    finally:
        _COUNTING["on"] = False
    assert embedded.encoded_now == items.height  # a cold cache: every item encoded
    assert not [p for p in _OPENED if p.endswith(".jpg")]  # not one image opened
    assert embedded.features.shape == (items.height, HIDDEN)  # the text's CLS features alone
    assert not embedded.has_image.any() and embedded.with_image == 0
    with_images_items, with_images = embed_slice(slice_, **TINY)
    assert with_images.encoder_key != embedded.encoder_key
    assert with_images.features.shape[1] > HIDDEN
    local = items["image_path"].is_not_null().sum()
    assert 0 < with_images.with_image == local < items.height  # the synthetic images decode
    ran = encoders_ran(with_images)
    assert ran["items"] == with_images_items.height and ran["with_image"] == local
    assert ran["image"]["loaded"] == TINY_IMAGE_ENCODER and not ran["image"]["pretrained"]
    assert encoders_ran(embedded)["image"]["ran"] is False
    # the text-only cache holds text-only features: read again, nothing is encoded
    assert embed_slice(slice_, **TEXT_ONLY)[1].encoded_now == 0


def test_a_frozen_text_only_run_counts_only_what_runs(catalog: Path, tmp_path: Path) -> None:
    from transformers import EfficientNetModel

    config = TrainConfig(catalog=str(catalog), slice=SLICE, weights="uniform", mode="frozen",
                         seed=1, epochs=3, **TEXT_ONLY)
    result = train(config, tmp_path / "run", log=lambda _: None)
    metrics = result.metrics
    assert metrics["test"]["n"] > 0 and metrics["test"]["rmse"] > 0
    assert metrics["params"] == TINY_TEXT_PARAMS + HEAD_PARAMS
    loaded, _ = load_run_model(tmp_path / "run")
    model = loaded.model
    assert not any(isinstance(m, EfficientNetModel) for m in model.modules())
    assert not any(name.startswith("image_encoder") for name, _ in model.named_parameters())
    # FLOPs: the text encoder and the head, counted here without the model's forward
    from torch.utils.flop_counter import FlopCounterMode

    tokens = loaded.tokenizer(["x"], padding="max_length", max_length=256, truncation=True,
                              return_tensors="pt")
    model.text_encoder.set_attn_implementation("eager")  # as the counter counts it
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        cls = model.text_encoder(input_ids=tokens["input_ids"],
                                 attention_mask=tokens["attention_mask"]).last_hidden_state[:, 0]
        model.head(cls)
    assert metrics["flops"] == counter.get_total_flops()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"]["items_with_image"] == metrics["items_with_image"] == 0
    items = sum(manifest["counts"][f"{s}_items"] for s in ("train", "val", "test"))
    assert manifest["counts"]["items_without_image"] == items
    assert manifest["encoders_ran"] == metrics["encoders_ran"]
    assert manifest["encoders_ran"]["image"]["ran"] is False
    assert manifest["encoders_ran"]["text"]["loaded"] == TINY_TEXT_ENCODER
    # a frozen run with images has another embedding cache
    _, with_images = embed_slice(Slice.open(catalog, SLICE), **TINY)
    assert metrics["encoding"]["encoder_key"] != with_images.encoder_key


def test_a_finetuned_text_only_run_and_its_predictions(catalog: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, [
        "train", "-c", str(catalog), "--slice", SLICE, "--weights", "uniform",
        "--mode", "finetune", "--epochs", "1", "--lr", "1e-3", "--image-encoder", "none",
        "--text-encoder", TINY_TEXT_ENCODER, "--out", str(run), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "text-only model" in result.output and "test  PLCC" in result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["params"] == TINY_TEXT_PARAMS + HEAD_PARAMS
    assert metrics["items_with_image"] == 0
    submission = tmp_path / "submission.csv"
    result = runner.invoke(app, ["predict", "--run", str(run), "-c", str(catalog), "--slice",
                                 SLICE, "--out", str(submission), "--workers", "0"])
    assert result.exit_code == 0, result.output
    saved = pl.read_parquet(run / "predictions.parquet").filter(pl.col("split") == "test")
    joined = saved.join(pl.read_csv(submission), left_on="parent_asin", right_on="item_id")
    assert joined.height == saved.height
    assert (joined["prediction"].clip(1, 5) - joined["score"]).abs().max() <= 0.0051


def test_the_label_quality_audit_runs_on_text_only_embeddings(catalog: Path) -> None:
    from audit.label_quality import label_quality_audit

    result = label_quality_audit(catalog, SLICE, image_encoder=NO_IMAGE_ENCODER,
                                 text_encoder=TINY_TEXT_ENCODER, folds=3)
    assert result.items == Slice.open(catalog, SLICE).items(["parent_asin"]).height
    ran = json.loads((result.folder / "manifest.json").read_text())["encoders_ran"]
    assert ran["image"]["ran"] is False and ran["with_image"] == 0
    assert ran["items"] == result.items


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_an_image_that_does_not_decode_is_no_image(tmp_path: Path, mode: str) -> None:
    """An item whose image file exists but is not an image has its path resolved, yet no
    image: the run counts it with the items without one."""
    catalog = _catalog(tmp_path, seed=13)
    items = Slice.open(catalog, SLICE).items(["parent_asin", "main_image_url"])
    paths = resolve_image_paths(items["main_image_url"].to_list(), Slice.open(
        catalog, SLICE).catalog.layout)
    local = [p for p in paths if p is not None]
    assert 0 < len(local) < items.height  # the corpus has items with and without images
    Path(local[0]).write_bytes(b"\xff\xd8\xff\xe0 not a JPEG after all")  # exists, undecodable
    config = TrainConfig(catalog=str(catalog), slice=SLICE, weights="uniform", mode=mode,
                         epochs=1, lr=1e-3 if mode == "finetune" else None, **TINY)
    result = train(config, tmp_path / "run", workers=0, log=lambda _: None)
    expected = len(local) - 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"]["items_with_image"] == result.metrics["items_with_image"] == expected
    assert manifest["counts"]["items_without_image"] == items.height - expected
    assert any(f"{items.height - expected:,} of {items.height:,} items have no image that could "
               "be read" in note for note in manifest["notes"])
    if mode == "frozen":
        _, embedded = embed_slice(Slice.open(catalog, SLICE), **TINY)
        assert embedded.with_image == expected
        assert int(np.count_nonzero(embedded.has_image)) == expected
