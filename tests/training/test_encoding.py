"""The embedding cache's encoding levers: items encoded in order of their token count (less
padding) still get their own features; bfloat16 encoding (CURATE_ENCODE_PRECISION) has a cache
of its own and says so. A tiny text-only model, seconds."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from curation.errors import UserError  # noqa: E402
from training.embeddings import (  # noqa: E402
    PRECISION_ENV,
    EmbeddingCache,
    by_token_count,
    content_keys,
    encoders_ran,
)
from training.encoders import NO_IMAGE_ENCODER, TINY_TEXT_ENCODER  # noqa: E402
from training.model import MAX_TOKENS, build_model  # noqa: E402


@pytest.fixture(scope="module")
def loaded():
    return build_model(NO_IMAGE_ENCODER, TINY_TEXT_ENCODER, 0)


def _texts(seed: int, n: int) -> list[str]:
    words = ["serum", "gentle", "cleanser", "for", "dry", "skin", "vitamin", "tea", "box", "a"]
    draw = random.Random(seed)
    # from one word to past the token limit, so that some are cut at MAX_TOKENS
    return [" ".join(draw.choice(words) for _ in range(draw.choice([1, 3, 12, 40, 300])))
            for _ in range(n)]


def test_each_item_gets_its_own_features_whatever_order_it_was_encoded_in(loaded, tmp_path):
    texts = _texts(0, 23)
    texts.append(texts[5])  # a repeated text is encoded once and given to both
    cache = EmbeddingCache(tmp_path, loaded)
    embedded = cache.embed(texts, [None] * len(texts), batch_size=4, workers=0)
    model = loaded.model.eval()
    with torch.no_grad():
        for i, text in enumerate(texts):  # alone: a batch of one has no padding
            tokens = loaded.tokenizer([text], truncation=True, max_length=MAX_TOKENS,
                                      return_tensors="pt")
            alone = model.encode(None, tokens["input_ids"], tokens["attention_mask"],
                                 torch.zeros(1))[0].numpy()
            np.testing.assert_allclose(embedded.features[i], alone, atol=1e-4, rtol=1e-4,
                                       err_msg=f"item {i}")
    # the cache encoded (and stored) them in order of token count, not in the items' order
    keys = content_keys(texts, [None] * len(texts))
    first = [i for i, key in enumerate(keys) if key not in keys[:i]]  # a repeat is encoded once
    order = by_token_count(first, texts, loaded.tokenizer)
    assert order != first
    stored = [k for part in sorted(cache.dir.glob("part-*.parquet"))
              for k in pq.read_table(part, columns=["content_key"]).column(0).to_pylist()]
    assert stored == [keys[i] for i in order]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=40), st.integers(1, 7))
def test_by_token_count_is_a_stable_sort_by_length(loaded, lengths, chunk):
    texts = [" ".join(["tea"] * n) for n in lengths]
    rows = list(range(len(texts)))[::-1]  # not in their own order: ties keep this one
    ordered = by_token_count(rows, texts, loaded.tokenizer, chunk=chunk)
    assert sorted(ordered) == sorted(rows)
    counts = [lengths[i] for i in ordered]
    assert counts == sorted(counts)
    for a, b in itertools.pairwise(ordered):
        if lengths[a] == lengths[b]:
            assert rows.index(a) < rows.index(b)


def test_bfloat16_encoding_has_a_cache_of_its_own_and_says_so(loaded, tmp_path, monkeypatch):
    texts = _texts(1, 12)
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    exact = EmbeddingCache(tmp_path, loaded)
    assert "precision" not in exact.description  # float32 caches keep their earlier keys
    full = exact.embed(texts, [None] * len(texts), batch_size=4, workers=0)
    monkeypatch.setenv(PRECISION_ENV, "bfloat16")
    fast = EmbeddingCache(tmp_path, loaded)
    half = fast.embed(texts, [None] * len(texts), batch_size=4, workers=0)
    assert half.encoder_key != full.encoder_key
    assert half.encoded_now == len(texts)  # nothing taken from the float32 cache
    assert encoders_ran(half)["precision"] == "bfloat16"
    assert encoders_ran(full)["precision"] == "float32"
    gap = np.abs(half.features - full.features).max() / full.features.std()
    assert 0 < gap < 0.2  # other floats, close ones
    again = EmbeddingCache(tmp_path, loaded).embed(texts, [None] * len(texts), batch_size=4,
                                                   workers=0)
    assert again.encoded_now == 0 and np.array_equal(again.features, half.features)


def test_an_unknown_precision_is_one_clear_error(loaded, tmp_path, monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "fp16")
    with pytest.raises(UserError, match="CURATE_ENCODE_PRECISION='fp16': choose one of "
                                        "float32, bfloat16"):
        EmbeddingCache(tmp_path, loaded)
