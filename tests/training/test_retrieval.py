"""Text-to-image retrieval: the alignment, the exact and HNSW searches, the index's updates,
the two stages and the commands, on real vectors, a real faiss graph and a tiny catalog."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("faiss")

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from curate.cli import app
from curation.errors import UserError
from curation.ingest import ingest
from curation.slices import build_slice
from curation.synth import SynthConfig, synthesize
from training.retrieval.align import (
    AlignConfig,
    align_slice,
    own_ranks,
    recall_at,
    train_alignment,
)
from training.retrieval.index import build_index, exact_search, graph_search, hnsw_graph
from training.retrieval.search import Searcher, evaluate, split_entities, summarise

TINY = {"image_encoder": "tiny-efficientnet", "text_encoder": "tiny-minilm"}
FULL = "default-frac1-seed0"
QUICK = AlignConfig(epochs=15)


def _paired(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and text features of one hidden 8-d latent through two random linear maps."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    image = latent @ rng.normal(size=(8, 40)) + 0.1 * rng.normal(size=(n, 40))
    text = latent @ rng.normal(size=(8, 24)) + 0.1 * rng.normal(size=(n, 24))
    return image.astype(np.float32), text.astype(np.float32)


def _recall_at_1(alignment, image: np.ndarray, text: np.ndarray) -> float:
    ranks, _, _ = own_ranks(alignment.project_texts(text), alignment.project_images(image),
                         np.arange(len(text)))
    return recall_at(ranks, (1,))["recall@1"]


def test_alignment_finds_held_out_pairs_and_weights_silence_wrong_ones():
    image, text = _paired(900, seed=0)
    held = slice(700, 900)
    # half the training pairs are wrong (texts shuffled among them)
    wrong = np.zeros(700, dtype=bool)
    wrong[:350] = True
    shuffled = text[:700].copy()
    shuffled[:350] = shuffled[np.random.default_rng(1).permutation(350)]
    config = AlignConfig(dim=16, epochs=40)
    plain, losses = train_alignment(image[:700], shuffled, None, config)
    weighted, _ = train_alignment(image[:700], shuffled, (~wrong).astype(float), config)
    assert losses[-1] < losses[0]
    plain_recall = _recall_at_1(plain, image[held], text[held])
    weighted_recall = _recall_at_1(weighted, image[held], text[held])
    # 200 candidates: chance is 0.005
    assert plain_recall > 0.5
    assert weighted_recall > plain_recall
    projected = weighted.project_images(image[held])
    assert projected.shape == (200, 16)
    assert np.allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)


def test_alignment_refuses_what_it_cannot_fit():
    image, text = _paired(10, seed=0)
    with pytest.raises(UserError, match="weights"):
        train_alignment(image, text, np.zeros(10), QUICK)
    with pytest.raises(UserError, match="at least 2"):
        train_alignment(image[:1], text[:1], None, QUICK)


def test_same_inputs_give_the_same_alignment():
    image, text = _paired(300, seed=2)
    a, _ = train_alignment(image, text, None, QUICK)
    b, _ = train_alignment(image, text, None, QUICK)
    assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 70), st.integers(0, 10_000))
def test_exact_search_returns_the_k_best_in_order(n, k, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 6)).astype(np.float32)
    queries = rng.normal(size=(3, 6)).astype(np.float32)
    scores, rows = exact_search(vectors, queries, k)
    assert rows.shape == (3, min(k, n))
    for q in range(3):
        sims = vectors @ queries[q]
        assert np.allclose(scores[q], sims[rows[q]], atol=1e-5)
        assert np.all(np.diff(scores[q]) <= 1e-6)  # best first
        assert scores[q][-1] >= np.sort(sims)[::-1][min(k, n) - 1] - 1e-6  # none better left


def test_hnsw_recall_against_exact_and_same_bytes():
    import faiss

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(5000, 200, replace=False)] + 0.3 * rng.normal(size=(200, 32))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    graph = hnsw_graph(vectors)
    built = faiss.serialize_index(graph)  # before a search sets its efSearch
    _, approx = graph_search(graph, queries, 10)
    _, exact = exact_search(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95
    assert np.array_equal(built, faiss.serialize_index(hnsw_graph(vectors)))


MODEL_TEXT = ("Main category: All Beauty\nTitle: Acme Sturdy red round lipstick, 20 Count\n"
              "Features: Sturdy materials built for everyday use | Includes 12 pieces\n"
              "Description: This sturdy lipstick from Acme comes in a blue style. Customers "
              "describe it as solid.")


def test_entities_of_an_item_text_and_of_a_free_text():
    assert split_entities(MODEL_TEXT) == [
        "Acme Sturdy red round lipstick, 20 Count", "Sturdy materials built for everyday use",
        "Includes 12 pieces", "This sturdy lipstick from Acme comes in a blue style.",
        "Customers describe it as solid."]
    assert split_entities("red round lipstick\nsturdy | 12 pieces; travel size. Nice.") == [
        "red round lipstick", "sturdy", "12 pieces", "travel size.", "Nice."]
    assert split_entities("a red mug. It is round.") == ["a red mug.", "It is round."]


@given(st.text(min_size=1, max_size=200).filter(lambda t: t.strip()))
def test_entities_are_never_empty_and_come_from_the_text(text):
    entities = split_entities(text)
    assert entities and all(e.strip() for e in entities)
    squashed = " ".join(text.split())
    assert all(" ".join(e.split()) in squashed for e in entities)


def test_summary_is_the_title_and_the_rarest_other_words():
    rare = {"solid": 5.0, "pieces": 4.0, "everyday": 3.0}
    summary = summarise(MODEL_TEXT, lambda w: rare.get(w, 1.0), terms=2)
    assert summary == "Acme Sturdy red round lipstick, 20 Count pieces solid"


# --- on a catalog --------------------------------------------------------------------------


def _catalog(root: Path, categories: tuple[str, ...]) -> Path:
    synthesize(root / "corpus", SynthConfig(n_items=150 * len(categories), seed=3,
                                            categories=categories, image_attributes=True))
    ingest(str(root / "corpus" / "raw"), root / "catalog")
    build_slice(root / "catalog", 1.0)
    return root / "catalog"


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> Path:
    """300 items of two categories, aligned by the tiny encoders' features and indexed."""
    root = tmp_path_factory.mktemp("retrieval")
    catalog = _catalog(root, ("All_Beauty", "Video_Games"))
    align_slice(catalog, FULL, config=QUICK, **TINY)
    build_index(catalog, FULL)
    return catalog


