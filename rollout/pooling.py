"""Pure pooling math: hidden states + span masks -> one vector per sequence."""

from __future__ import annotations

from collections.abc import Sequence

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


def prefix_lengths(rationale_lengths: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """Rationale tokens kept by each prefix: `ceil(f * L)` for every fraction `f` (so any non-empty rationale
    keeps at least one token, and `f = 1` keeps all of it).

    Args:
        rationale_lengths (`torch.Tensor`):
            `(B,)` rationale tokens of each row (end token excluded).
        fractions (`Sequence[float]`):
            `J` fractions in `(0, 1]` of each row's own rationale length.

    Returns:
        `(B, J)` long.
    """
    f = torch.tensor([float(x) for x in fractions], dtype=torch.float64)  # (J,)
    lengths = rationale_lengths.to(torch.float64).unsqueeze(1)  # (B, 1)
    return torch.ceil(lengths * f - 1e-9).clamp(min=0).long()  # (B, J)


def pool_prefixes(
    hidden: torch.Tensor,
    text_mask: torch.Tensor,
    rationale_mask: torch.Tensor,
    fractions: Sequence[float],
    mode: str = "mean",
    normalize: bool = True,
) -> torch.Tensor:
    """Pool every row at several prefixes of its rationale in one go (no extra forward pass: a causal model's state
    at a position does not depend on later tokens, so a prefix's states are the first states of the whole).

    Row `b`'s prefix `j` keeps the text and the first `k_bj` rationale tokens (`prefix_lengths`). `mean` and
    `rationale_only` read cumulative sums of the rationale's states at the prefix ends; `last_token` reads the state
    at the prefix end. Each `[:, j]` equals `pool_hidden_states` with the rationale mask cut to the prefix.

    Args:
        hidden (`torch.Tensor`):
            `(B, T, H)` last hidden states.
        text_mask (`torch.Tensor`):
            `(B, T)` 1 on the input text's tokens.
        rationale_mask (`torch.Tensor`):
            `(B, T)` 1 on the rationale's tokens (the rationale's positions in order; EOS and padding are 0).
        fractions (`Sequence[float]`):
            `J` fractions in `(0, 1]` of each row's rationale length.
        mode (`str`, *optional*, defaults to `"mean"`):
            as `pool_hidden_states`.
        normalize (`bool`, *optional*, defaults to `True`):
            L2-normalise each prefix embedding.

    Returns:
        `(B, J, H)` float32 embeddings.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"Unknown pooling mode {mode!r}; choose one of {POOLING_MODES}.")
    hidden = hidden.float()
    b = hidden.size(0)
    text, rationale = text_mask.to(hidden.dtype), rationale_mask.to(hidden.dtype)  # (B, T) each
    keep = prefix_lengths(rationale_mask.long().sum(dim=1), fractions).to(hidden.device)  # (B, J)
    rank = rationale_mask.long().cumsum(dim=1)  # (B, T): rationale tokens up to and including each position
    # position of the k-th rationale token = first position whose rank reaches k (k >= 1)
    end = torch.searchsorted(rank.contiguous(), keep.clamp(min=1).contiguous())  # (B, J)
    end = end.clamp(max=hidden.size(1) - 1)
    rows = torch.arange(b, device=hidden.device).unsqueeze(1)  # (B, 1)
    has = (keep > 0).unsqueeze(-1)  # (B, J, 1)
    if mode == "last_token":
        both = (text_mask.bool() | rationale_mask.bool()).long()
        fallback = last_position(hidden, both * (1 - rationale_mask.long())).unsqueeze(1)  # (B, 1, H): last text token
        pooled = torch.where(has, hidden[rows, end], fallback)  # (B, J, H)
    else:
        cums = (hidden * rationale.unsqueeze(-1)).cumsum(dim=1)  # (B, T, H)
        prefix_sum = torch.where(has, cums[rows, end], torch.zeros_like(cums[rows, end]))  # (B, J, H)
        counts = keep.to(hidden.dtype).unsqueeze(-1)  # (B, J, 1)
        text_sum = (hidden * text.unsqueeze(-1)).sum(dim=1).unsqueeze(1)  # (B, 1, H)
        text_count = text.sum(dim=1).view(b, 1, 1)  # (B, 1, 1)
        if mode == "mean":
            pooled = (text_sum + prefix_sum) / (text_count + counts).clamp(min=1.0)
        else:  # rationale_only: the text's mean for an empty prefix
            pooled = torch.where(has, prefix_sum / counts.clamp(min=1.0), text_sum / text_count.clamp(min=1.0))
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
    return pooled
