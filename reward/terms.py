"""Reward terms: pure functions of a :class:`RewardContext`, one value per rollout.

Every term depends on the rollout's own embedding `e_i`, so it varies inside a GRPO group and survives the group
mean subtraction (GRACE's reference code scores negatives from the query side only: constant per group, cancelled).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from reward.context import RewardContext
from reward.registry import register

_NEG_INF = float("-inf")


def _masked_max(sims: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise max of `sims` over `mask`; rows with an empty mask give 0. `(N, A) -> (N,)`."""
    filled = sims.masked_fill(~mask, _NEG_INF)  # (N, A)
    best = filled.max(dim=1).values  # (N,)
    return torch.where(mask.any(dim=1), best, torch.zeros_like(best))


def _positive_sims(ctx: RewardContext) -> torch.Tensor:
    """`cos(e_i, p_row(i))`: `(N,)`."""
    return ctx.anchor_sims.gather(1, ctx.positive[ctx.group].unsqueeze(1)).squeeze(1)  # (N,)


@register("positive")
def positive(ctx: RewardContext) -> torch.Tensor:
    """`cos(e_i, p)`: similarity with the row's positive."""
    return _positive_sims(ctx)


@register("hard_negative")
def hard_negative(ctx: RewardContext) -> torch.Tensor:
    """`-max_n cos(e_i, n)` over the row's own hard negatives (0 for a row without any)."""
    return -_masked_max(ctx.anchor_sims, ctx.row_mask(ctx.hard_negative_mask))


@register("in_batch")
def in_batch(ctx: RewardContext) -> torch.Tensor:
    """`-max_j cos(e_i, p_j)` over the other rows' positives (0 when there are none)."""
    return -_masked_max(ctx.anchor_sims, ctx.row_mask(ctx.in_batch_mask))


@register("margin")
def margin(ctx: RewardContext) -> torch.Tensor:
    """`cos(e_i, p) - max_n cos(e_i, n)` over hard and in-batch negatives (just `cos(e_i, p)` with none)."""
    negatives = ctx.row_mask(ctx.hard_negative_mask | ctx.in_batch_mask)  # (N, A)
    return _positive_sims(ctx) - _masked_max(ctx.anchor_sims, negatives)


@register("contrastive")
def contrastive(ctx: RewardContext) -> torch.Tensor:
    """Per-rollout InfoNCE: `log softmax_tau(cos(e_i, .))` at the positive,
    over the positive + hard + in-batch negatives.

    `= s_p / tau - logsumexp_{c in {p} u N} s_c / tau`, always <= 0; 0 when nothing competes with the positive.
    With `ctx.hard_negative_weight = w != 1` each of the row's hard negatives counts `w` times in the denominator
    (`s_n / tau + log w`): the weighted InfoNCE of hard-negative-aware contrastive learning.
    """
    n = ctx.rollouts.size(0)
    hard = ctx.row_mask(ctx.hard_negative_mask)  # (N, A)
    candidates = hard | ctx.row_mask(ctx.in_batch_mask)  # (N, A), a new tensor (row_mask indexes: a copy)
    pos_index = ctx.positive[ctx.group]  # (N,)
    candidates[torch.arange(n), pos_index] = True
    logits = ctx.anchor_sims / ctx.temperature  # (N, A)
    if ctx.hard_negative_weight != 1.0:
        hard[torch.arange(n), pos_index] = False  # a positive that is also listed as a negative keeps weight 1
        logits = logits + hard.to(logits.dtype) * math.log(ctx.hard_negative_weight)
    logits = logits.masked_fill(~candidates, _NEG_INF)  # (N, A)
    return logits.gather(1, pos_index.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=1)  # (N,)


