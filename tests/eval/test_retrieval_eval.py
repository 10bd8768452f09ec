from __future__ import annotations

import json
import math

import numpy as np
import pytest

from grace_rl.cli import main as cli_main
from grace_rl.eval.retrieval import (
    evaluate_retrieval,
    read_qrels,
    read_texts,
    recall_at_k,
    reciprocal_rank_at_k,
    retrieval_metrics,
    search_inner_product,
)
from reward.dcg import ndcg_at_k  # the one nDCG (reward and evaluation)


def test_metrics_by_hand():
    ranked = ["d3", "d1", "d7", "d2"]
    rels = {"d1": 2, "d2": 1, "d9": 1, "d5": 0}
    # DCG = 2/log2(3) + 1/log2(5); ideal = 2/log2(2) + 1/log2(3) + 1/log2(4)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(ranked, rels, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranked, rels, 1) == 0.0  # d3 is not relevant; ideal@1 = 2
    assert reciprocal_rank_at_k(ranked, rels, 10) == 0.5
    assert reciprocal_rank_at_k(ranked, rels, 1) == 0.0
    assert recall_at_k(ranked, rels, 100) == pytest.approx(2 / 3)  # d9 never retrieved; d5 (0) is not relevant
    assert recall_at_k(ranked, rels, 2) == pytest.approx(1 / 3)
    assert ndcg_at_k(["d1", "d2", "d9"], rels, 10) == pytest.approx(1.0)


def test_retrieval_metrics_averages_judged_queries_only():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q3 has no relevant document: not evaluated
    run = {"q1": ["a", "x"], "q3": ["c"]}  # q2 missing from the run: scores 0
    m = retrieval_metrics(run, qrels)
    assert m["n_queries"] == 2
    assert m["ndcg@10"] == pytest.approx(50.0) and m["mrr@10"] == pytest.approx(50.0)
    assert m["recall@100"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="no query with a relevant"):
        retrieval_metrics(run, {"q3": {"c": 0}})


def test_metrics_match_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(150)]
    qrels = {f"q{q}": {d: int(rng.integers(1, 4)) for d in rng.choice(docs, 5, replace=False)} for q in range(20)}
    run_scores = {q: {d: float(s) for d, s in zip(docs, rng.permutation(len(docs)), strict=True)} for q in qrels}
    ranked = {q: sorted(scores, key=scores.get, reverse=True) for q, scores in run_scores.items()}
    ours = retrieval_metrics(ranked, qrels)
    top10 = {q: {d: run_scores[q][d] for d in ranked[q][:10]} for q in qrels}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run_scores)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    assert ours["ndcg@10"] == pytest.approx(100 * np.mean([v["ndcg_cut_10"] for v in full.values()]), abs=1e-9)
    assert ours["recall@100"] == pytest.approx(100 * np.mean([v["recall_100"] for v in full.values()]), abs=1e-9)
    assert ours["mrr@10"] == pytest.approx(100 * np.mean([v["recip_rank"] for v in rr.values()]), abs=1e-9)


def test_search_inner_product_matches_numpy():
    rng = np.random.default_rng(1)
    q, d = rng.normal(size=(4, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    scores, rows = search_inner_product(q, d, 5)
    expected = np.argsort(-(q @ d.T), axis=1)[:, :5]
    assert rows.shape == (4, 5) and (rows == expected).all()
    assert np.allclose(scores, np.take_along_axis(q @ d.T, expected, axis=1), atol=1e-5)
    assert search_inner_product(q, d[:3], 100)[1].shape == (4, 3)  # depth capped at the corpus size
    with pytest.raises(ValueError, match="queries"):
        search_inner_product(q, d[:, :4], 5)


def _write_beir(tmp_path):
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "Cats", "text": "A cat sleeps."}\n{"_id": "d2", "text": "Stocks fell."}\n'
        '{"_id": "d3", "text": "Rain tomorrow."}\n'
    )
    (tmp_path / "queries.tsv").write_text("id\ttext\nq1\tpets\nq2\tmarkets\nq3\tweather\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t2\nq3\td1\t1\n")
    return tmp_path / "corpus.jsonl", tmp_path / "queries.tsv", tmp_path / "qrels.tsv"


