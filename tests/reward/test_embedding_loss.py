"""The optional embedding loss: InfoNCE on pooled hidden states, with gradient, over the reward's anchors."""

from __future__ import annotations

import dataclasses

import torch

from grace_rl.embedding_loss import embedding_loss
from reward.context import RewardContext
from reward.terms import contrastive
from rollout.pooling import pool_hidden_states


def _ctx(rollouts: torch.Tensor) -> RewardContext:
    anchors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.7]]), dim=-1)
    return RewardContext(
        rollouts=rollouts,
        group=torch.tensor([0, 0, 1, 1]),
        anchors=anchors,
        positive=torch.tensor([0, 1]),
        hard_negative_mask=torch.tensor([[False, False, True], [False, False, False]]),
        in_batch_mask=torch.tensor([[False, True, False], [True, False, False]]),
        truncated=torch.zeros(4, dtype=torch.bool),
        temperature=0.1,
    )


def test_loss_is_minus_mean_contrastive_term_and_has_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(4, 5, 3, requires_grad=True)  # (n, T, H)
    text = torch.tensor([[1, 1, 0, 0, 0]] * 4)
    rationale = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    pooled = pool_hidden_states(hidden.detach(), text, rationale)  # (n, H)
    ctx = _ctx(pooled)
    expected = -contrastive(ctx).mean()
    # Rollouts 2 and 0 of a shuffled chunk: the index maps them back to their rows.
    index = torch.tensor([2, 0])
    loss = embedding_loss(hidden[[2, 0]], text[[2, 0]], rationale[[2, 0]], ctx, index)
    assert torch.allclose(loss, -contrastive(ctx)[[2, 0]].mean(), atol=1e-6)
    full = embedding_loss(hidden, text, rationale, ctx, torch.arange(4))
    assert torch.allclose(full, expected, atol=1e-6)
    full.backward()
    assert hidden.grad is not None and hidden.grad[:, :2].abs().sum() > 0  # text tokens receive gradient
    assert hidden.grad[0, 4].abs().sum() == 0  # a position outside both spans receives none


def test_loss_weights_the_hard_negatives_as_the_reward_does():
    torch.manual_seed(2)
    hidden = torch.randn(4, 5, 3)  # (n, T, H)
    text = torch.tensor([[1, 1, 0, 0, 0]] * 4)
    rationale = torch.tensor([[0, 0, 1, 1, 0]] * 4)
    pooled = pool_hidden_states(hidden, text, rationale)  # (n, H)
    ctx = dataclasses.replace(_ctx(pooled), hard_negative_weight=5.0)
    loss = embedding_loss(hidden, text, rationale, ctx, torch.arange(4))
    assert torch.allclose(loss, -contrastive(ctx).mean(), atol=1e-6)
    plain = embedding_loss(
        hidden, text, rationale, dataclasses.replace(ctx, hard_negative_weight=1.0), torch.arange(4)
    )
    assert loss > plain + 1e-3  # row 0's hard negative weighs more


def test_stepwise_loss_is_the_mean_over_rationale_prefixes():
    torch.manual_seed(1)
    hidden = torch.randn(4, 6, 3, requires_grad=True)  # (n, T, H)
    text = torch.tensor([[1, 1, 0, 0, 0, 0]] * 4)
    rationale = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    ctx = _ctx(torch.zeros(4, 3))
    index = torch.arange(4)
    assert torch.allclose(
        embedding_loss(hidden, text, rationale, ctx, index, prefixes=[1.0]),
        embedding_loss(hidden, text, rationale, ctx, index),
    )
    # ceil(0.5 * L) tokens of each rationale: 2 of 4, 1 of 2, 1 of 1, 0 of 0 (written out by hand).
    half = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    full = embedding_loss(hidden, text, rationale, ctx, index)
    expected = (embedding_loss(hidden, text, half, ctx, index) + full) / 2
    stepwise = embedding_loss(hidden, text, rationale, ctx, index, prefixes=[0.5, 1.0])
    assert torch.allclose(stepwise, expected, atol=1e-6)
    assert not torch.allclose(stepwise, full)
    stepwise.backward()
    assert hidden.grad[0, 5].abs().sum() > 0  # the last rationale token still trains (through the full prefix)


def test_stepwise_loss_config_checks():
    import pytest

    from grace_rl.config import GraceConfig

    base = {"output_dir": "/tmp/x", "use_cpu": True, "bf16": False, "report_to": "none"}
    cfg = GraceConfig(**base, embedding_loss_weight=1.0, embedding_loss_prefixes=[0.5, 1.0])
    assert cfg.embedding_loss_prefixes == [0.5, 1.0]
    with pytest.raises(ValueError, match="embedding_loss_weight > 0"):
        GraceConfig(**base, embedding_loss_prefixes=[0.5, 1.0])
    for bad in ([0.5], [1.0, 0.5], [0.0, 1.0], []):
        with pytest.raises(ValueError, match="ending at 1.0"):
            GraceConfig(**base, embedding_loss_weight=1.0, embedding_loss_prefixes=bad)


def test_moving_towards_the_positive_lowers_the_loss():
    ctx = _ctx(torch.zeros(4, 3))
    text = torch.ones(4, 1, dtype=torch.long)
    none = torch.zeros(4, 1, dtype=torch.long)
    away = torch.tensor([[[0.0, 0.0, 1.0]]] * 4)  # (n, 1, H)
    towards = torch.tensor([[[1.0, 0.1, 0.0]]] * 2 + [[[0.1, 1.0, 0.0]]] * 2)
    assert embedding_loss(towards, text, none, ctx, torch.arange(4)) < embedding_loss(
        away, text, none, ctx, torch.arange(4)
    )


