"""How much can a *writer* move a frozen sentence-transformers encoder? Headroom for RL on SciFact *training* claims
(never the dev split).

For each claim the untrained policy samples K rationales (temperature T) under an instruction; the frozen encoder
embeds each (claim, rationale) in one of several ways and ranks `--corpus` (default: data/scifact/train_corpus.jsonl).
Printed per instruction and embedding mode, nDCG@10 x100:

- `alone`: the claim alone (no rationale);
- `mean`: the average over the K sampled rationales (what the untrained policy gives in expectation);
- `best-of-K`: each claim's best sampled rationale (an oracle that reads the labels: the most a policy that learned to
  write that claim's best rationale could gain, within what the base policy already samples);
- `avg-of-K`: one query embedding per claim, the normalised average of its K sampled embeddings (HyDE-style);
- `spread`: the share of claims whose K rationales do not all score the same (groups with no spread give GRPO no
  advantage and so no gradient).

Embedding modes: `concat` embeds `claim + " " + rationale` (what `reward_embedder: PATH` does today); `mix` is
normalise(e(claim) + e(claim + " " + rationale)) (the claim keeps half the weight: a rationale can add, but dilutes the
claim less).

python bench/retrieval/writer_headroom.py --claims 100 --samples 8 --budget 32
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from grace_rl.encoder import GraceEncoder
from grace_rl.eval.retrieval import read_texts
from grace_rl.eval.retrieval_protocol import per_query_metrics, search
from grace_rl.prompts import DEFAULT_INSTRUCTION, PARAPHRASE_INSTRUCTION
from rollout.frozen import SentenceTransformerPool, join_rationale

INSTRUCTIONS = {
    "default": DEFAULT_INSTRUCTION,
    "paraphrase": PARAPHRASE_INSTRUCTION,
    "expand": "Write the key scientific terms, the disease, gene, drug, cell type or process this claim is about, as "
    "a short list of keywords and synonyms.",
    "abstract": "Write one sentence that a scientific abstract supporting or refuting this claim would contain.",
}


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=100)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--encoder", default="all-minilm-l6-v2")
    parser.add_argument("--corpus", default="data/scifact/train_corpus.jsonl")
    parser.add_argument("--only", nargs="*", default=["paraphrase", "abstract", "expand"])
    args = parser.parse_args()
    lines = Path("data/scifact/train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines][: args.claims]
    corpus = read_texts(args.corpus)
    ids = list(corpus)
    qrels = {r["id"]: dict.fromkeys(r["positive_ids"], 1) for r in rows}
    qids = [r["id"] for r in rows]
    claims = [r["query"] for r in rows]
    n, k = len(claims), args.samples
    writer = GraceEncoder.from_pretrained("smollm2-135m-instruct")
    pool = SentenceTransformerPool(args.encoder, writer.tokenizer, writer.embedder.end_ids)
    docs = pool.embed_texts([corpus[d] for d in ids]).numpy()
    e_claim = pool.embed_texts(claims).numpy()  # (N, H)
    alone = per_query_metrics(search(e_claim, docs, ids), qrels, qids)["ndcg@10"]
    print(f"{args.encoder} alone: nDCG@10 {alone.mean():.2f} on {n} training claims, {len(ids)} documents", flush=True)

    def score(q: np.ndarray) -> np.ndarray:  # (N*K, H) -> (N, K)
        rep = [qid for qid in qids for _ in range(k)]
        return per_query_metrics(search(q, docs, ids), qrels, rep)["ndcg@10"].reshape(n, k)

    for name in args.only:
        writer = GraceEncoder.from_pretrained("smollm2-135m-instruct", instruction=INSTRUCTIONS[name])
        rationales = writer.embedder.generate_rationales(
            claims, args.budget, args.temperature, num_return_sequences=k, batch_size=8
        )
        texts = [join_rationale(c, pool.decode(r)) for c, r in zip(np.repeat(claims, k), rationales, strict=True)]
        e_joint = pool.embed_texts(texts).numpy()  # (N*K, H)
        modes = {"concat": e_joint, "mix": _normalise(np.repeat(e_claim, k, axis=0) + e_joint)}
        tokens = np.mean([len(pool.decode(r).split()) for r in rationales])
        for mode, q in modes.items():
            s = score(q)
            best = s.max(axis=1)
            spread = float(np.mean(s.max(axis=1) > s.min(axis=1)))
            avg = _normalise(q.reshape(n, k, -1).mean(axis=1))
            avg_nd = per_query_metrics(search(avg, docs, ids), qrels, qids)["ndcg@10"].mean()
            print(
                f"{name:10s} {mode:6s} mean {s.mean():6.2f} ({s.mean() - alone.mean():+.2f})  best-of-{k} "
                f"{best.mean():6.2f} ({best.mean() - alone.mean():+.2f})  avg-of-{k} {avg_nd:6.2f} "
                f"({avg_nd - alone.mean():+.2f})  spread {spread:.2f}  ({tokens:.1f} words)",
                flush=True,
            )
        print(f"  e.g. {claims[0]!r} -> {pool.decode(rationales[0])[:160]!r}", flush=True)


if __name__ == "__main__":
    main()
