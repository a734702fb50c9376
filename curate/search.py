"""``curate align ...`` and ``curate search``: an image-text alignment of a slice, its index,
and text-to-image search over it (training.retrieval)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import (
    CatalogOption,
    JsonOption,
    Output,
    QuietOption,
    command,
    workers_or_default,
    writes_to,
)
from curation.paths import DEFAULT_CATALOG

align_app = typer.Typer(
    help="Image-text alignment of a slice (a contrastive projection of the cached embeddings), "
    "its search index, and how well its text finds its images. Writes "
    "CATALOG/alignment/<slice>/{model,index}/.",
    no_args_is_help=True,
)
commands = typer.Typer()

SliceOption = Annotated[str, typer.Option("--slice", help="The slice (its train split trains "
                                          "the alignment; all its images are indexed).")]


@command(align_app, "train")
def align_train(
    slice_name: SliceOption,
    catalog: CatalogOption = DEFAULT_CATALOG,
    weights: Annotated[str | None, typer.Option(help="A weights id of the slice (curate "
                                                "weights compute): weighted pairs.")] = None,
    image_encoder: Annotated[str | None, typer.Option(help="Image encoder of the cached "
                                                      "embeddings (default: the model's).")
                             ] = None,
    text_encoder: Annotated[str | None, typer.Option(help="Text encoder of the cached "
                                                     "embeddings (default: the model's).")
                            ] = None,
    dim: Annotated[int, typer.Option(help="Size of the shared space.")] = 128,
    hidden: Annotated[int, typer.Option(help="0: linear towers; else one hidden layer of "
                                        "this width.")] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over the train pairs.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the towers and the batches.")] = 0,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers, for items the "
                                                "embedding cache lacks.")] = None,
) -> None:
    """Train a symmetric InfoNCE projection of the slice's cached image and text embeddings
    into one space, on its train split. Writes CATALOG/alignment/<slice>/model/
    (projection.safetensors, manifest.json with the val split's recall)."""
    from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER
    from training.retrieval.align import AlignConfig, align_slice

    config = AlignConfig(dim=dim, hidden=hidden, epochs=epochs, seed=seed)
    with writes_to(catalog, "align train"):
        result = align_slice(catalog, slice_name,
                             image_encoder=image_encoder or DEFAULT_IMAGE_ENCODER,
                             text_encoder=text_encoder or DEFAULT_TEXT_ENCODER,
                             weights_id=weights, config=config,
                             workers=workers_or_default(workers))
    recall = ", ".join(f"{k} {v:.3f}" for k, v in result.val_recall.items())
    typer.echo(f"{result.train_pairs:,} train pairs, final loss {result.losses[-1]:.3f}; "
               f"val text->image {recall} ({result.seconds:.0f} s)")
    typer.echo(f"-> {result.folder}")


@command(align_app, "index")
def align_index(
    slice_name: SliceOption,
    catalog: CatalogOption = DEFAULT_CATALOG,
    rebuild: Annotated[bool, typer.Option(help="Build anew even if only items were "
                                          "added.")] = False,
) -> None:
    """Build the slice's search index (aligned image vectors, an HNSW graph, word counts), or
    bring it up to date: unchanged items are kept, new ones added, and anything else (an
    item gone or changed, a retrained alignment) rebuilds it. Writes
    CATALOG/alignment/<slice>/index/."""
    from training.retrieval.index import build_index

    with writes_to(catalog, "align index"):
        result = build_index(catalog, slice_name, rebuild=rebuild)
    typer.echo(f"{result.action}: {result.items:,} images indexed ({result.added:,} added, "
               f"{result.seconds:.1f} s) -> {result.folder}")


@command(align_app, "eval")
def align_eval(
    slice_name: SliceOption,
    catalog: CatalogOption = DEFAULT_CATALOG,
    split: Annotated[str, typer.Option(help="Whose texts are the queries.")] = "test",
    truth: Annotated[Path | None, typer.Option(help="A synthetic corpus's "
                                               "ground_truth/images.parquet: items showing "
                                               "another's image are not queried.")] = None,
    json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Recall@1/10/100 of the split's items' own images from their texts, among all the
    slice's images: one-stage and two-stage search, exact and on the HNSW graph. With
    --truth, also the alignment audit's flags against the planted swaps, if it ran."""
    import polars as pl

    from curation.paths import CatalogLayout
    from training.retrieval.search import evaluate

    out = Output(quiet=quiet, json=json)
    exclude: list[str] = []
    if truth is not None:
        table = pl.read_parquet(truth)
        exclude = table.filter(pl.col("image_of").is_not_null())["parent_asin"].to_list()
    with writes_to(catalog, "align eval"):  # the index may be brought up to date
        result = evaluate(catalog, slice_name, split=split, exclude=exclude)
    out.line(f"{result.queries:,} {split} queries among {result.gallery:,} images")
    for method, recall in result.recall.items():
        out.line(f"  {method:<18} " + "  ".join(f"{k} {v:.3f}" for k, v in recall.items())
                 + f"  ({result.seconds[method] * 1000:.2f} ms/query)")
    document = {"queries": result.queries, "gallery": result.gallery, "recall": result.recall,
                "seconds_per_query": result.seconds}
    audit_table = CatalogLayout(catalog).audit_table("alignment", slice_name)
    if truth is not None and audit_table.exists():
        from audit.alignment import against_truth

        found = against_truth(catalog, slice_name, exclude)
        out.line(f"audit alignment: {found['planted']:,} planted, {found['flagged']:,} flagged: "
                 f"precision {found['precision']:.2f}, recall {found['recall']:.2f}; "
                 f"AUC of the margin {found['auc']:.3f}")
        document["audit"] = found
    out.document(document)


@command(commands, "search")
def search_command(
    text: Annotated[str, typer.Argument(help="What to find: a title, features, a "
                                        "description.")],
    slice_name: SliceOption,
    catalog: CatalogOption = DEFAULT_CATALOG,
    k: Annotated[int, typer.Option("-k", help="How many images.")] = 10,
    one_stage: Annotated[bool, typer.Option("--one-stage", help="The whole text's vector "
                                            "only (no entities, no re-ranking).")] = False,
    exact: Annotated[bool, typer.Option(help="Exact search instead of the HNSW "
                                        "graph.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write a page of thumbnails here.")] = None,
    json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Text-to-image search over the slice's images: entities of the text (title, features,
    sentences) searched and merged, then re-ranked by a summary of the text and the whole
    text. Prints rank, item, score and image path (builds or updates the index first when
    the slice or its alignment changed)."""
    from training.retrieval.search import Searcher, index_is_stale

    out = Output(quiet=quiet, json=json)
    if index_is_stale(catalog, slice_name):  # brought up to date: a writer
        with writes_to(catalog, "search"):
            searcher = Searcher.open(catalog, slice_name)
    else:  # a reader: no lock, so a search runs beside a training
        searcher = Searcher.open(catalog, slice_name, update=False)
    found = searcher.search(text, k, two_stage=not one_stage, exact=exact)
    for row in found.iter_rows(named=True):
        out.line(f"{row['rank']:>3}  {row['parent_asin']}  {row['score']:.3f}  "
                 f"{row['image_path']}  {row['title']}")
    out.document(found.to_dicts())
    if html is not None:
        from training.retrieval.pages import write_search_page

        write_search_page(html, text, found, slice_name=slice_name,
                          method="one stage" if one_stage else "two stages",
                          exact=exact)
        out.line(f"-> {html}")
