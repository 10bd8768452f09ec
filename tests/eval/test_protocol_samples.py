"""The protocol's rationale-count sweep (`grace-rl eval protocol --samples`): points equal fresh encodes, settings and
budget checks, the paired gains, and the CLI end to end on the tiny model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from grace_rl.cli import main as cli_main
from grace_rl.encoder import GraceEncoder
from grace_rl.eval import devsets
from grace_rl.eval.protocol_samples import SampleSettings, sample_budget, sample_gains, sample_pairs
from grace_rl.eval.specs import ModelSpec, ProtocolSettings
from grace_rl.eval.stats import Pair, spearman

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def encoder(tiny_model, tokenizer):
    with torch.no_grad():  # sharpened weights: varied sampled rationales (as in test_sample_scaling.py)
        for p in tiny_model.parameters():
            p.mul_(4.0)
    return GraceEncoder(tiny_model, tokenizer, max_rationale_tokens=3)


PAIRS = [Pair(f"Sentence {i} here.", f"Another {i * 7} there.", float(i % 5)) for i in range(8)]


def _pair_cosines(emb: np.ndarray) -> np.ndarray:
    texts = list(dict.fromkeys([p.a for p in PAIRS] + [p.b for p in PAIRS]))
    row = {t: i for i, t in enumerate(texts)}
    ea, eb = emb[[row[p.a] for p in PAIRS]], emb[[row[p.b] for p in PAIRS]]
    return (ea * eb).sum(axis=1)


def test_sample_points_equal_fresh_encodes(encoder):
    points = sample_pairs(encoder, PAIRS, [1, 2], budget=3, temperature=1.0, seed=5, batch_size=4)
    assert [p["num_rationales"] for p in points] == [1, 2]
    texts = list(dict.fromkeys([p.a for p in PAIRS] + [p.b for p in PAIRS]))
    torch.manual_seed(5)  # the same sampling: the largest count is what encode(num_rationales=2) writes
    fresh = encoder.encode(texts, max_rationale_tokens=3, num_rationales=2, temperature=1.0, batch_size=4)
    np.testing.assert_allclose(points[1]["cosines"], _pair_cosines(fresh), atol=1e-5)
    gold = np.array([p.score for p in PAIRS])
    assert points[1]["spearman"] == pytest.approx(spearman(np.asarray(points[1]["cosines"]), gold))
    assert 0 < points[0]["mean_rationale_tokens"] <= 3
    assert points[0]["cosines"] != points[1]["cosines"]  # averaging two samples changed the embeddings
    again = sample_pairs(encoder, PAIRS, [1, 2], budget=3, temperature=1.0, seed=5, batch_size=4)
    assert again == points  # seeded


def test_sample_settings_and_budget_checks():
    assert SampleSettings(counts=(4, 2)).counts == (1, 2, 4)  # one rationale is always the reference
    for bad in ({"counts": (0, 2)}, {"temperature": 0.0}, {"budget": 0}):
        with pytest.raises(ValueError):
            SampleSettings(**bad)
    base = ModelSpec("base", "m", "base")
    a, b = ModelSpec("a", "ra", "trained", 8), ModelSpec("b", "rb", "trained", 16)
    assert sample_budget([base, a], SampleSettings()) == 8
    assert sample_budget([base, a, b], SampleSettings(budget=4)) == 4
    for specs in ([base, a, b], [base]):
        with pytest.raises(ValueError, match="--sample-budget"):
            sample_budget(specs, SampleSettings())
    with pytest.raises(ValueError, match="--samples-trained-only needs"):
        sample_budget([base], SampleSettings(budget=4, include_base=False))


def test_sample_gains_are_paired_differences():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=300)
    noisy = gold + rng.normal(scale=2.0, size=300)
    clean = gold + rng.normal(scale=0.5, size=300)
    points = [
        {"num_rationales": 1, "spearman": spearman(noisy, gold), "cosines": noisy.tolist()},
        {"num_rationales": 4, "spearman": spearman(clean, gold), "cosines": clean.tolist()},
    ]
    settings = ProtocolSettings(n_boot=200)
    gains = sample_gains(points, noisy, gold, settings)
    assert gains["num_rationales"] == 4
    expected = spearman(clean, gold) - spearman(noisy, gold)
    assert gains["vs_one_sample"]["difference"] == pytest.approx(expected, abs=0.01)
    assert gains["vs_one_sample"]["ci_low"] > 0  # clearly better on the same pairs
    same = sample_gains(points, clean, gold, settings)["vs_greedy"]
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0


def test_cli_protocol_samples(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.delenv(devsets.SHARED_ENV, raising=False)
    monkeypatch.setattr(devsets, "DEFAULT_SHARED", tmp_path / "absent")  # use the shipped samples
    run = tmp_path / "run_seed0"
    shutil.copytree(tiny_model_dir, run)
    (run / "grace_config.json").write_text(json.dumps({"max_rationale_tokens": 3, "pooling": "mean"}))
    prefix = tmp_path / "res" / "proto"
    argv = ["eval", "protocol", "--base", str(tiny_model_dir), "--trained", str(run), "--budgets", "0,2"]
    argv += ["--datasets", "stsb-dev", "--limit", "10", "--bootstrap", "50", "--cache-dir", str(tmp_path / "cache")]
    argv += ["--samples", "2", "--sample-temperature", "1.0", "--out", str(prefix)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "Rationales averaged" in out and "minus greedy" in out
    assert (tmp_path / "res" / "proto_samples.png").read_bytes()[:8] == PNG_MAGIC
    results = json.loads(prefix.with_suffix(".json").read_text())
    samples = results["samples"]
    assert samples["budget"] == 3 and samples["counts"] == [1, 2] and samples["temperature"] == 1.0
    assert [m["label"] for m in samples["models"]] == ["base", "run_seed0"]
    for m in samples["models"]:
        points = m["results"]["stsb-dev"]["points"]
        assert [p["num_rationales"] for p in points] == [1, 2]
        assert all(p["ci_low"] <= p["spearman"] <= p["ci_high"] for p in points)
    # The run holds the base weights and both sample with the same seed: the same points, a zero difference.
    base_points, run_points = (m["results"]["stsb-dev"]["points"] for m in samples["models"])
    assert base_points == run_points
    greedy = {m["label"]: m["results"]["stsb-dev"]["points"] for m in results["models"]}
    for g in samples["gains"]:
        assert g["greedy_spearman"] == next(p["spearman"] for p in greedy[g["model"]] if p["budget"] == 3)
        assert g["num_rationales"] == 2
    assert cli_main(argv) == 0  # the second call reads the sampled sweeps from the cache
    again = json.loads(prefix.with_suffix(".json").read_text())
    assert all(r["cached"] for m in again["samples"]["models"] for r in m["results"].values())
    assert again["samples"]["gains"] == samples["gains"]
    assert cli_main([*argv, "--samples-trained-only"]) == 0
    only = json.loads(prefix.with_suffix(".json").read_text())["samples"]
    assert [m["label"] for m in only["models"]] == ["run_seed0"] and [g["model"] for g in only["gains"]] == [
        "run_seed0"
    ]


def test_cli_protocol_samples_needs_one_budget(tmp_path, capsys):
    argv = ["eval", "protocol", "--samples", "1,4", "--no-cache", "--limit", "5"]
    assert cli_main(argv) == 2
    assert "--sample-budget" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["eval", "protocol", "--samples", "0,4"])
    assert "--samples" in capsys.readouterr().err


def test_the_count_plot_draws_each_models_greedy_rationale_and_the_base_bar(tmp_path):
    from grace_rl.eval.protocol_report import plot_samples

    def point(k, v):
        return {"num_rationales": k, "spearman": v, "ci_low": v - 2, "ci_high": v + 2}

    samples = {
        "budget": 32,
        "temperature": 0.7,
        "counts": [1, 2, 4],
        "models": [{"label": "run", "role": "trained", "results": {"d": {"points": [point(1, 70), point(4, 74)]}}}],
        "gains": [{"model": "run", "dataset": "d", "greedy_spearman": 71.5}],
    }
    headlines = [{"dataset": "d", "base_spearman": 57.1, "base_best_budget": 8}] * 2  # one per trained run
    labels = plot_samples(samples, tmp_path / "s.png", headlines)
    assert labels == ["run", "run: 1 greedy rationale", "base at its best budget (8 tokens, greedy)"]
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert plot_samples(samples, tmp_path / "t.png") == ["run", "run: 1 greedy rationale"]
