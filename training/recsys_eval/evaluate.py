"""Seeds x models on one benchmark: full rankings, per-user metrics, intervals over users and
seeds, paired comparisons against the best ID-only model, the report and the Parquet files.

Who is ranked: on ``valid`` and ``test``, every user with at least one held-out item there and
at least one train interaction (a user with no history has nothing to personalise from; how
many are left out is reported). Their train items (for test, train and valid items) are
left out of the ranking; every other item of the benchmark is a candidate.

Segments: ``all`` (every held-out item relevant), ``cold`` (only held-out items with no train
interaction at all, users with at least one such item) and ``warm`` (the rest). The ranking
is the same full ranking in each; only what counts as relevant changes.

Intervals: 95% percentile bootstrap, each replicate drawing the users with replacement and,
for a seeded model, its seeds with replacement (a model that has no seed ran once), so an
interval says how much the figure moves with another draw of users and another training
run. A paired comparison draws the same users for both models.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from curation.errors import UserError
from curation.manifest import replace_path, sha256_file, versions, write_json_atomic
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from training.recsys_eval.config import BOOTSTRAP, FitConfig
from training.recsys_eval.data import EVAL_SPLITS, Benchmark, load_benchmark
from training.recsys_eval.metrics import KS, METRICS, metrics_from_hits, sparse_hits
from training.recsys_eval.models import MODELS, Scorer, normalised_features

SEGMENTS = ("all", "cold", "warm")
LEVEL = 0.95
SELECT_ON = ("valid", "all", "ndcg@10")  # how the best ID-only model is chosen
REPORT_METRICS = ("recall@20", "ndcg@10")
RESULTS = "results.parquet"  # per user
SUMMARY = "summary.parquet"
COMPARISONS = "comparisons.parquet"
REPORT = "report.md"
PLOT = "plot.png"


@dataclass
class EvalConfig:
    models: list[str]
    seeds: list[int]
    fit: FitConfig = field(default_factory=FitConfig)
    weights: str | None = None  # a weighting spec, per item
    image_encoder: str = DEFAULT_IMAGE_ENCODER
    text_encoder: str = DEFAULT_TEXT_ENCODER
    eval_batch: int = 1024
    bootstrap: int = BOOTSTRAP


@dataclass
class EvalResult:
    folder: Path | None
    per_user: pl.DataFrame
    summary: pl.DataFrame
    comparisons: pl.DataFrame
    baseline: str | None
    seconds: dict[str, float]
    notes: list[str]
    encoders: dict[str, Any] = field(default_factory=dict)  # what encoded each modality


# --- item features ----------------------------------------------------------------------------


def item_features(bench: Benchmark, modality: str, cache_root: Path, config: EvalConfig
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """Item features from the embedding cache (encoding what it lacks): ``text`` from the
    text-only model, ``image`` and ``both`` from the full model (a UserError when no item has
    an image that decodes)."""
    from training.embeddings import EmbeddingCache, encoders_ran
    from training.model import is_random_image_encoder, model_for_run

    texts = [t or "" for t in bench.item_text]
    if not any(t.strip() for t in texts):
        raise UserError(f"{bench.folder}: no item has text (model_text); clean the catalog "
                        "before the export, or pass --item-text")
    image_encoder = "none" if modality == "text" else config.image_encoder
    loaded, _, _ = model_for_run(image_encoder, config.text_encoder, seed=0,
                                 shared_encoders=True)
    calibration: list[str] = []
    if is_random_image_encoder(loaded.image_source):
        seen = bench.item_train_counts() > 0  # train items only, as the trainer calibrates
        calibration = sorted(p for p, s in zip(bench.image_paths, seen, strict=True)
                             if p and s)[:256]
    cache = EmbeddingCache(cache_root, loaded, calibration)
    embedded = cache.embed(texts, list(bench.image_paths), label=f"encoding {modality}")
    ran = encoders_ran(embedded)
    ran["cache"] = cache.key
    features = embedded.features
    if modality == "text":
        return normalised_features([features]), ran
    if embedded.with_image == 0:
        raise UserError(f"{bench.folder}: no item has an image that decodes (fetch them with "
                        f"`curate images fetch` before the export); {modality} models need one")
    image_dim = loaded.model.image_dim
    image = np.where(embedded.has_image[:, None], features[:, :image_dim], 0.0)
    if modality == "image":
        return normalised_features([image]), ran
    return normalised_features([image, features[:, image_dim:]]), ran


def item_weights(bench: Benchmark, spec: str) -> np.ndarray:
    """One weight per item from a weighting spec, over the benchmark's item table with
    ``review_count`` (train interactions) added; ``rating_number`` from the catalog when the
    table has it, else the train interactions."""
    from weighting.compute import compute

    items_path = bench.folder / f"{bench.category}.items.parquet"
    counts = bench.item_train_counts().astype(np.int64)
    frame = pl.DataFrame({"parent_asin": bench.item_ids, "review_count": counts})
    if items_path.exists():
        table = pl.read_parquet(items_path).drop("review_count", strict=False)
        frame = frame.join(table, on="parent_asin", how="left")
    if "rating_number" not in frame.columns:
        frame = frame.with_columns(rating_number=pl.col("review_count"))
    frame = frame.with_columns(pl.col("rating_number").fill_null(pl.col("review_count")))
    return compute(frame, spec).to_numpy().astype(np.float32)


# --- ranking ----------------------------------------------------------------------------------


def top_items(scorer: Scorer, users: np.ndarray, seen: sp.csr_matrix, k: int,
              batch: int) -> np.ndarray:
    """(len(users), k) items by score, best first, the user's ``seen`` items left out."""
    out = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        scores = scorer.scores(chunk)  # on the scorer's device: masked and cut there
        known = seen[chunk].tocoo()
        rows = torch.from_numpy(known.row.astype(np.int64)).to(scores.device)
        cols = torch.from_numpy(known.col.astype(np.int64)).to(scores.device)
        scores[rows, cols] = -torch.inf
        out[start:start + len(chunk)] = torch.topk(scores, k, dim=1).indices.cpu().numpy()
    return out


