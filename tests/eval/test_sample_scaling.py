"""The rationale-count sweep (`grace-rl eval sts --scaling-samples`), its bootstrap intervals, the two-model plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from grace_rl.cli import main as cli_main
from grace_rl.encoder import GraceEncoder
from grace_rl.eval.sample_scaling import evaluate_sts_interval, parse_counts, sts_samples_curve
from grace_rl.eval.stats import spearman_interval as stats_interval


def spearman_interval(pred, gold):
    return stats_interval(pred, gold).as_dict("spearman")


@pytest.fixture()
def encoder(tiny_model, tokenizer):
    with torch.no_grad():  # sharpened weights: varied rationales (as in test_scaling.py)
        for p in tiny_model.parameters():
            p.mul_(4.0)
    return GraceEncoder(tiny_model, tokenizer, max_rationale_tokens=3)


@pytest.fixture()
def sts_file(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text(
        "".join(f"g\tf\t2012\t{i}\t{i % 5}.0\tSentence {i} here.\tAnother {i * 7} there.\n" for i in range(8))
    )
    return path


def test_parse_counts():
    assert parse_counts("4, 1,2,2") == [1, 2, 4]
    for bad in ("", "a", "0,2"):
        with pytest.raises(ValueError, match="rationale count"):
            parse_counts(bad)


def test_spearman_interval_brackets_scipy():
    rng = np.random.default_rng(1)
    gold = rng.normal(size=200)
    pred = gold + rng.normal(scale=1.0, size=200)
    got = spearman_interval(pred, gold)
    assert got["spearman"] == pytest.approx(spearmanr(pred, gold).statistic * 100, abs=0.01)
    assert got["ci_low"] < got["spearman"] < got["ci_high"]
    assert 2 < got["ci_high"] - got["ci_low"] < 30
    assert spearman_interval(pred, gold) == got  # seeded
    small = spearman_interval(pred[:50], gold[:50])
    assert small["ci_high"] - small["ci_low"] > got["ci_high"] - got["ci_low"]  # fewer pairs, wider interval


def test_samples_curve_points_equal_fresh_encodes(encoder, sts_file):
    torch.manual_seed(0)
    points = sts_samples_curve(encoder, sts_file, [1, 2], temperature=1.0, batch_size=4, show_progress_bar=False)
    assert [p["num_rationales"] for p in points] == [1, 2] and points[0]["n"] == 8
    torch.manual_seed(0)  # the same sampling: the largest count is what encode(num_rationales=2) writes
    fresh = evaluate_sts_interval(
        encoder, sts_file, num_rationales=2, temperature=1.0, batch_size=4, show_progress_bar=False
    )
    assert points[1]["spearman"] == pytest.approx(fresh["spearman"], abs=1e-6)
    assert points[1]["ci_low"] == pytest.approx(fresh["ci_low"], abs=1e-6)
    assert points[0]["spearman"] != points[1]["spearman"]  # one rationale differs from two averaged
    with pytest.raises(ValueError, match="temperature > 0"):
        sts_samples_curve(encoder, sts_file, [1, 2], temperature=0.0)


def test_cli_samples_sweep_two_models(tiny_model_dir, sts_file, tmp_path, capsys):
    prefix = tmp_path / "out" / "samples"
    argv = ["eval", "sts", "--model", str(tiny_model_dir), "--data", str(sts_file), "--max-rationale-tokens", "2"]
    assert (
        cli_main([*argv, "--scaling-samples", "1,2", "--compare", str(tiny_model_dir), "--scaling-out", str(prefix)])
        == 0
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["temperature"] == 0.7 and line["plot"] == str(prefix) + ".png"
    data = json.loads((tmp_path / "out" / "samples.json").read_text())
    assert data["x"] == "num_rationales" and len(data["curves"]) == 2
    for curve in data["curves"]:
        assert [p["num_rationales"] for p in curve["points"]] == [1, 2]
        assert all(p["ci_low"] <= p["spearman"] <= p["ci_high"] for p in curve["points"])
    assert (tmp_path / "out" / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # budgets with intervals, base and compared model on one plot
    assert cli_main([*argv, "--scaling", "0,2", "--compare", str(tiny_model_dir), "--scaling-out", str(prefix)]) == 0
    budgets = json.loads((tmp_path / "out" / "samples.json").read_text())
    assert budgets["x"] == "max_rationale_tokens" and len(budgets["curves"]) == 2
    assert budgets["curves"][0]["points"] == budgets["curves"][1]["points"]  # the same model, greedy: same curve
    capsys.readouterr()
    assert cli_main([*argv, "--scaling", "0,2", "--scaling-samples", "1,2"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli_main([*argv, "--compare", str(tiny_model_dir)]) == 2
    assert "needs --scaling" in capsys.readouterr().err
