"""Anchor rationales in the rollouts' generate call: the logits processor decodes its rows greedily (or at the anchor
temperature), the blocker names what forbids it, and CapturingPool serves the offered rationales and embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from rollout.anchor_rows import AnchorRowsProcessor, adding_logits_processor, ride_along_blocker
from rollout.captured_pool import CapturingPool
from rollout.embedder import Embedder, EmbedRequest

from .test_captured_pool import CountingPool


def test_greedy_rows_keep_only_their_argmax_and_other_rows_are_untouched():
    scores = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.5, 0.25], [0.0, -0.5, 0.75]])
    out = AnchorRowsProcessor(first=1, count=2, anchor_temperature=0.0, rollout_temperature=1.0)(None, scores)
    assert torch.equal(out[0], scores[0])  # a rollout row
    assert out[1].tolist() == [3.0, -math.inf, -math.inf]
    assert out[2].tolist() == [-math.inf, -math.inf, 0.75]
    assert scores[1, 1] == 0.5  # the input is not modified in place
    probs = torch.softmax(out, dim=-1)
    assert probs[1, 0] == 1.0 and probs[2, 2] == 1.0  # the sampler can only draw the argmax


def test_sampled_rows_are_rescaled_to_the_anchor_temperature_after_the_warper():
    scores = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    out = AnchorRowsProcessor(first=1, count=1, anchor_temperature=0.5, rollout_temperature=1.5)(None, scores)
    assert torch.equal(out[0], scores[0])
    warped = out / 1.5  # HF's temperature warper runs after the custom processors
    torch.testing.assert_close(warped[1], scores[1] / 0.5)
    same = AnchorRowsProcessor(first=0, count=2, anchor_temperature=1.5, rollout_temperature=1.5)(None, scores)
    assert torch.equal(same, scores)


def test_bad_processor_arguments_fail():
    with pytest.raises(ValueError, match="rollout_temperature"):
        AnchorRowsProcessor(0, 1, 0.0, 0.0)
    with pytest.raises(ValueError, match="first"):
        AnchorRowsProcessor(-1, 1, 0.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "anchor", "rollout", "needle"),
    [
        ({"top_k": 0, "top_p": 1.0, "min_p": None, "repetition_penalty": 1.0}, 32, 32, None),
        ({"top_k": 50}, 32, 32, "top_k=50"),
        ({"top_p": 0.9}, 32, 32, "top_p=0.9"),
        ({"repetition_penalty": 1.1}, 8, 32, "repetition_penalty"),
        ({"do_sample": False}, 8, 32, "not sampled"),
        ({}, 33, 32, "exceeds"),
        ({}, 8, 32, None),
    ],
)
def test_blocker_names_what_forbids_the_ride_along(kwargs, anchor, rollout, needle):
    reason = ride_along_blocker(kwargs, anchor, rollout)
    if needle is None:
        assert reason is None
    else:
        assert needle in reason


def test_anchor_rows_of_a_sampled_generate_equal_greedy_generation(tiny_model, tokenizer):
    """Through HF generate: rows decoded by the processor inside a temperature-1 sampled batch are token for token
    the greedy rationales of the same prompts (budget cut included); the rollout rows are still sampled."""
    embedder = Embedder(tiny_model, tokenizer, lambda t: [{"role": "user", "content": t}])
    rollouts = ["A man is playing a guitar.", "A woman slices an onion."] * 3
    anchors = ["Someone plays music.", "Nobody is cooking anything at all today.", "A dog runs."]
    greedy = embedder.generate_rationales(anchors, max_new_tokens=5)
    prompts = [embedder.prompt_tokens(t).ids for t in rollouts + anchors]
    input_ids, attention = embedder._left_padded(prompts)
    processor = AnchorRowsProcessor(len(rollouts), len(anchors), 0.0, 1.0)
    torch.manual_seed(0)
    with adding_logits_processor(tiny_model, processor):
        out = tiny_model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=8,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=embedder.end_ids,
        )
    assert "generate" not in vars(tiny_model)  # the patch is gone
    completions = out[:, input_ids.shape[1] :].tolist()
    written = [tuple(embedder.rationale_tokens(c)[:5]) for c in completions[len(rollouts) :]]
    assert written == greedy
    assert any(len(g) == 5 for g in greedy)  # the 5-token budget actually cuts a longer rationale
    sampled = [tuple(embedder.rationale_tokens(c)) for c in completions[: len(rollouts)]]
    assert len(set(sampled)) > 2  # the rollout rows (3 copies of 2 prompts) are sampled, not greedy


def test_offered_rationales_are_served_and_only_the_rest_written():
    class Recording(CountingPool):
        def __init__(self):
            super().__init__()
            self.written: list[list[str]] = []

        def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
            self.written.append(list(texts))
            return [(9, 9)] * len(texts)

    inner = Recording()
    pool = CapturingPool(inner)
    pool.offer_rationales(["p", "n"], [(1, 2), (3,)], max_new_tokens=4, temperature=0.0)
    assert pool.generate_rationales(["n", "x", "p"], 4, 0.0) == [(3,), (9, 9), (1, 2)]
    assert inner.written == [["x"]] and pool.last_rationales_served == 2
    assert pool.generate_rationales(["p"], 4, 0.0) == [(9, 9)]  # an offer lives for one call
    pool.offer_rationales(["p"], [(1,)], max_new_tokens=4, temperature=0.0)
    assert pool.generate_rationales(["p"], 8, 0.0) == [(9, 9)]  # another budget: not served
    pool.offer_rationales(["p"], [(1,)], max_new_tokens=4, temperature=0.0)
    assert pool.generate_rationales(["p"], 4, 0.7) == [(9, 9)]  # another temperature: not served
    assert pool.last_rationales_served == 0
    with pytest.raises(ValueError, match="2 texts but 1"):
        pool.offer_rationales(["a", "b"], [(1,)], 4, 0.0)


def test_offered_anchor_embeddings_are_served_and_counted_apart():
    inner = CountingPool()
    pool = CapturingPool(inner)
    rollouts = [EmbedRequest("q1", (3, 4))]
    anchors = [EmbedRequest("p", (1,)), EmbedRequest("pp", (2,))]
    pool.offer(rollouts, torch.full((1, 8), 5.0))
    pool.offer_anchors(anchors[:1], torch.full((1, 8), 6.0))
    out = pool.embed(rollouts + anchors)
    assert out[0].eq(5.0).all() and out[1].eq(6.0).all()
    assert inner.calls == [[anchors[1]]]  # only the anchor without an offer is computed
    assert (pool.last_served, pool.last_anchors_served) == (1, 1)
