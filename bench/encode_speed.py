"""``encode()`` throughput: the one-pass encode vs the previous encode vs a raw batched ``model.generate``.

Texts: the distinct sentences of the first ``--pairs`` STS pairs of ``data/stsb_dev_sample.tsv``; greedy rationales
of ``--budget`` tokens; the embedded default model (``smollm2-135m-instruct``). Measured in one process:

- **new**: ``GraceEncoder.encode`` (prompts sorted by length, one ``generate`` per batch, the embedding pooled from
  the hidden states computed while generating plus one decode step for the last token);
- **old**: ``GraceEncoder.encode_separate_pass`` (the previous encode: ``generate`` in input order, then a second
  forward pass to embed), at the previous default batch size (16);
- **raw**: a bare ``model.generate`` over new's length-sorted batches, prompts tokenised beforehand (not timed): the
  generation underneath encode, its ceiling.

Method: each method's batches are exactly those of a whole run (old: input order; new and raw: sorted over all
texts), but the three run interleaved, batch k of each in a rotating order, so the load of a shared machine drifts
over all three alike. Each batch is timed in wall seconds and in this process's CPU seconds; with 1 torch thread
the CPU seconds measure the work itself even when other jobs take most of the cores, so the ratios are taken from
them (wall figures are printed too). Tokenising is part of both encodes' cost (fresh prompt caches). Also checks that
new and old wrote the same rationales and give the same embeddings.

    nice -n 10 python bench/encode_speed.py --threads 1                       # 200 pairs, 32 tokens
    nice -n 10 python bench/encode_speed.py --threads 1 --sweep 8,16,32,64 --pairs 40   # new encode per batch size
    nice -n 10 python bench/encode_speed.py --threads 1 --corpus 192    # corpus index build vs encode(), docs/s
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from _common import REPO, add_threads_option, machine, set_threads, table, write_result
from tqdm.auto import tqdm

STS = REPO / "data" / "stsb_dev_sample.tsv"
OLD_BATCH_SIZE = 16  # GraceEncoder.encode's default before the one-pass encode
GOAL_VS_RAW, GOAL_VS_OLD, GOAL_CORPUS = 0.9, 3.0, 0.9


def sts_sentences(pairs: int) -> list[str]:
    """The distinct sentences of the first ``pairs`` STS-B rows (score col 5, sentences cols 6-7)."""
    with STS.open(encoding="utf-8") as f:
        rows = [row for _, row in zip(range(pairs), csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))]
    return list(dict.fromkeys([r[5] for r in rows] + [r[6] for r in rows]))


@dataclass
class Method:
    """One way of encoding, as a list of batch steps; accumulates wall and CPU seconds over its steps."""

    name: str
    batch_size: int
    steps: list[Callable[[], None]]
    wall: float = 0.0
    cpu: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)

    def run(self, k: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.steps[k]()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu


def interleave(methods: list[Method], desc: str) -> None:
    """Batch k of every method, in an order rotating with k."""
    rounds = max(len(m.steps) for m in methods)
    for k in tqdm(range(rounds), desc=desc, unit="round"):
        for m in methods[k % len(methods) :] + methods[: k % len(methods)]:
            if k < len(m.steps):
                m.run(k)


def fresh(model, tokenizer):
    """A new encoder (empty prompt cache) on the shared model."""
    from grace_rl.encoder import GraceEncoder

    return GraceEncoder(model, tokenizer)


def chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[s : s + size] for s in range(0, len(items), size)]


def encode_methods(model, tokenizer, texts: list[str], budget: int, batch_size: int) -> list[Method]:
    """old, new and raw as batch steps over ``texts`` (see the module docstring)."""
    old_enc, new_enc, raw_enc = fresh(model, tokenizer), fresh(model, tokenizer), fresh(model, tokenizer)
    lengths = [len(fresh(model, tokenizer).embedder.prompt_tokens(t).ids) for t in texts]
    by_length = sorted(range(len(texts)), key=lambda i: -lengths[i])  # encode's own order (stable sort, longest first)
    old = Method("old encode (generate + embed pass)", OLD_BATCH_SIZE, [])
    new = Method("new encode (one pass)", batch_size, [])
    raw = Method("raw model.generate", batch_size, [])
    for m in (old, new):
        m.results = {"emb": [None] * len(texts), "rationales": [None] * len(texts)}

    def store(m: Method, batch: list[int], out) -> None:
        emb, rationales = out
        for row, i in enumerate(batch):
            m.results["emb"][i], m.results["rationales"][i] = emb[row], rationales[row]

    def old_step(batch: list[int]) -> None:
        kwargs = {"batch_size": OLD_BATCH_SIZE, "max_rationale_tokens": budget, "return_rationales": True}
        store(old, batch, old_enc.encode_separate_pass([texts[i] for i in batch], **kwargs))

    def new_step(batch: list[int]) -> None:
        kwargs = {"batch_size": batch_size, "max_rationale_tokens": budget, "return_rationales": True}
        store(new, batch, new_enc.encode([texts[i] for i in batch], show_progress_bar=False, **kwargs))

    raw_kwargs = raw_enc.embedder._generation_kwargs(budget, 0.0, 1)
    raw_inputs = [
        raw_enc.embedder._left_padded([raw_enc.embedder.prompt_tokens(texts[i]).ids for i in b])
        for b in chunks(by_length, batch_size)
    ]

    @torch.inference_mode()
    def raw_step(k: int) -> None:
        input_ids, attention = raw_inputs[k]
        raw_enc.model.generate(input_ids=input_ids, attention_mask=attention, **raw_kwargs)  # (B, W + n)

    old.steps = [lambda b=b: old_step(b) for b in chunks(list(range(len(texts))), OLD_BATCH_SIZE)]
    new.steps = [lambda b=b: new_step(b) for b in chunks(by_length, batch_size)]
    raw.steps = [lambda k=k: raw_step(k) for k in range(len(raw_inputs))]
    return [old, new, raw]


def agreement(old: Method, new: Method) -> tuple[int, float]:
    """Texts whose old and new rationales are the same, and the largest embedding difference over those."""
    same = [i for i, (a, b) in enumerate(zip(old.results["rationales"], new.results["rationales"])) if a == b]
    if not same:
        return 0, float("nan")
    diff = max(float(np.abs(old.results["emb"][i] - new.results["emb"][i]).max()) for i in same)
    return len(same), diff


def rate_row(m: Method, n: int) -> list[Any]:
    return [m.name, m.batch_size, round(m.wall, 1), round(m.cpu, 1), round(n / m.wall, 3), round(n / m.cpu, 3)]


def compare_encodes(model, tokenizer, texts: list[str], cli) -> None:
    """The main measurement: old vs new vs raw, interleaved; last line = the key ratios."""
    fresh(model, tokenizer).encode(texts[:4], max_rationale_tokens=4, show_progress_bar=False)  # warm-up
    old, new, raw = methods = encode_methods(model, tokenizer, texts, cli.budget, cli.batch_size)
    interleave(methods, "old/new/raw batches")
    n = len(texts)
    headers = ["method", "batch size", "wall s", "CPU s", "texts/s (wall)", "texts/s (CPU)"]
    print(table(headers, [rate_row(m, n) for m in methods]))
    same, diff = agreement(old, new)
    print(f"new and old wrote the same rationale for {same}/{n} texts; max |new - old| over those {diff:.2e}")
    ratios = {
        "new_vs_raw_cpu": raw.cpu / new.cpu,
        "new_vs_old_cpu": old.cpu / new.cpu,
        "new_vs_raw_wall": raw.wall / new.wall,
        "new_vs_old_wall": old.wall / new.wall,
    }
    payload = {"texts": n, "pairs": cli.pairs, "budget": cli.budget, "same_rationales": same, "max_abs_diff": diff}
    rows = [dict(zip(headers, rate_row(m, n), strict=True)) for m in methods]
    print(f"wrote {write_result('encode_speed', {**payload, **ratios, 'rows': rows})}")
    print(
        f"new/raw = {ratios['new_vs_raw_cpu']:.2f} (goal >= {GOAL_VS_RAW}), new/old = {ratios['new_vs_old_cpu']:.2f} "
        f"(goal >= {GOAL_VS_OLD}) by CPU time; by wall time {ratios['new_vs_raw_wall']:.2f} and "
        f"{ratios['new_vs_old_wall']:.2f}; texts/s (CPU) new {n / new.cpu:.2f}, old {n / old.cpu:.2f}, "
        f"raw {n / raw.cpu:.2f}"
    )


def sweep(model, tokenizer, texts: list[str], budget: int, sizes: list[int]) -> None:
    """New encode's texts/s at each batch size (for choosing the default), interleaved batch by batch."""
    fresh(model, tokenizer).encode(texts[:4], max_rationale_tokens=4, show_progress_bar=False)  # warm-up
    methods = [encode_methods(model, tokenizer, texts, budget, bs)[1] for bs in sizes]
    interleave(methods, "batch-size sweep")
    rows = [[m.batch_size, round(m.wall, 1), round(m.cpu, 1), round(len(texts) / m.cpu, 3)] for m in methods]
    print(table(["batch size", "wall s", "CPU s", "texts/s (CPU)"], rows))
    write_result("encode_speed_sweep", {"texts": len(texts), "budget": budget, "rows": rows})
    print(f"best batch size by CPU time: {max(rows, key=lambda r: r[3])[0]}")


