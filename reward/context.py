"""The tensors every reward term reads: rollout embeddings, their groups, and the anchors they are scored against."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

ANCHOR_MODES = ("plain", "rationale")  # anchors embedded as text alone, or with their own rationale


@dataclass
class RewardContext:
    """Inputs of the reward terms for one generation batch of `N = B * G` rollouts over `B` rows.

    Args:
        rollouts (`torch.Tensor`):
            `(N, H)` L2-normalised rollout embeddings (input text + rationale).
        group (`torch.Tensor`):
            `(N,)` row index `b` in `[0, B)` of each rollout.
        anchors (`torch.Tensor`):
            `(A, H)` L2-normalised anchor embeddings (positives and negatives of all rows).
        positive (`torch.Tensor`):
            `(B,)` index into `anchors` of each row's positive.
        hard_negative_mask (`torch.Tensor`):
            `(B, A)` True where the anchor is one of row b's own hard negatives.
        in_batch_mask (`torch.Tensor`):
            `(B, A)` True where the anchor is an in-batch negative of row b (another row's positive
            whose text differs from row b's positive).
        truncated (`torch.Tensor`):
            `(N,)` True where the rationale hit the length limit without an end token.
        temperature (`float`, *optional*, defaults to `0.05`):
            InfoNCE temperature.
        hard_negative_weight (`float`, *optional*, defaults to `1.0`):
            weight of each hard negative in the `contrastive` denominator (as if it appeared that many times:
            `log w` is added to its logit); in-batch negatives keep weight 1.
        extras (`dict[str, torch.Tensor]`):
            optional inputs of extra terms (e.g. `dcg` scores precomputed from the corpus index).
    """

    rollouts: torch.Tensor
    group: torch.Tensor
    anchors: torch.Tensor
    positive: torch.Tensor
    hard_negative_mask: torch.Tensor
    in_batch_mask: torch.Tensor
    truncated: torch.Tensor
    temperature: float = 0.05
    hard_negative_weight: float = 1.0
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, b, a = self.rollouts.size(0), self.positive.size(0), self.anchors.size(0)
        if self.group.shape != (n,) or self.truncated.shape != (n,):
            raise ValueError(
                f"group/truncated must have shape ({n},), got {tuple(self.group.shape)}/{tuple(self.truncated.shape)}"
            )
        for name in ("hard_negative_mask", "in_batch_mask"):
            if getattr(self, name).shape != (b, a):
                raise ValueError(f"{name} must have shape ({b}, {a}), got {tuple(getattr(self, name).shape)}")
        # The reward module's one check of these two settings (GraceConfig has its own rule for a recipe): every term,
        # called directly or through GraceReward, reads them from here, and a bad value would only show as NaN
        # rewards (`log w` of w <= 0, a division by a temperature <= 0).
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not (math.isfinite(self.hard_negative_weight) and self.hard_negative_weight > 0):
            raise ValueError(f"hard_negative_weight must be finite and > 0, got {self.hard_negative_weight}")
        self._anchor_sims: torch.Tensor | None = None

    @property
    def anchor_sims(self) -> torch.Tensor:
        """`(N, A)` cosine similarity of every rollout with every anchor (computed once)."""
        if self._anchor_sims is None:
            self._anchor_sims = self.rollouts @ self.anchors.T  # (N, A)
        return self._anchor_sims

    def row_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-row `(B, A)` mask to the rollouts: `(N, A)`."""
        return mask[self.group]
