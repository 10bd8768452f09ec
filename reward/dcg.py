"""Pure ranking math for the DCG reward (Search-R3 style): nDCG@k of a gold document set in a ranked id list.

Binary relevance (graded judgements are accepted too, for retrieval evaluation); the document at rank `r`
(1-based) gains `1 / log2(r + 1)` if it is gold. The ideal DCG puts
`min(|gold|, k)` gold documents at ranks `1..min(|gold|, k)`, so nDCG@k is in `[0, 1]` and is 1 exactly when
the top `min(|gold|, k)` results are all gold.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import torch


def rank_gain(rank: int) -> float:
    """Gain of a relevant document at 1-based `rank`: `1 / log2(rank + 1)`."""
    if rank < 1:
        raise ValueError(f"ranks are 1-based, got {rank}.")
    return 1.0 / math.log2(rank + 1)


def ideal_dcg(num_gold: int, k: int) -> float:
    """DCG of a perfect ranking: `sum_{r=1}^{min(num_gold, k)} 1 / log2(r + 1)`."""
    return sum(rank_gain(r) for r in range(1, min(num_gold, k) + 1))


def ndcg_at_k(ranked: Sequence[str], gold: Collection[str] | Mapping[str, float], k: int) -> float:
    """nDCG@k of `gold` in `ranked` (best first): the one nDCG of the toolkit, used by the `dcg` reward and by
    `grace-rl eval retrieval` (where it matches trec_eval's `ndcg_cut`).

    Args:
        ranked (`Sequence[str]`):
            Document ids, best first. A document counts once, at its first occurrence.
        gold (`Collection[str]` or `Mapping[str, float]`):
            The relevant ids (gain 1 each), or graded judgements `{id: relevance}` (linear gain; relevance <= 0 counts
            as not relevant).
        k (`int`):
            Cutoff (>= 1).

    Returns:
        `float`: DCG of the top `k` over the DCG of the ideal top `k`, in [0, 1].

    Example:
        >>> ndcg_at_k(["a", "b", "c"], {"c"}, k=3)  # gold at rank 3: 1/log2(4) / 1
        0.5
        >>> ndcg_at_k(["x", "y"], {"c"}, k=2)
        0.0
        >>> round(ndcg_at_k(["a", "b", "c"], {"b": 1, "z": 0}, k=10), 4)  # 1/log2(3)
        0.6309
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    gains = dict(gold) if isinstance(gold, Mapping) else dict.fromkeys(gold, 1.0)
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    if not ideal:
        raise ValueError(
            f"nDCG needs at least one relevant document id (relevance > 0); got an empty gold set {gold!r}."
        )
    seen: set[str] = set()
    dcg = 0.0
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in gains and doc not in seen:
            seen.add(doc)
            dcg += max(gains[doc], 0.0) * rank_gain(rank)
    return dcg / sum(g * rank_gain(r) for r, g in enumerate(ideal, start=1))


def first_gold_rank(ranked: Sequence[str], gold: Collection[str]) -> int | None:
    """1-based rank of the first gold document in `ranked`, or `None` when none was retrieved."""
    return next((rank for rank, doc in enumerate(ranked, start=1) if doc in gold), None)


def ndcg_scores(ranked: Sequence[Sequence[str]], golds: Sequence[Collection[str]], k: int) -> torch.Tensor:
    """nDCG@k per rollout: `ranked[i]` scored against `golds[i]`. Returns `(N,)` float32."""
    if len(ranked) != len(golds):
        raise ValueError(f"{len(ranked)} rankings but {len(golds)} gold sets.")
    return torch.tensor([ndcg_at_k(r, g, k) for r, g in zip(ranked, golds, strict=True)], dtype=torch.float32)
