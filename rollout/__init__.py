"""Rollout side of GRACE: pooling, the embedding pool and (later) the corpus index."""

from __future__ import annotations

from rollout.embedder import Embedder, EmbedRequest
from rollout.pool import EmbeddingPool, LocalEmbeddingPool, VersionedEmbeddings, embed_versioned
from rollout.pooling import POOLING_MODES, pool_hidden_states
from rollout.ray_pool import RayEmbeddingPool, RayPoolOptions

__all__ = [
    "POOLING_MODES",
    "EmbedRequest",
    "Embedder",
    "EmbeddingPool",
    "LocalEmbeddingPool",
    "RayEmbeddingPool",
    "RayPoolOptions",
    "VersionedEmbeddings",
    "embed_versioned",
    "pool_hidden_states",
]
