"""``curate weights``: list, compute, describe, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import (
    CatalogOption,
    JsonOption,
    Output,
    QuietOption,
    VerboseOption,
    command,
    writes_to,
)
from curation.errors import UserError
from curation.paths import DEFAULT_CATALOG

weights_app = typer.Typer(
    help="Sample weights: list, compute, describe, compare.", no_args_is_help=True
)


def _clip(value: str | None) -> tuple[float | None, float | None] | None:
    if not value:
        return None
    low, _, high = value.partition(",")
    try:
        return (float(low) if low.strip() else None, float(high) if high.strip() else None)
    except ValueError:
        raise UserError(f"--clip {value!r}: give LOW,HIGH as numbers (either may be empty)") \
            from None


# Strata named in a default description: those whose share of the weight lies furthest from
# their share of the items.
SUMMARY_STRATA = 3


@command(weights_app, "list")
def weights_list(quiet: QuietOption = False, as_json: JsonOption = False) -> None:
    """Every strategy: its family, parameters with defaults, and what it favours. Those marked
    "study only" (learned, prune) are fitted on a study's cached embeddings, in its k-fold
    design; `weights compute` refuses them."""
    import weighting
    from weighting.registry import FITTED_ELSEWHERE

    out = Output(quiet=quiet, json=as_json)
    strategies = sorted([*weighting.STRATEGIES.items(), *FITTED_ELSEWHERE.items()])
    out.document([{"strategy": name, "family": s.family, "defaults": s.defaults,
                   "favours": s.favours, "study_only": name in FITTED_ELSEWHERE}
                  for name, s in strategies])
    for name, strategy in strategies:
        params = ", ".join(f"{k}={v!r}" for k, v in strategy.defaults.items()) or "-"
        where = " (study only)" if name in FITTED_ELSEWHERE else ""
        out.line(f"{name:<26} [{strategy.family}]{where} params: {params}")
        out.line(f"{'':<26} favours {strategy.favours}")


@command(weights_app, "compute")
def weights_compute(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name (curate slices list).")],
    strategy: Annotated[
        str, typer.Option(help="A strategy with parameters, name:k=v,..., or a product: a*b:k=v.")
    ],
    catalog: CatalogOption = DEFAULT_CATALOG,
    clip: Annotated[
        str | None, typer.Option(help="Clip weights to LOW,HIGH (either empty).")
    ] = None,
    power: Annotated[
        float | None, typer.Option(help="Raise weights to this power (0 flattens, 1 keeps).")
    ] = None,
    normalise: Annotated[bool, typer.Option(help="Divide by the mean weight on train.")] = False,
) -> None:
    """Write a weights table (parent_asin, split, weight) for every item of a slice.

    Writes CATALOG/weights/<slice>/<id>/weights.parquet and manifest.json (the train
    statistics used, diagnostics); a view weights_<slice>__<id> in curate sql.
    """
    from curation.slices import Slice
    from weighting.catalog_io import compute_weights

    with writes_to(catalog, "weights compute"):
        table = compute_weights(
            Slice.open(catalog, slice_name), strategy, clip=_clip(clip), power=power,
            normalise=normalise
        )
    d = table.manifest["diagnostics"]
    typer.echo(f"weights {table.weights_id} for slice {slice_name}: {table.path}")
    typer.echo(
        f"  train ESS {d['effective_sample_size']:,.0f} of {d['train_rows']:,} "
        f"({d['ess_share']:.1%}); mean {d['mean']:.4g}; max/mean {d['max_over_mean']:.3g}"
    )


@command(weights_app, "describe")
def weights_describe(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name.")],
    ids: Annotated[list[str], typer.Argument(help="Weights ids (as printed by compute).")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """ESS, quantiles, max/mean, mass per rating-count decile and stratum, correlation with the
    target, for each weights table of a slice: the strata whose mass lies furthest from their
    share of the items by default, every stratum with --verbose."""

    from curation.slices import Slice
    from weighting.catalog_io import describe_frame, load_weights

    out = Output(quiet=quiet, json=as_json, verbose=verbose)
    slice_ = Slice.open(catalog, slice_name)
    items = slice_.items(text=False)
    described = {}
    for wid in ids:
        frame = items.join(load_weights(slice_, wid).drop("split"), on="parent_asin")
        described[wid] = describe_frame(frame)
    out.document(described)
    if out.text:
        for wid, d in described.items():
            _print_description(wid, d, out)


def _print_description(wid: str, d: dict, out: Output) -> None:
    echo = out.line
    q = d["quantiles"]
    corr = "n/a" if d["corr_with_target"] is None else f"{d['corr_with_target']:+.3f}"
    echo(
        f"{wid}: train {d['train_rows']:,} items, ESS {d['effective_sample_size']:,.0f} "
        f"({d['ess_share']:.1%}), mean {d['mean']:.4g}, max/mean "
        f"{d['max_over_mean'] or 0:.3g}, zero weights {d['zero_weights']:,}, "
        f"corr(weight, target) {corr}"
    )
    echo("  quantiles " + "  ".join(f"{k}={v:.3g}" for k, v in q.items()))
    echo(
        "  mass per rating-count decile "
        + " ".join(f"{m['mass']:.1%}" for m in d["mass_per_count_decile"])
    )
    strata = d["mass_per_stratum"]
    key = next(k for k in strata[0] if k not in ("items", "mass")) if strata else None
    rows = strata
    if not out.verbose:
        def gap(row: dict) -> float:
            return abs(row["mass"] - row["items"] / d["train_rows"]) if d["train_rows"] else 0.0

        rows = sorted(strata, key=gap, reverse=True)[:SUMMARY_STRATA]
        echo(f"  mass per stratum (share of weight / share of items), the {len(rows)} of "
             f"{len(strata)} strata furthest apart (every stratum: --verbose):")
    else:
        echo("  mass per stratum (share of weight / share of items):")
    for row in rows:
        echo(f"    {str(row[key])[:50]:<50} {row['mass']:>7.1%} / "
             f"{row['items'] / d['train_rows']:>6.1%}")


@command(weights_app, "compare")
def weights_compare(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name.")],
    strategies: Annotated[list[str], typer.Argument(help="Strategy specs to set side by side.")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the PNG plots (default CATALOG/weights/<slice>/compare)."),
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Compute several strategies on a slice, print their diagnostics side by side, and save
    PNG plots (weight against rating_number; weight histograms)."""

    from curation.slices import Slice
    from weighting.catalog_io import compare_plot, describe_frame
    from weighting.compute import compute

    output = Output(quiet=quiet, json=as_json)
    slice_ = Slice.open(catalog, slice_name)
    items = slice_.items(text=False)
    frames = {spec: items.with_columns(compute(items, spec)) for spec in strategies}
    output.line(
        f"{'strategy':<32} {'ESS share':>9} {'max/mean':>9} {'zeros':>7} "
        f"{'corr(w,y)':>9} {'top-decile mass':>15}"
    )
    described = {spec: describe_frame(frame) for spec, frame in frames.items()}
    for spec, d in described.items():
        corr = d["corr_with_target"]
        output.line(
            f"{spec:<32} {d['ess_share']:>9.1%} {d['max_over_mean'] or 0:>9.3g} "
            f"{d['zero_weights']:>7,} {'n/a' if corr is None else f'{corr:+.3f}':>9} "
            f"{d['mass_per_count_decile'][-1]['mass']:>15.1%}"
        )
    if out is not None:
        paths = compare_plot(frames, out)
    else:  # the default folder lies inside the catalog
        with slice_.catalog.writing("weights compare"):
            paths = compare_plot(frames, slice_.catalog.layout.weights_plots(slice_name))
    for path in paths:
        output.line(f"plot: {path}")
    output.document({"strategies": described, "plots": [str(p) for p in paths]})

