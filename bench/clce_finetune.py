"""Finetune mode on a GPU: the weighted Huber loss against CLCE, k-fold, text only.

Two steps, because the GPU machine has PyTorch and transformers but none of the catalog's
tools (DuckDB, Polars) and no network:

    # here: the folds, the weights and the tokens of a catalog's items, and the text encoder
    .venv/bin/python bench/clce_finetune.py prepare --catalog real/catalog --out .gpu
    # on the GPU machine (the `device` tool, carrying .gpu): every fold x loss, end to end
    python3 bench/clce_finetune.py run --data .gpu --out $OUT
    # here: the paired comparison over the folds (Nadeau-Bengio corrected t)
    .venv/bin/python bench/clce_finetune.py compare seed0/results.json seed1/results.json ...

The run follows the paper's finetune recipe (AdamW 2e-5, batch 32, cosine schedule with 10%
warm-up, gradient clipping 1.0, up to 10 epochs, early stopping on validation PLCC with
patience 1) on the text encoder (all-MiniLM-L6-v2, carried in float16 and trained in float32)
and the MLP head, with the study's folds (``training.study.crossfit``: stratified, duplicates
together, a ninth of each training part for validation) and the `effiminivlm` weights fitted
on each fold's training items.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOSSES = ("huber", "clce:lambda=0.5,tau=0.1,bins=8")
STRATEGY = "effiminivlm"
MAX_TOKENS = 256


def prepare(catalog: Path, out: Path, folds: int, repeat: int) -> None:
    import shutil

    import polars as pl
    from safetensors.torch import load_file, save_file

    import weighting
    from curation.slices import Slice, build_slice, list_slices
    from training.model import _offline_text_path
    from training.study.crossfit import StudyData, Unit, unit_parts

    names = {m["name"] for m in list_slices(catalog)}
    name = "default-frac1-seed0"
    if name not in names:
        build_slice(catalog, 1.0, seed=0)
    every = Slice.open(catalog, name)
    items = every.items(["parent_asin", "split", "category", "stratum", "rating_bin",
                         "average_rating", "rating_number", "model_text"])
    groups = pl.read_parquet(catalog / "splits" / "default" / "seed0" / "assignments.parquet",
                             columns=["parent_asin", "group_id"])
    items = items.join(groups, on="parent_asin", how="left", maintain_order="left")
    data = StudyData(items, np.zeros((items.height, 1)))
    model_dir = Path(_offline_text_path())
    out.mkdir(parents=True, exist_ok=True)
    encoder = out / "encoder"
    encoder.mkdir(exist_ok=True)
    for file in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(model_dir / file, encoder / file)
    state = load_file(str(model_dir / "model.safetensors"))
    save_file({k: v.half().contiguous() for k, v in state.items()},
              str(encoder / "model.safetensors"))
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(str(encoder))(
        items["model_text"].to_list(), padding="max_length", truncation=True,
        max_length=MAX_TOKENS, return_tensors="np")
    role = np.full((folds, items.height), "", dtype="<U5")
    weight = np.zeros((folds, items.height), dtype=np.float32)
    for fold in range(folds):
        parts = unit_parts(data, Unit(repeat, fold), "kfold", folds)
        for part, rows in parts.items():
            role[fold, rows] = part
        train = items[parts["train"]].with_columns(pl.lit("train").alias("split"))
        weight[fold, parts["train"]] = weighting.compute(train, STRATEGY).to_numpy()
    from dataclasses import asdict

    from training.loss_registry import parse_loss

    # parsed here: the spec grammar is the weighting module's, which needs Polars
    (out / "losses.json").write_text(json.dumps([asdict(parse_loss(s)) for s in LOSSES]))
    np.savez_compressed(out / "data.npz", input_ids=tokens["input_ids"].astype(np.int32),
                        attention_mask=tokens["attention_mask"].astype(np.int8),
                        target=items["average_rating"].to_numpy().astype(np.float32),
                        role=role, weight=weight)
    print(f"{items.height:,} items, {folds} folds, encoder in float16 -> {out}")


def run(data_dir: Path, out: Path, seed: int, epochs: int, max_folds: int | None = None,
        max_items: int | None = None) -> None:
    """Every fold x loss (``max_folds`` and ``max_items`` per part: a quick check on a CPU)."""
    import torch
    from transformers import AutoModel

    # Not training.trainer nor training.metrics: they import Polars, which the GPU machine
    # lacks; lr_at is the trainer's schedule, pearson its metric, here on plain numpy.
    from training.loss import TrainingLoss
    from training.loss_registry import LossPlan, fit_bin_edges
    from training.model import RegressionHead

    plans = {d["spec"]: LossPlan(**d) for d in json.loads((data_dir / "losses.json").read_text())}

    def lr_at(step: int, total: int, warmup_share: float, base: float) -> float:
        warmup = int(warmup_share * total)
        if step < warmup:
            return base * step / max(1, warmup)
        return base * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    def pearson(prediction: np.ndarray, truth: np.ndarray) -> float:
        value = float(np.corrcoef(prediction, truth)[0, 1])
        return value if math.isfinite(value) else -1.0

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = np.load(data_dir / "data.npz")
    ids = torch.from_numpy(data["input_ids"].astype(np.int64))
    mask = torch.from_numpy(data["attention_mask"].astype(np.int64))
    target = torch.from_numpy(data["target"])
    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "strategy": STRATEGY, "runs": []}

    def predict(encoder: torch.nn.Module, head: RegressionHead, rows: np.ndarray) -> np.ndarray:
        encoder.eval()
        head.eval()
        out_rows = []
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            for start in range(0, len(rows), 256):
                index = torch.from_numpy(rows[start:start + 256])
                hidden = encoder(input_ids=ids[index].to(device),
                                 attention_mask=mask[index].to(device)).last_hidden_state[:, 0]
                out_rows.append(head(hidden.float()).squeeze(-1).double().cpu().numpy())
        return np.concatenate(out_rows)

    for fold in range(data["role"].shape[0])[:max_folds]:
        role, weight = data["role"][fold], torch.from_numpy(data["weight"][fold])
        rows = {r: np.flatnonzero(role == r)[:max_items] for r in ("train", "val", "test")}
        for spec, plan in plans.items():
            started = time.perf_counter()
            torch.manual_seed(seed)
            encoder = AutoModel.from_pretrained(str(data_dir / "encoder"),
                                                dtype=torch.float32).to(device)
            head = RegressionHead(encoder.config.hidden_size).to(device)
            with torch.no_grad():
                w, y = weight[rows["train"]], target[rows["train"]]
                head[-1].bias.fill_(float((w * y).sum() / w.sum()))
            loss_fn = TrainingLoss(plan, huber_delta=1.0, renormalise=False,
                                   edges=fit_bin_edges(plan, y.numpy().astype(np.float64)),
                                   width=head[-1].in_features).to(device)
            parameters = [*encoder.parameters(), *head.parameters(), *loss_fn.parameters()]
            optimizer = torch.optim.AdamW(parameters, lr=2e-5, weight_decay=0.01)
            batch = 32
            total = math.ceil(len(rows["train"]) / batch) * epochs
            step, best, best_epoch, bad, history = 0, -math.inf, 0, 0, []
            best_test = None
            for epoch in range(1, epochs + 1):
                encoder.train()
                head.train()
                order = rows["train"][torch.randperm(
                    len(rows["train"]), generator=torch.Generator().manual_seed(
                        seed * 1_000_003 + epoch)).numpy()]
                for start in range(0, len(order), batch):
                    index = torch.from_numpy(order[start:start + batch])
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at(step, total, 0.1, 2e-5)
                    with torch.autocast(device.type, dtype=torch.bfloat16):
                        hidden = encoder(input_ids=ids[index].to(device),
                                         attention_mask=mask[index].to(device)
                                         ).last_hidden_state[:, 0]
                    output, embedding = head.forward_with_embedding(hidden.float())
                    value, _ = loss_fn(output.squeeze(-1), embedding, target[index].to(device),
                                       weight[index].to(device))
                    optimizer.zero_grad(set_to_none=True)
                    value.backward()
                    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                    optimizer.step()
                    step += 1
                val = pearson(predict(encoder, head, rows["val"]),
                              target[rows["val"]].double().numpy())
                history.append(round(val, 4))
                if val > best:
                    best, best_epoch, bad = val, epoch, 0
                    best_test = predict(encoder, head, rows["test"])
                else:
                    bad += 1
                    if bad >= 1:
                        break
            test_target = target[rows["test"]].double().numpy()
            assert best_test is not None
            results["runs"].append({
                "fold": fold, "loss": spec, "train_items": len(rows["train"]),
                "val_items": len(rows["val"]), "test_items": len(rows["test"]),
                "best_epoch": best_epoch, "val_plcc_history": history,
                "test_plcc": pearson(best_test, test_target),
                "test_rmse": float(np.sqrt(((best_test - test_target) ** 2).mean())),
                "seconds": round(time.perf_counter() - started, 1)})
            print(json.dumps(results["runs"][-1]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


def compare(paths: list[Path]) -> None:
    """Each fold's test PLCC averaged over the seeds (one results file per seed), then the
    corrected resampled t over the folds, as a k-fold study does."""
    from training.study.compare import corrected_t

    files = [json.loads(p.read_text()) for p in paths]
    runs = [r for f in files for r in f["runs"]]
    specs = list(dict.fromkeys(r["loss"] for r in runs))  # huber first, as run
    folds = sorted({r["fold"] for r in runs})
    n_train = float(np.mean([r["train_items"] for r in runs]))
    n_test = float(np.mean([r["test_items"] for r in runs]))

    def per_fold(spec: str) -> np.ndarray:
        return np.array([np.mean([r["test_plcc"] for r in runs
                                  if r["fold"] == f and r["loss"] == spec]) for f in folds])

    print(f"{files[0]['device']}, torch {files[0]['torch']}, weights {files[0]['strategy']}, "
          f"{len(folds)} folds x {len(files)} seed(s)")
    for spec in specs:
        e = corrected_t(per_fold(spec), n_train, n_test, 0.95)
        epochs = [r["best_epoch"] for r in runs if r["loss"] == spec]
        seconds = sum(r["seconds"] for r in runs if r["loss"] == spec)
        print(f"{spec}: test PLCC {e.mean:.3f} [{e.low:.3f}, {e.high:.3f}] (best epoch median "
              f"{np.median(epochs):g}, {seconds:.0f} s of training)")
    e = corrected_t(per_fold(specs[1]) - per_fold(specs[0]), n_train, n_test, 0.95)
    print(f"{specs[1]} - {specs[0]}: {e.mean:+.3f} [{e.low:+.3f}, {e.high:+.3f}], "
          f"p = {e.p:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--catalog", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path(".gpu"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, default=Path(".gpu"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--epochs", type=int, default=10)
    r.add_argument("--max-folds", type=int, default=None, help="a quick check: fewer folds")
    r.add_argument("--max-items", type=int, default=None, help="a quick check: fewer items")
    c = sub.add_parser("compare")
    c.add_argument("results", type=Path, nargs="+", help="one results.json per seed")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.catalog, args.out, args.folds, args.repeat)
    elif args.step == "run":
        run(args.data, args.out, args.seed, args.epochs, args.max_folds, args.max_items)
    else:
        compare(args.results)


if __name__ == "__main__":
    main()
