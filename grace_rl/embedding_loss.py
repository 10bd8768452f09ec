"""Direct representation loss (optional): InfoNCE on the rollouts' pooled embeddings, with gradient.

GRACE proper only rewards rationales; with ``embedding_loss_weight > 0`` the policy's hidden states are also trained
contrastively (as SimCSE / GIRCSE do), reusing the reward's anchors (detached) and masks.
"""

from __future__ import annotations

import torch

from reward.context import RewardContext
from reward.terms import contrastive
from rollout.pooling import pool_hidden_states


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
) -> torch.Tensor:
    """Mean over rollouts of ``-log softmax_tau(cos(e_i, .))[positive]`` with ``e_i`` pooled from ``hidden``.

    Args:
        hidden: ``(n, T, H)`` last hidden states of prompt + completion (with grad).
        text_mask, rationale_mask: ``(n, T)`` spans to pool.
        ctx: the reward's context for the whole generation batch (anchors detached).
        index: ``(n,)`` positions of these rollouts in ``ctx``.
    """
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
    )
    values = contrastive(sub)  # (n,)
    finite = torch.isfinite(values)
    return -(values[finite].mean()) if finite.any() else emb.sum() * 0.0
