"""Embeddings for free: pool the hidden states the policy already computes while it generates the rationales.

During HF ``generate`` the decoder runs once over the (left-padded) prompts and then once per new token, so its last
hidden states for the prompt and for every generated token but the last one are computed anyway. A forward hook on
the backbone records them; :func:`pool_captured` assembles each row's states and pools them exactly like
:class:`rollout.embedder.Embedder` would, saving the separate embedding pass over the rollouts. The one difference: a
rationale cut by the length limit misses its final token (its hidden state is never computed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rollout.pooling import pool_hidden_states


class HiddenStateCapture:
    """Context manager recording a backbone's ``last_hidden_state`` at every forward call.

    Args:
        backbone: the decoder stack (see :func:`rollout.embedder.backbone_of`).
    """

    def __init__(self, backbone: torch.nn.Module) -> None:
        self.backbone = backbone
        self.chunks: list[torch.Tensor] = []
        self._handle = None

    def _hook(self, module, args, output) -> None:
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        self.chunks.append(hidden.detach())  # (B, T_call, H)

    def __enter__(self) -> HiddenStateCapture:
        self.chunks = []
        self._handle = self.backbone.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def states(self, prompt_width: int, batch: int) -> torch.Tensor | None:
        """``(B, prompt_width + steps - 1, H)``: the prompt pass then one state per fed-back token.

        ``None`` when the recorded calls do not look like one generate over this batch (e.g. chunked or extra passes).
        """
        if not self.chunks or self.chunks[0].shape[:2] != (batch, prompt_width):
            return None
        if any(c.shape[0] != batch or c.shape[1] != 1 for c in self.chunks[1:]):
            return None
        return torch.cat(self.chunks, dim=1)


def pool_captured(
    states: torch.Tensor,
    prompt_lengths: Sequence[int],
    text_spans: Sequence[tuple[int, int]],
    rationale_lengths: Sequence[int],
    mode: str = "mean",
    normalize: bool = True,
) -> torch.Tensor:
    """Pool captured generation states like the Embedder does.

    Args:
        states: ``(B, W, H)`` from :meth:`HiddenStateCapture.states` (prompts left-padded to ``max(prompt_lengths)``).
        prompt_lengths: unpadded prompt length of each row.
        text_spans: ``[start, end)`` of the input text inside each unpadded prompt.
        rationale_lengths: rationale tokens of each row (EOS and what follows excluded).
        mode, normalize: as :func:`rollout.pooling.pool_hidden_states`.

    Returns:
        ``(B, H)`` float32 embeddings.
    """
    b, width, _ = states.shape
    p = max(prompt_lengths)
    text_mask = torch.zeros(b, width, dtype=torch.long)  # (B, W)
    rationale_mask = torch.zeros(b, width, dtype=torch.long)  # (B, W)
    for row, (length, (start, end), n_rat) in enumerate(
        zip(prompt_lengths, text_spans, rationale_lengths, strict=True)
    ):
        pad = p - length
        text_mask[row, pad + start : pad + end] = 1
        rationale_mask[row, p : min(p + n_rat, width)] = 1  # the last token of a cut rationale has no state
    device = states.device
    return pool_hidden_states(states, text_mask.to(device), rationale_mask.to(device), mode, normalize).cpu()