def _segment_relevance(relevant: sp.csr_matrix, cold: np.ndarray) -> dict[str, sp.csr_matrix]:
    cold_mask = sp.diags(cold.astype(np.float32))
    warm_mask = sp.diags((~cold).astype(np.float32))
    segments = {"all": relevant, "cold": (relevant @ cold_mask).tocsr(),
                "warm": (relevant @ warm_mask).tocsr()}
    for matrix in segments.values():
        matrix.eliminate_zeros()  # a masked-out item must not count as relevant
    return segments


def evaluated_users(bench: Benchmark, split: str) -> np.ndarray:
    held = np.asarray(bench.matrices[split].sum(axis=1)).ravel() > 0
    history = np.asarray(bench.train.sum(axis=1)).ravel() > 0
    return np.flatnonzero(held & history)


def score_model(bench: Benchmark, scorer: Scorer, batch: int) -> list[dict[str, Any]]:
    """Per-user metrics of one fitted model: rows of split, segment, user and the metrics."""
    cold = bench.cold_items()
    rows: list[dict[str, Any]] = []
    for split in EVAL_SPLITS:
        users = evaluated_users(bench, split)
        if len(users) == 0:
            continue
        top = top_items(scorer, users, bench.seen_before(split), max(KS), batch)
        segments = _segment_relevance(bench.matrices[split][users], cold)
        for segment in SEGMENTS:
            relevant = segments[segment]
            keep = np.asarray(relevant.sum(axis=1)).ravel() > 0
            if not keep.any():
                continue
            kept = relevant[keep]
            metrics = metrics_from_hits(sparse_hits(top[keep], kept),
                                        np.diff(kept.indptr))
            rows.append({"split": split, "segment": segment, "user": users[keep],
                         **metrics})
    return rows


# --- intervals --------------------------------------------------------------------------------


def _replicates(matrix: np.ndarray, user_draws: np.ndarray, rng: np.random.Generator
                ) -> np.ndarray:
    """Bootstrap means: ``matrix`` (seeds, users); ``user_draws`` (B, users) counts."""
    n_seeds, n_users = matrix.shape
    seed_counts = np.stack([np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds)
                            for _ in range(len(user_draws))]) / n_seeds
    per_user = seed_counts @ matrix  # (B, users): the resampled seeds' mean per user
    return (per_user * user_draws).sum(axis=1) / n_users


def _user_draws(n_users: int, replicates: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=replicates
                           ).astype(np.float32)


