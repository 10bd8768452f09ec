"""End to end through the real entry point (TrlParser + GraceTrainer + TRL GRPO) with a tiny random Llama."""

from __future__ import annotations

import json

import numpy as np

from grace_rl.encoder import GraceEncoder
from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args

from ..recipes import write_recipe

FIELDS = {"step", "prompt_id", "prompt", "rationale", "rewards", "reward", "advantage"}


def tiny_recipe(tmp_path, model_dir, rows, **overrides) -> list[str]:
    defaults = {
        "reward_terms": ["contrastive", "margin", "consistency", "truncation"],
        "term_weights": [1.0, 0.5, 0.1, 0.1],
        "anchor_mode": "rationale",
        "anchor_rationale_tokens": 4,
    }
    return write_recipe(tmp_path, model_dir, rows, **{**defaults, **overrides})


def test_two_grpo_steps_write_one_line_per_rollout(tmp_path, tiny_model_dir, demo_rows):
    summary = main(*parse_args(tiny_recipe(tmp_path, tiny_model_dir, demo_rows)))
    assert summary["steps"] == 2
    records = list(read_rationales(tmp_path / "run"))
    assert len(records) == 2 * 6  # steps x (2 prompts x 3 rollouts)
    assert [r["step"] for r in records] == [1] * 6 + [2] * 6
    for r in records:
        assert set(r) >= FIELDS
        assert set(r["rewards"]) == {"contrastive", "margin", "consistency", "truncation"}
        expected = (
            r["rewards"]["contrastive"]
            + 0.5 * r["rewards"]["margin"]
            + 0.1 * r["rewards"]["consistency"]
            + 0.1 * r["rewards"]["truncation"]
        )
        assert abs(r["reward"] - expected) < 1e-4
    # dr_grpo + scale_rewards=none: advantage = reward - group mean
    for s in range(0, 12, 3):
        group = records[s : s + 3]
        assert len({r["prompt_id"] for r in group}) == 1
        mean = sum(r["reward"] for r in group) / 3
        for r in group:
            assert abs(r["advantage"] - (r["reward"] - mean)) < 1e-4
    out = tmp_path / "run"
    metrics = list(read_rationales(out / "metrics.jsonl"))
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]
    assert all("grace/contrastive" in m for m in metrics if "loss" in m)
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "grace_config.json").read_text())["pooling"] == "mean"
    enc = GraceEncoder.from_pretrained(str(out))
    emb = enc.encode(["a text"], max_rationale_tokens=2, show_progress_bar=False)
    assert emb.shape == (1, 32) and np.isfinite(emb).all()


def test_command_line_overrides_the_recipe(tmp_path, tiny_model_dir, demo_rows):
    argv = tiny_recipe(tmp_path, tiny_model_dir, demo_rows) + [
        "--max_steps",
        "1",
        "--rationale_log",
        "false",
        "--use_peft",
        "false",
    ]
    script_args, args, model_args = parse_args(argv)
    assert args.max_steps == 1 and args.rationale_log is False and model_args.use_peft is False
    summary = main(script_args, args, model_args)
    assert summary["steps"] == 1
    assert not (tmp_path / "run" / "rationales.jsonl").exists()
    assert (tmp_path / "run" / "model.safetensors").is_file()  # full fine-tuning saves the whole model


def test_rollout_embeddings_come_from_the_generation_pass(tmp_path, tiny_model_dir, demo_rows, monkeypatch):
    import torch

    from grace_rl.models import load_model, load_tokenizer
    from grace_rl.prompts import RationaleTemplate
    from rollout.captured_pool import CapturingPool
    from rollout.embedder import Embedder, EmbedRequest

    offered = []
    original = CapturingPool.offer

    def spy(self, requests, embeddings, *args, **kwargs):
        offered.append(([r.text for r in requests], [list(r.rationale_ids) for r in requests], embeddings.clone()))
        return original(self, requests, embeddings, *args, **kwargs)

    monkeypatch.setattr(CapturingPool, "offer", spy)
    argv = tiny_recipe(tmp_path, tiny_model_dir, demo_rows, learning_rate=0.0, max_steps=1)  # LoRA B = 0: base model
    main(*parse_args(argv))
    metrics = [m for m in read_rationales(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert metrics[0]["grace/rollouts_from_generation"] == metrics[0]["grace/rollouts"] == 6  # 2 prompts x 3
    assert len(offered) == 1
    queries, completions, captured = offered[0]
    embedder = Embedder(load_model(tiny_model_dir), load_tokenizer(tiny_model_dir), RationaleTemplate())
    # the whole rationale, the last token of one cut at max_completion_length (6) included
    reqs = [EmbedRequest(q, tuple(c)) for q, c in zip(queries, completions)]
    assert (embedder.embed(reqs) - captured).abs().max() < 1e-5
    assert torch.isfinite(captured).all()
