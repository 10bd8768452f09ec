"""The `ray` embedding backend: N :class:`~rollout.actor.EmbeddingActor` processes holding synced policy weights.

Lifecycle: connect to a running cluster (`address="auto"` or `ray://...`) or start a local one (`None`), in a
namespace; :meth:`RayEmbeddingPool.close` kills the actors and stops a cluster this pool started (also at exit).

Work is split in balanced shards (by estimated tokens, longest-first onto the least-loaded actor), one per actor
(in calls of at most `chunk_size` items), and put back in input order. Actors restart after a crash
(`max_restarts`); Ray does not retry their calls (a restarted actor has lost its synced weights), the pool does: it
re-sends the latest weights to the restarted actor and re-runs that actor's calls. Every result carries the actor's
weight version, which must equal the last synced version; a result from an actor that silently restarted (version
`NOT_SYNCED`) is recomputed the same way.

Multi-process trainers: rank 0 owns the pool (see :class:`rollout.distributed.MainProcessPool`).
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rollout.actor import EmbeddingActor, ModelSpec
from rollout.embedder import EmbedRequest
from rollout.pool import VersionedEmbeddings

logger = logging.getLogger(__name__)

_TEMPLATE_TOKENS = 32  # rough chat-template overhead per sequence, for load balancing only


@dataclass(frozen=True)
class RayPoolOptions:
    """Cluster and actor settings of a :class:`RayEmbeddingPool`.

    Args:
        address (`str`, *optional*):
            `None` starts a local cluster; `"auto"` (or `ray://host:port`) connects to a running one.
        namespace (`str`, *optional*, defaults to `"grace-rl"`):
            Ray namespace of the pool's actors.
        num_actors (`int`, *optional*, defaults to `2`):
            embedding actors.
        num_cpus (`float`, *optional*, defaults to `1.0`):
            CPUs reserved per actor (also its torch thread count).
        num_gpus (`float`, *optional*, defaults to `0.0`):
            GPUs per actor (fractions share a GPU); ignored, with a warning, on a cluster without GPUs.
        max_restarts (`int`, *optional*, defaults to `3`):
            restarts allowed per actor after a crash.
        batch_size (`int`, *optional*, defaults to `32`):
            sequences per forward pass inside an actor.
        chunk_size (`int`, *optional*, defaults to `256`):
            items per remote call (an actor's share of a large call, e.g. a corpus, goes in several calls,
            so a crash re-runs one chunk).
        call_retries (`int`, *optional*, defaults to `3`):
            re-runs of one actor's shard after it failed (dead actor or lost weights).
        timeout_s (`float`, *optional*, defaults to `300.0`):
            how long to wait for actors to start or restart before failing.
    """

    address: str | None = None
    namespace: str = "grace-rl"
    num_actors: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_restarts: int = 3
    batch_size: int = 32
    chunk_size: int = 256
    call_retries: int = 3
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.num_actors < 1:
            raise ValueError(f"ray num_actors must be >= 1, got {self.num_actors}.")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ValueError(f"ray actor resources must be num_cpus > 0, num_gpus >= 0; got {self}.")
        if self.chunk_size < 1 or self.max_restarts < 0 or self.call_retries < 0:
            raise ValueError(f"chunk_size must be >= 1, max_restarts and call_retries >= 0; got {self}.")


def balanced_shards(costs: Sequence[float], n: int) -> list[list[int]]:
    """Split item indices into `n` shards of similar total cost (longest first onto the lightest shard).

    Each shard lists its indices in ascending order. Example: costs `[5, 1, 1, 3]`, `n=2` -> `[[0], [1, 2, 3]]`.
    """
    shards: list[list[int]] = [[] for _ in range(n)]
    load = [0.0] * n
    for i in sorted(range(len(costs)), key=lambda k: (-costs[k], k)):
        lightest = min(range(n), key=lambda s: (load[s], s))
        shards[lightest].append(i)
        load[lightest] += costs[i]
    return [sorted(s) for s in shards]


def request_cost(request: EmbedRequest) -> float:
    """Estimated tokens of one embedding request (about 4 characters per token)."""
    return len(request.text) / 4 + len(request.rationale_ids) + _TEMPLATE_TOKENS


def connect(address: str | None, namespace: str) -> bool:
    """Join or start a Ray cluster; returns whether this call started it (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, namespace=namespace, include_dashboard=False, log_to_driver=True)
    logger.info(
        "Ray %s: %s",
        "started a local cluster" if address is None else f"connected to {address}",
        ray.cluster_resources(),
    )
    return address is None


