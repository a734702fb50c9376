"""``curate demo``: the whole pipeline on a generated corpus, from raw JSONL to a study report.

synth -> ingest -> clean -> nested slices (the study's 100% slice among them) -> validate
every slice -> weights -> a frozen-mode k-fold study of data scaling and weighting (every
fold x fraction x strategy x seed; the MLP heads of a fold trained together) -> report ->
SQL exploration -> verify.
The study's config is written to ``WORKDIR/study.toml``, so it can be changed and rerun with
``curate study run``; a demo that is stopped and started again skips the runs it finished.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from curate.common import command, split_list, workers_or_default
from training.study.config import (
    DEFAULT_FOLDS,
    DEFAULT_FRACTIONS,
    DEFAULT_STRATEGIES,
    DESIGNS,
    MIN_FRACTIONS_FOR_FITS,
    MIN_SEEDS,
    study_template,
)

DEMO_QUERIES = (
    "ingest_reconciliation",
    "quarantine_reasons",
    "rating_number_quantiles",
    "orphan_reviews",
    "rejections_per_rule",
    "slice_strata",
)
# Slices cut (and validated) before the study; 1.0 is the slice a k-fold study draws from.
DEMO_FRACTIONS = (0.2, 0.4, 1.0)
DEMO_DESIGN = "kfold"  # every item is tested once: intervals over 5 folds, not one test split
# One seed: in the k-fold design the folds already draw the training items anew, and their
# corrected-t interval holds that variation; more seeds add head-training noise only.
DEMO_SEEDS = (0,)
DEMO_WEIGHTS = ("uniform", "effiminivlm", "inverse_variance", "lds")
DEMO_ITEMS = 4000
STEPS = 10


def demo_study_config(
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = DEMO_SEEDS,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    design: str = DEMO_DESIGN,
) -> str:
    """The demo's study config: the template (every default), with the design, grid and
    encoders asked for written in place of the template's lines."""
    text = study_template("demo", "catalog", "study")
    text = re.sub(r"(?m)^fractions = \[.*?\]", f"fractions = {json.dumps(list(fractions))}",
                  text)
    text = re.sub(r"(?m)^seeds = \[.*?\]", f"seeds = {json.dumps(list(seeds))}", text)
    text = re.sub(r'(?m)^design = "\w+"', f"design = {json.dumps(design)}", text)
    if design == "kfold":
        text = re.sub(r"(?m)^# folds = ", "folds = ", text)
    for key, value in (("image_encoder", image_encoder), ("text_encoder", text_encoder)):
        if value is not None:
            text = re.sub(rf"(?m)^# {key} = .*$", f"{key} = {json.dumps(value)}", text)
    if len(set(fractions)) < MIN_FRACTIONS_FOR_FITS:  # too few points for a scaling fit
        text = re.sub(r"(?m)^# fits = true.*$",
                      f"fits = false                   # fewer than {MIN_FRACTIONS_FOR_FITS} "
                      "fractions", text)
    return text


