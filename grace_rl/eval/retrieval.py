"""Offline retrieval evaluation: nDCG@10, MRR@10 and recall@100 of a FAISS inner-product search.

File readers (corpus, queries, qrels as JSONL or TSV) are kept apart from the metric math, which works on ranked id
lists and a qrels mapping only, so it can be checked by hand and against `pytrec_eval`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.errors import UserError
from grace_rl.run_files import check_regular_file, iter_jsonl
from reward.dcg import ndcg_at_k
from rollout.corpus import load_corpus

logger = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]
SEARCH_DEPTH = 100  # documents retrieved per query (recall@100 needs 100)

_QREL_QUERY_KEYS = ("query-id", "query_id", "qid")
_QREL_DOC_KEYS = ("corpus-id", "corpus_id", "doc_id", "docid", "pid")
_QREL_SCORE_KEYS = ("score", "relevance", "rel", "label")


# --------------------------------------------------------------------------------------------------- metric math


def reciprocal_rank_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    """`1 / rank` of the first relevant document (relevance > 0) within the top `k`, else 0."""
    for i, doc in enumerate(ranked[:k]):
        if rels.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents (relevance > 0) found in the top `k` (0 when none is relevant)."""
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def retrieval_metrics(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, MRR@10 and recall@100 (x100) over the queries of `qrels` that have a relevant document.

    Args:
        run (`Mapping[str, Sequence[str]]`):
            query id -> document ids, best first (a query missing from `run` scores 0).
        qrels (`Mapping[str, Mapping[str, int]]`):
            query id -> {document id: relevance}.

    Returns:
        `{"n_queries", "ndcg@10", "mrr@10", "recall@100"}`.
    """
    judged = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    if not judged:
        raise UserError("qrels has no query with a relevant document (relevance > 0); nothing to evaluate.")
    sums = {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    for q in judged:
        ranked, rels = list(run.get(q, [])), qrels[q]
        sums["ndcg@10"] += ndcg_at_k(ranked, rels, 10)
        sums["mrr@10"] += reciprocal_rank_at_k(ranked, rels, 10)
        sums["recall@100"] += recall_at_k(ranked, rels, 100)
    return {"n_queries": len(judged), **{name: 100 * v / len(judged) for name, v in sums.items()}}


def search_inner_product(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search (FAISS `IndexFlatIP`): `(Q, k)` scores and `(Q, k)` document rows.

    With L2-normalised embeddings the inner product is the cosine similarity.
    """
    import faiss

    if queries.ndim != 2 or docs.ndim != 2 or queries.shape[1] != docs.shape[1]:
        raise UserError(f"Need (Q, H) queries and (D, H) documents, got {queries.shape} and {docs.shape}.")
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs, dtype=np.float32))  # (D, H)
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, docs.shape[0]))  # (Q, k)
    return scores, rows


# ---------------------------------------------------------------------------------------------------- file readers


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".json", ".ndjson")


def _first(row: Mapping[str, Any], keys: Sequence[str], path: Path, n: int, what: str) -> Any:
    for key in keys:
        if key in row and row[key] is not None:
            return row[key]
    raise UserError(f"{path}: row {n} has no {what} field; expected one of {list(keys)} (got {sorted(row)}).")


def read_texts(path: str | Path) -> dict[str, str]:
    """Corpus or queries as `{id: text}`, read by the training corpus reader (:func:`rollout.corpus.load_corpus`):
    BEIR JSONL rows `{"_id" | "id", "text", "title"?}` (a title is prepended to the text, as mteb does), TSV
    `id<TAB>text` lines optionally under a header row naming the `id`/`_id`, `text` and `title` columns, or a saved
    HF dataset."""
    corpus = load_corpus(path)
    return dict(zip(corpus.doc_ids, corpus.texts, strict=True))


def _qrel_lines(path: Path) -> Iterator[tuple[int, str, str, Any]]:
    """`(line, query id, document id, relevance)` of every judgement line."""
    if _is_jsonl(path):
        for n, row in iter_jsonl(path):
            q = _first(row, _QREL_QUERY_KEYS, path, n, "query id")
            d = _first(row, _QREL_DOC_KEYS, path, n, "document id")
            yield n, q, d, _first(row, _QREL_SCORE_KEYS, path, n, "relevance")
        return
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        fields = line.split()
        if not fields or (n == 1 and fields[0] in _QREL_QUERY_KEYS):
            continue  # blank, or the header
        if len(fields) not in (3, 4):
            raise UserError(
                f"{path}: line {n} has {len(fields)} fields; qrels lines are 'query-id corpus-id score' (BEIR) or "
                "'qid 0 docid relevance' (TREC)."
            )
        yield n, fields[0], fields[-2], fields[-1]


def read_qrels(path: str | Path) -> Qrels:
    """Relevance judgements: query id -> {document id: relevance}.

    Accepted: BEIR TSV (`query-id corpus-id score` with or without that header), TREC qrels
    (`qid iteration docid relevance`, whitespace-separated) or JSONL rows `{"query-id", "corpus-id", "score"}`.
    """
    path = Path(path)
    check_regular_file(path, "--qrels")
    qrels: Qrels = {}
    for n, q, d, score in _qrel_lines(path):
        try:
            qrels.setdefault(str(q), {})[str(d)] = int(float(score))
        except ValueError as err:
            raise UserError(f"{path}: line {n}: relevance {score!r} is not a number.") from err
    if not qrels:
        raise UserError(f"{path} holds no judgements.")
    return qrels


# ------------------------------------------------------------------------------------------------------ evaluation


def evaluate_retrieval(
    encoder,
    corpus_path: str | Path,
    queries_path: str | Path,
    qrels_path: str | Path,
    limit_queries: int | None = None,
    **encode_kwargs: Any,
) -> dict[str, Any]:
    """Embed corpus and queries with `encoder` (a rationale each, as `encode` does), search the corpus with FAISS
    and score the ranking: `{"task": "retrieval", "n_queries", "n_docs", "ndcg@10", "mrr@10", "recall@100"}` (x100).
    """
    corpus, queries, qrels = read_texts(corpus_path), read_texts(queries_path), read_qrels(qrels_path)
    judged = [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]
    missing = [q for q in judged if q not in queries]
    if missing:
        logger.warning(
            "%d judged query id(s) are not in %s (e.g. %r); they are skipped.", len(missing), queries_path, missing[0]
        )
    qids = [q for q in judged if q in queries][:limit_queries]
    if not qids:
        raise UserError(f"No query of {qrels_path} with a relevant document is in {queries_path}; check the ids.")
    unknown_docs = {d for q in qids for d, r in qrels[q].items() if r > 0 and d not in corpus}
    if unknown_docs:
        logger.warning(
            "%d relevant document id(s) are not in %s; they can never be retrieved.", len(unknown_docs), corpus_path
        )
    doc_ids = list(corpus)
    doc_emb = encoder.encode([corpus[d] for d in doc_ids], **encode_kwargs)  # (D, H)
    query_emb = encoder.encode([queries[q] for q in qids], **encode_kwargs)  # (Q, H)
    _, rows = search_inner_product(query_emb, doc_emb, SEARCH_DEPTH)  # (Q, k)
    run = {q: [doc_ids[r] for r in row if r >= 0] for q, row in zip(qids, rows, strict=True)}
    metrics = retrieval_metrics(run, {q: qrels[q] for q in qids})
    return {
        "task": "retrieval",
        "n_queries": metrics.pop("n_queries"),
        "n_docs": len(doc_ids),
        **{name: round(v, 2) for name, v in metrics.items()},
    }
