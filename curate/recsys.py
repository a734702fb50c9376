"""``curate recsys``: recommendation-benchmark cuts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import CatalogOption, command
from curation.paths import DEFAULT_CATALOG
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from training.recsys_eval.config import (
    BOOTSTRAP,
    DEFAULT_MODELS,
    DEFAULT_SEEDS,
    MODEL_NAMES,
    FitConfig,
    model_names,
    seed_list,
)

_FIT = FitConfig()  # the defaults of the options below

recsys_app = typer.Typer(
    help="Recommendation benchmarks: rating-only tables, k-cores, the official splits, and "
    "recommenders evaluated on them.",
    no_args_is_help=True,
)


@command(recsys_app, "export")
def recsys_export(
    category: Annotated[str, typer.Option(help="Category (a raw file's name, e.g. "
                                          "All_Beauty).")],
    core: Annotated[int, typer.Option(help="k of the k-core (0: every interaction).")] = 5,
    split: Annotated[
        str, typer.Option(help="last_out (per user: last to test, second last to valid) or "
                          "timestamp (valid from 1628643414042 ms, test from 1658002729837).")
    ] = "last_out",
    out: Annotated[Path, typer.Option(help="Folder to write <category>-<k>core-<split>/ "
                                      "into.")] = Path("recsys"),
    profile: Annotated[str, typer.Option(help="Cleaning profile whose items join the item "
                                         "table.")] = "default",
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """Export one category as the official benchmark cuts it: one row per (user, item), the
    earliest review kept; iterative k-core to the fixed point; the split. Writes CSV in the
    official columns (user_id, parent_asin, rating, timestamp) and Parquet, an item table
    with the cleaned text and cached image paths, and a manifest."""
    from curation.recsys import export

    result = export(catalog, category, core, split, out, profile=profile)
    c, k = result.counts, result.kcore
    assert k is not None
    typer.echo(f"{c['review_rows']:,} review rows = {c['interactions']:,} interactions + "
               f"{c['later_duplicates']:,} later duplicates + {c['missing_field']:,} missing a "
               "field")
    typer.echo(f"{core}-core in {k.rounds} rounds: {k.users:,} users, {k.items:,} items, "
               f"{k.interactions_out:,} interactions (density {k.density:.2e}); "
               f"{c['removed_by_kcore']:,} removed")
    typer.echo(f"{split}: train {c['train']:,}, valid {c['valid']:,}, test {c['test']:,}; "
               f"items with metadata {c['items_with_metadata']:,}, with a cached image "
               f"{c['items_with_image']:,}")
    typer.echo(f"-> {result.folder} ({result.seconds:.1f} s)")


@command(recsys_app, "kcore")
def recsys_kcore(
    source: Annotated[Path, typer.Argument(help="A rating-only CSV (user_id, parent_asin, "
                                           "rating, timestamp; header optional).")],
    core: Annotated[int, typer.Option(help="k of the k-core.")] = 5,
    out: Annotated[Path, typer.Option(help="CSV to write (with a header).")] = Path(
        "kcore.csv"),
) -> None:
    """k-core of an existing rating-only CSV, in its row order (a k-core file filtered again
    with the same k comes back unchanged)."""
    from curation.recsys import kcore_csv

    result = kcore_csv(source, core, out)
    typer.echo(f"{result.interactions_in:,} -> {result.interactions_out:,} interactions in "
               f"{result.rounds} rounds: {result.users:,} users, {result.items:,} items "
               f"-> {out}")



@command(recsys_app, "eval")
def recsys_eval(
    bench_dir: Annotated[Path, typer.Argument(help="A benchmark folder written by `curate "
                                              "recsys export` (or `curate recsys tastes`).")],
    models: Annotated[str, typer.Option(help="Comma-separated, from: " + ", ".join(
        MODEL_NAMES) + ".")] = ",".join(DEFAULT_MODELS),
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds for the trained models.")
                     ] = ",".join(map(str, DEFAULT_SEEDS)),
    out: Annotated[Path, typer.Option(help="Folder to write <benchmark>/ into.")] = Path(
        "recsys-eval"),
    item_text: Annotated[Path | None, typer.Option(help="CSV or Parquet of item metadata "
                                                   "(parent_asin + model_text, or title, "
                                                   "description, details...) whose text "
                                                   "replaces the items table's.")] = None,
    weights: Annotated[str | None, typer.Option(help="A weighting spec (curate weights list) "
                                                "weighing each positive pair by its item.")
                       ] = None,
    dim: Annotated[int, typer.Option(help="Embedding dimension of the trained models.")
                   ] = _FIT.dim,
    epochs: Annotated[int, typer.Option(help="Epochs of BPR training.")] = _FIT.epochs,
    batch_size: Annotated[int, typer.Option(help="Train pairs per BPR step.")
                          ] = _FIT.batch_size,
    lr: Annotated[float, typer.Option(help="Adam's learning rate.")] = _FIT.lr,
    neighbours: Annotated[int, typer.Option(help="ItemKNN: neighbours kept per item.")
                          ] = _FIT.neighbours,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates of the intervals.")
                         ] = BOOTSTRAP,
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto (cuda when there is one).")
                      ] = _FIT.device,
    text_encoder: Annotated[str, typer.Option(help="Text encoder of the item features.")
                            ] = DEFAULT_TEXT_ENCODER,
    image_encoder: Annotated[str, typer.Option(help="Image encoder (image and both models).")
                             ] = DEFAULT_IMAGE_ENCODER,
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """Train and rank recommenders on an exported benchmark: full ranking (every item a
    candidate, the user's earlier items left out), Recall@10/20 and NDCG@10/20 on valid and
    test, all items and cold ones (no train interaction), with 95% bootstrap intervals over
    users and seeds, and each model against the best ID-only one. Content models read item
    features from CATALOG/embeddings/ (encoding what is missing). Writes OUT/<benchmark>/:
    report.md, plot.png, results.parquet (per user), summary.parquet, comparisons.parquet and
    a manifest."""
    from curation.errors import UserError
    from curation.paths import CatalogLayout
    from training.recsys_eval.evaluate import EvalConfig, run_eval

    for name, value in (("dim", dim), ("epochs", epochs), ("batch-size", batch_size),
                        ("neighbours", neighbours), ("bootstrap", bootstrap)):
        if value < 1:
            raise UserError(f"--{name} must be 1 or more, got {value}")
    if device not in ("cpu", "cuda", "auto"):
        raise UserError(f"--device {device!r}: choose from cpu, cuda, auto")
    if device != "cpu":
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here")
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = EvalConfig(
        models=model_names(models), seeds=seed_list(seeds),
        fit=FitConfig(dim=dim, epochs=epochs, batch_size=batch_size, lr=lr,
                      neighbours=neighbours, device=device),
        weights=weights, image_encoder=image_encoder, text_encoder=text_encoder,
        bootstrap=bootstrap)
    result = run_eval(bench_dir, out, config, cache_root=CatalogLayout(catalog).embeddings,
                      item_text=item_text)
    assert result.folder is not None
    typer.echo((result.folder / "report.md").read_text())
    typer.echo(f"-> {result.folder} ({sum(result.seconds.values()):.1f} s fitting and "
               "ranking)")


@command(recsys_app, "tastes")
def recsys_tastes(
    out: Annotated[Path, typer.Option(help="Folder to write <category>-tastes-<split>/ "
                                      "into.")] = Path("recsys"),
    users: Annotated[int, typer.Option(help="Users.")] = 400,
    items: Annotated[int, typer.Option(help="Items.")] = 300,
    cold_fraction: Annotated[float, typer.Option(help="Share of items on sale only from the "
                                                 "test boundary (cold).")] = 0.2,
    split: Annotated[str, typer.Option(help="timestamp or last_out.")] = "timestamp",
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
) -> None:
    """A synthetic benchmark with planted tastes: users like topics, an item's text names its
    topic, cold items arrive at the test boundary. Same layout as `recsys export`, plus
    truth_items.parquet and truth_users.parquet."""
    from curation.synth.tastes import TastesConfig, synthesize_tastes

    summary = synthesize_tastes(out, TastesConfig(users=users, items=items,
                                                  cold_fraction=cold_fraction, split=split,
                                                  seed=seed))
    c = summary.counts
    typer.echo(f"{c['users']:,} users, {c['items']:,} items ({c['cold_items']:,} cold), "
               f"{c['interactions']:,} interactions: train {c['train']:,}, valid "
               f"{c['valid']:,}, test {c['test']:,} -> {summary.folder}")
