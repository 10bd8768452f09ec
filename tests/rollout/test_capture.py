"""Embeddings pooled from the generation pass (plus the last token's decode step) equal a separate embedding pass."""

from __future__ import annotations

import pytest
import torch

from grace_rl.prompts import RationaleTemplate
from rollout.capture import HiddenStateCapture, count_rationale_tokens, pool_captured
from rollout.embedder import Embedder, EmbedRequest, backbone_of

TEXTS = ["Hi.", "A considerably longer input text, with commas and more words.", "Two dogs run on a beach."]
MODES = ("mean", "rationale_only", "last_token")


def left_padded(embedder: Embedder, texts):
    prompts = [embedder.prompt_tokens(t) for t in texts]
    width = max(len(p.ids) for p in prompts)
    pad = embedder.tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p.ids)) + list(p.ids) for p in prompts])  # (B, W)
    attention = torch.tensor([[0] * (width - len(p.ids)) + [1] * len(p.ids) for p in prompts])  # (B, W)
    return prompts, width, input_ids, attention


def test_captured_states_with_the_final_step_match_the_embedder_for_a_cut_rationale(tiny_model, tokenizer):
    """Every rationale here is cut at 6 tokens: its 6th token's state comes from the final decode step."""
    embedder = Embedder(tiny_model, tokenizer, RationaleTemplate("Explain."))
    prompts, width, input_ids, attention = left_padded(embedder, TEXTS)
    torch.manual_seed(0)
    with HiddenStateCapture(backbone_of(tiny_model), embedder.end_ids) as capture, torch.no_grad():
        out = tiny_model.generate(
            input_ids=input_ids, attention_mask=attention, max_new_tokens=6, do_sample=True, pad_token_id=2
        )
        assert capture.final_step(out, attention) and capture.complete
    completions = out[:, width:].tolist()
    states = capture.states(width, len(TEXTS))
    assert states is not None and states.shape[1] == width + 6  # the 6th token was fed back too
    lengths = [len(embedder.rationale_tokens(c)) for c in completions]
    assert lengths == [6, 6, 6]
    for mode in MODES:
        pooled = pool_captured(
            states, [len(p.ids) for p in prompts], [(p.start, p.end) for p in prompts], lengths, mode
        )
        ref = embedder.embed([EmbedRequest(t, tuple(c)) for t, c in zip(TEXTS, completions)], pooling=mode)
        assert (pooled - ref).abs().max() < 1e-5, mode


def test_feeding_last_token_runs_inside_generate_and_restores_it(tiny_model, tokenizer):
    embedder = Embedder(tiny_model, tokenizer, RationaleTemplate("Explain."))
    prompts, width, input_ids, attention = left_padded(embedder, TEXTS)
    capture = HiddenStateCapture(backbone_of(tiny_model), embedder.end_ids)
    with capture, capture.feeding_last_token(tiny_model), torch.no_grad():
        out = tiny_model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=4, do_sample=False)
    assert isinstance(out, torch.Tensor) and capture.complete
    assert "generate" not in vars(tiny_model)  # the class method is back
    assert capture.states(width, len(TEXTS)).shape[1] == width + 4


def test_final_step_is_skipped_when_every_rationale_ended(tiny_model, tokenizer):
    capture = HiddenStateCapture(backbone_of(tiny_model), end_token_ids=[7])
    with capture, torch.no_grad():
        tiny_model(torch.tensor([[5, 6, 9]]))
        sequences = torch.tensor([[5, 6, 9, 7]])  # the one new token ends the rationale
        assert not capture.final_step(sequences)
    assert capture.complete and len(capture.chunks) == 1


def test_pool_captured_refuses_a_rationale_without_states():
    states = torch.randn(1, 5, 4)  # prompt of 3 + 2 fed tokens
    with pytest.raises(ValueError, match="final_step"):
        pool_captured(states, [3], [(0, 3)], [3])
    assert pool_captured(states, [3], [(0, 3)], [2]).shape == (1, 4)


def test_count_rationale_tokens_stops_at_any_end_token():
    completions = torch.tensor([[5, 6, 2, 2], [5, 9, 6, 6], [5, 6, 7, 8]])
    assert count_rationale_tokens(completions, [2, 9]).tolist() == [2, 1, 4]
    assert count_rationale_tokens(completions, []).tolist() == [4, 4, 4]


def test_states_refuse_calls_that_are_not_one_generate(tiny_model, tokenizer):
    capture = HiddenStateCapture(backbone_of(tiny_model))
    with capture, torch.no_grad():
        tiny_model(torch.tensor([[5, 6, 7]]))
        tiny_model(torch.tensor([[5, 6]]))  # a second multi-token pass: not a decode step
    assert capture.states(3, 1) is None
    assert capture.states(4, 1) is None  # wrong prompt width
    with capture, torch.no_grad():
        tiny_model(torch.tensor([[5, 6, 7]]))
    assert capture.states(3, 1).shape == (1, 3, 32)
    assert not backbone_of(tiny_model)._forward_hooks  # the hook is removed on exit
