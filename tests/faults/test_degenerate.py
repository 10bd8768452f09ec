"""Degenerate rollouts (empty rationale, all padding, NaN/inf embedding): reward ``None``, left out of every term, a
counter metric; a tiny training run with such rollouts injected completes."""

from __future__ import annotations

import math

import pytest
import torch

from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args
from reward import GraceReward
from reward.degenerate import degenerate_rollouts
from rollout.pool import VersionedEmbeddings

pytestmark = pytest.mark.faults
TERMS, WEIGHTS = ["contrastive", "consistency", "margin", "truncation"], [1.0, 0.5, 0.5, 0.1]


class FakePool:
    """Deterministic unit vectors per (text, rationale ids); ``poison`` maps a rollout's ids to a bad value."""

    def __init__(self, poison: dict[tuple, float] | None = None) -> None:
        self.poison = poison or {}

    def embed_with_version(self, requests, pooling="mean"):
        return VersionedEmbeddings(self.embed(requests, pooling))  # a live policy: no versions

    def embed(self, requests, pooling="mean"):
        out = []
        for r in requests:
            g = torch.Generator().manual_seed(abs(hash((r.text, tuple(r.rationale_ids)))) % (2**31))
            v = torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)  # (8,)
            if tuple(r.rationale_ids) in self.poison:
                v = torch.full_like(v, self.poison[tuple(r.rationale_ids)])
            out.append(v)
        return torch.stack(out)  # (N, 8)

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        return [(7,) for _ in texts]


def batch(rationales: list[str], ids: list[list[int]]) -> dict:
    g = len(rationales) // 2
    return dict(
        prompts=[[{"role": "user", "content": q}] for q in ["q0"] * g + ["q1"] * g],
        completions=[[{"role": "assistant", "content": r}] for r in rationales],
        completion_ids=ids,
        query=["q0"] * g + ["q1"] * g,
        positive=["p0"] * g + ["p1"] * g,
        negatives=[["n0"]] * g + [[]] * g,
        prompt_id=["a"] * g + ["b"] * g,
    )


RATIONALES = ["r0", "r1", "r2", "r3", "r4", "r5"]
IDS = [[10, 2], [11, 2], [12, 2], [13, 2], [14, 2], [15, 2]]


@pytest.mark.parametrize(
    "bad, rationale, ids, poison",
    [
        pytest.param(1, "", [2], None, id="empty-rationale"),
        pytest.param(1, "", [2, 2, 2], None, id="all-padding"),
        pytest.param(1, " \n ", [220, 2], None, id="whitespace-rationale"),
        pytest.param(4, "r4", [14, 2], math.nan, id="nan-embedding"),
        pytest.param(4, "r4", [14, 2], math.inf, id="inf-embedding"),
    ],
)
def test_degenerate_rollout_gets_none_and_leaves_the_others_untouched(bad, rationale, ids, poison):
    rationales, all_ids = list(RATIONALES), [list(x) for x in IDS]
    rationales[bad], all_ids[bad] = rationale, ids
    pool = FakePool({tuple(ids): poison} if poison is not None else None)
    metrics: dict[str, float] = {}
    reward = GraceReward(TERMS, WEIGHTS, pool=pool, end_token_ids=[2])
    scored = reward.score_batch(**batch(rationales, all_ids), log_metric=metrics.__setitem__)
    out, records = scored.rewards, scored.records
    assert out[bad] is None and all(isinstance(v, float) for i, v in enumerate(out) if i != bad)
    assert metrics["grace/degenerate_rollouts"] == 1.0
    assert records[bad]["reward"] is None and set(records[bad]["rewards"].values()) == {None}
    # equivalence: the other rollouts score exactly as in a batch where the bad rollout never existed
    keep = [i for i in range(6) if i != bad]
    ref_batch = batch(rationales, all_ids)
    for key in ("prompts", "completions", "completion_ids", "query", "positive", "negatives", "prompt_id"):
        ref_batch[key] = [ref_batch[key][i] for i in keep]
    expected = GraceReward(TERMS, WEIGHTS, pool=FakePool(), end_token_ids=[2])(**ref_batch)
    assert [out[i] for i in keep] == pytest.approx(expected, abs=1e-6)


def test_all_rollouts_degenerate():
    out = GraceReward(TERMS, WEIGHTS, pool=FakePool(), end_token_ids=[2])(**batch([""] * 4, [[2]] * 4))
    assert out == [None] * 4


def test_degenerate_mask_hand_example():
    rollouts = torch.tensor([[1.0, 0.0], [math.nan, 0.0], [0.0, math.inf], [0.0, 1.0]])  # (4, 2)
    assert degenerate_rollouts(rollouts, ["a", "b", "c", " "]).tolist() == [False, True, True, True]
    assert degenerate_rollouts(rollouts).tolist() == [False, True, True, False]


@pytest.mark.slow
def test_training_with_injected_nan_inf_and_empty_rollouts_completes(
    tmp_path, tiny_model_dir, demo_rows, recipe, monkeypatch, tally
):
    """Step 1: rollout 1 gets a NaN embedding, rollout 4 an inf one, rollout 2 an empty rationale."""
    real_call, real_context = GraceReward.score_batch, GraceReward.build_context  # the trainer calls score_batch
    calls = {"n": 0}

    def call(self, *args, completions, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            completions = list(completions)
            completions[2] = [{"role": "assistant", "content": ""}]
        return real_call(self, *args, completions=completions, **kwargs)

    def context(self, *args, **kwargs):
        ctx, timing = real_context(self, *args, **kwargs)
        if calls["n"] == 1:
            ctx.rollouts[1], ctx.rollouts[4] = math.nan, math.inf
        return ctx, timing

    monkeypatch.setattr(GraceReward, "score_batch", call)
    monkeypatch.setattr(GraceReward, "build_context", context)
    summary = main(*parse_args(recipe(tmp_path, tiny_model_dir, demo_rows, max_steps=2)))
    assert summary["steps"] == 2
    records = list(read_rationales(tmp_path / "run"))
    assert len(records) == 12
    first = records[:6]
    assert [r["reward"] is None for r in first] == [False, True, True, False, True, False]
    assert all(first[i]["advantage"] == 0.0 for i in (1, 2, 4))  # TRL: unscorable -> advantage 0
    mean_b = (first[3]["reward"] + first[5]["reward"]) / 2  # group b without its inf rollout
    assert first[3]["advantage"] == pytest.approx(first[3]["reward"] - mean_b, abs=1e-4)
    assert all(r["reward"] is not None for r in records[6:])
    metrics = [m for m in read_rationales(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert [m["grace/degenerate_rollouts"] for m in metrics] == [3.0, 0.0]
    assert all(math.isfinite(m["loss"]) for m in metrics)
    tally.fault_survived()
