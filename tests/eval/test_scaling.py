from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grace_rl.cli import main as cli_main
from grace_rl.encoder import GraceEncoder
from grace_rl.eval.scaling import PrefixRationaleEncoder, parse_budgets, scaling_curve, write_scaling

TEXTS = ["A dog runs in the park.", "The market fell sharply today.", "A dog runs in the park.", "Hi."]


@pytest.fixture()
def encoder(tiny_model, tokenizer):
    """The tiny random Llama with sharpened weights, so its greedy rationales vary (as is, it repeats one token)."""
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.mul_(4.0)
    return GraceEncoder(tiny_model, tokenizer)


def test_parse_budgets():
    assert parse_budgets("16, 0,8,8") == [0, 8, 16]
    for bad in ("", "a,b", "-1,4"):
        with pytest.raises(ValueError, match="budget"):
            parse_budgets(bad)


def test_prefix_reuse_equals_fresh_greedy_encoding(encoder):
    prefix = PrefixRationaleEncoder(encoder, max_budget=6)
    rationales = encoder.embedder.generate_rationales(TEXTS[:2], 6)
    assert len(set(rationales[0])) > 1 and rationales[0] != rationales[1]  # the test needs varied rationales
    for budget in (6, 3, 1, 0):  # the largest first, as scaling_curve does
        reused = prefix.encode(TEXTS, max_rationale_tokens=budget, show_progress_bar=False)
        fresh = encoder.encode(TEXTS, max_rationale_tokens=budget, show_progress_bar=False)
        assert reused.shape == fresh.shape == (4, 32)
        assert np.allclose(reused, fresh, atol=1e-5), budget
    with pytest.raises(ValueError, match="greedy"):
        prefix.encode(TEXTS, max_rationale_tokens=2, temperature=1.0)
    with pytest.raises(ValueError, match="max_budget"):
        prefix.encode(TEXTS, max_rationale_tokens=7)


@pytest.mark.parametrize("pooling", ["mean", "last_token"])
def test_one_pass_sweep_equals_a_separate_pass_at_each_budget(encoder, pooling, monkeypatch):
    """With the sweep's budgets given, every budget comes from the states of one generation at the largest budget:
    equal (< 1e-5) to generating at that budget and embedding text + rationale in a separate forward pass, with no
    embedding forward pass at all for budgets > 0."""
    encoder.pooling = pooling
    budgets = [0, 1, 3, 6]
    prefix = PrefixRationaleEncoder(encoder, max_budget=6, budgets=budgets)
    assert prefix.one_pass
    reference = PrefixRationaleEncoder(encoder, max_budget=6)  # rationales once, a forward pass per budget
    embeds = []
    real_embed = encoder.embedder.embed
    monkeypatch.setattr(encoder.embedder, "embed", lambda *a, **k: embeds.append(1) or real_embed(*a, **k))
    for budget in reversed(budgets):
        calls = len(embeds)
        one = prefix.encode(TEXTS, max_rationale_tokens=budget, show_progress_bar=False)
        assert len(embeds) == calls  # served from the captured states (budget 0 included: the text's states)
        separate = encoder.encode_separate_pass(TEXTS, max_rationale_tokens=budget)
        assert one.shape == separate.shape == (4, 32)
        np.testing.assert_allclose(one, separate, atol=1e-5, err_msg=f"budget {budget}")
        np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-6)
        reference.reset_counts()
        reference.encode(TEXTS, max_rationale_tokens=budget, show_progress_bar=False)
        assert (prefix.tokens_used, prefix.texts_seen) == (reference.tokens_used, reference.texts_seen), budget
        prefix.reset_counts()
    emb, ids = encoder.embedder.encode_budgets(TEXTS[:2], [3, 0], pooling=pooling, normalize=False)
    assert emb.shape == (2, 2, 32) and len(ids) == 2 and all(len(r) <= 3 for r in ids)  # budgets in the order given
    with pytest.raises(ValueError, match="budgets"):
        encoder.embedder.encode_budgets(TEXTS, [])


def test_scaling_curve_points_and_token_counts(encoder):
    seen = []

    def evaluate(enc, max_rationale_tokens, **kwargs):
        emb = enc.encode(TEXTS, max_rationale_tokens=max_rationale_tokens, **kwargs)
        seen.append(max_rationale_tokens)
        return {"task": "sts", "spearman": float(emb[0] @ emb[1])}

    points = scaling_curve(encoder, [0, 2, 5], evaluate, show_progress_bar=False)
    assert seen == [5, 2, 0]  # largest first (it writes the rationales)
    assert [p["max_rationale_tokens"] for p in points] == [0, 2, 5]
    tokens = [p["mean_rationale_tokens"] for p in points]
    assert tokens[0] == 0 and all(t <= b for t, b in zip(tokens, [0, 2, 5], strict=True))
    assert tokens == sorted(tokens)
    sampled = scaling_curve(encoder, [1, 2], evaluate, temperature=1.0, num_rationales=2, show_progress_bar=False)
    assert [p["max_rationale_tokens"] for p in sampled] == [1, 2] and "mean_rationale_tokens" not in sampled[0]


def test_write_scaling_json_and_png(tmp_path):
    points = [{"max_rationale_tokens": t, "ndcg@10": 10.0 + t, "mrr@10": 5.0 + t, "recall@100": 50.0} for t in (0, 8)]
    files = write_scaling(points, "retrieval", tmp_path / "out" / "curve", {"model": "m"})
    data = json.loads((tmp_path / "out" / "curve.json").read_text())
    assert data["task"] == "retrieval" and data["model"] == "m" and data["points"] == points
    assert (tmp_path / "out" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert files == {"json": str(tmp_path / "out" / "curve.json"), "plot": str(tmp_path / "out" / "curve.png")}
    with pytest.raises(ValueError, match="Unknown task"):
        write_scaling(points, "nope", tmp_path / "x", {})


def test_cli_sts_scaling(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "s.tsv"
    data.write_text(
        "".join(f"g\tf\t2012\t{i}\t{i % 5}.0\tSentence {i} here.\tAnother {i * 7} there.\n" for i in range(6))
    )
    prefix = tmp_path / "sc" / "sts"
    argv = ["eval", "sts", "--model", str(tiny_model_dir), "--data", str(data), "--scaling", "0,1,3"]
    assert cli_main([*argv, "--scaling-out", str(prefix)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [p["max_rationale_tokens"] for p in line["points"]] == [0, 1, 3]
    assert line["json"] == str(prefix) + ".json" and (tmp_path / "sc" / "sts.png").is_file()
    # Each point equals the plain evaluation at that budget.
    assert (
        cli_main(["eval", "sts", "--model", str(tiny_model_dir), "--data", str(data), "--max-rationale-tokens", "3"])
        == 0
    )
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert single["spearman"] == pytest.approx(line["points"][-1]["spearman"], abs=0.02)
    with pytest.raises(SystemExit):
        cli_main([*argv[:-1], "1,x"])
    assert "comma-separated" in capsys.readouterr().err
