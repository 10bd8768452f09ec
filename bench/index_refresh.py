"""Benchmark of the corpus index (not a test): partial-refresh cost vs a full re-encode, and search latency.

    python bench/index_refresh.py                       # real default model, 400 demo documents, 10k/100k vectors
    python bench/index_refresh.py --docs 200 --sizes 10000 --repeats 2

1. Refresh cost: the demo corpus embedded by the real default model through `LocalEmbeddingPool`; the cost of
   `CorpusIndex.refresh(fraction=f)` (embedding + swap) over that of a full re-encode (`fraction=1`), medians
   over interleaved repeats. Target: ratio <= 1.2 f. Cost = process CPU seconds with `--threads` torch threads
   (default 1), which other jobs on a shared machine disturb far less than wall time; wall seconds are reported too.
2. Search latency: random unit vectors (the model's hidden size) in a flat vs an IVF index for each corpus size:
   build seconds, milliseconds per query in a batch and for one query at a time, IVF recall@k against flat.

Prints a table and writes JSON to `bench/results/index_refresh.json` (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grace_rl.models import load_model, load_tokenizer, resolve_model_path  # noqa: E402
from grace_rl.prompts import RationaleTemplate  # noqa: E402
from rollout.corpus import Corpus, load_corpus  # noqa: E402
from rollout.corpus_index import CorpusIndex, IndexSettings  # noqa: E402
from rollout.embedder import Embedder  # noqa: E402
from rollout.pool import LocalEmbeddingPool  # noqa: E402


def refresh_costs(args: argparse.Namespace) -> dict:
    """Median seconds of refresh(f) and of a full re-encode with the real model; ratio and target per f."""
    path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(path)
    model = load_model(path, dtype=torch.float32)
    pool = LocalEmbeddingPool(Embedder(model, tokenizer, RationaleTemplate()), batch_size=args.batch_size)
    full = load_corpus(args.corpus)
    corpus = Corpus(full.doc_ids[: args.docs], full.texts[: args.docs], source=args.corpus)
    index = CorpusIndex(corpus, IndexSettings(use_gpu=False))
    index.build(pool, step=0, show_progress_bar=True)  # also warms up the model and the prompt cache
    cpu: dict[float, list[float]] = {f: [] for f in [1.0, *args.fractions]}
    wall: dict[float, list[float]] = {f: [] for f in cpu}
    step = 0
    for rep in range(args.repeats):
        for f in cpu:
            step += 1
            c0, w0 = time.process_time(), time.perf_counter()
            report = index.refresh(pool, step, f)
            cpu[f].append(time.process_time() - c0)
            wall[f].append(time.perf_counter() - w0)
            print(
                f"  repeat {rep + 1}: f={f:<5} {report.rows:4d} docs cpu {cpu[f][-1]:.2f} s wall {wall[f][-1]:.2f} s"
            )
    full_cpu, full_wall = statistics.median(cpu[1.0]), statistics.median(wall[1.0])
    rows = []
    for f in args.fractions:
        c, w = statistics.median(cpu[f]), statistics.median(wall[f])
        rows.append(
            {
                "fraction": f,
                "docs": index.refresh_count(f),
                "cpu_seconds": c,
                "wall_seconds": w,
                "ratio": c / full_cpu,
                "wall_ratio": w / full_wall,
                "target": 1.2 * f,
                "ok": c / full_cpu <= 1.2 * f,
            }
        )
    return {
        "model": args.model,
        "docs": len(corpus),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "full_cpu_seconds": full_cpu,
        "full_wall_seconds": full_wall,
        "all_cpu_seconds": {str(k): v for k, v in cpu.items()},
        "all_wall_seconds": {str(k): v for k, v in wall.items()},
        "rows": rows,
    }


def _timed_search(index: CorpusIndex, queries: np.ndarray, k: int, singles: int) -> tuple[dict[str, float], list]:
    """Milliseconds per query, CPU and wall: the whole batch at once, and the median of one-query searches."""
    c0, w0 = time.process_time(), time.perf_counter()
    _, ids = index.search(queries, k)
    c1, w1 = time.process_time(), time.perf_counter()
    one_cpu, one_wall = [], []
    for q in queries[:singles]:
        c, w = time.process_time(), time.perf_counter()
        index.search(q[None], k)
        one_cpu.append(1000 * (time.process_time() - c))
        one_wall.append(1000 * (time.perf_counter() - w))
    return {
        "batch_cpu_ms_per_query": 1000 * (c1 - c0) / len(queries),
        "batch_wall_ms_per_query": 1000 * (w1 - w0) / len(queries),
        "single_cpu_ms": statistics.median(one_cpu),
        "single_wall_ms": statistics.median(one_wall),
    }, ids


def search_latency(args: argparse.Namespace) -> list[dict]:
    """Flat vs IVF on random unit vectors: build seconds, ms/query (batched and single), IVF recall@k."""
    rng = np.random.default_rng(0)
    out = []
    for n in args.sizes:
        vectors = rng.standard_normal((n, args.dim), dtype=np.float32)  # (N, H)
        faiss.normalize_L2(vectors)
        queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)  # (Q, H)
        faiss.normalize_L2(queries)
        corpus = Corpus(tuple(str(i) for i in range(n)), tuple(f"doc {i}" for i in range(n)))
        reference = None
        for kind in ("flat", "ivf"):
            nlist = max(1, round(n**0.5)) if kind == "ivf" else None
            index = CorpusIndex(corpus, IndexSettings(index_type=kind, ivf_nlist=nlist, ivf_nprobe=args.nprobe))
            start = time.perf_counter()
            index.build_from_vectors(vectors)
            build_s = time.perf_counter() - start
            latency, ids = _timed_search(index, queries, args.k, args.singles)
            reference = ids if kind == "flat" else reference
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ids, reference, strict=True)])
            swap_rows = rng.choice(n, size=n // 10, replace=False)
            start = time.perf_counter()
            index.replace_rows(swap_rows, vectors[swap_rows], step=1)
            swap_s = time.perf_counter() - start
            row = {
                "size": n,
                "index": kind,
                "nlist": nlist,
                "nprobe": args.nprobe if kind == "ivf" else None,
                "build_seconds": build_s,
                **latency,
                f"recall@{args.k}_vs_flat": float(recall),
                "swap_10pct_seconds": swap_s,
            }
            out.append(row)
            print(f"  {n:>7d} {kind:4s} build {build_s:6.2f} s  {json.dumps(latency)}")
            del index
    return out


def print_tables(refresh: dict | None, search: list[dict], k: int) -> None:
    if refresh:
        print(
            f"\nRefresh cost vs a full re-encode ({refresh['docs']} docs, {refresh['model']}, {refresh['threads']} "
            f"thread(s), median of {refresh['repeats']}; full re-encode {refresh['full_cpu_seconds']:.1f} CPU s, "
            f"{refresh['full_wall_seconds']:.1f} wall s)"
        )
        print("| fraction f | docs | CPU s | ratio (CPU) | target 1.2 f | ok | wall s | ratio (wall) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in refresh["rows"]:
            print(
                f"| {r['fraction']} | {r['docs']} | {r['cpu_seconds']:.2f} | {r['ratio']:.3f} | {r['target']:.3f} | "
                f"{'yes' if r['ok'] else 'NO'} | {r['wall_seconds']:.2f} | {r['wall_ratio']:.3f} |"
            )
    if search:
        print("\nSearch latency (random unit vectors; CPU ms, wall ms in brackets)")
        print(f"| corpus | index | build s | batch ms/query | single query ms | recall@{k} vs flat | swap 10% s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in search:
            kind = r["index"] if r["nlist"] is None else f"ivf (nlist {r['nlist']}, nprobe {r['nprobe']})"
            print(
                f"| {r['size']} | {kind} | {r['build_seconds']:.2f} | {r['batch_cpu_ms_per_query']:.3f} "
                f"({r['batch_wall_ms_per_query']:.3f}) | {r['single_cpu_ms']:.3f} ({r['single_wall_ms']:.3f}) | "
                f"{r[f'recall@{k}_vs_flat']:.3f} | {r['swap_10pct_seconds']:.3f} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--corpus", default=str(REPO / "data" / "demo_corpus.jsonl"))
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the cost is measured in CPU seconds)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=576, help="vector size (SmolLM2-135M's hidden size)")
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--singles", type=int, default=50, help="queries timed one at a time")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--skip-refresh", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "index_refresh.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"refresh cost: {args.docs} docs, fractions {args.fractions}, {args.repeats} repeats")
    refresh = None if args.skip_refresh else refresh_costs(args)
    print(f"search latency: sizes {args.sizes}, dim {args.dim}")
    search = search_latency(args)
    print_tables(refresh, search, args.k)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "faiss": faiss.__version__,
            "faiss_gpus": faiss.get_num_gpus(),
            "platform": platform.platform(),
            "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "args": {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
        "refresh": refresh,
        "search": search,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
