"""Frozen encoding on this CPU, full model, on real texts: each lever measured side by side.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/encode.py            # 256 items, medians of 3
    HF_HUB_OFFLINE=1 .venv/bin/python bench/encode.py --items 64 --runs 1

The texts are real: the model texts of the shared real metadata (Health & Personal Care's
first 1,001 items and the whole Subscription Boxes category, ../shared/data/amazon2023),
ingested and cleaned by curate (a 100% slice, the `default` profile), ``--items`` of them
drawn at random (seed 0). The pixels are random: the image encoder's cost does not depend on
them. Encoding only (tokenising is done before the clock starts; the input pipeline runs
about 20 times faster, bench/train.py). The full default model: random EfficientNet-B0
(224 x 224, channels-last) + all-MiniLM-L6-v2 (SDPA attention, at most 256 tokens).

Each way, medians of ``--runs``, in items/s and against the baseline (the way the cache
encoded before issue 17: items in their order, batches of 32, every thread, float32):
  length order: the cache's order now (training.embeddings.by_token_count), batches of 32
  batch 16: length order, batches of 16: the cache now (ENCODE_BATCH_SIZE)
  batch 64: length order, batches of 64
  1 thread: the cache now with torch.set_num_threads(1)
  bfloat16: the cache now under torch.autocast("cpu", bfloat16) (CURATE_ENCODE_PRECISION;
            this CPU's AMX)
and each way's largest difference of its features from the cache now's, relative to the
features' spread.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import polars as pl
import torch
from _measure import ROOT

SHARED = ROOT.parent / "shared" / "data" / "amazon2023"
REAL_FILES = ("meta_Health_and_Personal_Care.head1001.jsonl", "meta_Subscription_Boxes.jsonl")


def real_texts() -> list[str]:
    """The model texts of the shared real metadata, as curate cleans them."""
    import shutil

    from curation.ingest import ingest
    from curation.slices import build_slice

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / "meta_categories"
        raw.mkdir(parents=True)
        for name in REAL_FILES:
            source = SHARED / name
            if not source.exists():
                raise SystemExit(f"{source}: the shared real rows are not there")
            shutil.copy(source, raw / (name.split(".")[0] + ".jsonl"))  # meta_<Category>
        catalog = Path(tmp) / "catalog"
        ingest(str(Path(tmp) / "raw"), catalog)
        result = build_slice(catalog, 1.0)
        return pl.read_parquet(result.path / "items.parquet")["model_text"].to_list()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from training.embeddings import by_token_count
    from training.model import MAX_TOKENS, build_model

    texts = real_texts()
    texts = random.Random(0).sample(texts, min(args.items, len(texts)))
    loaded = build_model()
    loaded.model.text_encoder.set_attn_implementation("sdpa")
    model = loaded.model.eval()
    size = model.image_size
    threads = torch.get_num_threads()
    counts = [len(ids) for ids in loaded.tokenizer(texts, truncation=True,
                                                   max_length=MAX_TOKENS)["input_ids"]]
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs; "
          f"{len(texts)} real texts, tokens: median {statistics.median(counts):.0f}, "
          f"{sum(c >= MAX_TOKENS for c in counts)} at the limit of {MAX_TOKENS}")
    length_order = by_token_count(list(range(len(texts))), texts, loaded.tokenizer)

    def batches(order: list[int], batch_size: int) -> list[tuple[Any, ...]]:
        out = []
        generator = torch.Generator().manual_seed(0)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            tokens = loaded.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                      max_length=MAX_TOKENS, return_tensors="pt")
            pixels = torch.rand(len(rows), 3, size, size, generator=generator)
            out.append((rows, pixels, tokens["input_ids"], tokens["attention_mask"],
                        torch.ones(len(rows))))
        return out

    def encode(prepared: list[tuple[Any, ...]], bf16: bool) -> np.ndarray:
        features = np.zeros((len(texts), model.image_dim + model.text_dim), dtype=np.float32)
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with torch.inference_mode(), context:
            for rows, pixels, ids, mask, has_image in prepared:
                features[rows] = model.encode(pixels, ids, mask, has_image).float().numpy()
        return features

    ways = [("baseline: items' order, batch 32, all threads, float32",
             list(range(len(texts))), 32, threads, False),
            ("length order, batch 32", length_order, 32, threads, False),
            ("length order, batch 16 (the cache now)", length_order, 16, threads, False),
            ("length order, batch 64", length_order, 64, threads, False),
            ("length order, batch 16, 1 thread", length_order, 16, 1, False),
            ("length order, batch 16, bfloat16 autocast", length_order, 16, threads, True)]
    rates: list[float] = []
    features: dict[str, np.ndarray] = {}
    for name, order, batch_size, n_threads, bf16 in ways:
        prepared = batches(order, batch_size)
        torch.set_num_threads(n_threads)
        encode(prepared[:1], bf16)  # warm-up: first-call allocations and kernel choices
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            features[name] = encode(prepared, bf16)
            seconds.append(time.perf_counter() - started)
        torch.set_num_threads(threads)
        rates.append(len(texts) / statistics.median(seconds))
        print(f"  {name}: {rates[-1]:.1f} items/s", flush=True)

    exact = features[ways[2][0]]
    spread = float(exact.std())
    print(f"\n| way (median of {args.runs}) | items/s | against the baseline |")
    print("|---|---:|---:|")
    for (name, *_), rate in zip(ways, rates, strict=True):
        print(f"| {name} | {rate:.1f} | {rate / rates[0]:.2f}x |")
    for name, *_ in ways:
        if name != ways[2][0]:
            gap = float(np.abs(features[name] - exact).max()) / spread
            print(f"{name}: largest feature difference from the cache now's = {gap:.2e} of "
                  "the features' standard deviation")


if __name__ == "__main__":
    main()
