from __future__ import annotations

import pickle

import pytest
import torch

from reward import GraceReward
from reward.grace_reward import row_groups
from rollout.embedder import EmbedRequest
from rollout.pool import VersionedEmbeddings


class FakePool:
    """Deterministic embeddings: a hash of (text, rationale) seeds a random unit vector."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.embed_calls: list[list[EmbedRequest]] = []
        self.generated: list[str] = []

    def embed_with_version(self, requests, pooling="mean"):
        return VersionedEmbeddings(self.embed(requests, pooling))  # a live policy: no versions

    def embed(self, requests, pooling="mean"):
        self.embed_calls.append(list(requests))
        out = []
        for r in requests:
            g = torch.Generator().manual_seed(abs(hash((r.text, tuple(r.rationale_ids)))) % (2**31))
            out.append(torch.nn.functional.normalize(torch.randn(self.dim, generator=g), dim=0))
        return torch.stack(out)

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        self.generated.extend(texts)
        return [(7, 8, 9)[:max_new_tokens] for _ in texts]

    def decode(self, ids):
        return " ".join(map(str, ids))


def batch(g: int = 3):
    queries = ["q0"] * g + ["q1"] * g
    completions = [[{"role": "assistant", "content": f"r{i}"}] for i in range(2 * g)]
    completion_ids = [[10 + i, 2] if i % 2 == 0 else [10 + i, 11 + i] for i in range(2 * g)]  # odd ones truncated
    return dict(
        prompts=[[{"role": "user", "content": q}] for q in queries],
        completions=completions,
        completion_ids=completion_ids,
        query=queries,
        positive=["p0"] * g + ["p1"] * g,
        negatives=[["n0"]] * g + [[]] * g,
        prompt_id=["a"] * g + ["b"] * g,
    )


def test_reward_scores_each_rollout_and_records_terms():
    metrics = {}
    reward = GraceReward(
        ["contrastive", "consistency", "truncation"], [1.0, 0.5, 0.1], pool=FakePool(), end_token_ids=[2]
    )
    scored = reward.score_batch(**batch(), log_metric=lambda k, v: metrics.__setitem__(k, v))
    out, recs = scored.rewards, scored.records
    assert out == reward(**batch())  # TRL's call returns the same rewards
    assert len(out) == 6 and all(isinstance(v, float) for v in out)
    assert [r["rationale"] for r in recs] == [f"r{i}" for i in range(6)]
    for r, total in zip(recs, out):
        expected = r["rewards"]["contrastive"] + 0.5 * r["rewards"]["consistency"] + 0.1 * r["rewards"]["truncation"]
        assert total == pytest.approx(expected, abs=1e-5)
    assert [r["rewards"]["truncation"] for r in recs] == [0.0, -1.0, 0.0, -1.0, 0.0, -1.0]
    assert metrics["grace/truncated_frac"] == pytest.approx(0.5)
    assert {"grace/contrastive", "grace/consistency", "grace/embed_seconds"} <= set(metrics)


def test_anchor_modes():
    pool = FakePool()
    GraceReward(["contrastive"], [1.0], anchor_mode="plain", pool=pool)(**batch())
    assert pool.generated == [] and all(r.rationale_ids == () for r in pool.embed_calls[-1][6:])
    pool = FakePool()
    GraceReward(["contrastive"], [1.0], anchor_mode="rationale", anchor_rationale_tokens=2, pool=pool)(**batch())
    assert pool.generated == ["p0", "p1", "n0"]
    assert all(r.rationale_ids == (7, 8) for r in pool.embed_calls[-1][6:])


def test_context_masks_exclude_identical_positives():
    reward = GraceReward(["contrastive"], [1.0], pool=FakePool())
    ctx, _ = reward.build_context(
        ["q0", "q1", "q2"], [[1], [2], [3]], ["same", "same", "other"], [[], ["neg"], []], ["a", "b", "c"]
    )
    # anchors: same, other, neg
    assert ctx.positive.tolist() == [0, 0, 1]
    assert ctx.in_batch_mask.tolist() == [[False, True, False], [False, True, False], [True, False, False]]
    assert ctx.hard_negative_mask.tolist() == [[False, False, False], [False, False, True], [False, False, False]]


def test_row_groups_follow_consecutive_keys():
    group, firsts = row_groups(["a", "a", "b", "b", "a"])
    assert group.tolist() == [0, 0, 1, 1, 2] and firsts == [0, 2, 4]


def test_non_finite_embedding_gives_none():
    class NanPool(FakePool):
        def embed(self, requests, pooling="mean"):
            out = super().embed(requests, pooling)
            out[0] = float("nan")
            return out

    out = GraceReward(["positive"], [1.0], pool=NanPool())(**batch())
    assert out[0] is None and all(isinstance(v, float) for v in out[1:])


def test_pickle_round_trip_keeps_config_and_drops_pool():
    reward = GraceReward(["margin", "truncation"], [1.0, 0.2], temperature=0.1, pool=FakePool())
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == "grace" and clone.pool is None
    assert clone.terms == ["margin", "truncation"] and clone.weights == [1.0, 0.2] and clone.temperature == 0.1
    with pytest.raises(RuntimeError, match="attach"):
        clone(**batch())
    assert len(clone.attach(FakePool())(**batch())) == 6


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="weights"):
        GraceReward(["margin"], [1.0, 2.0])
    with pytest.raises(KeyError, match="registered terms"):
        GraceReward(["bogus"], [1.0])
    with pytest.raises(ValueError, match="anchor_mode"):
        GraceReward(["margin"], [1.0], anchor_mode="fancy")
