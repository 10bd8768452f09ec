"""Echo embeddings (Springer et al., 2024): the text repeated in the rationale slot, pooled as GRACE pools, and no
generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grace_rl.encoder import GraceEncoder
from grace_rl.prompts import PARAPHRASE_INSTRUCTION, RationaleTemplate

TEXTS = ["A man is playing a guitar.", "Two dogs run through the snow in a park.", "Rain."]


def _hand_echo(model, tokenizer, instruction: str, text: str, rationale_only: bool = False) -> np.ndarray:
    """Built by hand: chat prompt (system + user + assistant header) then the text's tokens again; the mean of the last
    hidden states over the text tokens and the repeat (or the repeat alone), L2-normalised."""
    rendered = tokenizer.apply_chat_template(
        RationaleTemplate(instruction)(text), tokenize=False, add_generation_prompt=True
    )
    at = rendered.rfind(text)
    head, tail = rendered[:at], rendered[at + len(text) :]
    ids_head = tokenizer(head, add_special_tokens=False)["input_ids"]
    ids_text = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids_tail = tokenizer(tail, add_special_tokens=False)["input_ids"]
    ids = ids_head + ids_text + ids_tail + ids_text
    first = list(range(len(ids_head), len(ids_head) + len(ids_text)))
    repeat = list(range(len(ids) - len(ids_text), len(ids)))
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]  # (T, H)
    pooled = hidden[repeat if rationale_only else first + repeat].mean(dim=0)  # (H,)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_echo_equals_a_hand_built_pooled_pass_and_never_generates(tiny_model, tokenizer, monkeypatch):
    def no_generate(*args, **kwargs):
        raise AssertionError("echo must not call generate")

    monkeypatch.setattr(tiny_model, "generate", no_generate)
    enc = GraceEncoder(tiny_model, tokenizer, instruction=PARAPHRASE_INSTRUCTION, embedding="echo")
    emb, echoes = enc.encode(TEXTS, batch_size=2, show_progress_bar=False, return_rationales=True)
    expected = np.stack([_hand_echo(tiny_model, tokenizer, PARAPHRASE_INSTRUCTION, t) for t in TEXTS])
    assert emb.shape == expected.shape
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert [e[0] for e in echoes] == TEXTS  # the "rationale" is the text itself
    # the budget does not apply; the repeat alone is Springer et al.'s pooling
    np.testing.assert_allclose(enc.encode(TEXTS, max_rationale_tokens=0, show_progress_bar=False), emb, atol=1e-6)
    alone = enc.encode(TEXTS[:1], pooling="rationale_only", show_progress_bar=False)
    hand = _hand_echo(tiny_model, tokenizer, PARAPHRASE_INSTRUCTION, TEXTS[0], rationale_only=True)
    np.testing.assert_allclose(alone[0], hand, atol=1e-5)
    np.testing.assert_allclose(enc.encode_separate_pass(TEXTS), emb, atol=1e-6)


def test_echo_differs_from_the_text_alone_and_refuses_several_rationales(tiny_model, tokenizer):
    echo = GraceEncoder(tiny_model, tokenizer, embedding="echo")
    alone = GraceEncoder(tiny_model, tokenizer).encode(TEXTS, max_rationale_tokens=0, show_progress_bar=False)
    assert not np.allclose(echo.encode(TEXTS, show_progress_bar=False), alone, atol=1e-3)
    with pytest.raises(ValueError, match="num_rationales must be 1"):
        echo.encode(TEXTS, num_rationales=2, temperature=0.7)
    with pytest.raises(ValueError, match="embedding must be one of"):
        GraceEncoder(tiny_model, tokenizer, embedding="plain")


def test_echo_from_pretrained_and_the_encode_cli(tiny_model_dir, tmp_path, tokenizer):
    from grace_rl.cli import main

    enc = GraceEncoder.from_pretrained(str(tiny_model_dir), embedding="echo")
    assert enc.embedding == "echo"
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "emb.npy"
    assert main(["encode", "--model", str(tiny_model_dir), "--input", str(texts), "--output", str(out), "--echo"]) == 0
    np.testing.assert_allclose(np.load(out), enc.encode(TEXTS, show_progress_bar=False), atol=1e-6)
