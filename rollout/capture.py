"""Embeddings for free: pool the hidden states the policy computes while it generates the rationales.

During HF ``generate`` the decoder runs once over the (left-padded) prompts and then once per new token. A forward
hook on the backbone records each call's last hidden states and the KV cache. ``generate`` never feeds its last
sampled token back, so :meth:`HiddenStateCapture.final_step` runs that one decode step on the recorded cache: the
states then cover the prompt and every generated token, and :func:`pool_captured` pools them exactly like
:class:`rollout.embedder.Embedder` (a separate eval-mode pass) would, a rationale cut by the length limit included.
For that equality, generate with dropout off (eval mode), as the Embedder embeds.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from rollout.generate_patch import patched_generate
from rollout.pooling import pool_hidden_states, pool_prefixes

logger = logging.getLogger(__name__)


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword ``model``'s forward (and its ``generate``) takes the KV cache under: ``cache`` in the transformers
    releases that renamed it (naming ``past_key_values`` there prints a deprecation warning on every call),
    ``past_key_values`` in the earlier ones (which would not use a ``cache`` argument)."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # no introspectable forward: the long-standing name
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache a model output holds (``None`` when none), read under the field name its class declares, so that
    reading it prints no deprecation warning in either naming."""
    fields = getattr(output, "__dataclass_fields__", None)
    if fields is None:
        return getattr(output, "past_key_values", None)  # not a transformers ModelOutput (remote code, a tuple)
    for name in ("cache", "past_key_values"):
        if name in fields:
            return getattr(output, name)
    return None


