"""The page ``curate search --html`` writes: the query and the images found, inline."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from curation.html_pages import data_uri, render_page
from curation.manifest import atomic_file


def write_search_page(path: Path, query: str, found: pl.DataFrame, *, slice_name: str,
                      method: str, exact: bool) -> Path:
    """One offline HTML file: the query, then rank, thumbnail, item, score, title, split."""
    rows = []
    for row in found.iter_rows(named=True):
        image = Path(row["image_path"]) if row["image_path"] else None
        src = data_uri(image, "image/jpeg") if image is not None and image.is_file() else None
        rows.append({**row, "src": src})
    page = render_page("search.html.j2", packages=("training.retrieval",),
                       title=f"Search in {slice_name}", query=query, rows=rows,
                       slice_name=slice_name, method=method, exact=exact)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(page)
    return path
