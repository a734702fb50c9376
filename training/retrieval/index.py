"""The search index of a slice: its items' aligned image vectors, searched exactly (NumPy, the
reference) or approximately (faiss's HNSW graph, inner product on unit vectors).

``CATALOG/alignment/<slice>/index/`` holds ``items.parquet`` (parent_asin, split, title,
image_path, content_key: one row per vector), ``vectors.npy``, ``hnsw.faiss``, ``terms.parquet``
(each word's document frequency over the items' texts, for the query summaries) and a
manifest. The manifest records the alignment it was built with (its manifest's SHA-256) and a
fingerprint of the items (each one's parent_asin and content key: its text and image bytes).
``build_index`` compares both with the slice as it is now: nothing changed, nothing is done;
only new items, they are projected and added to the graph; anything else (an item gone or
changed, another alignment, other graph settings) rebuilds it. The graph is built on one
thread, so that one input gives the same bytes (faiss's HNSW draws each node's level from a
fixed seed).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.catalog import Catalog
from curation.errors import UserError
from curation.manifest import read_record, sha256_file
from curation.paths import MANIFEST
from curation.slices import Slice

ITEMS_FILE = "items.parquet"
VECTORS_FILE = "vectors.npy"
GRAPH_FILE = "hnsw.faiss"
TERMS_FILE = "terms.parquet"
HNSW_M = 32  # links per node
EF_CONSTRUCTION = 64  # bench/search.py: 3x faster to build than 200, recall@10 0.989 vs 0.996
EF_SEARCH = 128  # candidates the search keeps: recall@10 >= 0.95 against exact (bench/search.py)
# How the graph is built, in its manifest: an index built otherwise is built again.
GRAPH = {"library": "faiss", "kind": "IndexHNSWFlat", "metric": "inner product", "m": HNSW_M,
         "ef_construction": EF_CONSTRUCTION, "ef_search": EF_SEARCH}
INDEX_COLUMNS = ("parent_asin", "split", "title", "image_path", "content_key")
WORD = re.compile(r"[a-z][a-z0-9'-]+")


def words(text: str) -> list[str]:
    """Lower-case words of two or more characters (what the IDF and summaries count)."""
    return WORD.findall(text.lower())


def document_frequencies(texts: Sequence[str]) -> pl.DataFrame:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(set(words(text)))
    return pl.DataFrame({"term": list(counts), "df": list(counts.values())},
                        schema={"term": pl.String, "df": pl.Int64}).sort("term")


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the k highest inner products per query, best first (ties by row)."""
    k = min(k, len(vectors))
    sims = queries @ vectors.T
    if k < len(vectors):
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        top = np.tile(np.arange(len(vectors)), (len(queries), 1))
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.lexsort((top, -top_sims), axis=1)
    rows = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(sims, rows, axis=1), rows


def hnsw_graph(vectors: np.ndarray, *, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION,
               threads: int | None = 1) -> Any:
    """A faiss HNSW graph over unit vectors (inner product). ``threads=1``: the same vectors
    give the same graph; ``None``: faiss's default threads (faster, not reproducible)."""
    import faiss

    graph = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    add_vectors(graph, vectors, threads=threads)
    return graph


