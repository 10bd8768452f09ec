"""Through the real GRPO trainer with the `refinement` term: the prefix embeddings it scores (cumulative sums of the
generation states, or one batched pool call when capture is off) equal a separate eval-mode Embedder pass over each
rationale prefix, and the rationale log carries the per-prefix scores."""

from __future__ import annotations

import pytest
import torch

from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args
from grace_rl.trainer import GraceTrainer
from reward.grace_reward import GraceReward
from rollout.embedder import Embedder, EmbedRequest
from rollout.pooling import prefix_lengths

from ..recipes import write_recipe

FRACTIONS = [0.25, 0.5, 0.75, 1.0]


def run(tmp_path, tiny_model_dir, demo_rows, monkeypatch, **settings) -> tuple[list[dict], list[dict]]:
    trainers: list[GraceTrainer] = []
    seen: list[dict] = []
    original_init = GraceTrainer.__init__
    original_context = GraceReward.build_context

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        trainers.append(self)

    def build_context(self, queries, completion_ids, *args, **kwargs):
        ctx, timing = original_context(self, queries, completion_ids, *args, **kwargs)
        trainer = trainers[0]
        clean = Embedder(trainer.model, trainer.processing_class, trainer.template)  # eval mode, separate pass
        lengths = torch.tensor([len(clean.rationale_tokens(c)) for c in completion_ids])
        keep = prefix_lengths(lengths, FRACTIONS)  # (N, J)
        prefixes = ctx.extras["prefix_embeddings"]  # (N, J, H)
        errors = []
        for j in range(len(FRACTIONS)):
            requests = [EmbedRequest(q, tuple(c[: int(k)])) for q, c, k in zip(queries, completion_ids, keep[:, j])]
            errors.append(float((prefixes[:, j] - clean.embed(requests, pooling=settings["pooling"])).abs().max()))
        seen.append(
            {
                "from_generation": trainer.embedding_pool.last_served == len(queries),
                "errors": errors,
                "distinct": float((prefixes[:, 0] - prefixes[:, -1]).abs().max()),
                "longest": int(lengths.max()),
            }
        )
        return ctx, timing

    monkeypatch.setattr(GraceTrainer, "__init__", init)
    monkeypatch.setattr(GraceReward, "build_context", build_context)
    argv = write_recipe(
        tmp_path,
        tiny_model_dir,
        demo_rows,
        reward_terms=["contrastive", "refinement"],
        term_weights=[1.0, 0.5],
        refinement_prefixes=FRACTIONS,
        anchor_mode="plain",
        learning_rate=5e-2,
        max_completion_length=8,
        **settings,
    )
    main(*parse_args(argv))
    return seen, read_rationales(tmp_path / "run" / "rationales.jsonl")


@pytest.mark.parametrize("pooling", ["mean", "rationale_only", "last_token"])
def test_captured_prefix_embeddings_equal_a_pass_over_each_prefix(
    tmp_path, tiny_model_dir, demo_rows, monkeypatch, pooling
):
    seen, records = run(tmp_path, tiny_model_dir, demo_rows, monkeypatch, pooling=pooling, max_steps=2)
    assert len(seen) == 2, seen
    assert all(s["from_generation"] for s in seen), seen  # rollouts and their prefixes came from generation
    assert all(s["longest"] >= 4 for s in seen), seen  # prefixes of 1/4 .. 1 differ in length
    for s in seen:
        assert max(s["errors"]) < 1e-5, seen
        assert s["distinct"] > 1e-4, seen
    assert records and all(len(r["prefix_scores"]) == len(FRACTIONS) for r in records)
    for r in records:  # the term is the mean drop of the logged scores
        scores = r["prefix_scores"]
        drops = [min(0.0, b - a) for a, b in zip(scores, scores[1:])]
        assert r["rewards"]["refinement"] == pytest.approx(sum(drops) / len(drops), abs=1e-5)


def test_prefix_embeddings_without_capture_come_from_one_pool_call(tmp_path, tiny_model_dir, demo_rows, monkeypatch):
    seen, records = run(
        tmp_path, tiny_model_dir, demo_rows, monkeypatch, pooling="mean", max_steps=1, embed_from_generation=False
    )
    assert len(seen) == 1 and not seen[0]["from_generation"], seen
    assert max(seen[0]["errors"]) < 1e-5, seen
    assert all(len(r["prefix_scores"]) == len(FRACTIONS) for r in records)


def test_completion_length_schedule_cycles_the_budget(tmp_path, tiny_model_dir, demo_rows):
    argv = write_recipe(
        tmp_path,
        tiny_model_dir,
        demo_rows,
        reward_terms=["contrastive", "refinement"],
        term_weights=[1.0, 0.5],
        anchor_mode="plain",
        max_completion_length=8,
        completion_length_schedule=[2, 8],
        max_steps=3,
    )
    main(*parse_args(argv))
    records = read_rationales(tmp_path / "run" / "rationales.jsonl")
    longest = {step: max(r["rationale_tokens"] for r in records if r["step"] == step) for step in (1, 2, 3)}
    assert longest[1] <= 2 and longest[3] <= 2 and longest[2] > 2, longest  # budgets 2, 8, 2
    metrics = [m for m in read_rationales(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert [m["grace/completion_length_budget"] for m in metrics] == [2.0, 8.0, 2.0]
