"""Rollout side of GRACE: everything that turns (text, rationale) into an embedding with the policy's weights.

- `pooling`: masked mean / rationale-only / last-token pooling (pure tensor math).
- `embedder`: `Embedder`, the policy's chat-template spans, forward passes and anchor rationales.
- `capture`: rollout embeddings pooled from the hidden states computed during generation.
- `captured_pool`: `CapturingPool`, the hand-off of those embeddings to the pool (the reward never sees capture).
- `pool`: the `EmbeddingPool` protocol the reward calls, and `LocalEmbeddingPool` (in process, live policy).
- `ray_pool`, `actor`, `weight_sync`: the `ray` backend (embedding actors, policy-weight sync, versions).
- `distributed`: sharded / rank-0 pools for multi-process trainers.
- `corpus`, `index_settings`, `corpus_index`: the one corpus reader and the FAISS corpus index with partial refresh.

The names below are imported on first use (PEP 562), so `import rollout.pooling` does not pull in faiss or Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CapturingPool": "rollout.captured_pool",
    "Corpus": "rollout.corpus",
    "CorpusError": "rollout.corpus",
    "load_corpus": "rollout.corpus",
    "CorpusIndex": "rollout.corpus_index",
    "IndexSettings": "rollout.index_settings",
    "Embedder": "rollout.embedder",
    "EmbedRequest": "rollout.embedder",
    "EmbeddingPool": "rollout.pool",
    "LocalEmbeddingPool": "rollout.pool",
    "VersionedEmbeddings": "rollout.pool",
    "POOLING_MODES": "rollout.pooling",
    "pool_hidden_states": "rollout.pooling",
    "RayEmbeddingPool": "rollout.ray_pool",
    "RayPoolOptions": "rollout.ray_pool",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rollout' has no attribute {name!r}; public names: {__all__}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
