"""A rationale ends at any EOS id the generation stops on (a list included), and is never cut: a long input text is."""

from __future__ import annotations

import torch

from grace_rl.config import GraceConfig
from grace_rl.prompts import RationaleTemplate
from grace_rl.trainer import build_reward
from rollout.embedder import Embedder, EmbedRequest, backbone_of

TEXT = "Two dogs run on a beach."
LONG = "A considerably longer input text, with commas, many more words and clauses, about dogs on a sunny beach."


def first_greedy_token(model, embedder: Embedder, text: str) -> int:
    return embedder.generate_rationales([text], max_new_tokens=1)[0][0]


def test_rationale_ends_at_every_generation_config_eos(tiny_model, tokenizer):
    """Llama-3 style: ``generation_config.eos_token_id`` is a list; generation stops on each of its ids."""
    plain = Embedder(tiny_model, tokenizer, RationaleTemplate("Explain."))
    stop = first_greedy_token(tiny_model, plain, TEXT)  # make the model's first greedy token an EOS id
    assert stop not in (tokenizer.eos_token_id, tokenizer.pad_token_id)
    tiny_model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    embedder = Embedder(tiny_model, tokenizer, RationaleTemplate("Explain."))
    assert embedder.rationale_tokens([11, 12, stop, 13]) == [11, 12]
    assert embedder.generate_rationales([TEXT], max_new_tokens=4) == [()]  # ended at once: an empty rationale
    emb, ids = embedder.encode([TEXT], max_new_tokens=4)
    assert ids == [()]
    assert torch.allclose(emb, embedder.embed([EmbedRequest(TEXT)]), atol=1e-6)


def test_reward_end_tokens_include_the_generation_config_list(tiny_model, tokenizer, tmp_path):
    tiny_model.generation_config.eos_token_id = [tokenizer.eos_token_id, 4242, 4343]
    args = GraceConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    reward = build_reward(args, tokenizer, tiny_model.generation_config)
    assert {tokenizer.eos_token_id, 4242, 4343} <= reward.end_token_ids
    args_override = GraceConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", generation_kwargs={"eos_token_id": 77}
    )
    assert 77 in build_reward(args_override, tokenizer, tiny_model.generation_config).end_token_ids


def test_long_text_is_cut_and_the_rationale_kept_whole(tiny_model, tokenizer):
    """The old Embedder cut prompt + rationale at ``max_length`` from the right, dropping the rationale."""
    embedder = Embedder(tiny_model, tokenizer, RationaleTemplate("Explain."), 8)
    rationale = (300, 301, 302, 303, 304)
    prompt = embedder.prompt_tokens(LONG)
    ids = torch.tensor([list(prompt.ids) + list(rationale)])  # (1, T): the cut text, then the whole rationale
    with torch.no_grad():
        hidden = backbone_of(tiny_model)(input_ids=ids).last_hidden_state[0]  # (T, H)
    last = torch.nn.functional.normalize(hidden[-1], dim=0)  # the last rationale token's state
    got = embedder.embed([EmbedRequest(LONG, rationale)], pooling="last_token")[0]
    assert torch.allclose(got, last, atol=1e-5)
    keep = list(range(prompt.start, prompt.end)) + list(range(len(prompt.ids), ids.shape[1]))
    mean = torch.nn.functional.normalize(hidden[keep].mean(0), dim=0)
    assert torch.allclose(embedder.embed([EmbedRequest(LONG, rationale)])[0], mean, atol=1e-5)
    assert prompt.end - prompt.start <= 8 < len(tokenizer(LONG, add_special_tokens=False)["input_ids"])
    kept = tokenizer.decode(list(prompt.ids[prompt.start : prompt.end]))
    assert LONG.startswith(kept) and embedder.fit_text(LONG) == kept


def test_generation_capture_and_separate_pass_agree_on_a_cut_text(tiny_model, tokenizer):
    embedder = Embedder(tiny_model, tokenizer, RationaleTemplate("Explain."), max_text_tokens=8)
    texts = [LONG, TEXT]
    emb, ids = embedder.encode(texts, max_new_tokens=5, pooling="last_token")
    assert ids == embedder.generate_rationales(texts, max_new_tokens=5)
    ref = embedder.embed([EmbedRequest(t, r) for t, r in zip(texts, ids)], pooling="last_token")
    assert (emb - ref).abs().max() < 1e-5
