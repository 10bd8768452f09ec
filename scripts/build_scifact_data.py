"""Build the shipped SciFact retrieval files from a BEIR SciFact directory (run once by maintainers; output committed).

python scripts/build_scifact_data.py --beir ../shared/data/scifact --out data/scifact

Writes (see data/scifact/README.md): `corpus.jsonl` (the dev corpus the protocol searches: every gold document of the
dev claims plus a seeded sample of other abstracts), `train_corpus.jsonl` (the training index: every gold document of
the training claims plus a seeded sample of abstracts that are not gold for a dev claim), `train.jsonl` (supervised
rows `{id, query, positive, positive_ids, negatives}` of the training claims), `dev_queries.jsonl` and `dev_qrels.tsv`
(the retrieval dev split). The split is :func:`grace_rl.eval.scifact.carve_split` (20% of the judged train claims
by a hash of the id; training claims that share a gold abstract or the text of a dev claim are dropped).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grace_rl.eval.protocol import normalise
from grace_rl.eval.retrieval import read_qrels
from grace_rl.eval.scifact import DEV_FRACTION, carve_split, cpu_corpus_ids
from grace_rl.run_files import iter_jsonl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", default="../shared/data/scifact", help="BEIR SciFact directory.")
    parser.add_argument("--out", default="data/scifact", help="Output directory.")
    parser.add_argument("--corpus-size", type=int, default=500, help="Documents in the dev corpus.")
    parser.add_argument("--train-corpus-size", type=int, default=500, help="Documents in the training corpus.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the corpus sample.")
    parser.add_argument("--dev-fraction", type=float, default=DEV_FRACTION)
    args = parser.parse_args(argv)
    beir, out = Path(args.beir), Path(args.out)
    docs = {str(row["_id"]): row for _, row in iter_jsonl(beir / "corpus.jsonl")}
    queries = {str(row["_id"]): row["text"] for _, row in iter_jsonl(beir / "queries_train.jsonl")}
    qrels = read_qrels(beir / "qrels" / "train.tsv")
    split = carve_split(queries, qrels, args.dev_fraction, normalise=normalise)
    gold = lambda q: [d for d, r in qrels[q].items() if r > 0]  # noqa: E731
    dev_gold = {d for q in split.dev for d in gold(q)}
    train_gold = {d for q in split.train for d in gold(q)}
    ids = cpu_corpus_ids(list(docs), dev_gold, args.corpus_size, args.seed)
    not_dev_gold = [d for d in docs if d not in dev_gold]
    train_ids = cpu_corpus_ids(not_dev_gold, train_gold, args.train_corpus_size, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, chosen in (("corpus.jsonl", ids), ("train_corpus.jsonl", train_ids)):
        with (out / name).open("w", encoding="utf-8") as f:
            for d in chosen:
                row = docs[d]
                f.write(json.dumps({"_id": d, "title": row.get("title", ""), "text": row["text"]}, ensure_ascii=False))
                f.write("\n")
    text_of = {d: (docs[d].get("title") + " " if docs[d].get("title") else "") + docs[d]["text"] for d in train_ids}
    with (out / "train.jsonl").open("w", encoding="utf-8") as f:
        for q in split.train:
            golds = gold(q)
            row = {"id": f"scifact-{q}", "query": queries[q], "positive": text_of[golds[0]], "positive_ids": golds}
            f.write(json.dumps({**row, "negatives": []}, ensure_ascii=False) + "\n")
    with (out / "dev_queries.jsonl").open("w", encoding="utf-8") as f:
        for q in split.dev:
            f.write(json.dumps({"_id": q, "text": queries[q]}, ensure_ascii=False) + "\n")
    with (out / "dev_qrels.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in split.dev:
            for d in gold(q):
                f.write(f"{q}\t{d}\t1\n")
    print(
        f"dev {len(split.dev)} claims ({sum(len(gold(q)) for q in split.dev)} judgements), train {len(split.train)} "
        f"claims (dropped {len(split.dropped_shared_gold)} sharing a dev gold abstract, "
        f"{len(split.dropped_same_text)} with a dev claim's text); dev corpus {len(ids)} documents ({len(dev_gold)} "
        f"gold + {len(ids) - len(dev_gold)} sampled), training corpus {len(train_ids)} ({len(train_gold)} gold + "
        f"{len(train_ids) - len(train_gold)} sampled, none gold for a dev claim), seed {args.seed} -> {out}"
    )


if __name__ == "__main__":
    main()
