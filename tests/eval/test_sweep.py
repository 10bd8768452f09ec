"""The one STS evaluator (`grace_rl.eval.sweep`): every caller (`eval sts`, its `--scaling` and `--scaling-samples`
curves, `eval protocol`'s budget and count sweeps, the demo's before/after evaluation) scores the same pairs alike."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from grace_rl import train
from grace_rl.encoder import GraceEncoder
from grace_rl.eval.protocol import sweep_pairs
from grace_rl.eval.protocol_samples import sample_pairs
from grace_rl.eval.sample_scaling import sts_budget_curve, sts_samples_curve
from grace_rl.eval.stats import Pair, spearman, spearman_interval
from grace_rl.eval.sts import evaluate_sts
from grace_rl.eval.sweep import sweep, sweep_sts
from grace_rl.prompts import DEFAULT_INSTRUCTION

PAIRS = [Pair(f"Sentence {i} is here.", f"Another {i * 7} text there.", float((i * 7) % 6)) for i in range(10)]
BUDGETS = [0, 2, 4]


@pytest.fixture()
def encoder(tiny_model, tokenizer):
    with torch.no_grad():  # sharpened weights: varied rationales (as in test_scaling.py)
        for p in tiny_model.parameters():
            p.mul_(4.0)
    return GraceEncoder(tiny_model, tokenizer, max_rationale_tokens=4)


@pytest.fixture()
def sts_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"sentence1": p.a, "sentence2": p.b, "score": p.score} for p in PAIRS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_budget_callers_score_like_the_one_sweep(encoder, sts_file):
    ref = {p.budget: p for p in sweep_sts(encoder, PAIRS, BUDGETS, intervals=True, batch_size=32)}
    gold = np.array([p.score for p in PAIRS])
    assert len({round(p.spearman, 6) for p in ref.values()}) > 1  # the budgets differ: the test can tell them apart
    for p in ref.values():
        assert p.spearman == spearman(p.cosines, gold)
        assert p.interval == spearman_interval(p.cosines, gold)

    protocol = sweep_pairs(encoder, PAIRS, BUDGETS, batch_size=32, show_progress_bar=False)  # eval protocol
    assert [p["budget"] for p in protocol] == BUDGETS
    for p in protocol:
        assert p["spearman"] == ref[p["budget"]].spearman
        assert p["cosines"] == ref[p["budget"]].cosines.tolist()
        assert p["mean_rationale_tokens"] == ref[p["budget"]].mean_rationale_tokens

    curve = sts_budget_curve(encoder, sts_file, BUDGETS, "jsonl", batch_size=32, show_progress_bar=False)  # --scaling
    for p in curve:
        assert {k: p[k] for k in ("spearman", "ci_low", "ci_high")} == ref[p["max_rationale_tokens"]].interval.as_dict(
            "spearman"
        )

    for budget in BUDGETS:  # eval sts: one encoding at the budget (a fresh generation, not the sweep's prefix)
        one = evaluate_sts(encoder, sts_file, "jsonl", max_rationale_tokens=budget, show_progress_bar=False)
        assert one == {"task": "sts", "n": len(PAIRS), "spearman": round(ref[budget].spearman, 2)}, budget

    args = types.SimpleNamespace(instruction=DEFAULT_INSTRUCTION, pooling="mean", max_completion_length=4)
    script = types.SimpleNamespace(eval_sts_path=None, eval_sts_limit=None, eval_base_budgets=BUDGETS)
    stsb = sts_file.with_suffix(".tsv")  # the demo reads STS-B TSV
    stsb.write_text("".join(f"g\tf\t2012\t{i}\t{p.score}\t{p.a}\t{p.b}\n" for i, p in enumerate(PAIRS)))
    script.eval_sts_path = str(stsb)
    before = train._eval(encoder.model, encoder.tokenizer, args, script, "before")  # the demo's before/after eval
    assert before["by_budget"] == {str(b): round(ref[b].spearman, 2) for b in BUDGETS}
    assert before["_cosines"] == {b: ref[b].cosines.tolist() for b in BUDGETS}


def test_count_callers_score_like_the_one_sweep(encoder, sts_file):
    kwargs = {"max_rationale_tokens": 3, "temperature": 1.0, "batch_size": 32, "show_progress_bar": False}
    ref = sweep_sts(encoder, PAIRS, samples=[1, 2], seed=5, intervals=True, **kwargs)
    assert [p.num_rationales for p in ref] == [1, 2] and ref[0].spearman != ref[1].spearman
    protocol = sample_pairs(encoder, PAIRS, [1, 2], budget=3, temperature=1.0, seed=5, batch_size=32)
    assert [p["spearman"] for p in protocol] == [p.spearman for p in ref]
    assert [p["cosines"] for p in protocol] == [p.cosines.tolist() for p in ref]
    torch.manual_seed(5)
    curve = sts_samples_curve(encoder, sts_file, [1, 2], 1.0, "jsonl", None, 3, 32, False)  # --scaling-samples
    assert curve == [{"num_rationales": p.num_rationales, **p.interval.as_dict("spearman"), "n": 10} for p in ref]


def test_sweep_arguments(encoder):
    texts = [p.a for p in PAIRS[:3]]
    (one,) = sweep(encoder, texts, max_rationale_tokens=2, show_progress_bar=False)
    assert one.budget == 2 and one.embeddings.shape == (3, 32) and one.embeddings.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(one.embeddings, axis=1), 1.0)
    with pytest.raises(ValueError, match="not both"):
        sweep(encoder, texts, [0, 2], samples=[1, 2], temperature=1.0)
    with pytest.raises(ValueError, match="temperature > 0"):
        sweep(encoder, texts, samples=[1, 2])
    with pytest.raises(ValueError, match=">= 2 pairs"):
        sweep_sts(encoder, PAIRS[:1])


def test_a_frozen_embedder_run_sweeps_with_its_frozen_model(encoder, tokenizer):
    """A frozen-embedder run's policy writes and its frozen model embeds: the budget sweep (prefix reuse, no one-pass
    shortcut through the policy's own states) and the count sweep must equal `GraceEncoder.encode` of such a run."""
    from rollout.frozen import frozen_policy_pool
    from tests.conftest import tiny_llama

    texts = [p.a for p in PAIRS[:4]]
    own = [sweep(encoder, texts, BUDGETS, show_progress_bar=False)[-1].embeddings]  # the policy's own states @4
    frozen = frozen_policy_pool(
        tiny_llama(len(tokenizer), seed=1), tokenizer, encoder.embedder.messages_fn, encoder.embedder.end_ids
    )
    encoder.frozen_embedder = frozen
    points = sweep(encoder, texts, BUDGETS, show_progress_bar=False)
    assert [p.budget for p in points] == BUDGETS
    for p in points:
        want = encoder.encode(texts, max_rationale_tokens=p.budget, show_progress_bar=False)
        np.testing.assert_allclose(p.embeddings, want, atol=1e-5, err_msg=f"budget {p.budget}")
    assert points[-1].embeddings.shape == own[0].shape and not np.allclose(points[-1].embeddings, own[0], atol=1e-3)
    one, two = sweep(encoder, texts, samples=[1, 2], seed=3, temperature=1.0, max_rationale_tokens=3)
    torch.manual_seed(3)
    ids = encoder.embedder.generate_rationales(texts, 3, 1.0, 2)
    from rollout.embedder import EmbedRequest

    emb = frozen.embed([EmbedRequest(t, r) for t, r in zip([t for t in texts for _ in range(2)], ids)]).numpy()
    np.testing.assert_allclose(one.embeddings, emb[0::2], atol=1e-5)
    mean = emb[0::2] + emb[1::2]
    np.testing.assert_allclose(two.embeddings, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)
