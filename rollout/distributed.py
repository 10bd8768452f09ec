"""Embedding pools in multi-process trainers (`torchrun` / `deepspeed` / `accelerate launch`).

The reward gathers the whole generation batch on every rank (so in-batch negatives span it) and then asks the pool
for the same requests, in the same order, on every rank. These wrappers turn that into one computation:

- :class:`ShardedPool` (`local` backend): each rank embeds an equal share with its own replica of the policy
  (identical weights under DDP / ZeRO-1/2), and the shares are all-gathered. Every rank runs the same number of
  forward passes (the last share is padded), which ZeRO-3 needs.
- :class:`MainProcessPool` (`ray` backend): rank 0 owns the Ray pool (one set of actors per training run, synced
  by rank 0), calls it, and broadcasts the result; an error on rank 0 is raised on every rank.

Both are collective: every rank must call them with the same arguments. :func:`gathered_parameters` gives a DeepSpeed
ZeRO-3 partitioned model its full parameters for a while (also collective).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from rollout.embedder import EmbedRequest
from rollout.pool import EmbeddingPool, VersionedEmbeddings


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


FullWeights = contextlib.AbstractContextManager[Any]  # a context in which the policy has its full parameters


def zero3_partitioned(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters DeepSpeed ZeRO-3 has partitioned (they carry a `ds_id`; each rank holds only a shard)."""
    return [p for p in params if hasattr(p, "ds_id")]


@contextlib.contextmanager
def gathered_parameters(params: Iterable[torch.nn.Parameter]) -> Iterator[None]:
    """Full parameters for the duration (`deepspeed.zero.GatheredParameters`, read-only) when DeepSpeed ZeRO-3 has
    partitioned them; a no-op otherwise. Collective when it gathers: every rank must enter with the same parameters.

    Example:
        >>> with gathered_parameters(model.parameters()):  # doctest: +SKIP
        ...     state = {k: v.clone() for k, v in model.state_dict().items()}  # full tensors, not empty shards
    """
    partitioned = zero3_partitioned(params)
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None):
        yield


class ShardedPool:
    """Each rank computes an equal share of the (identical on every rank) request list; results are all-gathered.

    Args:
        inner (`EmbeddingPool`):
            this rank's pool (usually a :class:`~rollout.pool.LocalEmbeddingPool` over its policy replica).
        full_weights (`Callable[[], contextlib.AbstractContextManager]`, *optional*):
            entered (on every rank) around each call: gives the policy its full parameters under DeepSpeed ZeRO-3
            (e.g. TRL's `unwrap_model_for_generation`: one all-gather, ZeRO's per-layer hooks off), so the
            embedder reads full weights instead of gathering layer by layer in every forward pass.
    """

    def __init__(self, inner: EmbeddingPool, full_weights: Callable[[], FullWeights] | None = None) -> None:
        self.inner = inner
        self.full_weights = full_weights or contextlib.nullcontext

    def _share(self, items: Sequence[Any]) -> tuple[list[Any], int]:
        """This rank's contiguous share, padded to `ceil(N / world)` items; returns it and its real length."""
        rank, world = _rank_and_world()
        per = math.ceil(len(items) / world)
        mine = list(items[rank * per : (rank + 1) * per])
        real = len(mine)
        return mine + [items[0]] * (per - real), real

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        from accelerate.utils import gather_object

        if not requests:
            return VersionedEmbeddings(torch.empty(0, 0))
        mine, real = self._share(requests)
        with self.full_weights():
            out = self.inner.embed_with_version(mine, pooling)
        versions = None if out.versions is None else out.versions[:real]
        pieces = gather_object([(out.vectors[:real], versions)])  # one (vectors, versions) per rank, rank order
        vectors = torch.cat([v for v, _ in pieces])  # (N, H)
        if any(ver is None for _, ver in pieces):
            return VersionedEmbeddings(vectors)
        return VersionedEmbeddings(vectors, torch.cat([ver for _, ver in pieces]))  # (N,)

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        return self.embed_with_version(requests, pooling).vectors

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        from accelerate.utils import gather_object

        if not texts:
            return []
        mine, real = self._share(texts)
        with self.full_weights():
            ids = self.inner.generate_rationales(mine, max_new_tokens, temperature)[:real]
        return [tuple(r) for r in gather_object(ids)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.inner.decode(ids)


class MainProcessPool:
    """Rank 0 holds the real pool; it computes and broadcasts, so every rank gets the same result.

    Args:
        inner (`EmbeddingPool`, *optional*):
            the pool on rank 0, `None` on the other ranks.
        tokenizer (`Any`):
            for :meth:`decode` on every rank.
    """

    def __init__(self, inner: EmbeddingPool | None, tokenizer: Any) -> None:
        self.inner = inner
        self.tokenizer = tokenizer

    def _call(self, fn: Callable[[EmbeddingPool], Any]) -> Any:
        from accelerate.utils import broadcast_object_list

        error: Exception | None = None
        box: list[Any] = [None]
        if self.inner is not None:
            try:
                box[0] = ("ok", fn(self.inner))
            except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
                error = err
                box[0] = ("error", f"{type(err).__name__}: {err}")
        broadcast_object_list(box, from_process=0)
        status, value = box[0]
        if status == "error":
            if error is not None:
                raise error
            raise RuntimeError(f"The embedding pool on rank 0 failed: {value}")
        return value

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        return self._call(lambda pool: pool.embed_with_version(requests, pooling))

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        return self.embed_with_version(requests, pooling).vectors

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        return self._call(lambda pool: pool.generate_rationales(texts, max_new_tokens, temperature))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)
