"""The DCG reward's retrieval step: resolve each row's gold documents, search the corpus index, score nDCG@k.

The reward talks to the index only through :class:`CorpusSearcher` (`rollout.CorpusIndex` implements it), so
this module holds no FAISS code and the ranking math stays in :mod:`reward.dcg`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from reward.dcg import first_gold_rank, ndcg_scores


@runtime_checkable
class CorpusSearcher(Protocol):
    """What the DCG reward needs from a corpus index (`corpus` answers `row_of(id)` and `ids_with_text`)."""

    corpus: Any

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-`k` documents per `(Q, H)` query: `(scores (Q, k), doc id lists best first)`."""
        ...

    def note_used(self, doc_ids: Iterable[str]) -> None:
        """Documents that were gold or retrieved (a refresh policy may re-embed them first)."""
        ...


def resolve_gold(index: Any, positive_ids: Sequence[str] | None, positive: str, where: str = "row") -> list[str]:
    """The row's gold document ids: its `positive_ids` if given, else the corpus documents whose text is exactly the
    row's positive. Fails (naming the row and the fix) when none is found or an id is not in the corpus."""
    corpus = index.corpus
    if positive_ids:
        missing = [d for d in positive_ids if corpus.row_of(str(d)) is None]
        if missing:
            raise ValueError(
                f"{where}: positive_ids {missing} are not in the corpus ({corpus.source}); fix the ids or the corpus."
            )
        return [str(d) for d in positive_ids]
    found = corpus.ids_with_text(positive)
    if not found:
        raise ValueError(
            f"{where}: no positive_ids and no corpus document has the positive's text {positive[:80]!r}; add "
            f"positive_ids to the row or the positive to the corpus ({corpus.source})."
        )
    return found


@dataclass
class DcgResult:
    """nDCG@k per rollout (`values (N,)`), the 1-based rank of each rollout's first gold document within the search
    depth (`None` = not retrieved), and batch metrics."""

    values: torch.Tensor
    gold_ranks: list[int | None]
    metrics: dict[str, float]


def score_dcg(
    index: CorpusSearcher, rollouts: torch.Tensor, golds: Sequence[Sequence[str]], k: int, depth: int
) -> DcgResult:
    """Search the index with each `(N, H)` rollout embedding to `depth` and score nDCG@k of its gold set.

    Metrics: `dcg_recall_at_depth` (fraction of rollouts with a gold document in the top `depth`),
    `dcg_mrr` (mean reciprocal rank of the first gold, 0 when absent), `dcg_search_seconds`.
    """
    start = time.perf_counter()
    _, ranked = index.search(rollouts, depth)  # N lists of doc ids, best first
    seconds = time.perf_counter() - start
    values = ndcg_scores(ranked, [set(g) for g in golds], k)  # (N,)
    ranks = [first_gold_rank(r, set(g)) for r, g in zip(ranked, golds, strict=True)]
    index.note_used({d for r in ranked for d in r[:k]} | {d for g in golds for d in g})
    n = max(len(ranks), 1)
    return DcgResult(
        values=values,
        gold_ranks=ranks,
        metrics={
            "dcg_recall_at_depth": sum(r is not None for r in ranks) / n,
            "dcg_mrr": sum(1.0 / r for r in ranks if r is not None) / n,
            "dcg_search_seconds": seconds,
        },
    )


def mine_negatives(
    index: CorpusSearcher,
    queries: torch.Tensor,
    golds: Sequence[Iterable[str]],
    exclude_texts: Sequence[Iterable[str]],
    k: int,
    depth: int | None = None,
    max_scores: Sequence[float] | None = None,
) -> list[list[str]]:
    """ANCE-style hard negatives: per `(B, H)` query, the `k` nearest corpus documents that are neither gold nor
    one of the query's excluded texts (its own text and its positive's), best first, one per distinct text; with
    `max_scores`, only documents scoring at most that (positive-aware mining against false negatives).

    Args:
        index (`CorpusSearcher`):
            the corpus index (its vectors are as fresh as its partial refresh keeps them).
        queries (`torch.Tensor`):
            `(B, H)` L2-normalised query embeddings.
        golds (`Sequence[Iterable[str]]`):
            per query, the document ids that must not be negatives.
        exclude_texts (`Sequence[Iterable[str]]`):
            per query, texts whose documents must not be negatives (exact match).
        k (`int`):
            negatives per query (>= 1); fewer come back when the search depth holds fewer eligible documents.
        depth (`int`, *optional*):
            documents searched per query; default `k` plus the largest gold set plus 8 (room for what is skipped).
        max_scores (`Sequence[float]`, *optional*):
            per query, the highest index score (inner product) a negative may have, e.g. the query's similarity to its
            positive (NV-Retriever's TopK-PercPos uses 0.95 x it): a document closer to the query than its positive
            is more likely an unlabelled positive than a negative.

    Returns:
        Per query, up to `k` document ids.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    golds = [set(g) for g in golds]
    excluded = [set(t) for t in exclude_texts]
    if not len(golds) == len(excluded) == queries.size(0):
        raise ValueError(f"{queries.size(0)} queries but {len(golds)} gold sets and {len(excluded)} excluded sets.")
    corpus = index.corpus
    depth = depth if depth is not None else k + max((len(g) for g in golds), default=0) + 8
    scores, ranked = index.search(queries, depth)  # (B, depth), B lists of doc ids, best first (depth clamped)
    ceilings = [math.inf] * len(ranked) if max_scores is None else [float(m) for m in max_scores]
    mined = []
    for ids, row_scores, ceiling, gold, skip in zip(ranked, scores, ceilings, golds, excluded, strict=True):
        chosen, seen = [], set(skip)
        for doc, score in zip(ids, row_scores):
            text = corpus.texts[corpus.row_of(doc)]
            if doc in gold or text in seen or score > ceiling:
                continue
            chosen.append(doc)
            seen.add(text)
            if len(chosen) == k:
                break
        mined.append(chosen)
    index.note_used({d for m in mined for d in m})
    return mined