def add_vectors(graph: Any, vectors: np.ndarray, *, threads: int | None = 1) -> None:
    import faiss

    before = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    try:
        graph.add(np.ascontiguousarray(vectors, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(before)


def graph_search(graph: Any, queries: np.ndarray, k: int, ef_search: int = EF_SEARCH
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) from the graph, best first; rows of -1 (fewer vectors than k) dropped
    by the caller."""
    graph.hnsw.efSearch = max(ef_search, k)
    scores, rows = graph.search(np.ascontiguousarray(queries, dtype=np.float32),
                                min(k, graph.ntotal))
    return scores, rows


@dataclass
class SearchIndex:
    folder: Path
    items: pl.DataFrame
    vectors: np.ndarray
    graph: Any
    terms: dict[str, int]  # word -> items whose text holds it
    manifest: dict[str, Any]

    def idf(self, word: str) -> float:
        n = self.manifest["counts"]["items"]
        return math.log((n + 1) / (self.terms.get(word, 0) + 1)) + 1.0

    def search(self, queries: np.ndarray, k: int, *, exact: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k nearest image vectors per unit query vector."""
        if exact or self.graph is None:
            return exact_search(self.vectors, queries, k)
        return graph_search(self.graph, queries, k)


@dataclass
class IndexResult:
    folder: Path
    action: str  # built | added | unchanged
    items: int
    added: int
    seconds: float


def _fingerprint(asins: Sequence[str], keys: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for asin, key in sorted(zip(asins, keys, strict=True)):
        digest.update(f"{asin}\t{key}\n".encode())
    return digest.hexdigest()


def build_index(catalog: Catalog | Path | str, slice_name: str, *, workers: int = 1,
                rebuild: bool = False) -> IndexResult:
    """Build (or bring up to date) the index of the slice's aligned image vectors, with the
    slice's alignment (``curate align train``) and its encoders."""
    from safetensors.numpy import load_file  # noqa: F401 - fails early if missing

    from training.embeddings import content_keys
    from training.retrieval.align import load_alignment, slice_features

    started = time.perf_counter()
    catalog = Catalog.of(catalog)
    layout = catalog.layout
    alignment, align_manifest = load_alignment(catalog, slice_name)
    align_sha = sha256_file(layout.alignment_dir(slice_name) / MANIFEST)
    data = slice_features(Slice.open(catalog, slice_name), **align_manifest["encoders"],
                          workers=workers)
    keys = content_keys(data.items["model_text"].to_list(), data.items["image_path"].to_list())
    items = data.items.with_columns(content_key=pl.Series(keys, dtype=pl.String))
    fingerprint = _fingerprint(items["parent_asin"].to_list(), keys)
    folder = layout.search_index_dir(slice_name)
    old = _read_if_current(folder) if not rebuild else None
    if old is not None and old.manifest.get("graph") != GRAPH:
        old = None  # built with other settings
    if old is not None and old.manifest["alignment"] == align_sha \
            and old.manifest["fingerprint"] == fingerprint:
        return IndexResult(folder, "unchanged", old.items.height, 0,
                           time.perf_counter() - started)
    vectors = alignment.project_images(data.image)
    table = items.select(*INDEX_COLUMNS)
    action, added = "built", len(table)
    graph = None
    if old is not None and old.manifest["alignment"] == align_sha:
        known = dict(zip(old.items["parent_asin"].to_list(), old.items["content_key"].to_list(),
                         strict=True))
        current = dict(zip(table["parent_asin"].to_list(), keys, strict=True))
        if all(current.get(a) == k for a, k in known.items()):  # nothing gone or changed
            new = np.array([a not in known for a in table["parent_asin"].to_list()])
            graph = old.graph
            add_vectors(graph, vectors[new])
            # old rows keep their place (their vectors are the graph's); their other columns
            # (split, title, image path) are read as they are now
            table = pl.concat([old.items.select("parent_asin").join(table, on="parent_asin",
                                                                     how="left"),
                               table.filter(pl.Series(new))])
            vectors = np.concatenate([old.vectors, vectors[new]])
            action, added = "added", int(new.sum())
    if graph is None:
        graph = hnsw_graph(vectors)
    terms = document_frequencies(items["model_text"].to_list())
    _write(catalog, folder, slice_name, table, vectors, graph, terms, {
        "alignment": align_sha, "fingerprint": fingerprint, "encoders": align_manifest["encoders"],
        "encoder_key": align_manifest["encoder_key"], "action": action, "added": added,
        "counts": {"items": table.height, "dim": int(vectors.shape[1])},
        "graph": GRAPH,
        "inputs": {"slice": sha256_file(Slice.open(catalog, slice_name).path)},
    })
    return IndexResult(folder, action, table.height, added, time.perf_counter() - started)


def _write(catalog: Catalog, folder: Path, slice_name: str, table: pl.DataFrame,
           vectors: np.ndarray, graph: Any, terms: pl.DataFrame, manifest: dict[str, Any]
           ) -> None:
    import faiss

    with catalog.publish(folder, f"search-index-{slice_name}") as staged:
        table.write_parquet(staged.path / ITEMS_FILE, compression="zstd")
        np.save(staged.path / VECTORS_FILE, vectors.astype(np.float32))
        faiss.write_index(graph, str(staged.path / GRAPH_FILE))
        terms.write_parquet(staged.path / TERMS_FILE, compression="zstd")
        staged.manifest = {"stage": "search-index", "slice": slice_name, **manifest}


def _read_if_current(folder: Path) -> SearchIndex | None:
    if not (folder / MANIFEST).exists():
        return None
    return _read(folder)


def _read(folder: Path) -> SearchIndex:
    import faiss

    manifest = read_record(folder / MANIFEST)
    terms = pl.read_parquet(folder / TERMS_FILE)
    return SearchIndex(folder, pl.read_parquet(folder / ITEMS_FILE),
                       np.load(folder / VECTORS_FILE), faiss.read_index(str(folder / GRAPH_FILE)),
                       dict(zip(terms["term"].to_list(), terms["df"].to_list(), strict=True)),
                       manifest)


def open_index(catalog: Catalog | Path | str, slice_name: str) -> SearchIndex:
    """The slice's index as last built; a missing one is a UserError saying how to build it."""
    folder = Catalog.of(catalog).layout.search_index_dir(slice_name)
    if not (folder / MANIFEST).exists():
        raise UserError(f"no search index for slice {slice_name!r}: run curate align index "
                        f"--slice {slice_name} first")
    return _read(folder)