def test_readers(tmp_path):
    corpus, queries, qrels = _write_beir(tmp_path)
    assert read_texts(corpus) == {"d1": "Cats A cat sleeps.", "d2": "Stocks fell.", "d3": "Rain tomorrow."}
    assert read_texts(queries) == {"q1": "pets", "q2": "markets", "q3": "weather"}
    expected = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 2, "d1": 1}}
    assert read_qrels(qrels) == expected
    (tmp_path / "plain.tsv").write_text("q1\tpets\n")
    assert read_texts(tmp_path / "plain.tsv") == {"q1": "pets"}
    (tmp_path / "trec.txt").write_text("q1 0 d1 1\nq2 0 d2 1\nq3 0 d3 2\nq3 0 d1 1\n")
    assert read_qrels(tmp_path / "trec.txt") == expected
    (tmp_path / "q.jsonl").write_text('{"query-id": "q1", "corpus-id": "d1", "score": 1}\n')
    assert read_qrels(tmp_path / "q.jsonl") == {"q1": {"d1": 1}}
    (tmp_path / "bad.tsv").write_text("q1\tpets\textra\n")
    with pytest.raises(ValueError, match="header"):
        read_texts(tmp_path / "bad.tsv")
    (tmp_path / "bad.qrels").write_text("q1 d1\n")
    with pytest.raises(ValueError, match="line 1 has 2 fields"):
        read_qrels(tmp_path / "bad.qrels")


class _TableEncoder:
    """A stand-in encoder: fixed vectors per text, so the ranking is known by construction."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def encode(self, texts, **_):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_evaluate_retrieval_end_to_end_with_known_ranking(tmp_path):
    corpus, queries, qrels = _write_beir(tmp_path)
    enc = _TableEncoder(
        {
            "Cats A cat sleeps.": [1, 0, 0],
            "Stocks fell.": [0, 1, 0],
            "Rain tomorrow.": [0, 0, 1],
            "pets": [0.9, 0.1, 0.0],  # d1 first: correct
            "markets": [0.0, 0.2, 0.8],  # d3, d2: the right document second
            "weather": [0.7, 0.0, 0.3],  # d1 (rel 1), d3 (rel 2): ideal order reversed
        }
    )
    result = evaluate_retrieval(enc, corpus, queries, qrels)
    ndcg_q3 = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert result["n_queries"] == 3 and result["n_docs"] == 3
    assert result["ndcg@10"] == pytest.approx(100 * (1 + 1 / math.log2(3) + ndcg_q3) / 3, abs=0.01)
    assert result["mrr@10"] == pytest.approx(100 * (1 + 0.5 + 1) / 3, abs=0.01)
    assert result["recall@100"] == 100.0
    assert evaluate_retrieval(enc, corpus, queries, qrels, limit_queries=1)["mrr@10"] == 100.0


def test_cli_eval_retrieval(tiny_model_dir, tmp_path, capsys):
    corpus, queries, qrels = _write_beir(tmp_path)
    argv = ["eval", "retrieval", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--queries", str(queries)]
    assert cli_main([*argv, "--qrels", str(qrels), "--max-rationale-tokens", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["task"] == "retrieval" and line["n_queries"] == 3 and line["n_docs"] == 3
    assert all(0 <= line[k] <= 100 for k in ("ndcg@10", "mrr@10", "recall@100"))
    assert line["recall@100"] == 100.0  # 3 documents, all retrieved
    (tmp_path / "none.tsv").write_text("q9\td1\t1\n")
    assert cli_main([*argv, "--qrels", str(tmp_path / "none.tsv")]) == 2
    assert "No query" in capsys.readouterr().err
