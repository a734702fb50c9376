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
    images,
    model,
    recsys,
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
    "EffiMiniVLM runs (train, predict) -> studies of data scaling x weighting (study). "
    "Beside them: audits (audit), recommendation-benchmark exports (recsys), queries (sql), "
    "the whole pipeline on a generated corpus (demo), and a check of every output against "
    "what the catalog recorded (verify).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def main_options(
    verify: bool = typer.Option(
        False, "--verify", help="Stages hash every input they read against what was recorded "
        "(default: sizes, row counts and Parquet footers). The same as CURATE_VERIFY=1."),
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
app.add_typer(study.study_app, name="study")
app.add_typer(demo.commands)  # demo


def main() -> None:  # pragma: no cover
    app()
