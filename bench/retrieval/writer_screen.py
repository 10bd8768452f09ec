"""Screen rationale instructions for a frozen sentence-transformers encoder on SciFact *training* claims (never the dev
split): the untrained policy writes a greedy rationale per claim under each instruction, the encoder embeds
`claim + " " + rationale`, and nDCG@10 against data/scifact/train_corpus.jsonl is compared with the encoder alone.

python bench/retrieval/writer_screen.py --claims 100 --budget 32
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from grace_rl.encoder import GraceEncoder
from grace_rl.eval.retrieval import read_texts
from grace_rl.eval.retrieval_protocol import mean_interval, paired_mean_interval, per_query_metrics, search
from grace_rl.prompts import DEFAULT_INSTRUCTION, PARAPHRASE_INSTRUCTION
from rollout.embedder import EmbedRequest
from rollout.frozen import SentenceTransformerPool

INSTRUCTIONS = {
    "default": DEFAULT_INSTRUCTION,
    "paraphrase": PARAPHRASE_INSTRUCTION,
    "expand": "Write the key scientific terms, the disease, gene, drug, cell type or process this claim is about, as "
    "a short list of keywords and synonyms.",
    "abstract": "Write one sentence that a scientific abstract supporting or refuting this claim would contain.",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=100)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--encoder", default="all-minilm-l6-v2")
    parser.add_argument("--only", nargs="*", default=list(INSTRUCTIONS))
    args = parser.parse_args()
    lines = Path("data/scifact/train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines][: args.claims]
    corpus = read_texts("data/scifact/train_corpus.jsonl")
    ids = list(corpus)
    qrels = {r["id"]: dict.fromkeys(r["positive_ids"], 1) for r in rows}
    qids = [r["id"] for r in rows]
    claims = [r["query"] for r in rows]
    writer = GraceEncoder.from_pretrained("smollm2-135m-instruct")
    pool = SentenceTransformerPool(args.encoder, writer.tokenizer, writer.embedder.end_ids)
    docs = pool.embed_texts([corpus[d] for d in ids]).numpy()
    alone = per_query_metrics(search(pool.embed_texts(claims).numpy(), docs, ids), qrels, qids)["ndcg@10"]
    print(f"{args.encoder} alone: nDCG@10 {mean_interval(alone).point:.2f} on {len(qids)} training claims")
    for name in args.only:
        writer = GraceEncoder.from_pretrained("smollm2-135m-instruct", instruction=INSTRUCTIONS[name])
        rationales = writer.embedder.generate_rationales(claims, args.budget, 0.0, batch_size=16)
        q = pool.embed([EmbedRequest(c, r) for c, r in zip(claims, rationales, strict=True)]).numpy()
        nd = per_query_metrics(search(q, docs, ids), qrels, qids)["ndcg@10"]
        diff = paired_mean_interval(nd, alone)
        example = pool.decode(rationales[0])
        print(
            f"{name:10s} nDCG@10 {np.mean(nd):.2f}  vs alone {diff.point:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}]"
            f"  e.g. {claims[0]!r} -> {example[:150]!r}",
            flush=True,
        )


if __name__ == "__main__":
    main()