def corpus_build(model, tokenizer, docs: int, budget: int, batch_size: int) -> None:
    """Docs/s of a corpus index build (documents with their own greedy rationale, through the local pool) vs
    ``encode()`` on the same documents of the demo corpus, interleaved chunk by chunk."""
    from rollout.corpus import Corpus, load_corpus
    from rollout.corpus_index import CorpusIndex, IndexSettings
    from rollout.pool import LocalEmbeddingPool

    full = load_corpus(REPO / "data" / "demo_corpus.jsonl")
    corpus = Corpus(full.doc_ids[:docs], full.texts[:docs])
    settings = IndexSettings(use_gpu=False, embed_mode="rationale", rationale_tokens=budget)
    index = CorpusIndex(corpus, settings)
    pool = LocalEmbeddingPool(fresh(model, tokenizer).embedder, batch_size=batch_size)
    encoder = fresh(model, tokenizer)
    fresh(model, tokenizer).encode(list(corpus.texts[:4]), max_rationale_tokens=4, show_progress_bar=False)  # warm-up
    parts = chunks(list(range(docs)), settings.chunk_size)
    vectors: list[np.ndarray] = []
    build = Method(
        "corpus index build", batch_size, [lambda p=p: vectors.append(index.embed_rows(pool, p)) for p in parts]
    )
    build.steps.append(lambda: index.build_from_vectors(np.concatenate(vectors)))  # the FAISS part, last
    kwargs = {"batch_size": batch_size, "max_rationale_tokens": budget, "show_progress_bar": False}
    enc = Method(
        "encode()", batch_size, [lambda p=p: encoder.encode([corpus.texts[i] for i in p], **kwargs) for p in parts]
    )
    interleave([build, enc], "corpus chunks")
    rows = [[m.name, round(m.wall, 1), round(m.cpu, 1), round(docs / m.cpu, 3)] for m in (build, enc)]
    print(table(["method", "wall s", "CPU s", "docs/s (CPU)"], rows))
    write_result("encode_speed_corpus", {"docs": docs, "budget": budget, "batch_size": batch_size, "rows": rows})
    print(
        f"corpus build / encode() = {enc.cpu / build.cpu:.2f} by CPU time (goal >= {GOAL_CORPUS}), "
        f"{enc.wall / build.wall:.2f} by wall time; {docs} documents, {budget}-token rationales"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200, help="STS pairs whose distinct sentences are encoded")
    parser.add_argument("--budget", type=int, default=32, help="rationale tokens (greedy)")
    parser.add_argument("--batch-size", type=int, default=None, help="new and raw (default: encode's default)")
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
    compare_encodes(model, tokenizer, texts, cli)


if __name__ == "__main__":
    main()
