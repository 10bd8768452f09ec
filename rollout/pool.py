"""The embedding-pool interface the reward talks to, and its in-process backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from rollout.embedder import Embedder, EmbedRequest


@dataclass(frozen=True)
class VersionedEmbeddings:
    """Embeddings with the policy-weight version each row was computed with.

    Args:
        vectors (`torch.Tensor`):
            `(N, H)` L2-normalised embeddings, in input order.
        versions (`torch.Tensor`, *optional*):
            `(N,)` long: the weight version (trainer optimizer step of the last sync) of each row, or
            `None` when they come from the live policy itself (always current).
    """

    vectors: torch.Tensor
    versions: torch.Tensor | None = None

    def staleness(self, policy_version: int) -> int:
        """Optimizer steps between the oldest row's weights and `policy_version` (0 for the live policy)."""
        if self.versions is None or self.versions.numel() == 0:
            return 0
        return int(policy_version) - int(self.versions.min())


@runtime_checkable
class EmbeddingPool(Protocol):
    """What the reward needs from whoever computes embeddings (in process, or Ray actors)."""

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        """`(N, H)` L2-normalised embeddings of `requests` with the current policy weights, in input order."""
        ...

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        """Like `embed`, with the weight version each row was computed with (`versions=None`: the live policy)."""
        ...

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        """One rationale (token ids) per text, greedy when `temperature` is 0."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text."""
        ...


class LocalEmbeddingPool:
    """In-process backend: embeds with the live policy model itself, so its weights are always current.

    Args:
        embedder (`Embedder`):
            an :class:`Embedder` around the trainer's (peft-wrapped) model.
        batch_size (`int`, *optional*, defaults to `32`):
            sequences per forward pass.
    """

    def __init__(self, embedder: Embedder, batch_size: int = 32) -> None:
        self.embedder = embedder
        self.batch_size = batch_size

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        return self.embedder.embed(requests, pooling=pooling, batch_size=self.batch_size)

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        return VersionedEmbeddings(self.embed(requests, pooling))  # the live policy: never stale

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        return self.embedder.generate_rationales(texts, max_new_tokens, temperature, batch_size=self.batch_size)

    def encode(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0, pooling: str = "mean"
    ) -> torch.Tensor:
        """Write one rationale per text and pool text + rationale in the same pass (:meth:`Embedder.encode`):
        ``(N, H)``, equal to :meth:`generate_rationales` then :meth:`embed` for the same tokens. Optional capability:
        callers check for it (the Ray pool has none)."""
        return self.embedder.encode(texts, max_new_tokens, temperature, pooling=pooling, batch_size=self.batch_size)[0]

    def decode(self, ids: Sequence[int]) -> str:
        return self.embedder.tokenizer.decode(list(ids), skip_special_tokens=True)
