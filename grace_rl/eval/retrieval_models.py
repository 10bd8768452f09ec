"""Running the retrieval protocol's rows: models are loaded here, the math is in
:mod:`grace_rl.eval.retrieval_protocol`.

`grace-rl eval retrieval-protocol` calls :func:`run_retrieval_protocol`. Each model's rows are cached as JSON
(:mod:`grace_rl.eval.protocol_cache` keys: the model's fingerprint, the dev set's digest, the budgets, the instruction,
the document cut), so adding a row recomputes only that row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.errors import UserError
from grace_rl.eval.protocol import _run_config, run_instruction, training_budget
from grace_rl.eval.protocol_cache import cache_key, load_sweep, save_sweep
from grace_rl.eval.retrieval_protocol import (
    METRICS,
    RetrievalDevSet,
    RowResult,
    bm25_rankings,
    paired_mean_interval,
    per_query_metrics,
    rows_from_record,
    rows_to_record,
    search,
    writer_rows,
)
from grace_rl.prompts import DEFAULT_INSTRUCTION

logger = logging.getLogger(__name__)


@dataclass
class RetrievalSettings:
    """How the retrieval protocol runs (budgets of the query-side rationale, the documents' token cut, intervals)."""

    budgets: tuple[int, ...] = (0, 16, 32)
    doc_max_tokens: int = 128
    n_boot: int = 1000
    seed: int = 0
    batch_size: int = 16
    cache_dir: Path | None = None
    extra_instructions: tuple[str, ...] = ()
    versus: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def cached_rows(settings: RetrievalSettings, key: dict[str, Any], label: str, compute) -> list[RowResult]:
    """`label`'s rows from the cache under `key` (:func:`row_key`), else `compute()`d and cached."""
    record = load_sweep(settings.cache_dir, key) if settings.cache_dir else None
    if record is not None:
        logger.info("%s: cached rows (%.0f s when computed)", label, record["seconds"])
        return rows_from_record(record["rows"], label)
    start = time.perf_counter()
    rows = compute()
    seconds = time.perf_counter() - start
    logger.info("%s: %.0f s", label, seconds)
    if settings.cache_dir:
        save_sweep(settings.cache_dir, {"key": key, "seconds": seconds, "rows": rows_to_record(rows)})
    return rows


def row_key(model: str, devset: RetrievalDevSet, settings: RetrievalSettings, **extra: Any) -> dict[str, Any]:
    """The cache key of `model`'s rows (its weights' fingerprint, the dev set, budgets, document cut, `extra`)."""
    key = cache_key(model, devset.digest, settings.budgets, extra.pop("instruction", None))
    return {**key, "task": "retrieval", "doc_max_tokens": settings.doc_max_tokens, **extra}


def policy_rows(
    encoder, label: str, devset: RetrievalDevSet, settings: RetrievalSettings, kind: str = "policy"
) -> list[RowResult]:
    """A GRACE encoder's rows: documents as plain text (budget 0, cut to `doc_max_tokens`), queries with the greedy
    rationale at each budget; a frozen-embedder run's policy writes and its frozen model embeds."""
    from rollout.embedder import Embedder, EmbedRequest

    budgets = settings.budgets
    queries = list(devset.query_texts)
    if encoder.frozen_embedder is not None:
        frozen = encoder.frozen_embedder
        docs = frozen.embed([EmbedRequest(t) for t in devset.doc_texts]).numpy()
        ids = encoder.embedder.generate_rationales(queries, max(budgets), 0.0, batch_size=settings.batch_size)

        def embed(items):
            return frozen.embed([EmbedRequest(t, r) for t, r in items]).numpy()

        return writer_rows(label, devset, ids, budgets, embed, docs, kind="writer+frozen")
    embedder = encoder.embedder
    doc_embedder = Embedder(  # the same model, documents cut to doc_max_tokens
        encoder.model,
        encoder.tokenizer,
        embedder.messages_fn,
        max_text_tokens=settings.doc_max_tokens,
        end_token_ids=embedder.end_ids,
    )
    requests = [EmbedRequest(t) for t in devset.doc_texts]
    docs = doc_embedder.embed(requests, encoder.pooling, settings.batch_size, show_progress_bar=True).numpy()
    emb, rationales = embedder.encode_budgets(
        queries, budgets, pooling=encoder.pooling, batch_size=settings.batch_size
    )
    out = []
    for k, b in enumerate(budgets):
        ranked = search(emb[:, k].numpy(), docs, devset.doc_ids)
        used = float(np.mean([min(len(r), b) for r in rationales]))
        out.append(RowResult(label, b, per_query_metrics(ranked, devset.qrels, devset.query_ids), used, kind))
    return out


def encoder_rows(
    name: str, devset: RetrievalDevSet, settings: RetrievalSettings, writer=None, writer_label: str = ""
) -> list[RowResult]:
    """A frozen sentence-transformers encoder alone (budget 0) or fed the `writer` policy's greedy rationales."""
    from rollout.embedder import EmbedRequest
    from rollout.frozen import SentenceTransformerPool

    tokenizer = writer.tokenizer if writer is not None else None
    ends = writer.embedder.end_ids if writer is not None else ()
    pool = SentenceTransformerPool(name, tokenizer, ends, batch_size=64)
    docs = pool.embed_texts(list(devset.doc_texts)).numpy()
    if writer is None:
        q = pool.embed_texts(list(devset.query_texts)).numpy()
        ranked = search(q, docs, devset.doc_ids)
        return [RowResult(name, 0, per_query_metrics(ranked, devset.qrels, devset.query_ids), 0.0, "encoder")]
    budgets = tuple(b for b in settings.budgets if b > 0)
    ids = writer.embedder.generate_rationales(
        list(devset.query_texts), max(budgets), 0.0, batch_size=settings.batch_size
    )

    def embed(items):
        return pool.embed([EmbedRequest(t, r) for t, r in items]).numpy()

    label = f"{name} + {writer_label}"
    return writer_rows(label, devset, ids, budgets, embed, docs, kind="writer+frozen")


def load_encoder(path: str, instruction: str | None = None, min_new_tokens: int = 0):
    """A :class:`~grace_rl.encoder.GraceEncoder` (under `instruction` if given); `min_new_tokens` > 0 forces its
    rationales to at least that many tokens (:class:`rollout.embedder.Embedder`), the length-matched control."""
    from grace_rl.encoder import GraceEncoder

    encoder = GraceEncoder.from_pretrained(path, instruction=instruction)
    encoder.embedder.min_new_tokens = min_new_tokens
    return encoder


def base_instructions(
    instructions: Mapping[str, str], metas: Mapping[str, Mapping[str, Any]], extra: Sequence[str] = ()
) -> list[str]:
    """The instructions the base policy rows are computed under: the default, then the instruction of every run whose
    embeddings come from the base model's weights (trained from it, or a frozen copy of it: `reward_embedder:
    frozen`), so each such run has its untrained twin at every budget, then `extra`; no repeats, first-seen order. A
    run embedded by a sentence-transformers encoder gets its twin as an encoder + base rationales row instead."""
    own = [r for r, meta in metas.items() if meta.get("reward_embedder") in (None, "frozen")]
    return list(dict.fromkeys([DEFAULT_INSTRUCTION, *(instructions[r] for r in own), *extra]))


def run_retrieval_protocol(
    devset: RetrievalDevSet,
    base: str,
    trained: Sequence[str],
    encoders: Sequence[str],
    settings: RetrievalSettings,
    bm25: bool = True,
) -> dict[str, Any]:
    """Every row of the protocol on `devset` and the paired comparisons. Returns a JSON-ready dict (`rows`: one entry
    per label and budget with intervals; `comparisons`; `devset`; `settings`)."""
    rows: list[RowResult] = []
    info: dict[str, dict[str, Any]] = {}
    if bm25:
        key = {"task": "retrieval", "model": "bm25s", "pairs": devset.digest}
        rows += cached_rows(settings, key, "BM25", lambda: [_bm25(devset)])
    frozen_runs = {r: _run_config(r)[1] or {} for r in trained}
    instructions = base_instructions(
        {r: run_instruction(r) for r in trained}, frozen_runs, settings.extra_instructions
    )
    for i, instruction in enumerate(instructions):
        label = "base" if instruction == DEFAULT_INSTRUCTION else ("base+prompt" if i == 1 else f"base+prompt{i}")
        info[label] = {"role": "base", "instruction": instruction}
        key = row_key(base, devset, settings, instruction=instruction, kind="policy")
        rows += cached_rows(
            settings,
            key,
            label,
            lambda ins=instruction, lab=label: policy_rows(load_encoder(base, ins), lab, devset, settings),
        )
    for run in trained:
        label = Path(run).resolve().name
        meta = frozen_runs[run]
        info[label] = {"role": "trained", "path": str(run), "training_budget": training_budget(run)}
        info[label].update({k: meta[k] for k in ("instruction", "reward_embedder") if k in meta})
        key = row_key(run, devset, settings, kind="policy")
        rows += cached_rows(
            settings, key, label, lambda r=run, lab=label: policy_rows(load_encoder(r), lab, devset, settings)
        )
    for name in encoders:
        info[name] = {"role": "encoder"}
        key = {"task": "retrieval", "model": f"st:{name}", "pairs": devset.digest}
        rows += cached_rows(settings, key, name, lambda n=name: encoder_rows(n, devset, settings))
        writer_prompts = [
            frozen_runs[r].get("instruction", DEFAULT_INSTRUCTION)
            for r in trained
            if frozen_runs[r].get("reward_embedder") and frozen_runs[r].get("reward_embedder") != "frozen"
        ] or [DEFAULT_INSTRUCTION]
        for j, instruction in enumerate(dict.fromkeys(writer_prompts)):
            writer_label = "base rationales" + ("" if j == 0 else f"{j + 1}")
            label = f"{name} + {writer_label}"
            info[label] = {"role": "encoder+writer", "instruction": instruction}
            key = row_key(base, devset, settings, instruction=instruction, kind=f"writer:{name}")
            rows += cached_rows(
                settings,
                key,
                label,
                lambda n=name, ins=instruction, wl=writer_label: encoder_rows(
                    n, devset, settings, load_encoder(base, ins), wl
                ),
            )
    return summarise(rows, info, devset, settings, trained)


def _bm25(devset: RetrievalDevSet) -> RowResult:
    ranked = bm25_rankings(devset)
    return RowResult("BM25", 0, per_query_metrics(ranked, devset.qrels, devset.query_ids), 0.0, "bm25")


def _find(rows: Sequence[RowResult], label: str, budget: int | None = None) -> RowResult | None:
    hits = [r for r in rows if r.label == label and (budget is None or r.budget == budget)]
    return hits[0] if hits else None


def compare(a: RowResult, b: RowResult, settings: RetrievalSettings) -> dict[str, Any]:
    """`a - b` on every metric with the paired interval."""
    out: dict[str, Any] = {"a": f"{a.label} @{a.budget}", "b": f"{b.label} @{b.budget}"}
    for name in METRICS:
        iv = paired_mean_interval(a.per_query[name], b.per_query[name], settings.n_boot, settings.seed)
        out[name] = round(iv.point, 2)
        out[f"{name}_ci"] = [round(iv.low, 2), round(iv.high, 2)]
    return out


def summarise(
    rows: Sequence[RowResult],
    info: dict[str, dict[str, Any]],
    devset: RetrievalDevSet,
    settings: RetrievalSettings,
    trained: Sequence[str],
) -> dict[str, Any]:
    """The table (intervals) and the comparisons: each trained run at its training budget against the base bar (the
    best base point over every instruction and budget, by nDCG@10); a frozen-encoder run also against the encoder
    alone and against the encoder fed the untrained policy's rationales at the same budget; `settings.versus`."""
    base_rows = [r for r in rows if info.get(r.label, {}).get("role") == "base"]
    bar = max(base_rows, key=lambda r: r.per_query["ndcg@10"].mean()) if base_rows else None
    comparisons = []
    for run in trained:
        label = Path(run).resolve().name
        budget = info[label]["training_budget"]
        row = _find(rows, label, budget)
        if row is None:
            continue
        emb = info[label].get("reward_embedder")
        if emb and emb != "frozen":
            for other in rows:
                if info.get(other.label, {}).get("role") == "encoder" and other.budget == 0:
                    comparisons.append({"what": "vs encoder alone", **compare(row, other, settings)})
                same_prompt = info.get(other.label, {}).get("instruction") == info[label].get("instruction")
                if (
                    info.get(other.label, {}).get("role") == "encoder+writer"
                    and other.budget == budget
                    and same_prompt
                ):
                    comparisons.append({"what": "vs untrained rationales", **compare(row, other, settings)})
        elif bar is not None:
            comparisons.append({"what": "vs base bar", **compare(row, bar, settings)})
    for a, b in settings.versus:
        ra, rb = _pick(rows, a, info), _pick(rows, b, info)
        comparisons.append({"what": "versus", **compare(ra, rb, settings)})
    return {
        "devset": devset.info(),
        "settings": {
            "budgets": list(settings.budgets),
            "doc_max_tokens": settings.doc_max_tokens,
            "n_boot": settings.n_boot,
            "seed": settings.seed,
        },
        "models": info,
        "rows": [r.summary(settings.n_boot, settings.seed) for r in rows],
        "bar": None if bar is None else {"label": bar.label, "budget": bar.budget},
        "comparisons": comparisons,
    }


def _pick(rows: Sequence[RowResult], spec: str, info: dict[str, dict[str, Any]]) -> RowResult:
    """`LABEL@BUDGET` or `LABEL` (a trained run: its training budget; else its best budget)."""
    label, _, budget = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if budget:
        row = _find(rows, label, int(budget))
    elif "training_budget" in info.get(label, {}):
        row = _find(rows, label, info[label]["training_budget"])
    else:
        cands = [r for r in rows if r.label == label]
        row = max(cands, key=lambda r: r.per_query["ndcg@10"].mean()) if cands else None
    if row is None:
        raise UserError(f"--versus {spec!r}: no such row; labels: {sorted({r.label for r in rows})}.")
    return row


def format_table(result: dict[str, Any]) -> str:
    """The rows and comparisons as aligned text."""
    lines = [
        f"{result['devset']['name']}: {result['devset']['queries']} queries, {result['devset']['documents']} documents"
        f" (documents cut to {result['settings']['doc_max_tokens']} tokens for the policy rows); 95% bootstrap over "
        "queries",
        f"{'row':44s} {'budget':>6s} {'tokens':>6s}  {'nDCG@10':>22s}  {'recall@100':>22s}",
    ]
    for r in result["rows"]:
        nd, rc = r["ndcg@10_ci"], r["recall@100_ci"]
        lines.append(
            f"{r['label'][:44]:44s} {r['budget']:6d} {r['mean_rationale_tokens']:6.1f}  "
            f"{r['ndcg@10']:6.2f} [{nd[0]:6.2f}, {nd[1]:6.2f}]  {r['recall@100']:6.2f} [{rc[0]:6.2f}, {rc[1]:6.2f}]"
        )
    if result.get("bar"):
        lines.append(f"bar (best base point by nDCG@10): {result['bar']['label']} @{result['bar']['budget']}")
    for c in result["comparisons"]:
        nd = c["ndcg@10_ci"]
        lines.append(
            f"{c['a']} minus {c['b']} ({c['what']}): nDCG@10 {c['ndcg@10']:+.2f} [{nd[0]:+.2f}, {nd[1]:+.2f}], "
            f"recall@100 {c['recall@100']:+.2f}"
        )
    return "\n".join(lines)