def summarise(per_user: pl.DataFrame, specs: dict[str, Any], bootstrap: int
              ) -> tuple[pl.DataFrame, dict[tuple[str, str, str, str], np.ndarray]]:
    """Per model, split, segment and metric: the mean over users and seeds, its interval,
    users and seeds; and the bootstrap replicates (for the paired comparisons)."""
    alpha = (1 - LEVEL) / 2
    rows, replicates = [], {}
    groups = per_user.select("split", "segment").unique().sort("split", "segment").rows()
    for index, (split, segment) in enumerate(groups):
        part = per_user.filter((pl.col("split") == split) & (pl.col("segment") == segment))
        users = np.sort(part["user"].unique().to_numpy())
        draws = _user_draws(len(users), bootstrap, seed=index)
        for model in part["model"].unique(maintain_order=True).to_list():
            rows_m = part.filter(pl.col("model") == model)
            seeds = rows_m["seed"].unique().sort().to_list()
            rng = np.random.default_rng(hash_text(f"{model}/{split}/{segment}"))
            for metric in METRICS:
                matrix = np.stack([
                    rows_m.filter(pl.col("seed").eq_missing(s)).sort("user")[metric].to_numpy()
                    for s in seeds])
                reps = _replicates(matrix, draws, rng)
                replicates[(model, split, segment, metric)] = reps
                rows.append({
                    "model": model, "family": specs[model].family, "split": split,
                    "segment": segment, "metric": metric, "mean": float(matrix.mean()),
                    "low": float(np.quantile(reps, alpha)),
                    "high": float(np.quantile(reps, 1 - alpha)),
                    "users": len(users), "seeds": len(seeds)})
    return pl.DataFrame(rows), replicates


