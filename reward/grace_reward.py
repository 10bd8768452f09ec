"""The TRL-facing reward: one callable scores the whole generation batch with the configured terms."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch

import reward.terms  # noqa: F401  (registers the built-in terms)
from reward.context import ANCHOR_MODES, RewardContext
from reward.degenerate import degenerate_rollouts, score_without_degenerate
from reward.registry import get_term
from reward.retrieval import CorpusSearcher, mine_negatives, resolve_gold, score_dcg
from reward.terms import prefix_scores
from rollout.captured_pool import embed_prefixes
from rollout.embedder import EmbedRequest
from rollout.pool import EmbeddingPool

logger = logging.getLogger(__name__)


class StaleEmbeddingsError(RuntimeError):
    """Embeddings were computed with policy weights older than the reward allows."""


def gather_rollouts(*columns: Sequence[Any] | None) -> tuple[tuple[list[Any] | None, ...], int]:
    """Concatenate per-rollout columns over all ranks (rank order); returns them and this rank's first index.

    With one process (or no `torch.distributed`) the columns come back unchanged with offset 0. `None` columns
    stay `None` (every rank must agree on which columns are present).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tuple(None if c is None else list(c) for c in columns), 0
    from accelerate.utils import gather_object

    pieces = gather_object([[None if c is None else list(c) for c in columns]])  # one column list per rank
    sizes = [len(next(c for c in piece if c is not None)) for piece in pieces]
    merged = tuple(
        None if columns[k] is None else [x for piece in pieces for x in piece[k]] for k in range(len(columns))
    )
    return merged, sum(sizes[: dist.get_rank()])


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a plain string or a conversational `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content", "")) for m in completion)


def row_groups(keys: Sequence[Any]) -> tuple[torch.Tensor, list[int]]:
    """Map each rollout to its row: consecutive rollouts with the same key form one row.

    Returns `(group (N,), first_index_of_each_row)`.
    """
    group, firsts = [], []
    for i, key in enumerate(keys):
        if i == 0 or key != keys[i - 1]:
            firsts.append(i)
        group.append(len(firsts) - 1)
    return torch.tensor(group, dtype=torch.long), firsts


@dataclasses.dataclass(frozen=True)
class ScoredBatch:
    """What one reward call computed, handed to the trainer by :meth:`GraceReward.score_batch`.

    Args:
        rewards (`list[float | None]`):
            this rank's rewards, one per local rollout (`None` for a degenerate rollout), what TRL receives.
        context (`RewardContext`):
            the global batch's embeddings and masks (every rank's rollouts), read by the direct embedding loss.
        offset (`int`):
            index of this rank's first rollout in `context` (0 with one process).
        records (`list[dict]`):
            one rationale-log record per local rollout (prompt, rationale, each term, total; no advantage yet).
    """

    rewards: list[float | None]
    context: RewardContext
    offset: int
    records: list[dict[str, Any]]


class GraceReward:
    """GRACE reward over a generation batch: embeds every rollout (input + rationale) and scores it.

    `total_i = sum_t w_t * term_t(e_i)` for the configured terms (see :mod:`reward.terms`), e.g. with
    `terms=["contrastive", "consistency"]` and `weights=[1.0, 0.1]`:
    `total_i = log softmax_tau(cos(e_i, .))[pos] + 0.1 * mean_k cos(e_i, e_k)`.

    Args:
        terms (`Sequence[str]`):
            registered term names.
        weights (`Sequence[float]`):
            one weight per term.
        temperature (`float`, *optional*, defaults to `0.05`):
            InfoNCE temperature.
        hard_negative_weight (`float`, *optional*, defaults to `1.0`):
            weight of each hard negative in the `contrastive` denominator (and the embedding loss).
        anchor_mode (`str`, *optional*, defaults to `"plain"`):
            `plain` (positives/negatives embedded as text alone) or `rationale` (each with its own
            low-temperature rationale, as at inference).
        anchor_rationale_tokens (`int`, *optional*, defaults to `32`):
            rationale budget for anchors in `rationale` mode.
        anchor_temperature (`float`, *optional*, defaults to `0.0`):
            sampling temperature of anchor rationales (0 = greedy).
        pooling (`str`, *optional*, defaults to `"mean"`):
            pooling mode (`mean`, `rationale_only`, `last_token`).
        end_token_ids (`Sequence[int]`, *optional*, defaults to `()`):
            tokens that end a rationale (a completion not ending in one is truncated).
        pool (`EmbeddingPool`, *optional*):
            the embedding pool; not pickled (re-attach with :meth:`attach` after unpickling).
        max_weight_staleness (`int`, *optional*):
            refuse (:class:`StaleEmbeddingsError`) embeddings computed with weights more than this
            many optimizer steps older than the trainer's (`trainer_state.global_step`); `None` = no check.
        corpus_index (`CorpusSearcher`, *optional*):
            the corpus index the `dcg` term searches (a :class:`~reward.retrieval.CorpusSearcher`,
            e.g. `rollout.corpus_index.CorpusIndex`); not pickled either. Gold documents: the row's
            `positive_ids`, else the corpus documents whose text equals the row's positive.
        dcg_k (`int`, *optional*, defaults to `10`):
            nDCG cutoff of the `dcg` term.
        search_depth (`int`, *optional*, defaults to `50`):
            documents retrieved per rollout (>= `dcg_k`; deeper ranks feed the recall/MRR metrics).
        refinement_prefixes (`Sequence[float]`, *optional*, defaults to `(0.25, 0.5, 0.75, 1.0)`):
            fractions of each rollout's own rationale length at which the `refinement` term scores it (its prefix
            embeddings go to `ctx.extras["prefix_embeddings"]` and their scores to the records' `prefix_scores`).
        mined_negatives (`int`, *optional*, defaults to `0`):
            hard negatives mined per row from `corpus_index` (ANCE style): the corpus documents nearest to the row's
            mean rollout embedding that are not its gold documents (`positive_ids`, else the documents with the
            positive's text) nor its own or its positive's text. They join the row's hard negatives for every term
            and for the embedding loss; their ids go to the records' `mined_negatives`. 0 = off.
        mined_negative_max_ratio (`float`, *optional*, defaults to `1.0`):
            a mined document must score at most this times the row's similarity to its positive (positive-aware
            mining as NV-Retriever's: nearer documents are likely unlabelled positives, e.g. SICK's near-copies);
            `None` = no ceiling. NV-Retriever's 0.95 suits trained encoders; the base model's mean-pooled space is
            so compressed that 0.95 x the positive's similarity is the corpus median (measured on the demo corpus).
            Mining searches `search_depth` documents deep, so rows whose nearest documents are all above the ceiling
            can still find `mined_negatives` under it.

    Returns (on call):
        One float per rollout (`None` for a rollout whose embedding is not finite: TRL skips it).
        :meth:`score_batch` takes the same arguments and returns a :class:`ScoredBatch` (the rewards plus the
        context, this rank's offset and the rationale-log records), for the trainer.

    Example:
        >>> reward = GraceReward(["contrastive"], [1.0], pool=my_pool)  # doctest: +SKIP
        >>> reward(prompts, completions, completion_ids, query=q, positive=p, negatives=n)  # doctest: +SKIP
    """

    __name__ = "grace"

    def __init__(
        self,
        terms: Sequence[str],
        weights: Sequence[float],
        temperature: float = 0.05,
        hard_negative_weight: float = 1.0,
        anchor_mode: str = "plain",
        anchor_rationale_tokens: int = 32,
        anchor_temperature: float = 0.0,
        pooling: str = "mean",
        end_token_ids: Sequence[int] = (),
        pool: EmbeddingPool | None = None,
        corpus_index: CorpusSearcher | None = None,
        dcg_k: int = 10,
        search_depth: int = 50,
        max_weight_staleness: int | None = None,
        refinement_prefixes: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
        mined_negatives: int = 0,
        mined_negative_max_ratio: float | None = 1.0,
    ) -> None:
        # GraceConfig checks these settings (one rule each, in grace_rl.config); the checks below are for a direct
        # caller without a config, where a bad value would otherwise fail silently (an unknown anchor mode embeds
        # with rationales, a ceiling <= 0 mines nothing) or later and cryptically (a negative count as a search
        # depth). `hard_negative_weight` and `temperature` are checked where the terms read them (RewardContext).
        if len(terms) != len(weights):
            raise ValueError(f"{len(terms)} reward terms {list(terms)} but {len(weights)} weights {list(weights)}.")
        for name in terms:
            get_term(name)
        if anchor_mode not in ANCHOR_MODES:
            raise ValueError(f"anchor_mode must be one of {ANCHOR_MODES}, got {anchor_mode!r}.")
        self.terms = list(terms)
        self.weights = [float(w) for w in weights]
        self.temperature = temperature
        self.hard_negative_weight = float(hard_negative_weight)
        self.anchor_mode = anchor_mode
        self.anchor_rationale_tokens = anchor_rationale_tokens
        self.anchor_temperature = anchor_temperature
        self.pooling = pooling
        self.end_token_ids = {int(t) for t in end_token_ids}
        self.pool = pool
        self.corpus_index = corpus_index
        self.dcg_k = dcg_k
        self.search_depth = search_depth
        self.max_weight_staleness = max_weight_staleness
        self.refinement_prefixes = tuple(float(f) for f in refinement_prefixes)
        if mined_negatives < 0:
            raise ValueError(f"mined_negatives must be >= 0 (0 = off), got {mined_negatives}.")
        self.mined_negatives = int(mined_negatives)
        if mined_negative_max_ratio is not None and not mined_negative_max_ratio > 0:
            raise ValueError(
                f"mined_negative_max_ratio must be > 0 (None = no ceiling), got {mined_negative_max_ratio}."
            )
        self.mined_negative_max_ratio = mined_negative_max_ratio
        self._anchor_texts: list[str] = []
        self._policy_version: int | None = None

    def attach(self, pool: EmbeddingPool, corpus_index: CorpusSearcher | None = None) -> GraceReward:
        """Attach the embedding pool and, for the `dcg` term, the corpus index (after unpickling)."""
        self.pool = pool
        if corpus_index is not None:
            self.corpus_index = corpus_index
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["pool"] = None  # models and actor handles do not travel with the reward
        state["corpus_index"] = None  # nor does the FAISS index
        state["_anchor_texts"] = []
        return state

    def _anchor_requests(self, texts: list[str]) -> list[EmbedRequest]:
        if self.anchor_mode == "plain" or self.anchor_rationale_tokens <= 0:
            return [EmbedRequest(t) for t in texts]
        ids = self.pool.generate_rationales(texts, self.anchor_rationale_tokens, self.anchor_temperature)
        return [EmbedRequest(t, r) for t, r in zip(texts, ids, strict=True)]

    def build_context(
        self,
        queries: Sequence[str],
        completion_ids: Sequence[Sequence[int]],
        positives: Sequence[str],
        negatives: Sequence[Sequence[str]],
        row_keys: Sequence[Any],
    ) -> tuple[RewardContext, dict[str, float]]:
        """Embed rollouts and anchors, and lay out the masks. Returns the context and timing figures."""
        if self.pool is None:
            raise RuntimeError("GraceReward has no embedding pool; call .attach(pool) first.")
        group, firsts = row_groups(row_keys)
        row_pos = [positives[i] for i in firsts]
        row_negs = [list(negatives[i] or []) for i in firsts]
        anchor_texts: list[str] = list(dict.fromkeys(row_pos + [n for negs in row_negs for n in negs]))
        self._anchor_texts = anchor_texts  # the anchors' texts in order (mined negatives extend them)
        index = {t: k for k, t in enumerate(anchor_texts)}
        b, a = len(firsts), len(anchor_texts)
        positive = torch.tensor([index[p] for p in row_pos], dtype=torch.long)  # (B,)
        hard = torch.zeros(b, a, dtype=torch.bool)  # (B, A)
        in_batch = torch.zeros(b, a, dtype=torch.bool)  # (B, A)
        for r in range(b):
            hard[r, [index[n] for n in row_negs[r] if n != row_pos[r]]] = True
            in_batch[r, positive] = True
            in_batch[r, positive[r]] = False  # also clears another row's identical positive
            in_batch[r] &= ~hard[r]
        t0 = time.perf_counter()
        anchor_requests = self._anchor_requests(anchor_texts)
        t1 = time.perf_counter()
        rollout_requests = [EmbedRequest(q, tuple(ids)) for q, ids in zip(queries, completion_ids, strict=True)]
        embeddings = self._embed(rollout_requests + anchor_requests)  # (N + A, H)
        t2 = time.perf_counter()
        n = len(rollout_requests)
        truncated = torch.tensor([len(ids) > 0 and int(ids[-1]) not in self.end_token_ids for ids in completion_ids])
        ctx = RewardContext(
            rollouts=embeddings[:n],
            group=group,
            anchors=embeddings[n:],
            positive=positive,
            hard_negative_mask=hard,
            in_batch_mask=in_batch,
            truncated=truncated,
            temperature=self.temperature,
            hard_negative_weight=self.hard_negative_weight,
        )
        timing = {"anchor_rationale_seconds": t1 - t0, "embed_seconds": t2 - t1}
        if "refinement" in self.terms:  # after the rollouts' embed call, which takes the captured rollouts
            lengths = [self._rationale_length(ids) for ids in completion_ids]
            prefixes = embed_prefixes(self.pool, rollout_requests, lengths, self.refinement_prefixes, self.pooling)
            ctx.extras["prefix_embeddings"] = prefixes  # (N, J, H)
            timing["prefix_embed_seconds"] = time.perf_counter() - t2
        return ctx, timing

    def _rationale_length(self, ids: Sequence[int]) -> int:
        """Tokens before the first end token (all of them for a truncated rationale)."""
        for k, token in enumerate(ids):
            if int(token) in self.end_token_ids:
                return k
        return len(ids)

    def add_mined_negatives(
        self,
        ctx: RewardContext,
        queries: Sequence[str],
        positives: Sequence[str],
        positive_ids: Sequence[Sequence[str] | None] | None,
        keys: Sequence[Any],
    ) -> tuple[RewardContext, list[list[str]], dict[str, float]]:
        """The context with `mined_negatives` corpus documents per row added to the anchors as that row's hard
        negatives (see the class docstring); also returns each row's mined ids and timing / size metrics."""
        start = time.perf_counter()
        _, firsts = row_groups(keys)
        clean = torch.nan_to_num(ctx.rollouts.float(), nan=0.0, posinf=0.0, neginf=0.0)  # (N, H)
        sums = torch.zeros(len(firsts), clean.size(1)).index_add_(0, ctx.group, clean)  # (B, H)
        row_queries = torch.nn.functional.normalize(sums, dim=-1)  # (B, H): the row's mean rollout embedding
        corpus = self.corpus_index.corpus
        golds = []
        for i in firsts:
            ids = positive_ids[i] if positive_ids is not None else None
            golds.append([str(d) for d in ids] if ids else corpus.ids_with_text(positives[i]))
        excluded = [{queries[i], positives[i]} for i in firsts]
        ceilings = None
        if self.mined_negative_max_ratio is not None:
            positive_sims = (row_queries * ctx.anchors[ctx.positive].float()).sum(dim=-1)  # (B,)
            ceilings = (self.mined_negative_max_ratio * positive_sims).tolist()
        depth = max(self.search_depth, self.mined_negatives + max(len(g) for g in golds) + 8)
        mined = mine_negatives(
            self.corpus_index, row_queries, golds, excluded, self.mined_negatives, depth=depth, max_scores=ceilings
        )
        t_mined = time.perf_counter()
        texts = [[corpus.texts[corpus.row_of(d)] for d in ids] for ids in mined]
        known = set(self._anchor_texts)
        new = list(dict.fromkeys(t for row in texts for t in row if t not in known))
        anchor_index = {t: k for k, t in enumerate(self._anchor_texts + new)}  # text -> anchor row (texts are unique)
        anchors = ctx.anchors
        if new:
            anchors = torch.cat([anchors, self._embed(self._anchor_requests(new)).to(anchors.dtype)])  # (A', H)
        b, a = len(firsts), anchors.size(0)
        hard = torch.zeros(b, a, dtype=torch.bool)
        hard[:, : ctx.anchors.size(0)] = ctx.hard_negative_mask
        in_batch = torch.zeros(b, a, dtype=torch.bool)
        in_batch[:, : ctx.anchors.size(0)] = ctx.in_batch_mask
        for r, row in enumerate(texts):
            hard[r, [anchor_index[t] for t in row]] = True
            in_batch[r] &= ~hard[r]
        self._anchor_texts = self._anchor_texts + new
        ctx = dataclasses.replace(ctx, anchors=anchors, hard_negative_mask=hard, in_batch_mask=in_batch)
        metrics = {
            "mined_negatives_per_row": sum(len(m) for m in mined) / max(b, 1),
            "mined_search_seconds": t_mined - start,
            "mined_embed_seconds": time.perf_counter() - t_mined,
        }
        return ctx, mined, metrics

    def dcg(
        self,
        rollouts: torch.Tensor,
        positives: Sequence[str],
        positive_ids: Sequence[Sequence[str] | None] | None,
        keys: Sequence[Any],
    ):
        """nDCG@`dcg_k` of each rollout's gold documents when its `(N, H)` embedding searches the corpus index."""
        golds: dict[Any, list[str]] = {}
        for i, key in enumerate(keys):
            if key not in golds:
                ids = positive_ids[i] if positive_ids is not None else None
                golds[key] = resolve_gold(self.corpus_index, ids, positives[i], where=f"row {key!r}")
        return score_dcg(self.corpus_index, rollouts, [golds[k] for k in keys], self.dcg_k, self.search_depth)

    def _embed(self, requests: list[EmbedRequest]) -> torch.Tensor:
        """`(N, H)` embeddings from the pool, refused when computed with weights older than allowed."""
        result = self.pool.embed_with_version(requests, self.pooling)
        if self.max_weight_staleness is not None and self._policy_version is not None:
            stale = result.staleness(self._policy_version)
            if stale > self.max_weight_staleness:
                raise StaleEmbeddingsError(
                    f"Embeddings computed with weights {stale} optimizer steps old (oldest version "
                    f"{int(result.versions.min())}, trainer at step {self._policy_version}); max_weight_staleness="
                    f"{self.max_weight_staleness}. Sync weights more often (weight_sync_every) or allow more "
                    "staleness (max_weight_staleness)."
                )
        return result.vectors

    def score(
        self, ctx: RewardContext, rationales: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every configured term and the weighted total: `(N,)` each, NaN for degenerate rollouts (empty rationale,
        non-finite embedding), which are left out of every term (see :mod:`reward.degenerate`)."""
        return score_without_degenerate(ctx, degenerate_rollouts(ctx.rollouts, rationales), self._score_terms)

    def _score_terms(self, ctx: RewardContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = {name: get_term(name)(ctx).float() for name in self.terms}
        total = sum(w * values[name] for name, w in zip(self.terms, self.weights, strict=True))
        return total, values

    def __call__(self, *args: Any, **kwargs: Any) -> list[float | None]:
        """TRL's reward interface: :meth:`score_batch`'s rewards (this rank's slice)."""
        return self.score_batch(*args, **kwargs).rewards

    def score_batch(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]],
        query: Sequence[str],
        positive: Sequence[str],
        negatives: Sequence[Sequence[str]] | None = None,
        prompt_id: Sequence[Any] | None = None,
        direction: Sequence[str] | None = None,
        positive_ids: Sequence[Sequence[str] | None] | None = None,
        log_metric: Any = None,
        trainer_state: Any = None,
        **_: Any,
    ) -> ScoredBatch:
        """Score the generation batch; the arguments are TRL's reward keyword arguments (the dataset columns)."""
        # Score the global generation batch (in-batch negatives and groups span all ranks); return this rank's slice.
        local_n, self._policy_version = len(query), getattr(trainer_state, "global_step", None)
        columns, lo = gather_rollouts(
            completions, completion_ids, query, positive, negatives, prompt_id, direction, positive_ids
        )
        completions, completion_ids, query, positive, negatives, prompt_id, direction, positive_ids = columns
        negatives = negatives if negatives is not None else [[] for _ in query]
        keys = list(prompt_id) if prompt_id is not None else list(query)
        ctx, timing = self.build_context(query, completion_ids, positive, negatives, keys)
        mined = None
        if self.mined_negatives and self.corpus_index is not None:
            ctx, mined, mined_metrics = self.add_mined_negatives(ctx, query, positive, positive_ids, keys)
            timing.update(mined_metrics)
        gold_ranks = None
        if "dcg" in self.terms and self.corpus_index is not None:
            dcg = self.dcg(
                torch.nan_to_num(ctx.rollouts, nan=0.0, posinf=0.0, neginf=0.0), positive, positive_ids, keys
            )
            ctx.extras["dcg"], gold_ranks = dcg.values, dcg.gold_ranks
            timing.update(dcg.metrics)
        total, values = self.score(ctx, [completion_text(c) for c in completions])
        degenerate = int(torch.isnan(total).sum())
        if log_metric is not None:
            for name, v in values.items():
                log_metric(f"grace/{name}", float(torch.nanmean(v)))
            log_metric("grace/degenerate_rollouts", float(degenerate))
            log_metric("grace/truncated_frac", float(ctx.truncated.float().mean()))
            for name, seconds in timing.items():
                log_metric(f"grace/{name}", seconds)
        if degenerate:
            logger.warning(
                "%d degenerate rollout(s) (empty rationale or non-finite embedding): reward None, advantage 0.",
                degenerate,
            )
        prefix = prefix_scores(ctx) if "prefix_embeddings" in ctx.extras else None  # (N, J) contrastive scores
        records = [
            {
                "prompt_id": keys[i],
                "prompt": query[i],
                **({"direction": direction[i]} if direction is not None else {}),
                "rationale": completion_text(completions[i]),
                "rationale_tokens": len(completion_ids[i]),
                "truncated": bool(ctx.truncated[i]),
                "rewards": {name: _clean(values[name][i]) for name in self.terms},
                **({"prefix_scores": [_clean(v) for v in prefix[i]]} if prefix is not None else {}),
                "reward": _clean(total[i]),
                **({"gold_rank": gold_ranks[i]} if gold_ranks is not None else {}),
                **({"mined_negatives": mined[int(ctx.group[i])]} if mined is not None else {}),
            }
            for i in range(lo, lo + local_n)
        ]
        rewards = [None if math.isnan(v) else float(v) for v in total[lo : lo + local_n].tolist()]
        return ScoredBatch(rewards=rewards, context=ctx, offset=lo, records=records)


def _clean(value: torch.Tensor) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None
