"""GRACE reward: pure reward terms on embeddings (`terms`, `dcg`), their registry, and the TRL-facing callable
(`grace_reward.GraceReward`), which reaches embeddings only through the `rollout.EmbeddingPool` protocol and the
corpus index only through `retrieval.CorpusSearcher`.

The built-in terms are registered on import; `GraceReward` is imported on first use (PEP 562), so the config can
import `reward.registry` without the reward's dependencies.
"""

from __future__ import annotations

from typing import Any

from reward import terms  # noqa: F401  (registers the built-in terms)
from reward.context import RewardContext
from reward.registry import available_terms, get_term, register

__all__ = ["GraceReward", "RewardContext", "available_terms", "get_term", "register"]


def __getattr__(name: str) -> Any:
    if name == "GraceReward":
        from reward.grace_reward import GraceReward

        return GraceReward
    raise AttributeError(f"module 'reward' has no attribute {name!r}; public names: {__all__}")