def actor_resources(options: RayPoolOptions, fixed_size: bool = True) -> tuple[float, float]:
    """`(num_cpus, num_gpus)` per actor: GPUs only when the cluster has them (a fractional GPU never schedules on a
    CPU-only cluster); CPUs checked against the cluster (an error when it cannot grow, else a warning)."""
    import ray

    total = ray.cluster_resources()
    num_gpus = options.num_gpus
    if num_gpus > 0 and total.get("GPU", 0) <= 0:
        logger.warning("ray_actor_num_gpus=%s ignored: the Ray cluster has no GPUs (actors run on CPU).", num_gpus)
        num_gpus = 0.0
    need = options.num_cpus * options.num_actors
    if need > total.get("CPU", 0):
        message = (
            f"{options.num_actors} embedding actors x {options.num_cpus} CPUs = {need} CPUs, but the Ray cluster has "
            f"{total.get('CPU', 0)}: lower ray_num_actors or ray_actor_num_cpus."
        )
        if fixed_size:
            raise ValueError(message)
        logger.warning("%s Waiting for the cluster to grow (up to the start-up timeout).", message)
    return options.num_cpus, num_gpus


class RayEmbeddingPool:
    """Embedding pool on Ray actors (the :class:`~rollout.pool.EmbeddingPool` interface plus weight sync).

    Args:
        spec (`ModelSpec`):
            how each actor rebuilds the policy model.
        options (`RayPoolOptions`, *optional*):
            cluster and actor settings.

    Call :meth:`sync_weights` once before the first embedding (the trainer's weight-sync callback does).
    """

    def __init__(self, spec: ModelSpec, options: RayPoolOptions | None = None) -> None:
        import ray

        self.options = options or RayPoolOptions()
        self.tokenizer = spec.tokenizer
        self._owns_ray = connect(self.options.address, self.options.namespace)
        try:
            num_cpus, num_gpus = actor_resources(self.options, fixed_size=self.options.address is None)
        except ValueError:
            if self._owns_ray:
                ray.shutdown()
            raise
        remote_actor = ray.remote(EmbeddingActor).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=self.options.max_restarts, max_task_retries=0
        )
        device = "cuda" if num_gpus > 0 else "cpu"
        threads = max(1, int(num_cpus))
        # The spec stays referenced here: a restarting actor re-reads its constructor arguments (ray issue 53727).
        self._spec_ref = ray.put(spec)
        self.actors = [
            remote_actor.remote(self._spec_ref, device, self.options.batch_size, threads)
            for _ in range(self.options.num_actors)
        ]
        self.synced_version: int | None = None
        self._weights_ref: Any = None
        self.stats = {"retries": 0, "resyncs": 0}
        atexit.register(self.close)
        try:
            ray.get([a.get_version.remote() for a in self.actors], timeout=self.options.timeout_s)
        except ray.exceptions.GetTimeoutError as err:
            self.close()
            raise TimeoutError(
                f"{len(self.actors)} embedding actors did not start within {self.options.timeout_s}s "
                f"(cluster resources: {ray.available_resources()}); check ray_actor_num_cpus / ray_actor_num_gpus."
            ) from err
        logger.info("Ray embedding pool: %d actors (%s CPU, %s GPU each)", len(self.actors), num_cpus, num_gpus)

    # ---- weight sync -------------------------------------------------------------------------------------------

    def sync_weights(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """Put `weights` into the object store once and load them into every actor as `version`."""
        import ray

        self._weights_ref = ray.put(weights)  # the latest weights stay there for actors that restart later
        self.synced_version = int(version)
        calls = [a.load_weights.remote(self._weights_ref, self.synced_version) for a in self.actors]
        for i, call in enumerate(calls):
            try:
                ray.get(call)
            except ray.exceptions.RayActorError as err:  # it is resynced when its next result comes back stale
                logger.warning("Embedding actor %d missed weight sync %d (%s).", i, version, type(err).__name__)

    def _resync(self, i: int) -> None:
        """Send the latest weights to actor `i`, waiting while it restarts."""
        import ray

        deadline = time.monotonic() + self.options.timeout_s
        while True:
            try:
                ray.get(self.actors[i].load_weights.remote(self._weights_ref, self.synced_version))
                self.stats["resyncs"] += 1
                return
            except ray.exceptions.ActorUnavailableError as err:  # restarting
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Embedding actor {i} did not come back within {self.options.timeout_s}s."
                    ) from err
                time.sleep(0.5)
            except ray.exceptions.ActorDiedError as err:
                raise RuntimeError(
                    f"Embedding actor {i} died and was not restarted (ray_max_restarts={self.options.max_restarts} "
                    f"used up): {err}. Raise ray_max_restarts, or look for why actors crash (memory, CUDA)."
                ) from err

    # ---- dispatch ---------------------------------------------------------------------------------------------

    def _run(self, method: str, tasks: list[tuple[int, list[Any]]], **kwargs: Any) -> list[Any]:
        """Call `method(items, **kwargs)` on actor `a` for each task `(a, items)`; one result per task.

        A task that hit a dead actor, or whose result was computed with other weights than the last sync (the actor
        restarted), is re-run after the latest weights are re-sent to its actor (up to `call_retries` times).
        """
        import ray

        if self.synced_version is None:
            raise RuntimeError("The Ray embedding pool has no weights yet: call sync_weights(weights, version) first.")

        def submit(t: int) -> Any:
            actor, items = tasks[t]
            return getattr(self.actors[actor], method).remote(items, **kwargs)

        pending = {t: submit(t) for t in range(len(tasks))}
        results: list[Any] = [None] * len(tasks)
        attempts = dict.fromkeys(pending, 0)
        while pending:
            failed = []
            for t, ref in pending.items():
                try:
                    value, version = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    reason = type(err).__name__
                else:
                    if version == self.synced_version:
                        results[t] = value
                        continue
                    reason = f"result computed with weight version {version}, expected {self.synced_version}"
                failed.append((t, reason))
            pending, resynced = {}, set()
            for t, reason in failed:
                actor = tasks[t][0]
                attempts[t] += 1
                if attempts[t] > self.options.call_retries:
                    raise RuntimeError(
                        f"Embedding actor {actor} failed the same call {attempts[t]} times ({reason}); giving up "
                        f"(call_retries={self.options.call_retries})."
                    )
                self.stats["retries"] += 1
                if actor not in resynced:
                    logger.warning("Embedding actor %d: %s; re-syncing its weights and retrying.", actor, reason)
                    self._resync(actor)
                    resynced.add(actor)
                pending[t] = submit(t)
        return results

    def _sharded(
        self, items: Sequence[Any], cost: Callable[[Any], float], method: str, **kwargs: Any
    ) -> list[tuple[int, Any]]:
        """Balanced shards of `items` (one per actor, in calls of at most `chunk_size` items) through
        `method`; returns `[(input index, result), ...]` in input order."""
        size = self.options.chunk_size
        chunks = [
            (actor, shard[s : s + size])
            for actor, shard in enumerate(balanced_shards([cost(x) for x in items], len(self.actors)))
            for s in range(0, len(shard), size)
        ]
        outputs = self._run(method, [(actor, [items[j] for j in idx]) for actor, idx in chunks], **kwargs)
        pairs = [(j, row) for (_, idx), out in zip(chunks, outputs) for j, row in zip(idx, out)]
        return sorted(pairs, key=lambda p: p[0])

    # ---- EmbeddingPool interface ------------------------------------------------------------------------------

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        """`(N, H)` embeddings in input order, each with the synced weight version it was computed with."""
        if not requests:
            return VersionedEmbeddings(torch.empty(0, 0), torch.empty(0, dtype=torch.long))
        rows = self._sharded(requests, request_cost, "embed", pooling=pooling)
        vectors = torch.stack([row for _, row in rows])  # (N, H)
        versions = torch.full((len(requests),), self.synced_version, dtype=torch.long)  # (N,)
        return VersionedEmbeddings(vectors, versions)

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        return self.embed_with_version(requests, pooling).vectors

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> list[tuple[int, ...]]:
        if not texts:
            return []
        rows = self._sharded(
            texts, lambda t: len(t) + 1, "generate_rationales", max_new_tokens=max_new_tokens, temperature=temperature
        )
        return [tuple(ids) for _, ids in rows]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def close(self) -> None:
        """Kill the actors and stop the cluster if this pool started it (idempotent)."""
        import ray

        atexit.unregister(self.close)
        if ray.is_initialized():
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            if self._owns_ray:
                ray.shutdown()
        self.actors = []
        self._owns_ray = False