def run_demo(
    workdir: Path,
    *,
    items: int = DEMO_ITEMS,
    seed: int = 0,
    workers: int = 1,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = DEMO_SEEDS,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    design: str = DEMO_DESIGN,
) -> None:
    import os
    import time

    from curate.sql import resolve_query
    from curation.catalog import Catalog
    from curation.clean import clean
    from curation.ingest import ingest
    from curation.slices import Slice, build_slice
    from curation.synth import SynthConfig, synthesize
    from curation.validate import validate_all
    from weighting.catalog_io import compute_weights

    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub: use the offline encoders at once
    corpus, catalog_root = workdir / "corpus", workdir / "catalog"
    typer.secho(f"1/{STEPS} synth: {items:,} items with planted mess -> {corpus}", bold=True)
    summary = synthesize(corpus, SynthConfig(n_items=items, seed=seed, mess_rate=0.03, gzip=True))
    typer.echo(
        f"    {summary.meta_lines:,} metadata lines, {summary.review_lines:,} review lines, "
        f"{summary.images:,} images"
    )

    typer.secho(f"2/{STEPS} ingest -> {catalog_root}", bold=True)
    results = ingest(str(corpus / "raw"), catalog_root)
    lines = sum(r.lines_read for r in results)
    rows = sum(r.rows_ingested for r in results)
    quarantined = sum(r.lines_quarantined for r in results)
    typer.echo(f"    {lines:,} lines read = {rows:,} rows ingested + {quarantined:,} quarantined")

    typer.secho(f"3/{STEPS} clean (default profile)", bold=True)
    catalog = Catalog.open(catalog_root)
    cleaned = clean(catalog, "default")
    typer.echo(f"    {cleaned.rows_in:,} item lines -> {cleaned.kept:,} silver items")

    typer.secho(f"4/{STEPS} nested slices of the train split: {DEMO_FRACTIONS} (1.0: every "
                "item, the slice the study draws its folds from)", bold=True)
    built = []
    for frac in DEMO_FRACTIONS:
        result = build_slice(catalog, frac)
        built.append(result)
        rows = result.manifest["rows"]
        typer.echo(
            f"    {result.name}: train {rows['train']:,}, val {rows['val']:,}, "
            f"test {rows['test']:,}"
        )

    typer.secho(f"5/{STEPS} validate the items and every slice (great-expectations)", bold=True)
    reports = validate_all(catalog)
    for report in reports:
        typer.echo("    " + report.summary().replace("\n", "\n    "))
    typer.echo(f"    data docs: {reports[0].docs_path}")

    weighted = built[DEMO_FRACTIONS.index(0.4)].name  # a slice with room to weight
    typer.secho(f"6/{STEPS} sample weights on {weighted}", bold=True)
    for spec in DEMO_WEIGHTS:
        table = compute_weights(Slice.open(catalog, weighted), spec)
        d = table.manifest["diagnostics"]
        typer.echo(
            f"    {spec:<18} train ESS {d['ess_share']:.1%}, max/mean "
            f"{d['max_over_mean']:.3g}, top rating-count decile holds "
            f"{d['mass_per_count_decile'][-1]['mass']:.1%} of the weight"
        )

    study_config = workdir / "study.toml"
    study_config.write_text(f"# The demo's study (curate demo writes this file; edit it and run: "
                            f"curate study run {study_config})\n"
                            + demo_study_config(fractions, seeds, image_encoder, text_encoder,
                                                design))
    folds = f"{DEFAULT_FOLDS} folds x " if design == "kfold" else ""
    typer.secho(f"7/{STEPS} study ({design}): frozen EffiMiniVLM over {folds}{len(fractions)} "
                f"fractions x {len(DEFAULT_STRATEGIES)} weightings x {len(seeds)} seed(s) "
                f"({study_config})", bold=True)
    typer.echo("    every item is encoded once by the full model (the longest step), then "
               "the heads train on the cached embeddings"
               + (", a fold's heads together" if design == "kfold" else ""))
    from training.study.grid import run_study

    result = run_study(study_config, workers=workers, log=lambda line: typer.echo("    " + line))
    typer.echo(f"    {result.trained} runs trained, {result.skipped} already complete")

    typer.secho(f"8/{STEPS} report: curves, fits, intervals", bold=True)
    from training.study.report import build_report

    report = build_report(result.folder)
    for line in report.headlines():
        typer.echo("    " + line)

    typer.secho(f"9/{STEPS} exploration queries (curate sql -f NAME)", bold=True)
    con = Catalog.open(catalog_root).connect()
    try:
        for name in DEMO_QUERIES:
            typer.secho(f"-- {name}", fg=typer.colors.CYAN)
            typer.echo(str(con.sql(resolve_query(None, name))))
    finally:
        con.close()

    typer.secho(f"10/{STEPS} verify: every output against what the catalog recorded", bold=True)
    from curation.integrity import verify_catalog

    checked = verify_catalog(catalog_root)
    for problem in checked.problems:  # pragma: no cover - only if the demo itself is broken
        typer.echo(f"    {problem.path}: {problem.what}")
    typer.echo(f"    {checked.files_checked:,} files checked (SHA-256): "
               + ("all as recorded" if checked.ok else f"{len(checked.problems)} differ"))
    minutes = (time.perf_counter() - started) / 60
    typer.secho(f"done in {minutes:.1f} min.", bold=True)
    typer.secho(f"report: {result.folder / 'report' / 'report.md'} (and report.html)", bold=True)
    typer.echo(f"explore further: {curate_command()} sql --catalog {catalog_root}")
    if curate_command() != "curate":
        typer.echo("(or first `source .venv/bin/activate`, then a bare `curate` works)")


def curate_command() -> str:
    """``curate`` as a fresh shell can run it: the bare name where the ``curate`` on the PATH is
    this one, else this script's path (``scripts/demo`` runs ``.venv/bin/curate``, which a
    fresh shell does not have on its PATH), relative to the working directory if below it."""
    import shutil
    import sys

    me = Path(sys.argv[0]).resolve()
    found = shutil.which("curate")
    if me.name != "curate" or (found is not None and Path(found).resolve() == me):
        return "curate"
    try:
        return str(Path(sys.argv[0]).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(me)


commands = typer.Typer()

@command(commands)
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the corpus, catalog, study and report.")
    ] = Path("demo"),
    items: Annotated[int | None, typer.Option(help="Items in the generated corpus "
                                              "(default 4000).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated corpus.")] = 0,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (decode, tokenise).")
    ] = None,
    fractions: Annotated[
        str | None, typer.Option(help="The study's fractions, comma-separated (default "
                                 "0.025,0.05,0.1,0.2,0.4,0.8,1).")
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help=f"The study's seeds, comma-separated (default 0; the "
                                 f"holdout design needs at least {MIN_SEEDS}).")
    ] = None,
    design: Annotated[
        str, typer.Option(help=f"The study's design: kfold ({DEFAULT_FOLDS} folds, each item "
                          "tested once) or holdout (the split's test items, one "
                          "`curate train` run folder per run; give 3 seeds).")
    ] = DEMO_DESIGN,
    image_encoder: Annotated[
        str | None, typer.Option(help="The study's image encoder (default: the model's; "
                                 "tiny-efficientnet: a small random one for tests).")
    ] = None,
    text_encoder: Annotated[
        str | None, typer.Option(help="The study's text encoder (default: the model's; "
                                 "tiny-minilm: a small random one for tests).")
    ] = None,
) -> None:
    """Run the whole pipeline on a generated corpus: synth, ingest, clean, nested slices,
    validation of every slice, weights, a frozen-mode k-fold study of data scaling x
    weighting (5 folds x 7 fractions x 2 strategies) with its report, the exploration
    queries and verify. Most of the time is the full model encoding every item once; the
    README gives the measured time; the report's location is printed at the end."""
    from curation.errors import UserError

    if design not in DESIGNS:
        raise UserError(f"--design must be one of {', '.join(DESIGNS)}, got {design!r}")
    run_demo(workdir, items=DEMO_ITEMS if items is None else items, seed=seed,
             workers=workers_or_default(workers),
             fractions=tuple(float(f) for f in split_list(fractions)) or DEFAULT_FRACTIONS,
             seeds=tuple(int(s) for s in split_list(seeds)) or DEMO_SEEDS,
             image_encoder=image_encoder, text_encoder=text_encoder, design=design)

