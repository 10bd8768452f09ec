"""Degenerate rollouts: an empty rationale (nothing but whitespace, or only padding/end tokens, which decode to an
empty string) or a non-finite embedding. Such a rollout gets no reward (`None`: TRL then gives it advantage 0) and
is left out of every term, so it cannot poison its group's `consistency` or the batch's `group_contrastive`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from reward.context import RewardContext

TermScores = tuple[torch.Tensor, dict[str, torch.Tensor]]


def degenerate_rollouts(rollouts: torch.Tensor, rationales: Sequence[str] | None = None) -> torch.Tensor:
    """`(N,)` True where rollout `i` cannot be scored: a non-finite embedding row of `rollouts (N, H)`, or an
    empty rationale (`rationales[i].strip() == ""`; skipped when `rationales` is `None`)."""
    bad = ~torch.isfinite(rollouts).all(dim=1)  # (N,)
    if rationales is not None:
        bad |= torch.tensor([not str(r).strip() for r in rationales], dtype=torch.bool)  # (N,)
    return bad


def keep_rollouts(ctx: RewardContext, keep: torch.Tensor) -> RewardContext:
    """The context restricted to the rollouts where `keep (N,)` is True (anchors and per-row masks unchanged;
    per-rollout `extras` sliced too)."""
    n = ctx.rollouts.size(0)
    extras = {
        k: v[keep] if torch.is_tensor(v) and v.dim() > 0 and v.size(0) == n else v for k, v in ctx.extras.items()
    }
    return dataclasses.replace(
        ctx, rollouts=ctx.rollouts[keep], group=ctx.group[keep], truncated=ctx.truncated[keep], extras=extras
    )


def score_without_degenerate(
    ctx: RewardContext, degenerate: torch.Tensor, score: Callable[[RewardContext], TermScores]
) -> TermScores:
    """`score(ctx)` computed on the non-degenerate rollouts only, scattered back to `(N,)` with NaN at the
    degenerate ones (the total and every term). A total that comes out non-finite is NaN as well."""
    keep = ~degenerate  # (N,)
    if bool(keep.all()):
        total, values = score(ctx)
    elif not bool(keep.any()):  # nothing to score: NaN everywhere, with the terms' names and shapes
        total, values = score(ctx)
        total = torch.full_like(total.float(), torch.nan)  # (N,)
        values = {name: torch.full_like(v.float(), torch.nan) for name, v in values.items()}
    else:
        sub_total, sub_values = score(keep_rollouts(ctx, keep))
        total = torch.full((ctx.rollouts.size(0),), torch.nan)  # (N,)
        total[keep] = sub_total.float()
        values = {}
        for name, v in sub_values.items():
            values[name] = torch.full_like(total, torch.nan)  # (N,)
            values[name][keep] = v.float()
    total = torch.where(torch.isfinite(total), total, torch.full_like(total, torch.nan))  # (N,)
    return total, values
