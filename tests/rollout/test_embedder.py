from __future__ import annotations

import pytest
import torch

from grace_rl.prompts import RationaleTemplate
from rollout.embedder import Embedder, EmbedRequest, backbone_of
from rollout.pool import LocalEmbeddingPool


def make(tiny_model, tokenizer):
    return Embedder(tiny_model, tokenizer, RationaleTemplate("Explain the text."))


def test_text_span_covers_exactly_the_text(tiny_model, tokenizer):
    emb = make(tiny_model, tokenizer)
    text = "A man is playing a guitar."
    pt = emb.prompt_tokens(text)
    assert tokenizer.decode(list(pt.ids[pt.start : pt.end])) == text
    assert "Explain" not in tokenizer.decode(list(pt.ids[pt.start : pt.end]))
    # identical to how TRL tokenises the conversational prompt
    trl_ids = tokenizer.apply_chat_template(
        RationaleTemplate("Explain the text.")(text), add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert list(pt.ids) == list(trl_ids)


def test_embedding_independent_of_batch_padding(tiny_model, tokenizer):
    emb = make(tiny_model, tokenizer)
    short = EmbedRequest("Hi.", (300, 301))
    long = EmbedRequest(
        "A much longer text with many more tokens in it than the first one.", (400, 401, 402, 403, 404)
    )
    alone = emb.embed([short])
    together = emb.embed([long, short])
    assert torch.allclose(alone[0], together[1], atol=1e-5)
    assert torch.allclose(together.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_rationale_stops_at_eos_and_changes_embedding(tiny_model, tokenizer):
    emb = make(tiny_model, tokenizer)
    eos = tokenizer.eos_token_id
    a = emb.embed([EmbedRequest("Hi.", (300, 301, eos, 999, 998))])
    b = emb.embed([EmbedRequest("Hi.", (300, 301))])
    c = emb.embed([EmbedRequest("Hi.")])
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(b, c, atol=1e-4)


def test_embedding_matches_manual_pooling(tiny_model, tokenizer):
    emb = make(tiny_model, tokenizer)
    req = EmbedRequest("Two dogs run.", (500, 501, 502))
    pt = emb.prompt_tokens(req.text)
    ids = torch.tensor([list(pt.ids) + list(req.rationale_ids)])
    with torch.no_grad():
        hidden = tiny_model(ids, output_hidden_states=True).hidden_states[-1][0]
    keep = list(range(pt.start, pt.end)) + list(range(len(pt.ids), ids.size(1)))
    manual = torch.nn.functional.normalize(hidden[keep].mean(0), dim=0)
    assert torch.allclose(emb.embed([req])[0], manual, atol=1e-5)


def test_backbone_of_plain_and_peft(tiny_model):
    from peft import LoraConfig, get_peft_model

    assert backbone_of(tiny_model) is tiny_model.model
    peft_model = get_peft_model(tiny_model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert backbone_of(peft_model) is tiny_model.model


def test_greedy_rationales_deterministic_and_pool_roundtrip(tiny_model, tokenizer):
    pool = LocalEmbeddingPool(make(tiny_model, tokenizer), batch_size=2)
    texts = ["One.", "Two words.", "Three words here."]
    first = pool.generate_rationales(texts, max_new_tokens=5)
    second = pool.generate_rationales(texts, max_new_tokens=5)
    assert first == second and len(first) == 3
    assert all(len(r) <= 5 for r in first)
    assert isinstance(pool.decode(first[0]), str)
    assert pool.embed([EmbedRequest(t, r) for t, r in zip(texts, first)]).shape == (3, 32)


class _EndFirst(torch.nn.Module):
    """An LM head whose greedy choice is always the end token (a writer that would stop at once)."""

    def __init__(self, head: torch.nn.Module, end_id: int) -> None:
        super().__init__()
        self.head, self.end_id = head, end_id

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden).clone()
        logits[..., self.end_id] = logits.max() + 10.0
        return logits


def test_min_new_tokens_forces_rationale_length(tiny_model, tokenizer):
    tiny_model.lm_head = _EndFirst(tiny_model.lm_head, tokenizer.eos_token_id)
    texts = ["One.", "Two words."]
    free = make(tiny_model, tokenizer)
    assert free.generate_rationales(texts, max_new_tokens=6) == [(), ()]  # stops at once
    forced = make(tiny_model, tokenizer)
    forced.min_new_tokens = 4
    rationales = forced.generate_rationales(texts, max_new_tokens=6)
    assert [len(r) for r in rationales] == [4, 4]  # end suppressed for 4 tokens, then chosen
    assert not set(rationales[0]) & set(forced.end_ids)
    _, via_encode = forced.encode_budgets(texts, (0, 6))  # the shared-prefix path honours the floor too
    assert [len(r) for r in via_encode] == [4, 4]
    capped = make(tiny_model, tokenizer)
    capped.min_new_tokens = 10  # capped at the budget: generate never sees min > max
    assert [len(r) for r in capped.generate_rationales(texts, max_new_tokens=3)] == [3, 3]
    with pytest.raises(ValueError, match="min_new_tokens"):
        Embedder(tiny_model, tokenizer, free.messages_fn, min_new_tokens=-1)
