"""Direct representation loss (optional): InfoNCE on the rollouts' pooled embeddings, with gradient.

GRACE proper only rewards rationales; with ``embedding_loss_weight > 0`` the policy's hidden states are also trained
contrastively (as SimCSE / GIRCSE do), reusing the reward's anchors (detached) and masks. With
``embedding_loss_prefixes`` the loss is the mean over prefixes of each rationale (GIRCSE's stepwise loss): the
embedding must be good after every part of the rationale, not only at the training budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reward.context import RewardContext
from reward.terms import contrastive
from rollout.pooling import pool_hidden_states, prefix_lengths


class GradCapture:
    """Records a backbone's ``last_hidden_state`` (with grad) at every forward call."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        self.backbone, self.chunks, self._handle = backbone, [], None

    def _hook(self, module, args, output) -> None:
        self.chunks.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    def __enter__(self) -> GradCapture:
        self.chunks = []
        self._handle = self.backbone.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def embedding_loss(
    hidden: torch.Tensor,
    text_mask: torch.Tensor,
    rationale_mask: torch.Tensor,
    ctx: RewardContext,
    index: torch.Tensor,
    pooling: str = "mean",
    prefixes: Sequence[float] | None = None,
) -> torch.Tensor:
    """Mean over rollouts of ``-log softmax_tau(cos(e_i, .))[positive]`` with ``e_i`` pooled from ``hidden``.

    Args:
        hidden: ``(n, T, H)`` last hidden states of prompt + completion (with grad).
        text_mask, rationale_mask: ``(n, T)`` spans to pool.
        ctx: the reward's context for the whole generation batch (anchors detached).
        index: ``(n,)`` positions of these rollouts in ``ctx``.
        prefixes: fractions in ``(0, 1]`` of each rationale (``ceil(f * L)`` of its ``L`` tokens, as the
            ``refinement`` term): the loss is then the mean of the loss at each prefix. ``None``: the whole rationale.
    """
    if prefixes:
        keep = prefix_lengths(rationale_mask.sum(dim=1), prefixes)  # (n, J)
        position = rationale_mask.cumsum(dim=1)  # (n, T): 1-based index of each rationale token
        losses = [
            _loss(hidden, text_mask, rationale_mask * (position <= keep[:, j : j + 1]).long(), ctx, index, pooling)
            for j in range(keep.size(1))
        ]
        return torch.stack(losses).mean()
    return _loss(hidden, text_mask, rationale_mask, ctx, index, pooling)


def _loss(
    hidden: torch.Tensor,
    text_mask: torch.Tensor,
    rationale_mask: torch.Tensor,
    ctx: RewardContext,
    index: torch.Tensor,
    pooling: str,
) -> torch.Tensor:
    emb = pool_hidden_states(hidden, text_mask, rationale_mask, pooling, normalize=True)  # (n, H)
    sub = RewardContext(
        rollouts=emb,
        group=ctx.group[index],
        anchors=ctx.anchors.detach().to(emb.device),
        positive=ctx.positive,
        hard_negative_mask=ctx.hard_negative_mask,
        in_batch_mask=ctx.in_batch_mask,
        truncated=ctx.truncated[index],
        temperature=ctx.temperature,
        hard_negative_weight=ctx.hard_negative_weight,
    )
    values = contrastive(sub)  # (n,)
    finite = torch.isfinite(values)
    return -(values[finite].mean()) if finite.any() else emb.sum() * 0.0