def test_index_is_kept_when_nothing_changed_and_rebuilt_for_a_new_alignment(aligned,
                                                                              tmp_path):
    catalog = shutil.copytree(aligned, tmp_path / "catalog")
    assert build_index(catalog, FULL).action == "unchanged"
    align_slice(catalog, FULL, config=AlignConfig(epochs=15, seed=1), **TINY)
    result = build_index(catalog, FULL)
    assert result.action == "built" and result.added == result.items


@pytest.mark.slow
def test_index_adds_the_items_of_a_grown_catalog(aligned, tmp_path):
    catalog = shutil.copytree(aligned, tmp_path / "catalog")
    before = Searcher.open(catalog, FULL, update=False).index.items
    # the same corpus with a third category: the first two are written byte for byte again
    synthesize(tmp_path / "corpus", SynthConfig(
        n_items=450, seed=3, categories=("All_Beauty", "Video_Games", "Office_Products"),
        image_attributes=True))
    ingest(str(tmp_path / "corpus" / "raw"), catalog)
    build_slice(catalog, 1.0)
    searcher = Searcher.open(catalog, FULL)  # notices the slice changed
    after = searcher.index.items
    assert searcher.index.manifest["action"] == "added"
    assert after.height > before.height
    assert after["parent_asin"].head(before.height).to_list() == before["parent_asin"].to_list()
    assert searcher.index.graph.ntotal == after.height == len(searcher.index.vectors)
    # an added item is found by its own text as a rebuilt index finds it
    added = after.row(after.height - 1, named=True)["parent_asin"]
    text = pl.read_parquet(catalog / "slices" / FULL / "items.parquet").filter(
        pl.col("parent_asin") == added)["model_text"].item()
    exact = searcher.search(text, 5, two_stage=False, exact=True)
    assert searcher.search(text, 5, two_stage=False)["parent_asin"].to_list() == \
        exact["parent_asin"].to_list()


