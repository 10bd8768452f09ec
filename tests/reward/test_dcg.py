from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from reward import GraceReward
from reward.dcg import first_gold_rank, ideal_dcg, ndcg_at_k, ndcg_scores
from rollout.corpus import Corpus
from rollout.pool import VersionedEmbeddings

INV_LOG2_3 = 1 / math.log2(3)  # gain at rank 2


@pytest.mark.parametrize(
    ("ranked", "gold", "k", "expected"),
    [
        (["a", "b", "c"], {"a"}, 3, 1.0),  # gold at rank 1
        (["b", "c", "a"], {"a"}, 3, 0.5),  # rank 3: 1/log2(4)
        (["b", "c", "d"], {"a"}, 3, 0.0),  # absent
        (["b", "c", "d", "a"], {"a"}, 3, 0.0),  # below the cutoff
        (["a", "b", "c"], {"a", "c"}, 3, 1.5 / (1 + INV_LOG2_3)),  # two golds at ranks 1 and 3
        (["c", "a", "x"], {"a", "c"}, 3, 1.0),  # both golds on top, in any order
        (["x", "a"], {"a", "b", "c"}, 2, INV_LOG2_3 / (1 + INV_LOG2_3)),  # ideal DCG over min(|gold|, k) = 2
        (["a", "a", "b"], {"a"}, 3, 1.0),  # a duplicate gold counts once
    ],
)
def test_ndcg_hand_computed(ranked, gold, k, expected):
    assert ndcg_at_k(ranked, gold, k) == pytest.approx(expected, abs=1e-9)


def test_helpers_and_errors():
    assert ideal_dcg(5, 2) == pytest.approx(1 + INV_LOG2_3)
    assert first_gold_rank(["x", "y", "g"], {"g"}) == 3 and first_gold_rank(["x"], {"g"}) is None
    assert ndcg_scores([["g"], ["x", "g"]], [{"g"}, {"g"}], 2).tolist() == pytest.approx([1.0, INV_LOG2_3])
    with pytest.raises(ValueError, match="empty gold set"):
        ndcg_at_k(["a"], set(), 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg_at_k(["a"], {"a"}, 0)


class FakePool:
    def embed_with_version(self, requests, pooling="mean"):
        return VersionedEmbeddings(self.embed(requests, pooling))  # a live policy: no versions

    def embed(self, requests, pooling="mean"):
        return torch.nn.functional.normalize(torch.ones(len(requests), 4), dim=1)  # (N, 4)

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        return [()] * len(texts)

    def decode(self, ids):
        return ""


class FakeIndex:
    """Returns fixed rankings, one per rollout, and records what the reward asked."""

    def __init__(self, rankings: list[list[str]]) -> None:
        self.corpus = Corpus(("g0", "g1", "x", "y", "z"), ("p0", "p1", "tx", "ty", "tz"))
        self.rankings = rankings
        self.depths: list[int] = []
        self.used: set[str] = set()

    def search(self, queries, k):
        self.depths.append(k)
        return np.zeros((len(queries), k)), [r[:k] for r in self.rankings[: len(queries)]]

    def note_used(self, doc_ids):
        self.used.update(doc_ids)


RANKINGS = [["g0", "x"], ["x", "y", "g0"], ["x", "y"], ["g1"], ["x", "g1"], ["x", "y", "z"]]


def batch(positive_ids=(["g0"],) * 3 + ([],) * 3):
    queries = ["q0"] * 3 + ["q1"] * 3
    return dict(
        prompts=[[{"role": "user", "content": q}] for q in queries],
        completions=[f"r{i}" for i in range(6)],
        completion_ids=[[10 + i, 2] for i in range(6)],
        query=queries,
        positive=["p0"] * 3 + ["p1"] * 3,  # row b has no ids: its gold is the document with text "p1" (g1)
        negatives=[[]] * 6,
        prompt_id=["a"] * 3 + ["b"] * 3,
        positive_ids=list(positive_ids),
    )


def test_reward_searches_each_rollout_and_scores_ndcg():
    index = FakeIndex(RANKINGS)
    reward = GraceReward(["dcg"], [2.0], pool=FakePool(), corpus_index=index, dcg_k=2, search_depth=3)
    metrics = {}
    scored = reward.score_batch(**batch(), log_metric=lambda k, v: metrics.__setitem__(k, v))
    expected = [1.0, 0.0, 0.0, 1.0, INV_LOG2_3, 0.0]  # k = 2: g0 at rank 3 is past the cutoff
    assert scored.rewards == pytest.approx([2 * e for e in expected])
    assert [r["rewards"]["dcg"] for r in scored.records] == pytest.approx(expected)
    assert [r["gold_rank"] for r in scored.records] == [1, 3, None, 1, 2, None]
    assert index.depths == [3]
    assert metrics["grace/dcg"] == pytest.approx(sum(expected) / 6)
    assert metrics["grace/dcg_recall_at_depth"] == pytest.approx(4 / 6)
    assert metrics["grace/dcg_mrr"] == pytest.approx((1 + 1 / 3 + 1 + 1 / 2) / 6)
    assert index.used == {"g0", "g1", "x", "y"}  # golds + top-k retrieved


def test_gold_resolution_errors_name_the_row():
    reward = GraceReward(["dcg"], [1.0], pool=FakePool(), corpus_index=FakeIndex(RANKINGS))
    with pytest.raises(ValueError, match=r"row 'a': positive_ids \['nope'\] are not in the corpus"):
        reward(**batch(positive_ids=(["nope"],) * 6))
    no_ids = batch(positive_ids=([],) * 6)
    no_ids["positive"] = ["unknown text"] * 6
    with pytest.raises(ValueError, match="no corpus document has the positive's text"):
        reward(**no_ids)


def test_dcg_without_index_fails_and_pickle_drops_the_index():
    with pytest.raises(ValueError, match="corpus index"):
        GraceReward(["dcg"], [1.0], pool=FakePool())(**batch())
    reward = GraceReward(["dcg"], [1.0], pool=FakePool(), corpus_index=FakeIndex(RANKINGS), dcg_k=3, search_depth=5)
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.corpus_index is None and (clone.dcg_k, clone.search_depth) == (3, 5)
    clone.attach(FakePool(), corpus_index=FakeIndex(RANKINGS))
    assert len(clone(**batch())) == 6


def test_graded_ndcg_is_the_binary_one_for_unit_gains():
    ranked = ["x", "a", "y", "b"]
    assert ndcg_at_k(ranked, {"a": 1, "b": 1}, 4) == pytest.approx(ndcg_at_k(ranked, {"a", "b"}, 4))
    assert ndcg_at_k(ranked, {"a": 2, "b": 1, "z": 0}, 4) == pytest.approx(
        (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3))
    )
