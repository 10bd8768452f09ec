"""The evaluation protocol for retrieval: nDCG@10 and recall@100 with bootstrap intervals over queries.

The dev set is the SciFact split shipped in `data/scifact/` (:mod:`grace_rl.eval.scifact`: 20% of the judged train
claims by a hash of the id; no dev claim's gold abstract is a training positive; a 500-document CPU corpus of every
dev gold abstract plus a seeded sample). Every row is scored on the same queries and documents:

- **BM25** (`bm25s`, English stop words, no stemming) and a **frozen sentence-transformers encoder** (e.g.
  all-MiniLM-L6-v2): reference rows that need no training;
- **policy rows**: a GRACE encoder embeds documents as plain text (budget 0, inside the rationale template, cut to
  `doc_max_tokens` tokens) and queries with a greedy rationale at each budget (one generation at the largest budget,
  pooled at every prefix: :meth:`rollout.embedder.Embedder.encode_budgets`);
- **writer + frozen encoder rows**: a policy writes each query's greedy rationale, the frozen encoder embeds
  `query + " " + rationale` (documents: plain text): the untrained policy, or a run trained with `reward_embedder`.

Intervals: 95% percentile bootstrap over queries (:func:`mean_interval`); differences between two rows are *paired*
(:func:`paired_mean_interval`: both rows are averaged over the same resampled queries).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.errors import UserError
from grace_rl.eval.retrieval import read_qrels, read_texts, recall_at_k, search_inner_product
from grace_rl.eval.stats import Interval, _percentiles, bootstrap_indices
from reward.dcg import ndcg_at_k

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@100")
DEPTH = 100


# --------------------------------------------------------------------------------------------------- the dev set


@dataclass(frozen=True)
class RetrievalDevSet:
    """Queries, documents and judgements of a retrieval dev set (documents and queries in file order)."""

    name: str
    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]
    query_ids: tuple[str, ...]
    query_texts: tuple[str, ...]
    qrels: Mapping[str, Mapping[str, int]]

    @property
    def digest(self) -> str:
        """sha256 prefix over ids and texts: a cache key part that changes when any query or document does."""
        h = hashlib.sha256()
        for part in (*self.doc_ids, *self.doc_texts, *self.query_ids, *self.query_texts):
            h.update(part.encode("utf-8") + b"\0")
        return h.hexdigest()[:16]

    def info(self) -> dict[str, Any]:
        judgements = sum(sum(1 for r in self.qrels[q].values() if r > 0) for q in self.query_ids)
        return {
            "name": self.name,
            "queries": len(self.query_ids),
            "documents": len(self.doc_ids),
            "judgements": judgements,
            "digest": self.digest,
        }


def load_devset(data_dir: str | Path = "data/scifact", limit_queries: int | None = None) -> RetrievalDevSet:
    """The dev split in `data_dir` (`corpus.jsonl`, `dev_queries.jsonl`, `dev_qrels.tsv`; see
    `scripts/build_scifact_data.py`): the judged queries (with a relevant document in the corpus), file order."""
    data = Path(data_dir)
    missing = [n for n in ("corpus.jsonl", "dev_queries.jsonl", "dev_qrels.tsv") if not (data / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{data} lacks {missing}; build it with `python scripts/build_scifact_data.py --beir BEIR_SCIFACT_DIR "
            f"--out {data}`."
        )
    corpus, queries = read_texts(data / "corpus.jsonl"), read_texts(data / "dev_queries.jsonl")
    qrels = read_qrels(data / "dev_qrels.tsv")
    qids = [q for q in queries if any(r > 0 and d in corpus for d, r in qrels.get(q, {}).items())]
    if limit_queries is not None:
        qids = qids[:limit_queries]
    if not qids:
        raise UserError(f"{data}: no query of dev_queries.jsonl has a relevant document in corpus.jsonl.")
    return RetrievalDevSet(
        name=data.name,
        doc_ids=tuple(corpus),
        doc_texts=tuple(corpus.values()),
        query_ids=tuple(qids),
        query_texts=tuple(queries[q] for q in qids),
        qrels={q: dict(qrels[q]) for q in qids},
    )


# ------------------------------------------------------------------------------------------------- metrics + intervals


def per_query_metrics(
    ranked: Sequence[Sequence[str]], qrels: Mapping[str, Mapping[str, int]], query_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """nDCG@10 and recall@100 (x100) of each query's ranking: `{metric: (Q,)}`."""
    if len(ranked) != len(query_ids):
        raise ValueError(f"{len(ranked)} rankings for {len(query_ids)} queries.")
    ndcg = [100 * ndcg_at_k(list(r), qrels[q], 10) for r, q in zip(ranked, query_ids, strict=True)]
    recall = [100 * recall_at_k(list(r), qrels[q], DEPTH) for r, q in zip(ranked, query_ids, strict=True)]
    return {"ndcg@10": np.asarray(ndcg, dtype=np.float64), "recall@100": np.asarray(recall, dtype=np.float64)}


