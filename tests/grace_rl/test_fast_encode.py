"""``GraceEncoder.encode`` (rationale written and pooled in one pass) equals the reference generate-then-embed path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grace_rl.encoder import GraceEncoder
from rollout.embedder import EmbedRequest, backbone_of, shared_prefix_length

TEXTS = [
    "Hi.",
    "A considerably longer input text, with commas, clauses and more words than the others.",
    "Two dogs run on a beach.",
    "A man plays a guitar.",
    "Short one.",
]


def diverse(model: torch.nn.Module) -> torch.nn.Module:
    """The tiny model re-drawn with larger weights: its default init greedily repeats one token for every text."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3)
    return model


def encoder_with_an_early_end(tiny_model, tokenizer) -> GraceEncoder:
    """An encoder whose model ends a rationale early: a token inside one greedy rationale is made an EOS id."""
    model = diverse(tiny_model)
    encoder = GraceEncoder(model, tokenizer, instruction="Explain.", max_rationale_tokens=6)
    stop = encoder.embedder.generate_rationales([TEXTS[0]], 6)[0][3]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    return GraceEncoder(model, tokenizer, instruction="Explain.", max_rationale_tokens=6)


@pytest.mark.parametrize("pooling", ["mean", "rationale_only", "last_token"])
def test_greedy_encode_equals_generate_then_embed(tiny_model, tokenizer, pooling):
    encoder = encoder_with_an_early_end(tiny_model, tokenizer)
    fast, fast_rat = encoder.encode(
        TEXTS, batch_size=2, pooling=pooling, show_progress_bar=False, return_rationales=True
    )
    ref, ref_rat = encoder.encode_separate_pass(TEXTS, batch_size=2, pooling=pooling, return_rationales=True)
    assert fast_rat == ref_rat
    lengths = [len(r) for r in encoder.embedder.generate_rationales(TEXTS, 6)]
    assert min(lengths) < 6 and 6 in lengths  # an ended rationale and ones cut at the budget (last token counts)
    assert len(set(fast_rat[i][0] for i in range(len(TEXTS)))) > 1  # the rationales differ between texts
    assert fast.shape == (len(TEXTS), 32)
    assert np.abs(fast - ref).max() < 1e-5


def test_sampled_encode_equals_generate_then_embed_with_a_fixed_seed(tiny_model, tokenizer):
    """Prompts of equal length keep one batch in input order, so a fixed seed draws the same tokens in both paths."""
    encoder = GraceEncoder(diverse(tiny_model), tokenizer, instruction="Explain.", max_rationale_tokens=5)
    texts = ["Two dogs run.", "Two cats run.", "Two cows run."]
    assert len({len(encoder.embedder.prompt_tokens(t).ids) for t in texts}) == 1
    kwargs = {"num_rationales": 3, "temperature": 1.0, "return_rationales": True, "batch_size": 8}
    torch.manual_seed(123)
    fast, fast_rat = encoder.encode(texts, show_progress_bar=False, **kwargs)
    torch.manual_seed(123)
    ref, ref_rat = encoder.encode_separate_pass(texts, **kwargs)
    assert fast_rat == ref_rat and len({r for group in fast_rat for r in group}) > 3  # same, and really sampled
    assert np.abs(fast - ref).max() < 1e-5


def test_budget_zero_is_a_plain_pooling_pass(tiny_model, tokenizer):
    encoder = GraceEncoder(tiny_model, tokenizer, instruction="Explain.")
    fast = encoder.encode(TEXTS, max_rationale_tokens=0, show_progress_bar=False)
    plain = encoder.embedder.embed([EmbedRequest(t) for t in TEXTS]).numpy()
    assert np.abs(fast - plain).max() < 1e-6


def test_one_generate_call_per_batch_and_no_second_pass(tiny_model, tokenizer):
    encoder = GraceEncoder(tiny_model, tokenizer, instruction="Explain.", max_rationale_tokens=4)
    prompts = [encoder.embedder.prompt_tokens(t) for t in TEXTS]
    prefix = shared_prefix_length(prompts)
    assert 0 < prefix <= min(p.start for p in prompts)  # the template before the text, never a text token
    widths: list[int] = []
    handle = backbone_of(tiny_model).register_forward_hook(lambda m, a, out: widths.append(out[0].shape[1]))
    try:
        encoder.encode(TEXTS, batch_size=2, show_progress_bar=False)
    finally:
        handle.remove()
    assert widths[0] == prefix  # the shared template prefix, run once per call
    rest = widths[1:]
    assert sum(w > 1 for w in rest) == 3  # one pass over the rest of the prompts per batch of 2 (5 texts)
    assert len(rest) == 3 * (1 + 4)  # then one decode step per token, the last one included; nothing re-embedded
