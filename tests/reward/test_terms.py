"""Hand-computed reward terms, and the no-cancellation property (every term varies inside a GRPO group)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from reward import available_terms, get_term, register
from reward.context import RewardContext
from reward.terms import prefix_scores

BUILTIN = [
    "consistency",
    "contrastive",
    "group_contrastive",
    "hard_negative",
    "in_batch",
    "margin",
    "positive",
    "refinement",
    "truncation",
]


def hand_context(temperature: float = 1.0) -> RewardContext:
    # anchors: p0=(1,0) p1=(0,1) n0=(-1,0) (row 0's hard negative)
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    rollouts = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])  # rows 0,0,1,1
    return RewardContext(
        rollouts=rollouts,
        group=torch.tensor([0, 0, 1, 1]),
        anchors=anchors,
        positive=torch.tensor([0, 1]),
        hard_negative_mask=torch.tensor([[False, False, True], [False, False, False]]),
        in_batch_mask=torch.tensor([[False, True, False], [True, False, False]]),
        truncated=torch.tensor([False, True, False, False]),
        temperature=temperature,
    )


def close(a: torch.Tensor, b: list[float]) -> bool:
    return torch.allclose(a, torch.tensor(b), atol=1e-5)


def test_positive_hard_negative_in_batch_margin_by_hand():
    ctx = hand_context()
    assert close(get_term("positive")(ctx), [1.0, 0.6, 1.0, 0.6])
    assert close(get_term("hard_negative")(ctx), [1.0, 0.6, 0.0, 0.0])  # row 1 has no hard negative -> 0
    assert close(get_term("in_batch")(ctx), [0.0, -0.8, 0.0, -0.8])
    assert close(get_term("margin")(ctx), [1.0, -0.2, 1.0, -0.2])


def test_contrastive_by_hand():
    ctx = hand_context(temperature=1.0)
    expected = [
        1.0 - math.log(math.e**1 + math.e**0 + math.e**-1),
        0.6 - math.log(math.e**0.6 + math.e**0.8 + math.e**-0.6),
        1.0 - math.log(math.e**1 + math.e**0),
        0.6 - math.log(math.e**0.6 + math.e**0.8),
    ]
    assert close(get_term("contrastive")(ctx), expected)
    ctx_sharp = hand_context(temperature=0.05)
    assert close(
        get_term("contrastive")(ctx_sharp)[:1], [1 / 0.05 - math.log(math.exp(20) + math.exp(0) + math.exp(-20))]
    )


def test_contrastive_hard_negative_weight_by_hand():
    ctx = dataclasses.replace(hand_context(temperature=1.0), hard_negative_weight=3.0)
    # row 0's hard negative n0 counts 3 times in the denominator; row 1 has none, so its values do not move
    expected = [
        1.0 - math.log(math.e**1 + math.e**0 + 3 * math.e**-1),
        0.6 - math.log(math.e**0.6 + math.e**0.8 + 3 * math.e**-0.6),
        1.0 - math.log(math.e**1 + math.e**0),
        0.6 - math.log(math.e**0.6 + math.e**0.8),
    ]
    assert close(get_term("contrastive")(ctx), expected)


def test_an_integer_hard_negative_weight_equals_repeating_the_hard_negative():
    torch.manual_seed(0)
    rollouts = torch.nn.functional.normalize(torch.randn(6, 5), dim=1)  # 3 rows x 2 rollouts
    anchors = torch.nn.functional.normalize(torch.randn(5, 5), dim=1)  # p0 p1 p2, n0 (row 0), n1 (row 2)
    base = dict(
        rollouts=rollouts,
        group=torch.tensor([0, 0, 1, 1, 2, 2]),
        positive=torch.tensor([0, 1, 2]),
        truncated=torch.zeros(6, dtype=torch.bool),
        temperature=0.1,
    )
    in_batch = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    hard = torch.tensor([[0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=torch.bool)
    weighted = RewardContext(
        anchors=anchors, hard_negative_mask=hard, in_batch_mask=in_batch, hard_negative_weight=4.0, **base
    )
    # the same hard negatives listed 4 times each, weight 1
    repeated = torch.cat([anchors, anchors[3:].repeat(3, 1)])  # + n0 n1 n0 n1 n0 n1
    extra = torch.tensor([[1, 0] * 3, [0, 0] * 3, [0, 1] * 3], dtype=torch.bool)
    plain = RewardContext(
        anchors=repeated,
        hard_negative_mask=torch.cat([hard, extra], dim=1),
        in_batch_mask=torch.cat([in_batch, torch.zeros(3, 6, dtype=torch.bool)], dim=1),
        **base,
    )
    got, want = get_term("contrastive")(weighted), get_term("contrastive")(plain)
    assert torch.allclose(got, want, atol=1e-5)
    unweighted = get_term("contrastive")(dataclasses.replace(weighted, hard_negative_weight=1.0))
    assert (got[[0, 1, 4, 5]] < unweighted[[0, 1, 4, 5]]).all()  # rows with a hard negative score lower
    assert torch.allclose(got[[2, 3]], unweighted[[2, 3]])  # the row without one does not move


def test_context_refuses_a_bad_hard_negative_weight():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="hard_negative_weight"):
            dataclasses.replace(hand_context(), hard_negative_weight=bad)


def test_consistency_and_truncation_by_hand():
    ctx = hand_context()
    assert close(get_term("consistency")(ctx), [0.6, 0.6, 0.6, 0.6])
    assert close(get_term("truncation")(ctx), [0.0, -1.0, 0.0, 0.0])
    three = RewardContext(
        rollouts=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]),
        group=torch.zeros(3, dtype=torch.long),
        anchors=torch.tensor([[1.0, 0.0]]),
        positive=torch.tensor([0]),
        hard_negative_mask=torch.zeros(1, 1, dtype=torch.bool),
        in_batch_mask=torch.zeros(1, 1, dtype=torch.bool),
        truncated=torch.zeros(3, dtype=torch.bool),
    )
    assert close(get_term("consistency")(three), [(0 + 0.6) / 2, (0 + 0.8) / 2, (0.6 + 0.8) / 2])


def test_no_term_is_constant_within_a_group():
    """GRACE's reference code scores negatives from the query side: constant per group, cancelled by GRPO.
    Ours must each vary with the rollout: a batch with differing rollouts gives every term within-group spread."""
    torch.manual_seed(0)
    rows, g, dim = 3, 4, 8
    rollouts = torch.nn.functional.normalize(torch.randn(rows * g, dim), dim=-1)
    anchors = torch.nn.functional.normalize(torch.randn(rows * 2, dim), dim=-1)  # p0 n0 p1 n1 p2 n2
    hard = torch.zeros(rows, rows * 2, dtype=torch.bool)
    in_batch = torch.zeros(rows, rows * 2, dtype=torch.bool)
    for r in range(rows):
        hard[r, 2 * r + 1] = True
        in_batch[r, [2 * k for k in range(rows) if k != r]] = True
    ctx = RewardContext(
        rollouts=rollouts,
        group=torch.arange(rows).repeat_interleave(g),
        anchors=anchors,
        positive=torch.arange(rows) * 2,
        hard_negative_mask=hard,
        in_batch_mask=in_batch,
        truncated=torch.tensor([True, False] * (rows * g // 2)),
        temperature=0.05,
    )
    # prefixes 1/4 .. 3/4 of each rationale drift from the final embedding by a rollout-specific amount
    noise = torch.randn(rows * g, 3, dim)
    prefixes = torch.nn.functional.normalize(rollouts.unsqueeze(1) + noise * torch.rand(rows * g, 3, 1), dim=-1)
    ctx.extras["prefix_embeddings"] = torch.cat([prefixes, rollouts.unsqueeze(1)], dim=1)  # (N, 4, H)
    for name in BUILTIN:
        values = get_term(name)(ctx).view(rows, g)
        spread = values.std(dim=1)
        assert (spread > 1e-4).all(), f"term {name!r} is constant inside a group: {values}"
        # and GRPO's group-mean subtraction leaves a non-zero signal
        assert (values - values.mean(dim=1, keepdim=True)).abs().sum() > 1e-3, name


def test_registry_refuses_duplicates_and_names_unknowns():
    assert set(BUILTIN) <= set(available_terms())
    with pytest.raises(ValueError, match="already registered"):
        register("contrastive")(lambda ctx: ctx.truncated.float())
    with pytest.raises(KeyError, match="registered terms"):
        get_term("nope")


def test_context_checks_shapes_and_temperature():
    ctx = hand_context()
    with pytest.raises(ValueError, match="hard_negative_mask"):
        RewardContext(
            ctx.rollouts,
            ctx.group,
            ctx.anchors,
            ctx.positive,
            ctx.hard_negative_mask[:, :2],
            ctx.in_batch_mask,
            ctx.truncated,
        )
    with pytest.raises(ValueError, match="temperature"):
        RewardContext(
            ctx.rollouts,
            ctx.group,
            ctx.anchors,
            ctx.positive,
            ctx.hard_negative_mask,
            ctx.in_batch_mask,
            ctx.truncated,
            temperature=0,
        )


def test_group_contrastive_by_hand():
    ctx = hand_context(temperature=1.0)
    # group 0: e0=(1,0), e1=(.6,.8); group 1: e2=(0,1), e3=(.8,.6). Centroid of e0 = e1, etc.
    e = ctx.rollouts
    expected = []
    for i, (mate, others) in enumerate([(1, [2, 3]), (0, [2, 3]), (3, [0, 1]), (2, [0, 1])]):
        pos = float(e[i] @ e[mate])
        negs = [float(e[i] @ e[j]) for j in others]
        expected.append(pos - math.log(sum(math.exp(v) for v in [pos, *negs])))
    assert close(get_term("group_contrastive")(ctx), expected)


def test_refinement_by_hand():
    """Two rollouts of row 0 (positive p0=(1,0), hard negative n0=(-1,0), in-batch p1=(0,1)), three prefixes each.

    With tau = 1 a prefix embedding e scores `s = e.p0 - log(exp(e.p0) + exp(e.p1) + exp(e.n0))`.
    """
    ctx = hand_context(temperature=1.0)
    ctx = RewardContext(
        rollouts=ctx.rollouts[:2],
        group=ctx.group[:2],
        anchors=ctx.anchors,
        positive=ctx.positive,
        hard_negative_mask=ctx.hard_negative_mask,
        in_batch_mask=ctx.in_batch_mask,
        truncated=ctx.truncated[:2],
        temperature=1.0,
    )
    up, mid, down = [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]
    # rollout 0 only improves (down -> mid -> up); rollout 1 gets worse then recovers (up -> down -> mid)
    ctx.extras["prefix_embeddings"] = torch.tensor([[down, mid, up], [up, down, mid]])

    def s(e: list[float]) -> float:
        x, y = e
        return x - math.log(math.exp(x) + math.exp(y) + math.exp(-x))

    scores = prefix_scores(ctx)
    assert close(scores.flatten(), [s(down), s(mid), s(up), s(up), s(down), s(mid)])
    assert s(down) < s(mid) < s(up)
    expected_1 = (min(0.0, s(down) - s(up)) + min(0.0, s(mid) - s(down))) / 2  # one drop, then a rise (not paid)
    assert close(get_term("refinement")(ctx), [0.0, expected_1])
    assert expected_1 < -0.5


def test_refinement_cannot_be_gamed_by_worse_early_prefixes():
    ctx = hand_context(temperature=1.0)
    good = torch.nn.functional.normalize(torch.tensor([[0.8, 0.6], [0.9, 0.1], [1.0, 0.0]]), dim=-1)
    worse_start = good.clone()
    worse_start[0] = torch.tensor([0.0, 1.0])  # the first prefix made worse
    ctx.extras["prefix_embeddings"] = torch.stack([good, worse_start, good, good])  # (4, 3, 2)
    values = get_term("refinement")(ctx)
    assert values[1] <= values[0]  # a worse early prefix never earns more
    scores = prefix_scores(ctx)
    increments = (scores[:, 1:] - scores[:, :-1]).clamp(min=0).mean(dim=1)
    assert increments[1] > increments[0] + 0.1  # whereas a reward for increments would pay for it


def test_refinement_needs_prefix_embeddings():
    with pytest.raises(ValueError, match="refinement_prefixes"):
        get_term("refinement")(hand_context())
