"""Prefix embeddings from cumulative sums (`rollout.pooling.pool_prefixes`) equal pooling each prefix on its own."""

from __future__ import annotations

import pytest
import torch

from rollout.pooling import POOLING_MODES, pool_hidden_states, pool_prefixes, prefix_lengths

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def test_prefix_lengths_are_ceilings_of_the_fractions():
    keep = prefix_lengths(torch.tensor([8, 5, 1, 0]), FRACTIONS)
    assert keep.tolist() == [[2, 4, 6, 8], [2, 3, 4, 5], [1, 1, 1, 1], [0, 0, 0, 0]]


def layout(lengths: list[tuple[int, int, int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for rows laid out as `pad, template, text, template, rationale, eos, pad` with (pad, text, rationale)."""
    text = torch.zeros(len(lengths), width, dtype=torch.long)
    rationale = torch.zeros_like(text)
    for b, (pad, n_text, n_rationale) in enumerate(lengths):
        text[b, pad + 2 : pad + 2 + n_text] = 1
        start = pad + 2 + n_text + 3
        rationale[b, start : start + n_rationale] = 1
    return text, rationale


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pool_prefixes_equals_pooling_each_prefix(mode):
    torch.manual_seed(0)
    text, rationale = layout([(0, 4, 9), (3, 2, 4), (1, 5, 0), (2, 1, 1)], width=24)
    hidden = torch.randn(4, 24, 16)
    got = pool_prefixes(hidden, text, rationale, FRACTIONS, mode=mode)  # (B, J, H)
    assert got.shape == (4, 4, 16)
    keep = prefix_lengths(rationale.sum(dim=1), FRACTIONS)
    for j in range(len(FRACTIONS)):
        cut = rationale * (rationale.cumsum(dim=1) <= keep[:, j : j + 1]).long()  # first k_bj rationale tokens
        want = pool_hidden_states(hidden, text, cut, mode=mode)
        assert (got[:, j] - want).abs().max() < 1e-5, (mode, j)
    assert (got[:, -1] - pool_hidden_states(hidden, text, rationale, mode=mode)).abs().max() < 1e-5
    assert (got[0, 0] - got[0, 1]).abs().max() > 1e-3  # prefixes of a long rationale differ
