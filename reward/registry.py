"""Registry of reward terms: `@register("name")` refuses duplicates; `get_term` fails clearly on unknown names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from reward.context import RewardContext

TermFn = Callable[["RewardContext"], torch.Tensor]
_TERMS: dict[str, TermFn] = {}


def register(name: str) -> Callable[[TermFn], TermFn]:
    """Register a reward term `fn(ctx) -> (N,) tensor` under `name`."""

    def decorator(fn: TermFn) -> TermFn:
        if name in _TERMS:
            raise ValueError(f"Reward term {name!r} is already registered (by {_TERMS[name].__module__}).")
        _TERMS[name] = fn
        return fn

    return decorator


def get_term(name: str) -> TermFn:
    """The term registered under `name`."""
    if name not in _TERMS:
        raise KeyError(f"Unknown reward term {name!r}; registered terms: {sorted(_TERMS)}.")
    return _TERMS[name]


def available_terms() -> list[str]:
    """Names of all registered terms, sorted."""
    return sorted(_TERMS)