def prefix_scores(ctx: RewardContext) -> torch.Tensor:
    """`contrastive` score of each rollout's embedding at each prefix of its rationale: `(N, J)`.

    Reads `ctx.extras["prefix_embeddings"]` (`(N, J, H)`, L2-normalised, prefixes in growing order; see
    `rollout.pooling.pool_prefixes`) and scores prefix `j` against the same anchors and negatives as the final
    embedding (the `contrastive` term on a context whose rollouts are the prefix embeddings).
    """
    if "prefix_embeddings" not in ctx.extras:
        raise ValueError(
            "The 'refinement' term needs prefix embeddings (extras['prefix_embeddings']); GraceReward computes them "
            "when 'refinement' is in reward_terms (refinement_prefixes sets the fractions)."
        )
    prefixes = ctx.extras["prefix_embeddings"]  # (N, J, H)
    scores = [
        contrastive(dataclasses.replace(ctx, rollouts=prefixes[:, j], extras={})) for j in range(prefixes.size(1))
    ]
    return torch.stack(scores, dim=1)  # (N, J)


@register("refinement")
def refinement(ctx: RewardContext) -> torch.Tensor:
    """Penalty for each drop of the contrastive score as the rationale grows: `mean_j min(0, s_{j+1} - s_j)` over
    consecutive prefixes (`prefix_scores`); 0 when the score never falls, always <= 0.

    A reward for the positive increments `max(0, s_{j+1} - s_j)` could be gamed: making the early prefixes worse
    raises every later increment without improving anything. A drop penalty cannot be raised that way: lowering an
    early prefix's score never raises it (it can only create or deepen a drop). How good the final embedding is,
    is already rewarded by `contrastive`; this term only asks that writing more never hurts (test-time scaling).
    """
    scores = prefix_scores(ctx)  # (N, J)
    if scores.size(1) < 2:
        raise ValueError(f"The 'refinement' term needs at least 2 prefixes, got {scores.size(1)}.")
    return (scores[:, 1:] - scores[:, :-1]).clamp(max=0.0).mean(dim=1)  # (N,)


@register("consistency")
def consistency(ctx: RewardContext) -> torch.Tensor:
    """Mean `cos(e_i, e_k)` over the other rollouts `k` of the same group (0 for a group of one)."""
    sims = ctx.rollouts @ ctx.rollouts.T  # (N, N)
    same = ctx.group.unsqueeze(0) == ctx.group.unsqueeze(1)  # (N, N)
    same.fill_diagonal_(False)
    counts = same.sum(dim=1)  # (N,)
    total = (sims * same).sum(dim=1)  # (N,)
    return torch.where(counts > 0, total / counts.clamp(min=1), torch.zeros_like(total))


@register("group_contrastive")
def group_contrastive(ctx: RewardContext) -> torch.Tensor:
    """InfoNCE of `e_i` within the batch's rollouts (unsupervised).

    The positive is the normalised mean `c_i` of the other rollouts of its group; the negatives are the rollouts
    of the other groups.

    `= cos(e_i, c_i) / tau - logsumexp([cos(e_i, c_i)] + [cos(e_i, e_j) : j in another group]) / tau`
    """
    sims = ctx.rollouts @ ctx.rollouts.T  # (N, N)
    same = ctx.group.unsqueeze(0) == ctx.group.unsqueeze(1)  # (N, N)
    others_in_group = same & ~torch.eye(len(ctx.group), dtype=torch.bool)  # (N, N)
    centroid = torch.nn.functional.normalize(others_in_group.float() @ ctx.rollouts, dim=-1)  # (N, H)
    pos = (ctx.rollouts * centroid).sum(dim=-1) / ctx.temperature  # (N,)
    neg = (sims / ctx.temperature).masked_fill(same, _NEG_INF)  # (N, N)
    return pos - torch.logsumexp(torch.cat([pos.unsqueeze(1), neg], dim=1), dim=1)  # (N,)


@register("truncation")
def truncation(ctx: RewardContext) -> torch.Tensor:
    """Penalty `-1` for a rationale cut by the length limit (no end token), else 0."""
    return -ctx.truncated.float()


@register("dcg")
def dcg(ctx: RewardContext) -> torch.Tensor:
    """nDCG@k of the gold documents when `e_i` searches the corpus index (precomputed into `extras['dcg']`)."""
    if "dcg" not in ctx.extras:
        raise ValueError("The 'dcg' term needs a corpus index: set corpus_path in the config.")
    return ctx.extras["dcg"]
