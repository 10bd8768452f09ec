"""The hand-off of rollout embeddings captured during generation: a caching wrapper around the embedding pool.

The trainer pools each rollout's embedding from the hidden states the policy computed while generating it
(`rollout.capture`) and offers them here; the reward only ever calls `pool.embed` / `pool.embed_with_version` and
never learns whether a row was captured or computed.

With several processes every rank captures only its own rollouts while the reward asks for the global batch (it
gathers all ranks' rollouts, so in-batch negatives span it). The pool is then `collective`: each embed call
all-gathers the ranks' offers first, so every rank serves the whole global batch from capture and sends the same
remaining requests (anchors) to the wrapped collective pool.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from rollout.embedder import EmbedRequest
from rollout.pool import EmbeddingPool, VersionedEmbeddings
from rollout.pooling import prefix_lengths

logger = logging.getLogger(__name__)

Offer = tuple[list[EmbedRequest], torch.Tensor, str]  # requests, (N, H) embeddings, pooling


class CapturingPool:
    """An `EmbeddingPool` that serves offered embeddings for the requests they were computed for.

    The next `embed_with_version` call takes the offer (used or not, so an offer never outlives its batch): every
    request equal to an offered one (same text, same rationale token ids, same pooling) is served from the offer,
    and only the others go to the wrapped pool, in their order. Captured rows come from the live policy, so they are
    given the newest weight version of the call (they never make a result look staler than its computed rows).

    Args:
        pool (`EmbeddingPool`):
            The pool that computes every embedding not offered (`local` or `ray` backend).
        collective (`bool`, *optional*, defaults to `False`):
            Several processes call every embed with the same requests (the wrapped pool is a
            :class:`~rollout.distributed.ShardedPool` or :class:`~rollout.distributed.MainProcessPool`): each call
            all-gathers every rank's offer (`accelerate.utils.gather_object`), so rollouts captured on any rank are
            served on all of them. Every rank must then make every embed call, with or without an offer.

    Example:
        >>> pool = CapturingPool(LocalEmbeddingPool(embedder))  # doctest: +SKIP
        >>> pool.offer(rollout_requests, captured, pooling="mean")  # (N, H), pooled during generation
        >>> pool.embed(rollout_requests + anchor_requests)  # only the anchors are computed
    """

    def __init__(self, pool: EmbeddingPool, collective: bool = False) -> None:
        self.pool = pool
        self.collective = collective
        self._offer: Offer | None = None
        self._prefix_offer: tuple[list[EmbedRequest], torch.Tensor, str, tuple[float, ...]] | None = None
        self.last_served = 0  # rows the last embed call took from offers (all ranks' offers when collective)
        if hasattr(pool, "encode"):  # the one-pass rationale + embedding capability, for corpus index builds
            self.encode = pool.encode

    def offer(
        self,
        requests: Sequence[EmbedRequest],
        embeddings: torch.Tensor,
        pooling: str = "mean",
        prefixes: torch.Tensor | None = None,
        fractions: Sequence[float] = (),
    ) -> None:
        """Embeddings `(N, H)` of `requests`, pooled with `pooling`, for the next embed call; and optionally their
        rationale-prefix embeddings `prefixes (N, J, H)` at `fractions` for the next `embed_prefixes` call."""
        if len(requests) != embeddings.shape[0]:
            raise ValueError(f"{len(requests)} requests but {embeddings.shape[0]} offered embeddings.")
        self._offer = (list(requests), embeddings.detach().cpu(), pooling)
        self._prefix_offer = None
        if prefixes is not None:
            if prefixes.shape[:2] != (len(requests), len(fractions)):
                raise ValueError(
                    f"prefixes of shape {tuple(prefixes.shape)} do not match {len(requests)} requests at "
                    f"{len(fractions)} fractions."
                )
            self._prefix_offer = (list(requests), prefixes, pooling, tuple(float(f) for f in fractions))

    def take_prefixes(
        self, requests: Sequence[EmbedRequest], fractions: Sequence[float], pooling: str = "mean"
    ) -> torch.Tensor | None:
        """The offered prefix embeddings `(N, J, H)` when they were computed for exactly these requests, fractions
        and pooling, else `None`; the offer is used up either way."""
        offer, self._prefix_offer = self._prefix_offer, None
        if offer is None:
            return None
        offered, prefixes, offered_pooling, offered_fractions = offer
        if (offered_pooling, offered_fractions) != (pooling, tuple(float(f) for f in fractions)):
            return None
        return prefixes if list(requests) == offered else None

    def _take_offers(self) -> list[Offer]:
        """This rank's offer, or (collective) every rank's, in rank order; clears this rank's offer."""
        offer, self._offer = self._offer, None
        if not self.collective:
            return [] if offer is None else [offer]
        from accelerate.utils import gather_object

        return [o for o in gather_object([offer]) if o is not None]  # one entry per rank

    def _served(self, requests: Sequence[EmbedRequest], pooling: str) -> dict[int, torch.Tensor]:
        """Position in `requests` -> offered `(H,)` embedding, for every request an offer covers."""
        lookup: dict[EmbedRequest, torch.Tensor] = {}
        offers = self._take_offers()
        for offered, embeddings, offered_pooling in offers:
            if offered_pooling == pooling:
                lookup.update((r, e) for r, e in zip(offered, embeddings, strict=True) if r not in lookup)
        served = {i: lookup[r] for i, r in enumerate(requests) if r in lookup}
        if offers and len(served) < sum(len(o[0]) for o in offers):
            logger.debug("%d of %d offered embeddings match this embed call.", len(served), len(lookup))
        return served

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        """`(N, H)` embeddings in input order, with the weight version of each row (see the class docstring)."""
        served = self._served(requests, pooling)
        self.last_served = len(served)
        if not served:
            return self.pool.embed_with_version(requests, pooling)
        captured = torch.stack(list(served.values()))  # (S, H), in request order
        rest = [i for i in range(len(requests)) if i not in served]
        if not rest:
            return VersionedEmbeddings(captured)
        computed = self.pool.embed_with_version([requests[i] for i in rest], pooling)
        vectors = computed.vectors.new_empty(len(requests), computed.vectors.shape[1])  # (N, H)
        vectors[list(served)] = captured.to(computed.vectors)
        vectors[rest] = computed.vectors
        if computed.versions is None:
            return VersionedEmbeddings(vectors)
        versions = computed.versions.new_empty(len(requests))  # (N,)
        versions[list(served)] = computed.versions.max()
        versions[rest] = computed.versions
        return VersionedEmbeddings(vectors, versions)

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        return self.embed_with_version(requests, pooling).vectors

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        return self.pool.generate_rationales(texts, max_new_tokens, temperature)

    def decode(self, ids: Sequence[int]) -> str:
        return self.pool.decode(ids)