def hash_text(text: str) -> int:
    """A seed from a name that is the same in every process (``hash`` is salted)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def compare(summary: pl.DataFrame, replicates: dict[tuple[str, str, str, str], np.ndarray],
            baseline: str) -> pl.DataFrame:
    """Every other model minus ``baseline``, on the test split, per segment and metric: the
    difference of means and its paired bootstrap interval (the same users drawn for both)."""
    alpha = (1 - LEVEL) / 2
    rows = []
    test = summary.filter(pl.col("split") == "test")
    means = {(r["model"], r["segment"], r["metric"]): r["mean"] for r in test.iter_rows(
        named=True)}
    for model in test["model"].unique(maintain_order=True).to_list():
        if model == baseline:
            continue
        for segment in SEGMENTS:
            for metric in METRICS:
                key, base = (model, "test", segment, metric), (baseline, "test", segment, metric)
                if key not in replicates or base not in replicates:
                    continue
                diff = replicates[key] - replicates[base]
                low, high = float(np.quantile(diff, alpha)), float(np.quantile(diff, 1 - alpha))
                rows.append({
                    "model": model, "baseline": baseline, "segment": segment, "metric": metric,
                    "difference": means[(model, segment, metric)] - means[
                        (baseline, segment, metric)],
                    "low": low, "high": high,
                    "verdict": "better" if low > 0 else "worse" if high < 0 else "no clear "
                               "difference"})
    return pl.DataFrame(rows, schema={
        "model": pl.String, "baseline": pl.String, "segment": pl.String, "metric": pl.String,
        "difference": pl.Float64, "low": pl.Float64, "high": pl.Float64, "verdict": pl.String})


# --- the run ----------------------------------------------------------------------------------


def evaluate(bench: Benchmark, config: EvalConfig, *, cache_root: Path | None = None
             ) -> EvalResult:
    """Fit and rank every model (seeded ones once per seed) and summarise. Nothing written."""
    specs = {name: MODELS[name] for name in config.models}
    notes: list[str] = []
    modalities = sorted({s.modality for s in specs.values() if s.modality})
    features: dict[str, np.ndarray] = {}
    encoders: dict[str, Any] = {}
    if modalities and cache_root is None:
        raise UserError("content models need an embedding cache (a catalog folder)")
    for modality in modalities:
        assert cache_root is not None
        features[modality], encoders[modality] = item_features(bench, modality, cache_root,
                                                                config)
    weights = item_weights(bench, config.weights) if config.weights else None
    seconds: dict[str, float] = {}
    frames = []
    for name, spec in specs.items():
        for seed in config.seeds if spec.seeded else [None]:
            started = time.perf_counter()
            scorer = spec.fit(train=bench.train, features=features.get(spec.modality or ""),
                              config=config.fit, seed=0 if seed is None else seed,
                              weights=weights if spec.weighted else None)
            fitted = time.perf_counter()
            for rows in score_model(bench, scorer, config.eval_batch):
                users = rows.pop("user")
                frames.append(pl.DataFrame({
                    "model": name, "seed": pl.Series([seed] * len(users), dtype=pl.Int64),
                    "split": rows.pop("split"), "segment": rows.pop("segment"),
                    "user_id": [bench.user_ids[u] for u in users], "user": users,
                    **{m: v for m, v in rows.items()}}))
            seconds[f"{name}/{seed}/fit"] = fitted - started
            seconds[f"{name}/{seed}/rank"] = time.perf_counter() - fitted
    per_user = pl.concat(frames)
    summary, replicates = summarise(per_user, specs, config.bootstrap)
    ids = [n for n, s in specs.items() if s.family == "id"]
    baseline = None
    if ids:
        split, segment, metric = SELECT_ON
        chosen = summary.filter((pl.col("split") == split) & (pl.col("segment") == segment) &
                                (pl.col("metric") == metric) & pl.col("model").is_in(ids))
        if chosen.height:
            baseline = chosen.sort(["mean", "model"], descending=[True, False])["model"][0]
    comparisons = compare(summary, replicates, baseline) if baseline else pl.DataFrame()
    if weights is not None:
        notes.append(f"sample weights {config.weights!r} weigh the positive pairs of "
                     f"{', '.join(n for n, s in specs.items() if s.weighted) or 'no model'}")
    return EvalResult(None, per_user.drop("user"), summary, comparisons, baseline, seconds,
                      notes, encoders)


def _cell(summary: pl.DataFrame, model: str, split: str, segment: str, metric: str) -> str:
    row = summary.filter((pl.col("model") == model) & (pl.col("split") == split) &
                         (pl.col("segment") == segment) & (pl.col("metric") == metric))
    if row.height == 0:
        return "–"
    r = row.row(0, named=True)
    return f"{r['mean']:.4f} [{r['low']:.4f}, {r['high']:.4f}]"


def _segment_users(summary: pl.DataFrame, split: str, segment: str) -> int:
    rows = summary.filter((pl.col("split") == split) & (pl.col("segment") == segment))
    return int(rows["users"][0]) if rows.height else 0


def benchmark_counts(bench: Benchmark) -> dict[str, Any]:
    cold = bench.cold_items()
    counts: dict[str, Any] = {"users": bench.n_users, "items": bench.n_items,
                              "cold_items": int(cold.sum())}
    for split, matrix in bench.matrices.items():
        counts[split] = int(matrix.nnz)
    for split in EVAL_SPLITS:
        held = np.asarray(bench.matrices[split].sum(axis=1)).ravel() > 0
        counts[f"{split}_users_ranked"] = len(evaluated_users(bench, split))
        counts[f"{split}_users_without_history"] = int(held.sum()) - counts[
            f"{split}_users_ranked"]
        counts[f"{split}_cold_interactions"] = int(bench.matrices[split][:, cold].nnz)
    return counts


def render_report(bench: Benchmark, config: EvalConfig, result: EvalResult,
                  counts: dict[str, Any], encoders: dict[str, Any]) -> str:
    s = result.summary
    lines = [f"# Recommendation: {bench.folder.name}", "",
             f"Benchmark `{bench.folder.name}` ({bench.category}, split `{bench.split_method}`): "
             f"{counts['users']:,} users, {counts['items']:,} items "
             f"({counts['cold_items']:,} with no train interaction); interactions train "
             f"{counts['train']:,}, valid {counts['valid']:,}, test {counts['test']:,}.", "",
             "Full ranking over every item (no sampled negatives), the user's earlier items left "
             "out (train; for test, train and valid). Users ranked: "
             f"valid {counts['valid_users_ranked']:,}, test {counts['test_users_ranked']:,} "
             f"(left out, no train history: valid {counts['valid_users_without_history']:,}, "
             f"test {counts['test_users_without_history']:,}). Test interactions with a cold "
             f"item: {counts['test_cold_interactions']:,}, held out by "
             f"{_segment_users(s, 'test', 'cold'):,} ranked users (the `cold` columns).", "",
             f"Seeds {', '.join(map(str, config.seeds))} for the trained models (pop, itemknn "
             "and frozen-* have no seed and ran once). Cells: mean over users (and seeds) "
             f"[{LEVEL:.0%} bootstrap interval over users and seeds, {config.bootstrap} "
             "replicates].", ""]
    if encoders:
        for modality, ran in encoders.items():
            lines.append(f"- item features `{modality}`: image {ran['image']['label']}, text "
                         f"{ran['text']['label']}; {ran['items']:,} items, "
                         f"{ran['with_image']:,} with an image; item text from "
                         f"{bench.text_source}")
        lines.append("")
    fit = config.fit
    lines += [f"Training (bpr, twotower, vbpr): dimension {fit.dim}, {fit.epochs} epochs, batch "
              f"{fit.batch_size}, Adam lr {fit.lr}, L2 {fit.reg}; itemknn keeps "
              f"{fit.neighbours} neighbours.", ""]
    lines += [f"- {n}" for n in result.notes]
    header = ["model", "kind", "valid NDCG@10", "test Recall@10", "test Recall@20",
              "test NDCG@10", "test NDCG@20", "cold test Recall@20", "cold test NDCG@20"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in config.models:
        spec = MODELS[model]
        kind = "ID only" if spec.family == "id" else f"content ({spec.modality})"
        cells = [_cell(s, model, "valid", "all", "ndcg@10")] + [
            _cell(s, model, "test", "all", m) for m in METRICS[:2] + METRICS[2:]] + [
            _cell(s, model, "test", "cold", m) for m in ("recall@20", "ndcg@20")]
        lines.append(f"| {model} | {kind} | " + " | ".join(cells) + " |")
    lines.append("")
    if result.baseline and result.comparisons.height:
        lines += [f"## Against the best ID-only model, `{result.baseline}` (chosen on valid "
                  "NDCG@10)", "",
                  "Test, difference of means [paired 95% interval]; 'better' or 'worse' only "
                  "where the interval leaves out 0.", "",
                  "| model | segment | " + " | ".join(REPORT_METRICS) + " |",
                  "|---|---|" + "---|" * len(REPORT_METRICS)]
        c = result.comparisons
        for model in c["model"].unique(maintain_order=True).to_list():
            for segment in ("all", "cold"):
                cells = []
                for metric in REPORT_METRICS:
                    r = c.filter((pl.col("model") == model) & (pl.col("segment") == segment) &
                                 (pl.col("metric") == metric))
                    if r.height:
                        x = r.row(0, named=True)
                        cells.append(f"{x['difference']:+.4f} [{x['low']:+.4f}, "
                                     f"{x['high']:+.4f}] {x['verdict']}")
                    else:
                        cells.append("–")
                lines.append(f"| {model} | {segment} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"Files: `{RESULTS}` (per user, model, seed, split, segment), `{SUMMARY}`, "
              f"`{COMPARISONS}`, `{PLOT}`.", ""]
    return "\n".join(lines)


def _plot(summary: pl.DataFrame, models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 0.45 * len(models) + 1.6), sharey=True)
    for ax, (segment, metric) in zip(axes, (("all", "ndcg@10"), ("cold", "recall@20")),
                                     strict=True):
        for y, model in enumerate(models):
            row = summary.filter((pl.col("model") == model) & (pl.col("split") == "test") &
                                 (pl.col("segment") == segment) & (pl.col("metric") == metric))
            if row.height:
                r = row.row(0, named=True)
                colour = "tab:blue" if MODELS[model].family == "id" else "tab:orange"
                ax.errorbar(r["mean"], y, xerr=[[r["mean"] - r["low"]], [r["high"] - r["mean"]]],
                            fmt="o", color=colour, capsize=3)
        ax.set_title(f"test {metric} ({segment} items)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(models)), models)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def run_eval(bench_dir: Path | str, out: Path | str, config: EvalConfig, *,
             cache_root: Path | None, item_text: Path | str | None = None) -> EvalResult:
    """Evaluate and write ``OUT/<benchmark folder name>/`` (staged, then renamed)."""
    started = time.perf_counter()
    bench = load_benchmark(bench_dir, item_text=item_text)
    result = evaluate(bench, config, cache_root=cache_root)
    counts = benchmark_counts(bench)
    encoders = result.encoders
    final = Path(out) / bench.folder.name
    staging = Path(out) / f".{bench.folder.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    result.per_user.write_parquet(staging / RESULTS, compression="zstd")
    result.summary.write_parquet(staging / SUMMARY, compression="zstd")
    result.comparisons.write_parquet(staging / COMPARISONS, compression="zstd")
    (staging / REPORT).write_text(render_report(bench, config, result, counts, encoders))
    _plot(result.summary, config.models, staging / PLOT)
    manifest = {
        "stage": "recsys_eval",
        "parameters": {**{k: v for k, v in asdict(config).items() if k != "fit"},
                       "fit": asdict(config.fit), "item_text": str(item_text or "")},
        "inputs": {**{p.name: sha256_file(p) for p in sorted(bench.folder.iterdir())
                      if p.suffix in (".parquet", ".json")},
                   **({str(item_text): sha256_file(Path(item_text))} if item_text else {})},
        "counts": counts,
        "baseline": result.baseline,
        "encoders": encoders,
        "seconds": {**result.seconds, "total": time.perf_counter() - started},
        "outputs": {p.name: sha256_file(p) for p in sorted(staging.iterdir())},
        "versions": {**versions(), "torch": torch.__version__},
    }
    write_json_atomic(staging / "manifest.json", manifest)
    replace_path(staging, final)
    result.folder = final
    return result
