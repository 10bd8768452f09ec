"""``encode()`` throughput: the one-pass encode vs the previous encode vs a raw batched ``model.generate``.

Texts: the distinct sentences of the first ``--pairs`` STS pairs of ``data/stsb_dev_sample.tsv``; greedy rationales
of ``--budget`` tokens; the embedded default model (``smollm2-135m-instruct``). Measured in one process:

- **new**: ``GraceEncoder.encode`` (prompts sorted by length, one ``generate`` per batch, the embedding pooled from
  the hidden states computed while generating plus one decode step for the last token);
- **old**: ``GraceEncoder.encode_separate_pass`` (the previous encode: ``generate`` in input order, then a second
  forward pass to embed), at the previous default batch size (16);
- **raw**: a bare ``model.generate`` over the same length-sorted batches, prompts tokenised beforehand (not timed):
  the generation underneath encode, the ceiling.

Each timed call starts from an empty prompt cache (tokenising is part of encode's cost). ``--repeats`` alternates
new and raw that many times and keeps each one's fastest run (a shared machine's load only ever slows a run down).
Also checks that new and old wrote the same rationales and give the same embeddings.

    nice -n 10 python bench/encode_speed.py --threads 1                       # 200 pairs, 32 tokens, ~15 min
    nice -n 10 python bench/encode_speed.py --threads 1 --sweep 8,16,32,64 --pairs 40   # new encode per batch size
    nice -n 10 python bench/encode_speed.py --threads 1 --corpus 96     # corpus index build vs encode(), docs/s
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from _common import REPO, add_threads_option, machine, set_threads, table, write_result

STS = REPO / "data" / "stsb_dev_sample.tsv"
OLD_BATCH_SIZE = 16  # GraceEncoder.encode's default before the one-pass encode
GOAL_VS_RAW, GOAL_VS_OLD = 0.9, 3.0


def sts_sentences(pairs: int) -> list[str]:
    """The distinct sentences of the first ``pairs`` STS-B rows (score col 5, sentences cols 6-7)."""
    with STS.open(encoding="utf-8") as f:
        rows = [row for _, row in zip(range(pairs), csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))]
    return list(dict.fromkeys([r[5] for r in rows] + [r[6] for r in rows]))


def raw_generate(encoder, texts: Sequence[str], budget: int, batch_size: int) -> Callable[[], int]:
    """A timed-ready closure: bare greedy ``model.generate`` over length-sorted batches of pre-tokenised prompts;
    returns the rationale tokens written."""
    embedder = encoder.embedder
    prompts = sorted((embedder.prompt_tokens(t).ids for t in texts), key=len, reverse=True)
    batches = [embedder._left_padded(prompts[s : s + batch_size]) for s in range(0, len(prompts), batch_size)]
    kwargs = embedder._generation_kwargs(budget, 0.0, 1)

    @torch.inference_mode()
    def run() -> int:
        tokens = 0
        for input_ids, attention in batches:
            out = encoder.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)  # (B, W + n)
            tokens += sum(len(embedder.rationale_tokens(row)) for row in out[:, input_ids.shape[1] :].tolist())
        return tokens

    return run


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def fresh(model, tokenizer):
    """A new encoder (empty prompt cache) on the shared model."""
    from grace_rl.encoder import GraceEncoder

    return GraceEncoder(model, tokenizer)


def measure(model, tokenizer, texts: list[str], cli) -> dict[str, Any]:
    """Old once, then new and raw alternating ``--repeats`` times (fastest kept)."""
    budget, bs = cli.budget, cli.batch_size
    fresh(model, tokenizer).encode(texts[:4], max_rationale_tokens=4, show_progress_bar=False)  # warm-up
    print(f"old encode (generate, then a separate embedding pass), batch size {OLD_BATCH_SIZE} ...", flush=True)
    old_s, (old_emb, old_rat) = timed(
        lambda: fresh(model, tokenizer).encode_separate_pass(
            texts, batch_size=OLD_BATCH_SIZE, max_rationale_tokens=budget, return_rationales=True
        )
    )
    new_runs, raw_runs = [], []
    for _ in range(cli.repeats):
        print(f"new encode, batch size {bs} ...", flush=True)
        seconds, (new_emb, new_rat) = timed(
            lambda: fresh(model, tokenizer).encode(
                texts, batch_size=bs, max_rationale_tokens=budget, return_rationales=True
            )
        )
        new_runs.append(seconds)
        print(f"raw model.generate, batch size {bs} ...", flush=True)
        run = raw_generate(fresh(model, tokenizer), texts, budget, bs)
        seconds, raw_tokens = timed(run)
        raw_runs.append(seconds)
    same = [i for i in range(len(texts)) if new_rat[i] == old_rat[i]]
    diff = float(np.abs(new_emb[same] - old_emb[same]).max()) if same else float("nan")
    return {
        "old_seconds": old_s,
        "new_seconds": min(new_runs),
        "raw_seconds": min(raw_runs),
        "new_runs": new_runs,
        "raw_runs": raw_runs,
        "raw_rationale_tokens": raw_tokens,
        "same_rationales": len(same),
        "max_abs_diff_same_rationales": diff,
    }


def sweep(model, tokenizer, texts: list[str], budget: int, sizes: list[int]) -> None:
    """New encode's texts/s at each batch size (for choosing the default)."""
    fresh(model, tokenizer).encode(texts[:4], max_rationale_tokens=4, show_progress_bar=False)  # warm-up
    rows = []
    for bs in sizes:
        seconds, _ = timed(
            lambda bs=bs: fresh(model, tokenizer).encode(texts, batch_size=bs, max_rationale_tokens=budget)
        )
        run = raw_generate(fresh(model, tokenizer), texts, budget, bs)
        raw_s, _ = timed(run)
        rows.append([bs, round(seconds, 2), round(len(texts) / seconds, 2), round(len(texts) / raw_s, 2)])
    print(table(["batch size", "new s", "new texts/s", "raw texts/s"], rows))
    write_result("encode_speed_sweep", {"texts": len(texts), "budget": budget, "rows": rows})
    print(f"best batch size: {max(rows, key=lambda r: r[2])[0]}")


