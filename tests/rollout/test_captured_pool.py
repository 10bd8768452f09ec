"""CapturingPool: offered rows are served, the rest is computed by the wrapped pool, an offer lives for one call."""

from __future__ import annotations

import torch

from rollout.captured_pool import CapturingPool, embed_prefixes
from rollout.embedder import EmbedRequest
from rollout.pool import EmbeddingPool, VersionedEmbeddings


class CountingPool:
    """Embeds request k of a call as a one-hot of its text length; versions = 7 when `versioned`."""

    def __init__(self, versioned: bool = False) -> None:
        self.calls: list[list[EmbedRequest]] = []
        self.versioned = versioned

    def embed_with_version(self, requests, pooling="mean"):
        self.calls.append(list(requests))
        vectors = torch.nn.functional.one_hot(torch.tensor([len(r.text) for r in requests]), 8).float()  # (N, 8)
        versions = torch.full((len(requests),), 7) if self.versioned else None
        return VersionedEmbeddings(vectors, versions)

    def embed(self, requests, pooling="mean"):
        return self.embed_with_version(requests, pooling).vectors

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        return [(1,)] * len(texts)

    def decode(self, ids):
        return "x"


ROLLOUTS = [EmbedRequest("q1", (3, 4)), EmbedRequest("q22", (5,))]
ANCHORS = [EmbedRequest("p"), EmbedRequest("pp")]


def test_offered_rollouts_are_served_and_only_anchors_computed():
    inner = CountingPool(versioned=True)
    pool = CapturingPool(inner)
    assert isinstance(pool, EmbeddingPool)
    captured = torch.full((2, 8), 0.5)
    pool.offer(ROLLOUTS, captured)
    out = pool.embed_with_version(ROLLOUTS + ANCHORS)
    assert inner.calls == [ANCHORS] and pool.last_served == 2
    assert torch.equal(out.vectors[:2], captured) and torch.equal(out.vectors[2:], inner.embed(ANCHORS))
    assert out.versions.tolist() == [7, 7, 7, 7]  # captured rows never look staler than the computed ones
    again = pool.embed_with_version(ROLLOUTS + ANCHORS)  # the offer lived for one call
    assert pool.last_served == 0 and inner.calls[-1] == ROLLOUTS + ANCHORS
    assert not torch.equal(again.vectors[:2], captured)


def test_a_mismatched_offer_is_dropped_and_everything_computed():
    unrelated = [EmbedRequest("q1", (3, 9)), EmbedRequest("q2", (5,))]
    for requests, pooling in ((unrelated, "mean"), (ROLLOUTS, "last_token")):
        inner = CountingPool()
        pool = CapturingPool(inner)
        pool.offer(ROLLOUTS, torch.zeros(2, 8))
        out = pool.embed_with_version(requests + ANCHORS, pooling=pooling)
        assert inner.calls == [requests + ANCHORS] and pool.last_served == 0 and out.versions is None
        pool.embed(ANCHORS)
        assert inner.calls[-1] == ANCHORS  # nothing left over from the dropped offer


def test_offered_rows_are_served_wherever_they_stand_and_the_rest_computed_in_order():
    inner = CountingPool(versioned=True)
    pool = CapturingPool(inner)
    other = EmbedRequest("q1", (3, 9))  # same text, another rationale: not offered
    pool.offer(ROLLOUTS, torch.stack([torch.full((8,), 0.25), torch.full((8,), 0.75)]))
    out = pool.embed_with_version([ANCHORS[0], ROLLOUTS[1], other, ROLLOUTS[0], ANCHORS[1]])
    assert inner.calls == [[ANCHORS[0], other, ANCHORS[1]]] and pool.last_served == 2
    assert torch.equal(out.vectors[1], torch.full((8,), 0.75)) and torch.equal(out.vectors[3], torch.full((8,), 0.25))
    computed = inner.embed([ANCHORS[0], other, ANCHORS[1]])
    assert torch.equal(out.vectors[[0, 2, 4]], computed) and out.versions.tolist() == [7] * 5


def test_only_offered_rows_needs_no_inner_call():
    inner = CountingPool()
    pool = CapturingPool(inner)
    pool.offer(ROLLOUTS, torch.ones(2, 8))
    assert torch.equal(pool.embed(ROLLOUTS), torch.ones(2, 8)) and inner.calls == []
    assert pool.generate_rationales(["a"], 4) == [(1,)] and pool.decode([1]) == "x"


def test_prefixes_served_from_the_offer_else_one_batched_call():
    inner = CountingPool()
    pool = CapturingPool(inner)
    rollouts = [EmbedRequest("q1", (3, 4, 5, 6)), EmbedRequest("q22", (5,))]
    prefixes = torch.rand(2, 2, 8)
    pool.offer(rollouts, torch.zeros(2, 8), "mean", prefixes, [0.5, 1.0])
    pool.embed(rollouts)  # the reward's rollout call comes first and leaves the prefix offer in place
    assert torch.equal(embed_prefixes(pool, rollouts, [4, 1], [0.5, 1.0]), prefixes)
    assert inner.calls == []
    # used up: the next call computes every prefix in one call (ceil(f * L) tokens of each rationale)
    computed = embed_prefixes(pool, rollouts, [4, 1], [0.5, 1.0])
    assert inner.calls == [
        [
            EmbedRequest("q1", (3, 4)),
            EmbedRequest("q1", (3, 4, 5, 6)),
            EmbedRequest("q22", (5,)),
            EmbedRequest("q22", (5,)),
        ]
    ]
    assert computed.shape == (2, 2, 8)
    pool.offer(rollouts, torch.zeros(2, 8), "mean", prefixes, [0.5, 1.0])
    embed_prefixes(pool, rollouts, [4, 1], [0.25, 1.0])  # other fractions: not served
    assert len(inner.calls) == 2
