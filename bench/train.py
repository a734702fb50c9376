"""Trainer throughput on this CPU with the full default model (EfficientNet-B0 + MiniLM + head).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train.py       # medians of 3 runs

Prints, each a median over --runs:
- the input pipeline alone (image decode + resize + tokenise, DataLoader), 0 and 1 workers;
- frozen-mode encoding (both encoders, no gradient), items/s, 0 and 1 workers;
- head training on cached embeddings (frozen mode's epochs), items/s;
- one finetune step (batch 32, forward + backward + AdamW), seconds;
and two ratios: input pipeline / encoding (above 1: the model is never kept waiting) and
finetune epoch / frozen epoch time for the same items (why grids run in frozen mode).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl
import torch

from curation.images import resolve_image_paths
from curation.ingest import ingest
from curation.slices import build_slice
from curation.synth import SynthConfig, synthesize
from training.data import ItemDataset, data_loader
from training.loss import weighted_huber
from training.model import HEAD_HIDDEN, MAX_TOKENS, RegressionHead, build_model


def median_rate(items: int, runs: int, work) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return items / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256, help="items per encoding run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--head-items", type=int, default=100_000)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory() as tmp:
        corpus, catalog = Path(tmp) / "corpus", Path(tmp) / "catalog"
        synthesize(corpus, SynthConfig(n_items=int(args.items * 1.6), seed=0))
        ingest(str(corpus / "raw"), catalog)
        result = build_slice(catalog, 1.0)
        items = pl.read_parquet(result.path / "items.parquet").head(args.items)
        texts = items["model_text"].to_list()
        paths = resolve_image_paths(items["main_image_url"].to_list(), catalog)
        loaded = build_model()
        loaded.model.text_encoder.set_attn_implementation("sdpa")
        model = loaded.model.eval()
        dataset = ItemDataset(texts, paths, model.image_size)
        n = len(texts)

        def load_only(workers: int) -> None:
            for _ in data_loader(dataset, loaded.tokenizer, MAX_TOKENS, 32, workers):
                pass

        def encode(workers: int) -> None:
            with torch.inference_mode():
                for b in data_loader(dataset, loaded.tokenizer, MAX_TOKENS, 32, workers):
                    model.encode(b.pixel_values, b.input_ids, b.attention_mask, b.has_image)

        rows = []
        pipeline = {w: median_rate(n, args.runs, lambda w=w: load_only(w)) for w in (0, 1)}
        encoding = {w: median_rate(n, args.runs, lambda w=w: encode(w)) for w in (0, 1)}
        for w in (0, 1):
            rows.append((f"input pipeline alone, {w} worker(s)", f"{pipeline[w]:,.0f} items/s"))
        for w in (0, 1):
            rows.append((f"frozen encoding, full model, {w} worker(s)",
                         f"{encoding[w]:,.1f} items/s"))

        # Head training: what every frozen-mode epoch does (batch 64, AdamW).
        torch.manual_seed(0)
        head = RegressionHead(model.image_dim + model.text_dim, HEAD_HIDDEN)
        features = torch.randn(args.head_items, model.image_dim + model.text_dim)
        target = torch.rand(args.head_items) * 4 + 1
        weight = torch.rand(args.head_items)
        optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)

        def head_epoch() -> None:
            head.train()
            for start in range(0, args.head_items, 64):
                sl = slice(start, start + 64)
                loss, _ = weighted_huber(head(features[sl]).squeeze(-1), target[sl], weight[sl])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        head_rate = median_rate(args.head_items, args.runs, head_epoch)
        rows.append(("head training on cached embeddings (batch 64)",
                     f"{head_rate:,.0f} items/s"))

        # One finetune step of the paper's recipe: batch 32, end to end.
        model.train()
        batch = next(iter(data_loader(dataset, loaded.tokenizer, MAX_TOKENS, 32, 0)))
        full_optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
        batch_target = torch.rand(len(batch.index)) * 4 + 1

        def finetune_step() -> None:
            prediction = model(batch.pixel_values, batch.input_ids, batch.attention_mask,
                               batch.has_image)
            loss, _ = weighted_huber(prediction, batch_target, torch.ones_like(batch_target))
            full_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            full_optimizer.step()

        finetune_step()  # first step allocates the optimizer state
        step_seconds = len(batch.index) / median_rate(len(batch.index), args.runs, finetune_step)
        rows.append(("finetune step, full model, batch 32", f"{step_seconds:.2f} s/step"))

    best_encoding = max(encoding.values())
    finetune_rate = 32 / step_seconds
    print(f"\n| measured (median of {args.runs}) | value |")
    print("|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(f"| input pipeline (1 worker) / encoding: does loading keep up? | "
          f"{pipeline[1] / best_encoding:.1f}x |")
    print(f"| finetune epoch / frozen head epoch, same items | "
          f"{head_rate / finetune_rate:,.0f}x |")
    print(f"\nA frozen study pays the encoding once per item ({1 / best_encoding * 1e3:.0f} ms), "
          f"then {1 / head_rate * 1e6:.0f} us per item per epoch; finetuning pays "
          f"{1 / finetune_rate * 1e3:.0f} ms per item per epoch.")


if __name__ == "__main__":
    main()
