"""The hand-off of rollout embeddings captured during generation: a caching wrapper around the embedding pool.

The trainer pools each rollout's embedding from the hidden states the policy computed while generating it
(`rollout.capture`) and offers them here; the reward only ever calls `pool.embed` / `pool.embed_with_version` and
never learns whether a row was captured or computed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from rollout.embedder import EmbedRequest
from rollout.pool import EmbeddingPool, VersionedEmbeddings

logger = logging.getLogger(__name__)


class CapturingPool:
    """An `EmbeddingPool` that serves offered embeddings for the requests they were computed for.

    The next `embed_with_version` call takes the offer (whether it matches or not, so an offer never outlives its
    batch): when its first requests are exactly the offered ones (same texts, same rationale token ids, same pooling),
    those rows come from the offer and only the remaining requests go to the wrapped pool; otherwise everything
    goes to the wrapped pool. Captured rows come from the live policy, so they are given the newest weight version of
    the call (they never make a result look staler than its computed rows).

    Args:
        pool (`EmbeddingPool`):
            The pool that computes every embedding not offered (`local` or `ray` backend).

    Example:
        >>> pool = CapturingPool(LocalEmbeddingPool(embedder))  # doctest: +SKIP
        >>> pool.offer(rollout_requests, captured, pooling="mean")  # (N, H), pooled during generation
        >>> pool.embed(rollout_requests + anchor_requests)  # only the anchors are computed
    """

    def __init__(self, pool: EmbeddingPool) -> None:
        self.pool = pool
        self._offer: tuple[list[EmbedRequest], torch.Tensor, str] | None = None
        self.last_served = 0  # rows the last embed call took from an offer

    def offer(self, requests: Sequence[EmbedRequest], embeddings: torch.Tensor, pooling: str = "mean") -> None:
        """Embeddings `(N, H)` of `requests`, pooled with `pooling`, for the next embed call."""
        if len(requests) != embeddings.shape[0]:
            raise ValueError(f"{len(requests)} requests but {embeddings.shape[0]} offered embeddings.")
        self._offer = (list(requests), embeddings, pooling)

    def _take(self, requests: Sequence[EmbedRequest], pooling: str) -> torch.Tensor | None:
        offer, self._offer = self._offer, None
        if offer is None:
            return None
        offered, embeddings, offered_pooling = offer
        if offered_pooling != pooling or list(requests[: len(offered)]) != offered:
            logger.debug("Captured embeddings do not match this embed call; computing every row instead.")
            return None
        return embeddings

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        """`(N, H)` embeddings in input order, with the weight version of each row (see the class docstring)."""
        captured = self._take(requests, pooling)
        self.last_served = 0 if captured is None else captured.shape[0]
        if captured is None:
            return self.pool.embed_with_version(requests, pooling)
        rest = list(requests[self.last_served :])
        if not rest:
            return VersionedEmbeddings(captured)
        computed = self.pool.embed_with_version(rest, pooling)
        vectors = torch.cat([captured.to(computed.vectors), computed.vectors])  # (N, H)
        if computed.versions is None:
            return VersionedEmbeddings(vectors)
        newest = computed.versions.max().expand(self.last_served)  # (captured,)
        return VersionedEmbeddings(vectors, torch.cat([newest, computed.versions]))  # (N,)

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        return self.embed_with_version(requests, pooling).vectors

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        return self.pool.generate_rationales(texts, max_new_tokens, temperature)

    def decode(self, ids: Sequence[int]) -> str:
        return self.pool.decode(ids)
