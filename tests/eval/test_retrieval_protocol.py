"""The retrieval protocol's pure parts: the dev split, the CPU corpus, per-query metrics, bootstrap intervals (checked
against hand computations), and the DCG reward against a tiny real FAISS index."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from grace_rl.eval.retrieval_protocol import (
    RetrievalDevSet,
    bm25_rankings,
    load_devset,
    mean_interval,
    paired_mean_interval,
    per_query_metrics,
    search,
)
from grace_rl.eval.scifact import carve_split, cpu_corpus_ids, in_dev
from reward.grace_reward import GraceReward
from rollout.corpus import Corpus
from rollout.corpus_index import CorpusIndex
from rollout.index_settings import IndexSettings
from rollout.pool import VersionedEmbeddings
from tests.conftest import REPO


def test_dev_membership_is_a_fixed_function_of_the_id():
    ids = [str(i) for i in range(2000)]
    dev = [i for i in ids if in_dev(i)]
    assert 0.17 < len(dev) / len(ids) < 0.23
    assert dev == [i for i in ids if in_dev(i)]  # deterministic
    assert in_dev("7") == in_dev("7", 0.2) and not all(in_dev(i, 0.2) == in_dev(i, 0.5) for i in ids)


def test_split_drops_training_claims_that_share_a_dev_abstract_or_text():
    queries = {str(i): f"claim {i}" for i in range(60)}
    qrels = {str(i): {f"d{i // 2}": 1} for i in range(60)}  # claims 2k and 2k+1 share abstract d_k
    queries["59"] = queries[next(q for q in queries if in_dev(q))]  # a training claim with a dev claim's text
    qrels["59"] = {"d_unique": 1}
    split = carve_split(queries, qrels)
    dev_gold = {d for q in split.dev for d in qrels[q]}
    assert split.dev and split.train
    assert not dev_gold & {d for q in split.train for d in qrels[q]}
    assert not {queries[q] for q in split.dev} & {queries[q] for q in split.train}
    assert set(split.dev) | set(split.train) | set(split.dropped_shared_gold) | set(split.dropped_same_text) == set(
        queries
    )
    assert "59" in split.dropped_same_text or "59" in split.dev


def test_cpu_corpus_keeps_every_required_document_and_is_seeded():
    ids = [f"d{i}" for i in range(100)]
    chosen = cpu_corpus_ids(ids, {"d5", "d50"}, 10, seed=3)
    assert len(chosen) == 10 and {"d5", "d50"} <= set(chosen)
    assert chosen == cpu_corpus_ids(ids, {"d5", "d50"}, 10, seed=3)
    assert chosen == [d for d in ids if d in set(chosen)]  # corpus order
    with pytest.raises(ValueError, match="size must be"):
        cpu_corpus_ids(ids, {"d5", "d50"}, 1)


def test_shipped_dev_split_is_clean_of_training():
    devset = load_devset(REPO / "data" / "scifact")
    train = [json.loads(line) for line in (REPO / "data" / "scifact" / "train.jsonl").read_text().splitlines()]
    dev_gold = {d for q in devset.query_ids for d in devset.qrels[q]}
    assert not dev_gold & {d for r in train for d in r["positive_ids"]}
    assert not set(devset.query_texts) & {r["query"] for r in train}
    assert dev_gold <= set(devset.doc_ids)
    assert len(devset.query_ids) > 150 and len(devset.doc_ids) == 500


def test_per_query_metrics_by_hand():
    qrels = {"a": {"x": 1}, "b": {"y": 1, "z": 1}}
    ranked = [["w", "x"], ["y", "w", "z"]]
    got = per_query_metrics(ranked, qrels, ["a", "b"])
    idcg_b = 1 + 1 / math.log2(3)
    assert got["ndcg@10"] == pytest.approx([100 / math.log2(3), 100 * (1 + 1 / math.log2(4)) / idcg_b])
    assert got["recall@100"] == pytest.approx([100.0, 100.0])


def test_mean_interval_is_the_percentile_bootstrap_of_query_means():
    values = np.array([10.0, 0.0, 30.0, 50.0, 20.0, 100.0])
    iv = mean_interval(values, n_boot=500, seed=7)
    idx = np.random.default_rng(7).integers(0, len(values), size=(500, len(values)))  # the same resamples, by hand
    means = np.array([values[row].mean() for row in idx])
    assert iv.point == pytest.approx(values.mean())
    assert iv.low == pytest.approx(np.percentile(means, 2.5)) and iv.high == pytest.approx(np.percentile(means, 97.5))


def test_paired_interval_resamples_both_rows_together():
    a = np.array([10.0, 20.0, 30.0, 40.0, 55.0])
    b = a - 5.0  # a constant gain: every paired resample gives exactly +5
    iv = paired_mean_interval(a, b, n_boot=200, seed=1)
    assert (iv.point, iv.low, iv.high) == pytest.approx((5.0, 5.0, 5.0))
    unpaired = mean_interval(a, 200, 1)
    assert unpaired.high - unpaired.low > 1  # while each row alone varies
    with pytest.raises(ValueError, match="same queries"):
        paired_mean_interval(a, b[:3])


def test_search_and_bm25_rank_the_obvious_document_first():
    devset = RetrievalDevSet(
        name="toy",
        doc_ids=("d0", "d1", "d2"),
        doc_texts=("the cat sat on the mat", "quantum chromodynamics of gluons", "stock markets fell sharply"),
        query_ids=("q0", "q1"),
        query_texts=("gluons in quantum chromodynamics", "markets fell"),
        qrels={"q0": {"d1": 1}, "q1": {"d2": 1}},
    )
    assert [r[0] for r in bm25_rankings(devset)] == ["d1", "d2"]
    docs = np.eye(3, dtype=np.float32)
    assert search(np.array([[0, 1, 0.2], [0.1, 0, 1]], np.float32), docs, devset.doc_ids)[0] == ["d1", "d2", "d0"]


class FixedPool:
    """Embeds each text as a fixed vector (documents) or a rollout's vector chosen by its rationale's first token."""

    def __init__(self, docs: dict[str, list[float]], rollouts: dict[int, list[float]]) -> None:
        self.docs, self.rollouts = docs, rollouts

    def embed(self, requests, pooling="mean"):
        rows = [self.rollouts[r.rationale_ids[0]] if r.rationale_ids else self.docs[r.text] for r in requests]
        return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)

    def embed_with_version(self, requests, pooling="mean"):
        return VersionedEmbeddings(self.embed(requests, pooling))

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        return [()] * len(texts)

    def decode(self, ids):
        return ""


def test_dcg_reward_equals_a_hand_computation_on_a_real_faiss_index():
    texts = {"g": [1.0, 0.0, 0.0], "a": [0.0, 1.0, 0.0], "b": [0.0, 0.0, 1.0], "c": [0.6, 0.8, 0.0]}
    corpus = Corpus(tuple(f"id-{t}" for t in texts), tuple(texts))
    index = CorpusIndex(corpus, IndexSettings())
    # rollout 0 points at g (rank 1); rollout 1 is nearest a, then c, then g (rank 3); rollout 2 nearest b, then g.
    rollouts = {10: [1.0, 0.1, 0.0], 11: [0.2, 1.0, 0.0], 12: [0.3, 0.0, 1.0]}
    pool = FixedPool(texts, rollouts)
    index.build(pool, show_progress_bar=False)
    reward = GraceReward(["dcg"], [1.0], pool=pool, corpus_index=index, dcg_k=3, search_depth=4, end_token_ids=[2])
    out = reward(
        prompts=["q"] * 3,
        completions=["r0", "r1", "r2"],
        completion_ids=[[10, 2], [11, 2], [12, 2]],
        query=["q"] * 3,
        positive=["g"] * 3,
        negatives=[[]] * 3,
        prompt_id=["row"] * 3,
        positive_ids=[["id-g"]] * 3,
    )
    # nDCG@3 with one gold document: 1 / log2(rank + 1)
    assert out == pytest.approx([1.0, 1 / math.log2(4), 1 / math.log2(3)])


def test_base_instructions_give_a_frozen_policy_run_its_untrained_twin():
    """The base is shown under the instruction of each run embedded by the base model's weights (its own run, or a
    frozen copy of the base); a sentence-transformers writer run gets no base-policy row (its twin is an encoder
    row)."""
    from grace_rl.eval.retrieval_models import base_instructions
    from grace_rl.prompts import DEFAULT_INSTRUCTION

    instructions = {"own": "A", "frozen_copy": "B", "minilm": "C", "own_default": DEFAULT_INSTRUCTION}
    metas = {
        "own": {},
        "frozen_copy": {"reward_embedder": "frozen"},
        "minilm": {"reward_embedder": "all-minilm-l6-v2"},
        "own_default": {"reward_embedder": None},
    }
    assert base_instructions(instructions, metas) == [DEFAULT_INSTRUCTION, "A", "B"]
    assert base_instructions(instructions, metas, extra=("B", "D")) == [DEFAULT_INSTRUCTION, "A", "B", "D"]