class HiddenStateCapture:
    """Context manager recording a backbone's ``last_hidden_state`` (and KV cache) at every forward call.

    Args:
        backbone: the decoder stack (see :func:`rollout.embedder.backbone_of`).
        end_token_ids: tokens that end a rationale; :meth:`final_step` is skipped when every row already holds one.
    """

    def __init__(self, backbone: torch.nn.Module, end_token_ids: Sequence[int] = ()) -> None:
        self.backbone = backbone
        self.end_token_ids = sorted({int(t) for t in end_token_ids})
        self.chunks: list[torch.Tensor] = []
        self.complete = False  # every pooled token has a recorded state (set by final_step)
        self._cache = None
        self._handle = None

    def _hook(self, module, args, output) -> None:
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        self.chunks.append(hidden.detach())  # (B, T_call, H)
        cache = output_cache(output)
        if cache is not None:
            self._cache = cache

    def __enter__(self) -> HiddenStateCapture:
        self.chunks = []
        self.complete = False
        self._cache = None
        self._handle = self.backbone.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._cache = None  # the KV cache is only needed for the final step

    @torch.no_grad()
    def final_step(self, sequences: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> bool:
        """Feed each row's last generated token through the backbone on the generation's KV cache (one decode step,
        positions and mask as ``generate`` would use next), so its hidden state is recorded too.

        Args:
            sequences: ``(B, W + n)`` what ``generate`` returned (left-padded prompts then ``n`` new tokens).
            prompt_mask: ``(B, W)`` the prompts' attention mask (all ones when ``None``).

        Returns:
            whether the step ran: skipped when nothing was generated, no cache was recorded, or every row already
            holds an end token (no rationale reaches the last position, so its state is never pooled). Sets
            :attr:`complete` when every rationale token now has a state (ran, or not needed).
        """
        self.complete = False
        if not self.chunks:
            return False
        width = self.chunks[0].shape[1] if prompt_mask is None else prompt_mask.shape[1]
        new = sequences.shape[1] - width
        if new <= 0:
            self.complete = True
            return False
        if self.end_token_ids:
            ends = torch.tensor(self.end_token_ids, device=sequences.device)
            if torch.isin(sequences[:, width:], ends).any(dim=1).all():
                self.complete = True
                return False
        if self._cache is None:
            logger.debug("No KV cache recorded during generate (use_cache off?); the last token has no state.")
            return False
        b = sequences.shape[0]
        if prompt_mask is None:
            prompt_mask = torch.ones(b, width, dtype=torch.long, device=sequences.device)
        if prompt_mask.shape[0] != b:  # num_return_sequences > 1: generate repeats each prompt in place
            prompt_mask = prompt_mask.repeat_interleave(b // prompt_mask.shape[0], dim=0)  # (B, W)
        mask = torch.cat([prompt_mask.long(), prompt_mask.new_ones(b, new).long()], dim=1)  # (B, W + n)
        position = mask.sum(dim=1, keepdim=True) - 1  # (B, 1): generate's position for the next fed token
        self.backbone(
            input_ids=sequences[:, -1:],  # (B, 1)
            attention_mask=mask,
            position_ids=position,
            use_cache=True,
            **{cache_keyword(self.backbone): self._cache},
        )
        self.complete = True
        return True

    @contextlib.contextmanager
    def feeding_last_token(self, model: torch.nn.Module) -> Iterator[None]:
        """Patch ``model.generate`` so that :meth:`final_step` runs right after it, inside the caller's context
        (e.g. TRL's DeepSpeed ZeRO-3 parameter gather). The caller gets ``generate``'s output unchanged."""

        def wrap(original):
            def generate(*args, **kwargs):
                out = original(*args, **kwargs)
                sequences = out if isinstance(out, torch.Tensor) else out.sequences  # (B, W + n)
                self.final_step(sequences, kwargs.get("attention_mask"))
                return out

            return generate

        with patched_generate(model, wrap):
            yield

    def states(self, prompt_width: int, batch: int) -> torch.Tensor | None:
        """``(B, prompt_width + steps, H)``: the prompt pass then one state per fed-back token (all generated tokens
        once :meth:`final_step` ran, else all but the last).

        ``None`` when the recorded calls do not look like one generate over this batch (e.g. chunked or extra passes).
        """
        if not self.chunks or self.chunks[0].shape[:2] != (batch, prompt_width):
            return None
        if any(c.shape[0] != batch or c.shape[1] != 1 for c in self.chunks[1:]):
            return None
        return torch.cat(self.chunks, dim=1)


def count_rationale_tokens(completions: torch.Tensor, end_token_ids: Sequence[int]) -> torch.Tensor:
    """Tokens before the first end token of each row (the whole row when it has none).

    ``(B, n) -> (B,)`` long.
    """
    if not end_token_ids:
        return torch.full((completions.shape[0],), completions.shape[1], dtype=torch.long)
    ends = torch.tensor(sorted({int(t) for t in end_token_ids}), device=completions.device)
    is_end = torch.isin(completions, ends)  # (B, n)
    first = is_end.int().argmax(dim=1)  # (B,)
    return torch.where(is_end.any(dim=1), first, torch.full_like(first, completions.shape[1])).cpu()


def captured_masks(
    width: int,
    prompt_width: int,
    prompt_lengths: torch.Tensor,
    text_spans: torch.Tensor,
    rationale_lengths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text and rationale masks over captured states of left-padded prompts (no per-token Python work).

    Args:
        width: states per row (``prompt_width`` + the fed-back generated tokens).
        prompt_width: the padded prompt width.
        prompt_lengths: ``(B,)`` unpadded prompt lengths.
        text_spans: ``(B, 2)`` ``[start, end)`` of the input text inside each unpadded prompt.
        rationale_lengths: ``(B,)`` rationale tokens of each row (end token and what follows excluded).

    Returns:
        ``(text_mask, rationale_mask)``, each ``(B, width)`` long.
    """
    positions = torch.arange(width).unsqueeze(0)  # (1, W')
    pad = (prompt_width - prompt_lengths).unsqueeze(1)  # (B, 1)
    start, end = pad + text_spans[:, :1], pad + text_spans[:, 1:]  # (B, 1) each
    text_mask = (positions >= start) & (positions < end)  # (B, W')
    rationale_mask = (positions >= prompt_width) & (positions < prompt_width + rationale_lengths.unsqueeze(1))
    return text_mask.long(), rationale_mask.long()


def pool_captured(
    states: torch.Tensor,
    prompt_lengths: Sequence[int] | torch.Tensor,
    text_spans: Sequence[tuple[int, int]] | torch.Tensor,
    rationale_lengths: Sequence[int] | torch.Tensor,
    mode: str = "mean",
    normalize: bool = True,
    prompt_width: int | None = None,
) -> torch.Tensor:
    """Pool captured generation states like the Embedder does.

    Args:
        states: ``(B, W', H)`` from :meth:`HiddenStateCapture.states`.
        prompt_lengths: unpadded prompt length of each row.
        text_spans: ``[start, end)`` of the input text inside each unpadded prompt.
        rationale_lengths: rationale tokens of each row (EOS and what follows excluded).
        mode, normalize: as :func:`rollout.pooling.pool_hidden_states`.
        prompt_width: the padded prompt width (default ``max(prompt_lengths)``).

    Returns:
        ``(B, H)`` float32 embeddings on the CPU.

    Raises:
        ValueError: when a rationale reaches past the captured states (a token whose state was never computed, e.g.
            :meth:`HiddenStateCapture.final_step` did not run).
    """
    width = states.shape[1]
    lengths = torch.as_tensor(prompt_lengths, dtype=torch.long)  # (B,)
    spans = torch.as_tensor(text_spans, dtype=torch.long).view(-1, 2)  # (B, 2)
    rationale = torch.as_tensor(rationale_lengths, dtype=torch.long)  # (B,)
    p = int(lengths.max()) if prompt_width is None else prompt_width
    if rationale.numel() and int(rationale.max()) > width - p:
        raise ValueError(
            f"A rationale of {int(rationale.max())} tokens needs {p + int(rationale.max())} captured states but only "
            f"{width} were recorded; run HiddenStateCapture.final_step after generate (it feeds the last token)."
        )
    text_mask, rationale_mask = captured_masks(width, p, lengths, spans, rationale)
    device = states.device
    return pool_hidden_states(states, text_mask.to(device), rationale_mask.to(device), mode, normalize).cpu()


def pool_captured_prefixes(
    states: torch.Tensor,
    prompt_lengths: Sequence[int] | torch.Tensor,
    text_spans: Sequence[tuple[int, int]] | torch.Tensor,
    rationale_lengths: Sequence[int] | torch.Tensor,
    fractions: Sequence[float],
    mode: str = "mean",
    normalize: bool = True,
    prompt_width: int | None = None,
) -> torch.Tensor:
    """Pool captured generation states at prefixes of each rationale (`rollout.pooling.pool_prefixes`): `(B, J, H)`
    float32 on the CPU, prefix `j` keeping `ceil(fractions[j] * L)` of a rationale's `L` tokens. Arguments as
    `pool_captured`; no forward pass (cumulative sums of the states already recorded)."""
    width = states.shape[1]
    lengths = torch.as_tensor(prompt_lengths, dtype=torch.long)  # (B,)
    spans = torch.as_tensor(text_spans, dtype=torch.long).view(-1, 2)  # (B, 2)
    rationale = torch.as_tensor(rationale_lengths, dtype=torch.long)  # (B,)
    p = int(lengths.max()) if prompt_width is None else prompt_width
    if rationale.numel() and int(rationale.max()) > width - p:
        raise ValueError(f"A rationale of {int(rationale.max())} tokens reaches past the {width} captured states.")
    text_mask, rationale_mask = captured_masks(width, p, lengths, spans, rationale)
    device = states.device
    return pool_prefixes(states, text_mask.to(device), rationale_mask.to(device), fractions, mode, normalize).cpu()
