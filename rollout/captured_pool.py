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
RationaleOffer = tuple[dict[str, tuple[int, ...]], int, float]  # text -> rationale ids, budget, temperature


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
        self._rationale_offer: RationaleOffer | None = None
        self._anchor_offer: Offer | None = None
        self.last_served = 0  # rollout rows the last embed call took from offers (all ranks' offers when collective)
        self.last_anchors_served = 0  # anchor rows the last embed call took from anchor offers
        self.last_rationales_served = 0  # rationales the last generate_rationales call took from offers
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

    def offer_anchors(self, requests: Sequence[EmbedRequest], embeddings: torch.Tensor, pooling: str = "mean") -> None:
        """Embeddings `(A, H)` of anchor `requests` (text + rationale) pooled from the generation pass, for the next
        embed call, beside the rollouts' offer (counted apart: :attr:`last_anchors_served`)."""
        if len(requests) != embeddings.shape[0]:
            raise ValueError(f"{len(requests)} anchor requests but {embeddings.shape[0]} offered embeddings.")
        self._anchor_offer = (list(requests), embeddings.detach().cpu(), pooling)

    def _take_offers(self) -> list[tuple[Offer | None, Offer | None]]:
        """This rank's (rollout offer, anchor offer), or (collective) every rank's, in rank order; clears them."""
        pair = (self._offer, self._anchor_offer)
        self._offer = self._anchor_offer = None
        if not self.collective:
            return [] if pair == (None, None) else [pair]
        from accelerate.utils import gather_object

        return [p for p in gather_object([pair]) if p != (None, None)]  # one entry per rank

    def _served(self, requests: Sequence[EmbedRequest], pooling: str) -> tuple[dict[int, torch.Tensor], int]:
        """Position in `requests` -> offered `(H,)` embedding, for every request an offer covers; and how many of
        them came from anchor offers."""
        lookups: tuple[dict[EmbedRequest, torch.Tensor], dict[EmbedRequest, torch.Tensor]] = ({}, {})
        offers = self._take_offers()
        for pair in offers:
            for lookup, offer in zip(lookups, pair, strict=True):
                if offer is not None and offer[2] == pooling:
                    lookup.update((r, e) for r, e in zip(offer[0], offer[1], strict=True) if r not in lookup)
        rollouts, anchors = lookups
        served = {i: rollouts[r] for i, r in enumerate(requests) if r in rollouts}
        from_anchors = {i: anchors[r] for i, r in enumerate(requests) if i not in served and r in anchors}
        offered = sum(len(o[0]) for pair in offers for o in pair if o is not None)
        matched = len(served) + len(from_anchors)
        if offers and matched < offered:
            logger.debug("%d of %d offered embeddings match this embed call.", matched, offered)
        return {**served, **from_anchors}, len(from_anchors)

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        """`(N, H)` embeddings in input order, with the weight version of each row (see the class docstring)."""
        served, from_anchors = self._served(requests, pooling)
        self.last_served, self.last_anchors_served = len(served) - from_anchors, from_anchors
        if not served:
            return self.pool.embed_with_version(requests, pooling)
        positions = sorted(served)
        captured = torch.stack([served[i] for i in positions])  # (S, H), in request order
        rest = [i for i in range(len(requests)) if i not in served]
        if not rest:
            return VersionedEmbeddings(captured)
        computed = self.pool.embed_with_version([requests[i] for i in rest], pooling)
        vectors = computed.vectors.new_empty(len(requests), computed.vectors.shape[1])  # (N, H)
        vectors[positions] = captured.to(computed.vectors)
        vectors[rest] = computed.vectors
        if computed.versions is None:
            return VersionedEmbeddings(vectors)
        versions = computed.versions.new_empty(len(requests))  # (N,)
        versions[positions] = computed.versions.max()
        versions[rest] = computed.versions
        return VersionedEmbeddings(vectors, versions)

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        return self.embed_with_version(requests, pooling).vectors

    def offer_rationales(
        self, texts: Sequence[str], rationales: Sequence[Sequence[int]], max_new_tokens: int, temperature: float
    ) -> None:
        """Rationales (token ids, cut before their end token and to `max_new_tokens`) already written for `texts` at
        `temperature` (e.g. anchors written in the rollouts' `generate` call), for the next `generate_rationales`
        call with the same budget and temperature; the offer is used up by that call either way."""
        if len(texts) != len(rationales):
            raise ValueError(f"{len(texts)} texts but {len(rationales)} offered rationales.")
        lookup = {t: tuple(int(i) for i in r) for t, r in zip(texts, rationales, strict=True)}
        self._rationale_offer = (lookup, int(max_new_tokens), float(temperature))

    def _take_rationale_offers(self) -> list[RationaleOffer]:
        offer, self._rationale_offer = self._rationale_offer, None
        if not self.collective:
            return [] if offer is None else [offer]
        from accelerate.utils import gather_object

        return [o for o in gather_object([offer]) if o is not None]  # one entry per rank

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        """Rationales for `texts`: offered ones (same budget and temperature) as offered, the others written by the
        wrapped pool in one call. Collective: every rank's offers are gathered first, so every rank sends the same
        remaining texts."""
        lookup: dict[str, tuple[int, ...]] = {}
        for offered, budget, offered_temperature in self._take_rationale_offers():
            if (budget, offered_temperature) == (int(max_new_tokens), float(temperature)):
                for text, ids in offered.items():
                    lookup.setdefault(text, ids)
        out: list[tuple[int, ...] | None] = [lookup.get(t) for t in texts]
        missing = [i for i, r in enumerate(out) if r is None]
        self.last_rationales_served = len(texts) - len(missing)
        if missing:
            written = self.pool.generate_rationales([texts[i] for i in missing], max_new_tokens, temperature)
            for i, ids in zip(missing, written, strict=True):
                out[i] = tuple(ids)
        return out  # type: ignore[return-value]

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
