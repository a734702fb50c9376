"""Curate from Python: a catalog, its slices, their items and weights, and run folders.

    >>> from curate import open_catalog
    >>> catalog = open_catalog(catalog_path)  # e.g. "demo/catalog"; here one with one slice
    >>> catalog.slices()
    ['default-frac0.5-seed0']
    >>> half = catalog.slice("default-frac0.5-seed0")
    >>> half.items(["parent_asin", "split"]).columns
    ['parent_asin', 'split']
    >>> sorted(half.items()["split"].unique())
    ['test', 'train', 'val']
    >>> w = half.weights("effiminivlm")  # computed and stored the first time, then read
    >>> w.columns
    ['parent_asin', 'split', 'weight']
    >>> w.height == half.items(["parent_asin"]).height
    True

Frames come back as Polars DataFrames (``.to_pandas()`` gives pandas); frames going in may be
pandas (``weighting.compute(pandas_frame, "effiminivlm")``). Nothing heavy is imported until a
method needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from curation.catalog import Catalog
    from curation.slices import Slice


def open_catalog(path: Path | str) -> CatalogHandle:
    """The catalog folder at ``path`` (catalog.json, catalog.duckdb, Parquet); a folder that
    is not a catalog is a ``curation.errors.UserError``."""
    from curation.catalog import Catalog

    return CatalogHandle(Catalog.open(Path(path)))


@dataclass(frozen=True)
class CatalogHandle:
    """An opened catalog: its slices by name, and run folders."""

    catalog: Catalog

    @property
    def root(self) -> Path:
        return self.catalog.layout.root

    def slices(self) -> list[str]:
        """The names of the slices built in this catalog, sorted."""
        from curation.slices import list_slices

        return [m["name"] for m in list_slices(self.catalog)]

    def slice(self, name: str) -> SliceHandle:
        """The slice ``name``, its items file checked against its manifest; an unknown name
        is a UserError listing the slices there are."""
        from curation.slices import Slice

        return SliceHandle(Slice.open(self.catalog, name))

    def runs(self, folder: Path | str = "runs") -> list[dict[str, Any]]:
        """One summary per run folder under ``folder`` (a folder of runs, a run folder or a
        study folder): run, slice, weights, mode, seed, val/test PLCC and RMSE, best epoch,
        seconds, encoders_ran; as ``curate runs list --json`` prints them."""
        from curate.runs import find_runs, summary

        return [summary(r) for r in find_runs([Path(folder)])]


@dataclass(frozen=True)
class SliceHandle:
    """A built slice: its manifest, items and weights."""

    slice_: Slice

    @property
    def name(self) -> str:
        return self.slice_.name

    @property
    def manifest(self) -> dict[str, Any]:
        return self.slice_.manifest

    def items(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The slice's items (train items of the slice, val and test whole) as a Polars
        DataFrame: ``columns``, or every column."""
        return self.slice_.items(columns)

    def weights(self, spec_or_id: str) -> pl.DataFrame:
        """The weights table (parent_asin, split, weight) of a weights id or a strategy spec;
        a spec not computed yet is computed and stored first, as ``curate train`` does."""
        return weights_table(self.slice_, spec_or_id)[1]


def weights_table(slice_: Slice, spec_or_id: str) -> tuple[str, pl.DataFrame]:
    """(weights id, table) of a slice: an existing table named ``spec_or_id``, else the spec's
    own table, computed (and written into the catalog) when missing."""
    from weighting.catalog_io import compute_weights, load_weights, weights_id

    layout = slice_.catalog.layout
    if layout.weights_file(slice_.name, spec_or_id).exists():
        wid = spec_or_id
    else:
        wid = weights_id(spec_or_id)
        if not layout.weights_file(slice_.name, wid).exists():
            compute_weights(slice_, spec_or_id)
    return wid, load_weights(slice_, wid)
