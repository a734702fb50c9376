"""The ``curate`` command line: the root app and its command groups, one module each.

Heavy libraries are imported inside commands, so that ``curate --help`` and the data
commands start fast and never import torch.
"""

from __future__ import annotations

import typer

from curate import (
    audit,
    corpus,
    demo,
    encode,
    export,
    images,
    model,
    recsys,
    runs,
    search,
    slicing,
    sql,
    study,
    verify,
    weights,
)

app = typer.Typer(
    name="curate",
    help="Curate: curation and sample weighting for the Amazon Reviews 2023 corpus.\n\n"
    "Raw JSONL -> bronze Parquet (ingest) -> silver items (clean) -> split and nested slices "
    "(build-slice, validate, slices) -> images (images) -> sample weights (weights) -> "
    "frozen-encoder embeddings (encode) -> EffiMiniVLM runs (train, predict) -> studies of "
    "data scaling x weighting (study). "
    "Beside them: audits (audit), recommendation-benchmark exports (recsys), queries (sql), "
    "the whole pipeline on a generated corpus (demo), and a check of every output against "
    "what the catalog recorded (verify); run folders side by side (runs); a slice as a "
    "Hugging Face dataset (export hf).\n\n"
    "Shell completion: curate --install-completion (bash, zsh, fish, PowerShell), or "
    "--show-completion to see the script. Commands that print tables take --json, --quiet "
    "and --verbose.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

# The libraries whose versions decide results; read from the installed metadata, so that
# --version imports none of them (torch takes seconds).
VERSIONED = ("duckdb", "polars", "pyarrow", "torch", "datasets")


def versions_text() -> str:
    """``curate <version>`` and the version of each library in VERSIONED that is installed."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    lines = [f"curate {installed('curate')}"]
    lines += [f"  {name} {installed(name)}" for name in VERSIONED]
    return "\n".join(lines)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(versions_text())
        raise typer.Exit()


@app.callback()
def main_options(
    verify: bool = typer.Option(
        False, "--verify", help="Stages hash every input they read against what was recorded "
        "(default: sizes, row counts and Parquet footers). The same as CURATE_VERIFY=1."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print the versions of curate, duckdb, polars, pyarrow, torch and datasets, "
        "and exit."),
) -> None:
    """Options for every command."""
    if verify:
        import os

        from curation.integrity import VERIFY_ENV

        os.environ[VERIFY_ENV] = "1"


app.add_typer(corpus.commands)  # synth, ingest
app.add_typer(sql.commands)  # sql
app.add_typer(slicing.commands)  # clean, build-slice, validate
app.add_typer(slicing.slices_app, name="slices")
app.add_typer(verify.commands)  # verify
app.add_typer(weights.weights_app, name="weights")
app.add_typer(images.images_app, name="images")
app.add_typer(recsys.recsys_app, name="recsys")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(model.model_app, name="model")
app.add_typer(model.commands)  # train, predict
app.add_typer(encode.commands)  # encode
app.add_typer(study.study_app, name="study")
app.add_typer(demo.commands)  # demo
app.add_typer(runs.runs_app, name="runs")
app.add_typer(export.export_app, name="export")
app.add_typer(search.align_app, name="align")
app.add_typer(search.commands)  # search


def main() -> None:  # pragma: no cover
    app()
