"""GRACE reward: pure reward terms on embeddings, their registry, and the TRL-facing callable."""

from __future__ import annotations

from reward import terms  # noqa: F401  (registers the built-in terms)
from reward.context import RewardContext
from reward.grace_reward import GraceReward
from reward.registry import available_terms, get_term, register

__all__ = ["GraceReward", "RewardContext", "available_terms", "get_term", "register"]
