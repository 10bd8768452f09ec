"""One way to wrap ``model.generate`` for the duration of a ``with`` block (patches nest and are undone in order).

Used where a caller (TRL's generation step, HF ``generate`` under ZeRO-3) calls ``model.generate`` itself and GRACE
must act around that call: feed the last sampled token (:mod:`rollout.capture`), add a logits processor
(:mod:`rollout.anchor_rows`), drop ``synced_gpus`` (:mod:`grace_rl.main_process`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch


@contextlib.contextmanager
def patched_generate(model: torch.nn.Module, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """Set ``model.generate = wrap(model.generate)`` on the instance; restore the previous one on exit."""
    own = vars(model).get("generate")  # an instance-level patch already in place (an outer block), else None
    model.generate = wrap(model.generate)
    try:
        yield
    finally:
        if own is None:
            del model.generate
        else:
            model.generate = own