def test_trainer_embedding_loss_equals_the_contrastive_reward_before_any_update(tmp_path, tiny_model_dir):
    """Through the real GRPO trainer: at step 1 the loss pooled (with grad) from TRL's forward pass equals minus the
    mean `contrastive` reward pooled from the generation pass (same weights, no dropout, full rationales)."""
    first = _first_step_metrics(tmp_path, tiny_model_dir)
    assert first["grace/embedding_loss"] > 0.1
    assert abs(first["grace/embedding_loss"] + first["grace/contrastive"]) < 1e-4, first


def test_trainer_stepwise_embedding_loss_runs_and_differs_from_the_full_rationale_loss(tmp_path, tiny_model_dir):
    """Through the real GRPO trainer: with `embedding_loss_prefixes` the logged loss at step 1 is the mean over the
    prefixes, so it is no longer minus the `contrastive` reward of the full rationales (the test above)."""
    first = _first_step_metrics(tmp_path, tiny_model_dir, embedding_loss_prefixes=[0.25, 1.0])
    assert first["completions/mean_length"] > 2  # prefixes of a quarter are shorter than the rationale
    assert first["grace/embedding_loss"] > 0.1
    assert abs(first["grace/embedding_loss"] + first["grace/contrastive"]) > 1e-4, first


def test_trainer_weights_hard_negatives_in_the_reward_and_the_loss_alike(tmp_path, tiny_model_dir):
    """Through the real GRPO trainer: `hard_negative_weight` reaches both the reward and the embedding loss (they stay
    equal at step 1), and weighting the rows' hard negatives lowers the reward of the same first step."""
    plain = _first_step_metrics(tmp_path / "plain", tiny_model_dir, negatives=True)
    weighted = _first_step_metrics(tmp_path / "weighted", tiny_model_dir, negatives=True, hard_negative_weight=8.0)
    assert abs(weighted["grace/embedding_loss"] + weighted["grace/contrastive"]) < 1e-4, weighted
    assert weighted["grace/contrastive"] < plain["grace/contrastive"] - 0.05, (plain, weighted)


def test_trainer_policy_loss_weight_zero_trains_the_embedding_loss_alone(tmp_path, tiny_model_dir):
    """Through the real GRPO trainer, on the same first batch: with `policy_loss_weight: 0` the policy term is exactly
    0, the embedding loss is unchanged and is the whole training loss; with weight 1 the policy gradient moves the
    weights elsewhere (so it was really switched off). At step 1 TRL's loss value is ~0 (ratio 1, advantages centred)
    but its gradient is not: the weights, not the value, show the switch."""
    from safetensors.torch import load_file

    on = _first_step_metrics(tmp_path / "on", tiny_model_dir)
    off = _first_step_metrics(tmp_path / "off", tiny_model_dir, policy_loss_weight=0.0)
    assert off["grace/policy_loss"] == 0.0
    assert off["grace/embedding_loss"] == on["grace/embedding_loss"] > 0.1  # same batch, same weights: same loss
    assert off["grace/contrastive"] == on["grace/contrastive"]  # the rollouts are still sampled and rewarded
    assert abs(off["loss"] - off["grace/embedding_loss"]) < 1e-3, off  # the embedding term is all that trains
    weights_on = load_file(tmp_path / "on" / "run" / "adapter_model.safetensors")
    weights_off = load_file(tmp_path / "off" / "run" / "adapter_model.safetensors")
    moved = [name for name, w in weights_off.items() if "lora_B" in name and w.abs().sum() > 0]
    assert moved, "the embedding loss alone must still train the adapter"
    assert any(not torch.equal(weights_on[name], weights_off[name]) for name in weights_off), (
        "the policy gradient should change the update when it is on"
    )


def test_policy_loss_weight_config_checks():
    import pytest

    from grace_rl.config import GraceConfig

    base = {"output_dir": "/tmp/x", "use_cpu": True, "bf16": False, "report_to": "none"}
    assert GraceConfig(**base).policy_loss_weight == 1.0
    assert GraceConfig(**base, policy_loss_weight=0.0, embedding_loss_weight=1.0).policy_loss_weight == 0.0
    with pytest.raises(ValueError, match="nothing would train"):
        GraceConfig(**base, policy_loss_weight=0.0)  # embedding_loss_weight defaults to 0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="policy_loss_weight must be finite and >= 0"):
            GraceConfig(**base, policy_loss_weight=bad, embedding_loss_weight=1.0)


def _first_step_metrics(tmp_path, tiny_model_dir, negatives: bool = False, **recipe) -> dict:
    """One GRPO step of the real trainer with the embedding loss on; its first metrics record. `negatives`: each row
    gets the next row's query as a hard negative."""
    import json

    from grace_rl.train import main, parse_args
    from tests.recipes import write_recipe

    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = tmp_path / "rows.jsonl"
    texts = ["cats sit on mats", "dogs run in parks", "birds sing at dawn", "fish swim in seas", "cows eat the grass"]
    records = [{"query": t, "positive": t.split()[0]} for t in texts]
    if negatives:
        for i, r in enumerate(records):
            r["negatives"] = [texts[(i + 1) % len(texts)]]
    rows.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = write_recipe(
        tmp_path,
        tiny_model_dir,
        rows,
        max_steps=1,
        lora_dropout=0.0,
        embedding_loss_weight=1.0,
        reward_terms=["contrastive"],
        term_weights=[1.0],
        anchor_mode="plain",
        contrastive_temperature=1.0,  # a loss well away from 0 with only 2 rows a step
        **recipe,
    )
    main(*parse_args(argv))
    return json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
