"""Through the real GRPO trainer: rollout embeddings captured during generation equal a clean eval-mode pass of the
full rationale, after real optimizer steps (non-zero LoRA weights) with LoRA dropout on, cut rationales included."""

from __future__ import annotations

import pytest
import torch

from grace_rl.train import main, parse_args
from grace_rl.trainer import GraceTrainer
from reward.grace_reward import GraceReward
from rollout.embedder import Embedder, EmbedRequest

from ..recipes import write_recipe


def lora_b_norm(model: torch.nn.Module) -> float:
    return sum(float(p.detach().abs().sum()) for n, p in model.named_parameters() if "lora_B" in n)


@pytest.mark.parametrize("pooling", ["mean", "rationale_only", "last_token"])
def test_captured_rollouts_equal_a_clean_pass_after_real_steps(
    tmp_path, tiny_model_dir, demo_rows, monkeypatch, pooling
):
    trainers: list[GraceTrainer] = []
    seen: list[dict] = []
    modes_at_logps: list[bool] = []
    original_init = GraceTrainer.__init__
    original_context = GraceReward.build_context
    original_logps = GraceTrainer._get_per_token_logps_and_entropies

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        trainers.append(self)

    def build_context(self, queries, completion_ids, *args, **kwargs):
        ctx, timing = original_context(self, queries, completion_ids, *args, **kwargs)
        trainer = trainers[0]
        clean = Embedder(trainer.model, trainer.processing_class, trainer.template)  # eval mode, separate pass
        requests = [EmbedRequest(q, tuple(c)) for q, c in zip(queries, completion_ids, strict=True)]
        seen.append(
            {
                "from_generation": float(trainer.embedding_pool.last_served == len(queries)),
                "error": float((ctx.rollouts - clean.embed(requests, pooling=pooling)).abs().max()),
                "lora_b": lora_b_norm(trainer.model),
                "truncated": int(ctx.truncated.sum()),
            }
        )
        return ctx, timing

    def logps(self, model, *args, **kwargs):
        modes_at_logps.append(model.training)
        return original_logps(self, model, *args, **kwargs)

    monkeypatch.setattr(GraceTrainer, "__init__", init)
    monkeypatch.setattr(GraceReward, "build_context", build_context)
    monkeypatch.setattr(GraceTrainer, "_get_per_token_logps_and_entropies", logps)
    argv = write_recipe(
        tmp_path,
        tiny_model_dir,
        demo_rows,
        reward_terms=["contrastive", "truncation"],
        term_weights=[1.0, 0.1],
        anchor_mode="plain",
        pooling=pooling,
        lora_dropout=0.5,
        learning_rate=5e-2,
        max_steps=3,
        rationale_log=False,
    )
    main(*parse_args(argv))
    assert len(seen) == 3, seen
    assert all(s["from_generation"] == 1.0 for s in seen), seen  # pooled from the generation pass
    assert seen[-1]["lora_b"] > 0  # real optimizer steps moved the adapter before the last generation
    assert sum(s["truncated"] for s in seen) > 0  # rationales cut by max_completion_length: their last token counts
    for s in seen:
        assert s["error"] < 1e-5, seen
    assert modes_at_logps and all(modes_at_logps)  # TRL's log-probs still computed in train mode
    assert trainers[0].grace_reward.end_token_ids >= set(trainers[0].eos_token_ids)  # every id TRL stops on


@pytest.mark.parametrize("anchor_generation", ["with_rollouts", "separate"])
def test_anchor_rationales_ride_along_in_the_rollouts_generate_call(
    tmp_path, tiny_model_dir, demo_rows, monkeypatch, anchor_generation
):
    """`anchor_mode: rationale`: with `with_rollouts` every anchor's rationale comes from the rollouts' own generate
    call and equals a separate greedy generation (cut to `anchor_rationale_tokens`), and its embedding is pooled from
    that call and equals a clean pass (< 1e-5), after real optimizer steps; `separate` writes them itself."""
    trainers: list[GraceTrainer] = []
    seen: list[dict] = []
    written: list[list[EmbedRequest]] = []
    original_init = GraceTrainer.__init__
    original_context = GraceReward.build_context
    original_anchors = GraceReward._anchor_requests

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        trainers.append(self)

    def anchor_requests(self, texts):
        out = original_anchors(self, texts)
        written.append(out)
        return out

    def build_context(self, *args, **kwargs):
        ctx, timing = original_context(self, *args, **kwargs)
        trainer, anchors = trainers[0], written[-1]
        clean = Embedder(trainer.model, trainer.processing_class, trainer.template)  # eval mode, separate calls
        greedy = clean.generate_rationales([a.text for a in anchors], max_new_tokens=4)
        seen.append(
            {
                "anchors": len(anchors),
                "rationales_served": trainer.embedding_pool.last_rationales_served,
                "embeddings_served": trainer.embedding_pool.last_anchors_served,
                "same_rationales": [a.rationale_ids for a in anchors] == greedy,
                "error": float((ctx.anchors - clean.embed(anchors)).abs().max()),
                "lora_b": lora_b_norm(trainer.model),
            }
        )
        return ctx, timing

    monkeypatch.setattr(GraceTrainer, "__init__", init)
    monkeypatch.setattr(GraceReward, "_anchor_requests", anchor_requests)
    monkeypatch.setattr(GraceReward, "build_context", build_context)
    argv = write_recipe(
        tmp_path,
        tiny_model_dir,
        demo_rows,
        anchor_mode="rationale",
        anchor_rationale_tokens=4,  # < max_completion_length (6): cut after the shared call
        anchor_generation=anchor_generation,
        lora_dropout=0.5,
        learning_rate=5e-2,
        max_steps=3,
        rationale_log=False,
    )
    main(*parse_args(argv))
    assert len(seen) == 3, seen
    assert seen[-1]["lora_b"] > 0  # real optimizer steps moved the adapter before the last generation
    for s in seen:
        assert s["anchors"] >= 2, s  # the positives (and hard negatives) of the batch's 2 rows
        assert s["same_rationales"], s
        assert s["error"] < 1e-5, s
        if anchor_generation == "with_rollouts":
            assert s["rationales_served"] == s["anchors"] == s["embeddings_served"], s
        else:
            assert s["rationales_served"] == 0 == s["embeddings_served"], s
