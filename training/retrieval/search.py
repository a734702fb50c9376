"""Text-to-image search over a slice's index, in one stage or two (after Text2Pic Swift).

- One stage: the whole text's vector against the image vectors.
- Two stages: (1) entity ranking: the text is split into entities (its title, each feature,
  each sentence of its description; a free text by lines, ``|``/``;`` and sentences); each,
  and the whole text, is searched for ``per_entity`` images; the candidates they bring (the
  union: multiple queries against multiple targets) are ranked by their best similarity to
  any of these queries and the best ``candidates`` kept; (2) summary re-ranking: a concise
  summary of the text (its title and its ``summary_terms`` most informative other words, by
  IDF over the indexed items' texts) and the whole text are scored against each candidate,
  and the final score is the mean of the two. (On the synthetic corpus, adding the entities'
  mean or best similarity to the final score, ranking the candidates by their mean, or
  leaving the whole text out of stage 1, found fewer own images: most entities there are
  features and sentences that say nothing of the picture.)

All scores are cosines of aligned vectors, so every step is a vector search or a small
matrix product and scales with the index. ``evaluate`` measures Recall@k of held-out items'
own images from their text, one stage against two, on the exact and the HNSW search.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.catalog import Catalog
from curation.errors import UserError
from curation.manifest import sha256_file
from curation.paths import MANIFEST
from curation.slices import Slice
from training.retrieval.align import Alignment, encode_texts, load_alignment, recall_at
from training.retrieval.index import GRAPH, SearchIndex, build_index, open_index, words

PER_ENTITY = 100
CANDIDATES = 200
SUMMARY_TERMS = 8
MAX_ENTITIES = 16
FIELDS = ("Main category", "Title", "Features", "Description")  # curation.clean's model_text
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def parse_fields(text: str) -> dict[str, str] | None:
    """An item's model_text ("Title: ...\\nFeatures: a | b\\n...") as its fields, or None for
    a free text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and name in FIELDS:
            fields[name] = value.strip()
    return fields if "Title" in fields else None


def split_entities(text: str) -> list[str]:
    """Short queries from a long text: its title, each feature, each description sentence
    (an item's model_text), or, for a free text, its first sentence and every sentence,
    line, ``|`` or ``;`` piece after it. Empty and repeated pieces are dropped; at most
    MAX_ENTITIES."""
    fields = parse_fields(text)
    if fields is not None:
        pieces = [fields["Title"], *fields.get("Features", "").split(" | "),
                  *SENTENCE.split(fields.get("Description", ""))]
    else:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        first = SENTENCE.split(lines[0]) if lines else []
        pieces = first[:1]  # the title: the first sentence of the first line
        for line in [*first[1:], *lines[1:]]:
            for part in re.split(r"\s*[|;]\s*", line):
                pieces += SENTENCE.split(part)
    seen: dict[str, None] = {}
    for piece in pieces:
        piece = piece.strip()
        if piece and piece.lower() not in {p.lower() for p in seen}:
            seen[piece] = None
    return list(seen)[:MAX_ENTITIES] or [text.strip()]


def title_of(text: str) -> str:
    fields = parse_fields(text)
    if fields is not None:
        return fields["Title"]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return SENTENCE.split(lines[0])[0] if lines else ""


def summarise(text: str, idf: Any, terms: int = SUMMARY_TERMS) -> str:
    """The title and the text's ``terms`` most informative other words (highest IDF; ties
    by first appearance), in the order they appear: a concise restatement of the query."""
    title = title_of(text)
    in_title = set(words(title))
    body = text if parse_fields(text) is None else "\n".join(
        v for k, v in (parse_fields(text) or {}).items() if k != "Title")
    order: dict[str, int] = {}
    for i, word in enumerate(words(body)):
        if word not in in_title and word not in order:
            order[word] = i
    best = sorted(order, key=lambda w: (-idf(w), order[w]))[:terms]
    return " ".join([title, *sorted(best, key=order.__getitem__)]).strip()


