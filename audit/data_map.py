"""``curate audit data-map --run R``: dataset cartography for a regression run.

Swayamdipta et al. 2020 ("Dataset Cartography") place each training item by how the model
treated it across epochs: its confidence and its variability. For a regression target the
analogues, from the per-item, per-epoch predictions a run records
(``training_dynamics.parquet``), are:

- ``mean_error``: the mean over epochs of |prediction - label| (low: learnt confidently);
- ``variability``: the standard deviation over epochs of the prediction.

Regions: **ambiguous**, the third of items with the highest variability; of the rest,
**hard**, those whose mean error is in the top third of all items (consistently wrong:
often mislabelled); **easy**, the others. Writes ``CATALOG/audit/data_map/<slice>/``
(items.parquet, data_map.png, summary.md, manifest.json); the ``data_map`` weighting
strategy reads it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from audit.outputs import write_audit
from curation.catalog import Catalog
from curation.errors import UserError
from training.run_folder import RunFolder

AUDIT = "data_map"
REGIONS = ("easy", "ambiguous", "hard")
SHARE = 1 / 3  # the ambiguous and the hard regions' shares


def data_map_table(dynamics: pl.DataFrame) -> pl.DataFrame:
    """Per item: epochs, mean_error, variability, region."""
    epochs = dynamics["epoch"].n_unique()
    if epochs < 2:
        raise UserError(f"the run recorded {epochs} epoch; a data map needs at least 2 "
                        "(train with more epochs or a larger --patience)")
    per_item = dynamics.group_by("parent_asin").agg(
        pl.len().alias("epochs"),
        (pl.col("prediction") - pl.col("target")).abs().mean().alias("mean_error"),
        pl.col("prediction").std(ddof=0).alias("variability"),
        pl.col("target").first().alias("label"),
        pl.col("weight").first().alias("weight"),
    ).sort("parent_asin")
    ambiguous_from = per_item["variability"].quantile(1 - SHARE, "nearest")
    hard_from = per_item["mean_error"].quantile(1 - SHARE, "nearest")
    return per_item.with_columns(
        pl.when(pl.col("variability") >= ambiguous_from).then(pl.lit("ambiguous"))
        .when(pl.col("mean_error") >= hard_from).then(pl.lit("hard"))
        .otherwise(pl.lit("easy")).alias("region")
    )


def data_map_audit(catalog: Catalog | Path | str, run: Path | str) -> Path:
    folder = RunFolder(Path(run))
    if not folder.is_complete() or not folder.dynamics.exists():
        raise UserError(f"{run} is not a finished run with training dynamics (curate train)")
    config = folder.read_config()
    table = data_map_table(pl.read_parquet(folder.dynamics))
    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "data_map.png"
        _plot(table, plot, f"{config['slice']} ({config['weights']}, {config['mode']})")
        counts = {r: int((table["region"] == r).sum()) for r in REGIONS}
        summary = _summary(folder.path, config, table, counts)
        return write_audit(catalog, AUDIT, config["slice"], table, summary, {
            "parameters": {"run": str(folder.path.resolve()), "share": SHARE},
            "counts": {"items": table.height, **counts},
        }, extra={"data_map.png": plot})


def _summary(run: Path, config: dict, table: pl.DataFrame, counts: dict[str, int]) -> str:
    lines = [f"# Data map of run `{run}`", "",
             f"- slice `{config['slice']}`, weights `{config['weights']}`, mode "
             f"`{config['mode']}`; {table.height:,} train items over "
             f"{table['epochs'].max()} epochs",
             "", "| region | items | mean error | variability | mean label |",
             "|---|---:|---:|---:|---:|"]
    for region in REGIONS:
        part = table.filter(pl.col("region") == region)
        if part.height:
            lines.append(f"| {region} | {counts[region]:,} | {part['mean_error'].mean():.3f} | "
                         f"{part['variability'].mean():.3f} | {part['label'].mean():.2f} |")
    return "\n".join(lines) + "\n\n![data map](data_map.png)\n"


def _plot(table: pl.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for region, colour in zip(REGIONS, ("tab:green", "tab:orange", "tab:red"), strict=True):
        part = table.filter(pl.col("region") == region)
        ax.scatter(part["variability"], part["mean_error"], s=6, alpha=0.5, color=colour,
                   label=f"{region} ({part.height:,})")
    ax.set_xlabel("variability (std of the prediction over epochs)")
    ax.set_ylabel("mean |prediction - label| over epochs")
    ax.set_title(f"data map: {title}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
