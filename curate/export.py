"""``curate export hf``: a built slice as a Hugging Face ``datasets.DatasetDict`` on disk,
with weight columns, images and a dataset card; optionally pushed to the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from curate.common import CatalogOption, JsonOption, Output, QuietOption, command
from curation.errors import UserError
from curation.paths import DEFAULT_CATALOG

if TYPE_CHECKING:
    from curation.slices import Slice

export_app = typer.Typer(help="Export a slice: hf (a datasets.DatasetDict).",
                         no_args_is_help=True)

WEIGHT_PREFIX = "weight_"  # a weights id w becomes the column weight_<w>


def export_slice(slice_: Slice, out: Path, weight_specs: list[str] | None = None, *,
                 images: bool = True, push: str | None = None) -> dict[str, object]:
    """Save ``slice_`` as a DatasetDict in ``out`` (see curation.slices.export_hf), one column
    per weights spec (computed into the catalog when missing), and push it to the Hub repo
    ``push`` if given. Returns what was written: folder, rows per split, columns."""
    from curate.api import weights_table
    from curation.slices import export_hf

    weights = {}
    for spec in weight_specs or []:
        wid, table = weights_table(slice_, spec)
        weights[WEIGHT_PREFIX + wid] = table
    saved = export_hf(slice_, out, weights=weights, images=images)
    import datasets

    dataset = datasets.load_from_disk(str(saved))
    report: dict[str, object] = {
        "slice": slice_.name, "folder": str(saved), "card": str(saved / "README.md"),
        "rows": {split: part.num_rows for split, part in dataset.items()},
        "weight_columns": list(weights), "image": "image" in dataset["train"].column_names,
    }
    if push:
        _push(dataset, push)
        report["pushed_to"] = push
    return report


def _push(dataset: object, repo: str) -> None:
    """push_to_hub, whose failures (no network, offline mode, no token) are one line."""
    try:
        dataset.push_to_hub(repo)  # type: ignore[attr-defined]
    except Exception as exc:  # the Hub or the network said no: the user's to fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"--push {repo}: could not push to the Hugging Face Hub "
                        f"({type(exc).__name__}: {first}); the export is saved on disk") \
            from None


@command(export_app, "hf")
def export_hf_command(
    slice_name: Annotated[str, typer.Argument(help="A built slice (curate slices list).")],
    out: Annotated[Path, typer.Argument(help="Folder to save the DatasetDict in.")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    weights: Annotated[
        list[str] | None,
        typer.Option("--weights", help="A weights id or strategy spec; one column weight_<id> "
                     "each (repeatable; computed into the catalog when missing)."),
    ] = None,
    images: Annotated[
        bool, typer.Option("--images/--no-images", help="An Image column when the items' "
                           "images are on this machine (file:// URLs or the image cache).")
    ] = True,
    push: Annotated[
        str | None, typer.Option("--push", help="Also push_to_hub to this repo (needs the "
                                 "network and a token).")
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Save a slice as a datasets.DatasetDict (train, validation, test) in OUT, from the slice's
    items file (nothing is rebuilt): its columns, one weight column per --weights, an Image
    feature when images are local, and a dataset card OUT/README.md with the slice's facts
    (profile, fraction, seed, rows per split, the items file's SHA-256, the data's licence).
    Load it with datasets.load_from_disk(OUT)."""
    from curation.slices import Slice

    output = Output(quiet=quiet, json=as_json)
    slice_ = Slice.open(catalog, slice_name)
    report = export_slice(slice_, out, weights, images=images, push=push)
    output.document(report)
    _print_report(output, report)


def _print_report(output: Output, report: dict[str, object]) -> None:
    rows = report["rows"]
    columns = report["weight_columns"]
    assert isinstance(rows, dict) and isinstance(columns, list)
    output.line(f"saved slice {report['slice']} as a datasets.DatasetDict in {report['folder']}: "
                + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    output.line(f"  weight columns: {', '.join(columns) if columns else 'none'}; image column: "
                f"{'yes' if report['image'] else 'no (no image on this machine)'}; "
                f"card: {report['card']}")
    if report.get("pushed_to"):
        output.line(f"  pushed to {report['pushed_to']}")


def print_export(report: dict[str, object]) -> None:
    """The lines build-slice --export-hf prints."""
    _print_report(Output(), report)
