from __future__ import annotations

import pytest
import torch

from rollout.pooling import last_position, masked_mean, pool_hidden_states


def test_masked_mean_ignores_masked_positions():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(masked_mean(hidden, mask), torch.tensor([[2.0, 1.0]]))


def test_masked_mean_empty_mask_gives_zeros():
    hidden = torch.ones(1, 3, 2)
    assert torch.equal(masked_mean(hidden, torch.zeros(1, 3)), torch.zeros(1, 2))


def test_last_position_picks_last_masked_token():
    hidden = torch.arange(12, dtype=torch.float).view(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [0, 0, 1]])
    assert torch.equal(last_position(hidden, mask), torch.tensor([[2.0, 3.0], [10.0, 11.0]]))


def test_pool_modes_by_hand():
    hidden = torch.tensor([[[0.0, 9.0], [2.0, 0.0], [4.0, 0.0], [0.0, 6.0], [7.0, 7.0]]])  # (1, 5, 2)
    text = torch.tensor([[0, 1, 1, 0, 0]])  # tokens 1-2 are the text (0 = template)
    rationale = torch.tensor([[0, 0, 0, 1, 0]])  # token 3 is the rationale (4 = padding / EOS)
    mean = pool_hidden_states(hidden, text, rationale, "mean", normalize=False)
    assert torch.allclose(mean, torch.tensor([[2.0, 2.0]]))  # (2+4+0)/3, (0+0+6)/3
    only = pool_hidden_states(hidden, text, rationale, "rationale_only", normalize=False)
    assert torch.allclose(only, torch.tensor([[0.0, 6.0]]))
    last = pool_hidden_states(hidden, text, rationale, "last_token", normalize=False)
    assert torch.allclose(last, torch.tensor([[0.0, 6.0]]))
    normed = pool_hidden_states(hidden, text, rationale, "mean")
    assert torch.allclose(normed.norm(dim=-1), torch.ones(1))


def test_rationale_only_falls_back_to_text_without_rationale():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0]]])
    out = pool_hidden_states(
        hidden, torch.tensor([[1, 1]]), torch.zeros(1, 2, dtype=torch.long), "rationale_only", False
    )
    assert torch.allclose(out, torch.tensor([[2.0, 3.0]]))


def test_unknown_mode_names_the_choices():
    with pytest.raises(ValueError, match="rationale_only"):
        pool_hidden_states(torch.zeros(1, 1, 1), torch.ones(1, 1), torch.ones(1, 1), "max")