@dataclass
class Searcher:
    """An index, its alignment and its text encoder: searches texts."""

    index: SearchIndex
    alignment: Alignment
    encoders: dict[str, str]

    @classmethod
    def open(cls, catalog: Catalog | Path | str, slice_name: str, *, update: bool = True
             ) -> Searcher:
        """The slice's index (brought up to date first when the slice or its alignment
        changed since it was built, unless ``update`` is False)."""
        catalog = Catalog.of(catalog)
        alignment, manifest = load_alignment(catalog, slice_name)
        if update and index_is_stale(catalog, slice_name):
            build_index(catalog, slice_name)
        return cls(open_index(catalog, slice_name), alignment, manifest["encoders"])

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        return self.alignment.project_texts(encode_texts(texts, **self.encoders))

    def one_stage(self, full: np.ndarray, k: int, *, exact: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) for one query's whole-text vector."""
        scores, rows = self.index.search(full[None, :], k, exact=exact)
        keep = rows[0] >= 0
        return scores[0][keep], rows[0][keep]

    def two_stage(self, entities: np.ndarray, summary: np.ndarray, full: np.ndarray, k: int, *,
                  per_entity: int = PER_ENTITY, candidates: int = CANDIDATES,
                  exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) for one query: ``entities`` (e, dim), ``summary`` and ``full``
        (dim,) aligned text vectors."""
        # the whole text is one more query: an entity split can lose what only the whole says
        queries = np.vstack([entities, full[None, :]])
        _, found = self.index.search(queries, per_entity, exact=exact)
        pool = np.unique(found[found >= 0])
        if len(pool) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        images = self.index.vectors[pool]
        entity_score = (queries @ images.T).max(axis=0)
        top = np.lexsort((pool, -entity_score))[: max(candidates, k)]
        pool, images = pool[top], images[top]
        final = (images @ summary + images @ full) / 2
        order = np.lexsort((pool, -final))[:k]
        return final[order], pool[order]

    def search(self, text: str, k: int = 10, *, two_stage: bool = True, exact: bool = False,
               per_entity: int = PER_ENTITY, candidates: int = CANDIDATES,
               summary_terms: int = SUMMARY_TERMS) -> pl.DataFrame:
        """The k best images for a text: rank, parent_asin, score, image_path, title, split."""
        if not text.strip():
            raise UserError("the search text is empty")
        if k < 1:
            raise UserError(f"-k must be at least 1, got {k}")
        if two_stage:
            entities = split_entities(text)
            summary = summarise(text, self.index.idf, summary_terms)
            vectors = self.text_vectors([*entities, summary, text])
            scores, rows = self.two_stage(vectors[: len(entities)], vectors[-2], vectors[-1],
                                          k, per_entity=per_entity, candidates=candidates,
                                          exact=exact)
        else:
            scores, rows = self.one_stage(self.text_vectors([text])[0], k, exact=exact)
        found = self.index.items[rows.tolist()].select("parent_asin", "image_path", "title",
                                                        "split")
        return found.with_columns(rank=pl.int_range(1, len(rows) + 1, dtype=pl.Int64),
                                  score=pl.Series(scores.astype(np.float64))) \
            .select("rank", "parent_asin", "score", "image_path", "title", "split")


def index_is_stale(catalog: Catalog | Path | str, slice_name: str) -> bool:
    """Whether the slice's index is missing, or older than the slice or its alignment (a
    look at two manifests, no embedding read)."""
    from curation.manifest import read_record

    catalog = Catalog.of(catalog)
    layout = catalog.layout
    folder = layout.search_index_dir(slice_name)
    if not (folder / MANIFEST).exists() or not (layout.alignment_dir(slice_name)
                                                  / MANIFEST).exists():
        return True
    manifest = read_record(folder / MANIFEST)
    return (manifest.get("graph") != GRAPH
            or manifest["alignment"] != sha256_file(layout.alignment_dir(slice_name) / MANIFEST)
            or manifest["inputs"]["slice"] != sha256_file(Slice.open(catalog, slice_name).path))


def search(catalog: Catalog | Path | str, slice_name: str, text: str, k: int = 10,
           **options: Any) -> pl.DataFrame:
    """Search the slice's images for ``text`` (two stages unless ``two_stage=False``).

    >>> search("catalog", "default-frac1-seed0", "red round lipstick", k=5)  # doctest: +SKIP
    """
    return Searcher.open(catalog, slice_name).search(text, k, **options)


@dataclass
class Evaluation:
    queries: int
    gallery: int
    recall: dict[str, dict[str, float]]  # method -> recall@k
    seconds: dict[str, float]  # method -> seconds per query


def evaluate(catalog: Catalog | Path | str, slice_name: str, *, split: str = "test",
             ks: Sequence[int] = (1, 10, 100), limit: int | None = None,
             exclude: Sequence[str] = ()) -> Evaluation:
    """Recall@k of the ``split`` items' own images from their text (model_text), among all
    the index's images: one stage and two, each exact and on the HNSW graph. ``exclude``:
    parent_asins left out of the queries (items whose image is known to be another's)."""
    searcher = Searcher.open(catalog, slice_name)
    items = searcher.index.items.with_row_index("row")
    queries = items.filter((pl.col("split") == split)
                           & ~pl.col("parent_asin").is_in(list(exclude)))
    if limit is not None:
        queries = queries.head(limit)
    if queries.height == 0:
        raise UserError(f"slice {slice_name!r} has no {split} item with an image to query")
    texts = _texts(Catalog.of(catalog), slice_name, queries["parent_asin"].to_list())
    depth = max(ks)
    ranks: dict[str, list[int]] = {}
    seconds: dict[str, float] = {}
    entity_lists = [split_entities(t) for t in texts]
    summaries = [summarise(t, searcher.index.idf) for t in texts]
    flat = [e for es in entity_lists for e in es]
    vectors = searcher.text_vectors([*flat, *summaries, *texts])
    entity_vectors = vectors[: len(flat)]
    summary_vectors = vectors[len(flat): len(flat) + len(texts)]
    full_vectors = vectors[len(flat) + len(texts):]
    starts = np.cumsum([0, *[len(es) for es in entity_lists]])
    targets = queries["row"].to_numpy()
    for exact in (True, False):
        for stages in ("one-stage", "two-stage"):
            method = f"{stages} {'exact' if exact else 'hnsw'}"
            found: list[int] = []
            started = time.perf_counter()
            for q, target in enumerate(targets):
                if stages == "one-stage":
                    _, rows = searcher.one_stage(full_vectors[q], depth, exact=exact)
                else:
                    _, rows = searcher.two_stage(
                        entity_vectors[starts[q]: starts[q + 1]], summary_vectors[q],
                        full_vectors[q], depth, candidates=max(CANDIDATES, depth),
                        exact=exact)
                hit = np.flatnonzero(rows == target)
                found.append(int(hit[0]) + 1 if len(hit) else depth + 1)
            seconds[method] = (time.perf_counter() - started) / len(targets)
            ranks[method] = found
    return Evaluation(len(targets), searcher.index.items.height,
                      {m: recall_at(np.array(r), ks) for m, r in ranks.items()}, seconds)


def _texts(catalog: Catalog, slice_name: str, asins: list[str]) -> list[str]:
    items = Slice.open(catalog, slice_name).items(["parent_asin", "model_text"])
    text = dict(zip(items["parent_asin"].to_list(), items["model_text"].to_list(), strict=True))
    return [text[a] for a in asins]