def mean_interval(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """The mean of per-query `values` with a percentile bootstrap interval: `n_boot` resamples of the queries with
    replacement (:func:`grace_rl.eval.protocol.bootstrap_indices`), the central `level` of their means."""
    values = np.asarray(values, dtype=np.float64)  # (Q,)
    idx = bootstrap_indices(len(values), n_boot, seed)  # (B, Q)
    low, high = _percentiles(values[idx].mean(axis=1), level)
    return Interval(float(values.mean()), low, high)


def paired_mean_interval(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """mean(a) - mean(b) over the same queries with a paired bootstrap interval (each resample of queries scores
    both rows, so which queries were drawn cancels in the difference)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired rows need the same queries, got {a.shape} and {b.shape}.")
    return mean_interval(a - b, n_boot, seed, level)


# ------------------------------------------------------------------------------------------------------- rankers


def search(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: Sequence[str]) -> list[list[str]]:
    """Exact inner-product search (FAISS): each query's top-`DEPTH` document ids, best first."""
    _, rows = search_inner_product(np.asarray(query_emb, np.float32), np.asarray(doc_emb, np.float32), DEPTH)
    return [[doc_ids[r] for r in row if r >= 0] for row in rows]


def bm25_rankings(devset: RetrievalDevSet) -> list[list[str]]:
    """BM25 (`bm25s`, its default Lucene variant, k1 1.5, b 0.75; English stop words, no stemming)."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(devset.doc_texts), stopwords="en", show_progress=False), show_progress=False)
    k = min(DEPTH, len(devset.doc_ids))
    tokens = bm25s.tokenize(list(devset.query_texts), stopwords="en", show_progress=False)
    rows, _ = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)  # (Q, k) document rows
    return [[devset.doc_ids[int(r)] for r in row] for row in rows]


# --------------------------------------------------------------------------------------------------------- rows


@dataclass
class RowResult:
    """One protocol row at one budget: per-query metrics (hidden from the table) and rationale tokens used."""

    label: str
    budget: int
    per_query: dict[str, np.ndarray]
    mean_rationale_tokens: float = 0.0
    kind: str = "policy"

    def summary(self, n_boot: int, seed: int) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "kind": self.kind, "budget": self.budget}
        for name in METRICS:
            iv = mean_interval(self.per_query[name], n_boot, seed)
            out[name] = round(iv.point, 2)
            out[f"{name}_ci"] = [round(iv.low, 2), round(iv.high, 2)]
        out["mean_rationale_tokens"] = round(self.mean_rationale_tokens, 2)
        return out


def _cut(ids: Sequence[int], budget: int) -> tuple[int, ...]:
    return tuple(ids[:budget])


def writer_rows(
    label: str,
    devset: RetrievalDevSet,
    rationale_ids: Sequence[Sequence[int]],
    budgets: Sequence[int],
    embed_queries: Callable[[list[tuple[str, tuple[int, ...]]]], np.ndarray],
    doc_emb: np.ndarray,
    kind: str,
) -> list[RowResult]:
    """Rows of a frozen embedder fed each query with its greedy rationale cut at each budget (prefixes of one
    generation at the largest budget: a greedy rationale's first T tokens are the greedy rationale of budget T)."""
    out = []
    for b in budgets:
        cut = [_cut(ids, b) for ids in rationale_ids]
        q = embed_queries(list(zip(devset.query_texts, cut, strict=True)))
        ranked = search(q, doc_emb, devset.doc_ids)
        used = float(np.mean([len(c) for c in cut])) if cut else 0.0
        out.append(RowResult(label, b, per_query_metrics(ranked, devset.qrels, devset.query_ids), used, kind))
    return out


def rows_to_record(rows: Sequence[RowResult]) -> list[dict[str, Any]]:
    """Rows with their per-query values as JSON-ready dicts (the row cache of `grace-rl eval retrieval-protocol`)."""
    return [
        {
            "label": r.label,
            "budget": r.budget,
            "kind": r.kind,
            "mean_rationale_tokens": r.mean_rationale_tokens,
            "per_query": {k: v.tolist() for k, v in r.per_query.items()},
        }
        for r in rows
    ]


def rows_from_record(record: Sequence[dict[str, Any]], label: str) -> list[RowResult]:
    """The rows of :func:`rows_to_record`, relabelled `label`."""
    return [
        RowResult(
            label,
            int(r["budget"]),
            {k: np.asarray(v, dtype=np.float64) for k, v in r["per_query"].items()},
            float(r["mean_rationale_tokens"]),
            r["kind"],
        )
        for r in record
    ]
