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