def corpus_build(model, tokenizer, docs: int, budget: int, batch_size: int) -> None:
    """Docs/s of a corpus index build (``CorpusIndex.build`` through the local pool, documents with their own greedy
    rationale) vs ``encode()`` on the same documents of the demo corpus."""
    from rollout.corpus import Corpus, load_corpus
    from rollout.corpus_index import CorpusIndex, IndexSettings
    from rollout.pool import LocalEmbeddingPool

    full = load_corpus(REPO / "data" / "demo_corpus.jsonl")
    corpus = Corpus(full.doc_ids[:docs], full.texts[:docs])
    settings = IndexSettings(use_gpu=False, embed_mode="rationale", rationale_tokens=budget)
    fresh(model, tokenizer).encode(list(corpus.texts[:4]), max_rationale_tokens=4, show_progress_bar=False)  # warm-up
    pool = LocalEmbeddingPool(fresh(model, tokenizer).embedder, batch_size=batch_size)
    index_s, _ = timed(lambda: CorpusIndex(corpus, settings).build(pool, show_progress_bar=False))
    encode_s, _ = timed(
        lambda: fresh(model, tokenizer).encode(list(corpus.texts), batch_size=batch_size, max_rationale_tokens=budget)
    )
    rows = [["corpus index build", round(index_s, 2), round(docs / index_s, 2)]]
    rows.append(["encode()", round(encode_s, 2), round(docs / encode_s, 2)])
    print(table(["method", "seconds", "docs/s"], rows))
    write_result("encode_speed_corpus", {"docs": docs, "budget": budget, "batch_size": batch_size, "rows": rows})
    print(f"corpus build / encode() = {encode_s / index_s:.2f} (goal >= 0.9); {docs} documents, {budget} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200, help="STS pairs whose distinct sentences are encoded")
    parser.add_argument("--budget", type=int, default=32, help="rationale tokens (greedy)")
    parser.add_argument("--batch-size", type=int, default=None, help="new and raw (default: encode's default)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating new/raw runs; the fastest is kept")
    parser.add_argument("--sweep", default=None, help="comma-separated batch sizes: texts/s of new encode only")
    parser.add_argument("--corpus", type=int, default=None, help="N demo-corpus documents: index build vs encode()")
    add_threads_option(parser)
    cli = parser.parse_args()
    set_threads(cli.threads)
    logging.basicConfig(level=logging.WARNING)
    from grace_rl.models import load_model, load_tokenizer, resolve_model_path
    from rollout.embedder import ENCODE_BATCH_SIZE

    cli.batch_size = cli.batch_size or ENCODE_BATCH_SIZE
    path = resolve_model_path("smollm2-135m-instruct")
    model, tokenizer = load_model(path).eval(), load_tokenizer(path)
    if cli.corpus:
        corpus_build(model, tokenizer, cli.corpus, cli.budget, cli.batch_size)
        return
    texts = sts_sentences(cli.pairs)
    print(
        f"{len(texts)} distinct sentences of {cli.pairs} STS pairs, greedy {cli.budget}-token rationales; {machine()}"
    )
    if cli.sweep:
        sweep(model, tokenizer, texts, cli.budget, [int(x) for x in cli.sweep.split(",")])
        return
    m = measure(model, tokenizer, texts, cli)
    n = len(texts)
    rows = [
        [
            "old encode (generate + embed pass)",
            OLD_BATCH_SIZE,
            round(m["old_seconds"], 2),
            round(n / m["old_seconds"], 2),
        ],
        ["new encode (one pass)", cli.batch_size, round(m["new_seconds"], 2), round(n / m["new_seconds"], 2)],
        ["raw model.generate", cli.batch_size, round(m["raw_seconds"], 2), round(n / m["raw_seconds"], 2)],
    ]
    print(table(["method", "batch size", "seconds", "texts/s"], rows))
    vs_raw, vs_old = m["raw_seconds"] / m["new_seconds"], m["old_seconds"] / m["new_seconds"]
    print(
        f"new and old wrote the same rationale for {m['same_rationales']}/{n} texts; max |new - old| over those "
        f"{m['max_abs_diff_same_rationales']:.2e}"
    )
    path = write_result("encode_speed", {"texts": n, "pairs": cli.pairs, "budget": cli.budget, **m, "rows": rows})
    print(f"wrote {path}")
    print(
        f"new/raw = {vs_raw:.2f} (goal >= {GOAL_VS_RAW}), new/old = {vs_old:.2f} (goal >= {GOAL_VS_OLD}); "
        f"texts/s new {n / m['new_seconds']:.2f}, old {n / m['old_seconds']:.2f}, raw {n / m['raw_seconds']:.2f}"
    )


if __name__ == "__main__":
    main()