def embed_prefixes(
    pool: EmbeddingPool,
    requests: Sequence[EmbedRequest],
    rationale_lengths: Sequence[int],
    fractions: Sequence[float],
    pooling: str = "mean",
) -> torch.Tensor:
    """Embeddings of every request at prefixes of its rationale: `(N, J, H)`, prefix `j` keeping
    `ceil(fractions[j] * L)` of the rationale's `L` tokens (`rollout.pooling.prefix_lengths`).

    Served from the generation pass when `pool` is a `CapturingPool` holding them (no forward pass); otherwise
    (vLLM, several processes, Ray) the `N * J` prefix requests go to the pool in one batched call.

    Args:
        pool (`EmbeddingPool`):
            the pool (a `CapturingPool` serves captured prefixes).
        requests (`Sequence[EmbedRequest]`):
            the rollouts (text + rationale token ids, end token and what follows included or not).
        rationale_lengths (`Sequence[int]`):
            rationale tokens of each request before its end token.
        fractions (`Sequence[float]`):
            `J` fractions in `(0, 1]`.
        pooling (`str`, *optional*, defaults to `"mean"`):
            the pooling mode.
    """
    take = getattr(pool, "take_prefixes", None)
    captured = take(requests, fractions, pooling) if take is not None else None
    if captured is not None:
        return captured
    keep = prefix_lengths(torch.as_tensor(list(rationale_lengths), dtype=torch.long), fractions)  # (N, J)
    flat = [
        EmbedRequest(r.text, tuple(r.rationale_ids[:k]))
        for r, row in zip(requests, keep.tolist(), strict=True)
        for k in row
    ]
    vectors = pool.embed(flat, pooling)  # (N * J, H)
    return vectors.view(len(requests), len(fractions), -1)
