"""Rollout side of GRACE: pooling, the embedding pool and (later) the corpus index."""

from __future__ import annotations

from rollout.embedder import Embedder, EmbedRequest
from rollout.pool import EmbeddingPool, LocalEmbeddingPool
from rollout.pooling import POOLING_MODES, pool_hidden_states

__all__ = ["POOLING_MODES", "EmbedRequest", "Embedder", "EmbeddingPool", "LocalEmbeddingPool", "pool_hidden_states"]
