"""`from curate import open_catalog`: slices, items, weights; pandas accepted by
weighting.compute; the examples in curate.api's docstring run."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from curation.errors import UserError
from curation.slices import build_slice
from tests.conftest import copy_catalog

HALF = "default-frac0.5-seed0"


@pytest.fixture
def catalog(split_catalog, tmp_path) -> Path:
    root = copy_catalog(split_catalog, tmp_path / "catalog")
    build_slice(root, 0.5)
    return root


def test_import_curate_loads_nothing_heavy():
    code = ("import sys, curate; f = curate.open_catalog; print(sorted(m for m in "
            "('polars', 'duckdb', 'torch', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_slices_items_and_weights(catalog):
    import weighting
    from curate import open_catalog

    opened = open_catalog(catalog)
    assert opened.slices() == [HALF]
    half = opened.slice(HALF)
    items = half.items()
    assert isinstance(items, pl.DataFrame)
    assert items.equals(pl.read_parquet(catalog / "slices" / HALF / "items.parquet"))
    assert half.items(["parent_asin", "split"]).columns == ["parent_asin", "split"]
    table = catalog / "weights" / HALF / "lds_sigma-3" / "weights.parquet"
    assert not table.exists()
    w = half.weights("lds:sigma=3")  # computed and stored, as curate train does
    assert table.exists() and w.columns == ["parent_asin", "split", "weight"]
    expected = weighting.compute(half.items(), "lds:sigma=3")
    assert w["weight"].to_list() == pytest.approx(expected.to_list())
    assert half.weights("lds_sigma-3").equals(w)  # by id: read, not computed again
    with pytest.raises(UserError, match="no slice named 'nope'"):
        opened.slice("nope")
    with pytest.raises(UserError, match="unknown"):
        half.weights("no_such_strategy")


def test_weighting_compute_takes_a_pandas_frame(catalog):
    import weighting

    items = pl.read_parquet(catalog / "slices" / HALF / "items.parquet",
                            columns=["parent_asin", "split", "rating_number", "average_rating"])
    from_pandas = weighting.compute(items.to_pandas(), "effiminivlm")
    assert from_pandas.to_list() == weighting.compute(items, "effiminivlm").to_list()
    with pytest.raises(UserError, match=r"Polars or pandas DataFrame, not builtins\.dict"):
        weighting.compute({"rating_number": [1]}, "effiminivlm")


def test_the_docstring_examples_run(catalog):
    import curate.api

    results = doctest.testmod(curate.api, extraglobs={"catalog_path": str(catalog)},
                              optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 6 and results.failed == 0
