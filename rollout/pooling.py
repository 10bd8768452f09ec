"""Pure pooling math: hidden states + span masks -> one vector per sequence."""

from __future__ import annotations

import torch

POOLING_MODES = ("mean", "rationale_only", "last_token")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` over positions where `mask` is 1.

    Args:
        hidden (`torch.Tensor`):
            `(B, T, H)` hidden states.
        mask (`torch.Tensor`):
            `(B, T)` 0/1 mask of the positions to average.

    Returns:
        `(B, H)`; a row with an empty mask gives zeros (the denominator is clamped to 1).
    """
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    summed = (hidden * weights).sum(dim=1)  # (B, H)
    counts = weights.sum(dim=1).clamp(min=1.0)  # (B, 1)
    return summed / counts


def last_position(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at the last position where `mask` is 1 (index 0 if empty).

    `(B, T, H), (B, T) -> (B, H)`.
    """
    positions = torch.arange(mask.size(1), device=mask.device).expand_as(mask)  # (B, T)
    last = torch.where(mask.bool(), positions, torch.zeros_like(positions)).max(dim=1).values  # (B,)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]  # (B, H)


def pool_hidden_states(
    hidden: torch.Tensor,
    text_mask: torch.Tensor,
    rationale_mask: torch.Tensor,
    mode: str = "mean",
    normalize: bool = True,
) -> torch.Tensor:
    """Pool the input text and rationale spans of each sequence into one embedding.

    Args:
        hidden (`torch.Tensor`):
            `(B, T, H)` last hidden states.
        text_mask (`torch.Tensor`):
            `(B, T)` 1 on the input text's tokens (template/system tokens are 0).
        rationale_mask (`torch.Tensor`):
            `(B, T)` 1 on the rationale's tokens (EOS and padding are 0).
        mode (`str`, *optional*, defaults to `"mean"`):
            `mean` (text + rationale), `rationale_only` (falls back to the text for a row with no
            rationale) or `last_token` (last text-or-rationale token).
        normalize (`bool`, *optional*, defaults to `True`):
            L2-normalise the result.

    Returns:
        `(B, H)` float32 embeddings.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"Unknown pooling mode {mode!r}; choose one of {POOLING_MODES}.")
    hidden = hidden.float()
    both = (text_mask.bool() | rationale_mask.bool()).long()  # (B, T)
    if mode == "mean":
        pooled = masked_mean(hidden, both)
    elif mode == "rationale_only":
        has_rationale = rationale_mask.sum(dim=1, keepdim=True) > 0  # (B, 1)
        pooled = torch.where(has_rationale, masked_mean(hidden, rationale_mask), masked_mean(hidden, text_mask))
    else:
        pooled = last_position(hidden, both)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
    return pooled
