"""Embeddings pooled from the generation pass equal a separate embedding pass (but a cut rationale's last token)."""

from __future__ import annotations

import torch

from grace_rl.prompts import RationaleTemplate
from rollout.capture import HiddenStateCapture, pool_captured
from rollout.embedder import Embedder, EmbedRequest, backbone_of

TEXTS = ["Hi.", "A considerably longer input text, with commas and more words.", "Two dogs run on a beach."]


def reference(embedder: Embedder, texts, completions, width: int) -> torch.Tensor:
    """What the Embedder gives for the rationale tokens whose states generation computed (all but a cut last one)."""
    reqs = []
    for text, comp in zip(texts, completions):
        rationale = embedder.rationale_tokens(comp)
        reqs.append(EmbedRequest(text, tuple(rationale[: width - 1])))
    return embedder.embed(reqs)


def test_captured_generation_states_match_the_embedder(tiny_model, tokenizer):
    embedder = Embedder(tiny_model, tokenizer, RationaleTemplate("Explain."))
    prompts = [embedder.prompt_tokens(t) for t in TEXTS]
    width = max(len(p.ids) for p in prompts)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p.ids)) + list(p.ids) for p in prompts])
    attention = torch.tensor([[0] * (width - len(p.ids)) + [1] * len(p.ids) for p in prompts])
    torch.manual_seed(0)
    with HiddenStateCapture(backbone_of(tiny_model)) as capture, torch.no_grad():
        out = tiny_model.generate(
            input_ids=input_ids, attention_mask=attention, max_new_tokens=6, do_sample=True, pad_token_id=pad
        )
    completions = out[:, width:].tolist()
    states = capture.states(width, len(TEXTS))
    assert states is not None and states.shape[1] == width + 5  # the 6th token is never fed back
    lengths = [len(embedder.rationale_tokens(c)) for c in completions]
    for mode in ("mean", "rationale_only", "last_token"):
        pooled = pool_captured(
            states, [len(p.ids) for p in prompts], [(p.start, p.end) for p in prompts], lengths, mode
        )
        ref = embedder.embed(
            [EmbedRequest(t, tuple(embedder.rationale_tokens(c)[:5])) for t, c in zip(TEXTS, completions)],
            pooling=mode,
        )
        assert (pooled - ref).abs().max() < 1e-5, mode


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