def test_two_stage_search_and_its_evaluation(aligned):
    searcher = Searcher.open(aligned, FULL, update=False)
    found = searcher.search(MODEL_TEXT, 7)
    assert found.columns == ["rank", "parent_asin", "score", "image_path", "title", "split"]
    assert found["rank"].to_list() == list(range(1, 8))
    assert found["score"].is_sorted(descending=True)
    assert all(Path(p).is_file() for p in found["image_path"].to_list())
    result = evaluate(aligned, FULL, ks=(1, 10, 100))
    assert set(result.recall) == {"one-stage exact", "two-stage exact", "one-stage hnsw",
                                  "two-stage hnsw"}
    for recall in result.recall.values():
        assert 0 <= recall["recall@1"] <= recall["recall@10"] <= recall["recall@100"] <= 1
    # the gallery is small: any reasonable search finds most own images in the top 100
    assert result.recall["one-stage exact"]["recall@100"] > 100 / result.gallery


def test_search_command_prints_and_writes_a_page(aligned, tmp_path):
    catalog = shutil.copytree(aligned, tmp_path / "catalog")
    runner = CliRunner()
    page = tmp_path / "found.html"
    result = runner.invoke(app, ["search", "red round lipstick", "--slice", FULL, "-c",
                                 str(catalog), "-k", "3", "--html", str(page)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith(("1", "2",
                                                                                     "3"))]
    assert len(lines) == 3
    html = page.read_text()
    assert html.count("data:image/jpeg;base64,") == 3 and "red round lipstick" in html
    missing = runner.invoke(app, ["search", "x", "--slice", "nope", "-c", str(catalog)])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
    empty = runner.invoke(app, ["search", "  ", "--slice", FULL, "-c", str(catalog)])
    assert empty.exit_code != 0 and "empty" in empty.output


def test_align_commands(aligned, tmp_path):
    catalog = shutil.copytree(aligned, tmp_path / "catalog")
    runner = CliRunner()
    trained = runner.invoke(app, ["align", "train", "--slice", FULL, "-c", str(catalog),
                                  "--image-encoder", TINY["image_encoder"], "--text-encoder",
                                  TINY["text_encoder"], "--epochs", "5"])
    assert trained.exit_code == 0, trained.output
    assert "train pairs" in trained.output and "recall@10" in trained.output
    manifest = json.loads((catalog / "alignment" / FULL / "model" / "manifest.json").read_text())
    assert manifest["weights"] is None and manifest["parameters"]["epochs"] == 5
    weighted = runner.invoke(app, ["weights", "compute", "--slice", FULL, "-c", str(catalog),
                                   "--strategy", "effiminivlm"])
    assert weighted.exit_code == 0, weighted.output
    trained = runner.invoke(app, ["align", "train", "--slice", FULL, "-c", str(catalog),
                                  "--image-encoder", TINY["image_encoder"], "--text-encoder",
                                  TINY["text_encoder"], "--epochs", "5", "--weights",
                                  "effiminivlm"])
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((catalog / "alignment" / FULL / "model" / "manifest.json").read_text())
    assert manifest["weights"] == "effiminivlm" and "weights" in manifest["inputs"]
    unknown = runner.invoke(app, ["align", "train", "--slice", FULL, "-c", str(catalog),
                                  "--weights", "nope"])
    assert unknown.exit_code != 0 and "nope" in unknown.output
    indexed = runner.invoke(app, ["align", "index", "--slice", FULL, "-c", str(catalog)])
    assert indexed.exit_code == 0 and indexed.output.startswith("built")
    evaluated = runner.invoke(app, ["align", "eval", "--slice", FULL, "-c", str(catalog),
                                    "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert '"two-stage hnsw"' in evaluated.output
