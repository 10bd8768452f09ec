"""Anchor rationales written in the rollouts' own `generate` call (no second generation pass per step).

With `anchor_mode: rationale` every positive and hard negative is embedded with its own rationale, greedy (or sampled
at `anchor_temperature`), as `encode()` does at inference. Writing those rationales in a separate `generate` call
costs a whole extra decode loop per step (3-4 s of a ~20 s CPU step); appended to the rollouts' batch they cost a few
more rows of the decode steps already paid for. The rollouts are sampled at the GRPO temperature, so the anchor rows
get their own decoding rule through :class:`AnchorRowsProcessor`, a logits processor that HF ``generate`` runs
before its sampling warpers:

- greedy anchors (`anchor_temperature: 0`): every logit but the row's argmax is set to ``-inf``, so the sampler can
  only draw the argmax (the temperature and `top_p = 1` / `top_k = 0` warpers keep it): greedy decoding, token for
  token;
- sampled anchors: the row's logits are multiplied by `T_rollout / T_anchor`, so that after the warper divides by
  `T_rollout` they are divided by `T_anchor`: sampling at the anchor temperature.

Both hold only when nothing else reshapes the logits (`top_k`, `top_p < 1`, `min_p`, a repetition penalty):
:func:`ride_along_blocker` names what stops it, and the trainer then keeps the separate call. A rationale shorter than
the rollouts' budget is the first tokens of one written at that budget (greedy and ancestral sampling are both
left-to-right), so anchors are cut to `anchor_rationale_tokens` after the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from rollout.generate_patch import patched_generate

ANCHOR_GENERATION = ("with_rollouts", "separate")  # GraceConfig.anchor_generation


class AnchorRowsProcessor:
    """Decode rows `[first, first + count)` of a sampled `generate` batch greedily (`anchor_temperature == 0`) or at
    `anchor_temperature` (given the batch's sampling temperature `rollout_temperature`); other rows are untouched.

    A plain callable with `transformers.LogitsProcessor`'s signature (HF `generate` takes any such callable in its
    `logits_processor` list; not subclassing keeps this module free of a transformers import).

    Args:
        first (`int`): the first anchor row of the batch (anchors are appended after the rollouts).
        count (`int`): anchor rows.
        anchor_temperature (`float`): 0 = greedy, else the anchors' sampling temperature.
        rollout_temperature (`float`): the temperature `generate` samples every row at (> 0).

    Example:
        >>> processor = AnchorRowsProcessor(first=16, count=8, anchor_temperature=0.0, rollout_temperature=1.0)
        >>> scores = processor(input_ids, scores)  # rows 16..23: all but the argmax set to -inf  # doctest: +SKIP
    """

    def __init__(self, first: int, count: int, anchor_temperature: float, rollout_temperature: float) -> None:
        if first < 0 or count < 0:
            raise ValueError(f"anchor rows need first >= 0 and count >= 0, got first={first}, count={count}.")
        if anchor_temperature < 0 or rollout_temperature <= 0:
            raise ValueError(
                f"need anchor_temperature >= 0 and rollout_temperature > 0, got {anchor_temperature} and "
                f"{rollout_temperature}."
            )
        self.first, self.count = first, count
        self.anchor_temperature, self.rollout_temperature = anchor_temperature, rollout_temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = slice(self.first, self.first + self.count)
        anchor = scores[rows]  # (A, V)
        if anchor.shape[0] == 0:
            return scores
        out = scores.clone()
        if self.anchor_temperature == 0:
            keep = torch.zeros_like(anchor, dtype=torch.bool)
            keep.scatter_(1, anchor.argmax(dim=1, keepdim=True), True)
            out[rows] = anchor.masked_fill(~keep, float("-inf"))
        elif self.anchor_temperature != self.rollout_temperature:
            out[rows] = anchor * (self.rollout_temperature / self.anchor_temperature)
        return out


# generation settings that reshape logits besides the temperature, with their neutral values
_NEUTRAL = {
    "top_k": (None, 0),
    "top_p": (None, 1.0),
    "min_p": (None, 0.0),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "sequence_bias": (None,),
    "num_beams": (None, 1),
}


def ride_along_blocker(
    generation_kwargs: Mapping[str, Any],
    anchor_tokens: int,
    rollout_tokens: int,
) -> str | None:
    """Why anchor rationales cannot be written in the rollouts' `generate` call, or `None` when they can.

    Args:
        generation_kwargs (`Mapping[str, Any]`): the rollouts' generation settings (TRL's `generation_kwargs`).
        anchor_tokens (`int`): the anchors' rationale budget.
        rollout_tokens (`int`): the rollouts' budget this round (`max_new_tokens`).

    Example:
        >>> ride_along_blocker({"top_p": 1.0, "top_k": 0}, anchor_tokens=32, rollout_tokens=32) is None
        True
        >>> ride_along_blocker({"top_k": 50}, 32, 32)
        'the rollouts are sampled with top_k=50, which would also reshape the anchors\\' logits'
    """
    for key, neutral in _NEUTRAL.items():
        value = generation_kwargs.get(key)
        if value not in neutral:
            return f"the rollouts are sampled with {key}={value!r}, which would also reshape the anchors' logits"
    if not generation_kwargs.get("do_sample", True):
        return "the rollouts are not sampled (do_sample=False)"
    if anchor_tokens > rollout_tokens:
        return f"anchor_rationale_tokens ({anchor_tokens}) exceeds this round's rollout budget ({rollout_tokens})"
    return None


@contextlib.contextmanager
def adding_logits_processor(model: torch.nn.Module, processor: Any) -> Iterator[None]:
    """Patch ``model.generate`` so that every call also runs ``processor`` (appended to any ``logits_processor``
    the caller passes); the previous ``generate`` is restored on exit (patches nest)."""
    from transformers import LogitsProcessorList

    def wrap(original):
        def generate(*args, **kwargs):
            kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), processor])
            return original(*args, **kwargs)

        return generate

    with patched_generate(model, wrap):
        yield
