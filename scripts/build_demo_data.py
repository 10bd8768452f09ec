"""Build the shipped demo data from ../shared/data (SICK, STS Benchmark). Run once by maintainers; output is committed.

python scripts/build_demo_data.py --shared ../shared/data --out data
python scripts/build_demo_data.py --dcg-only --out data   # only the DCG corpus + rows, from data/demo_train.jsonl
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
from pathlib import Path


def sick_rows(path: Path) -> list[dict]:
    """Premise -> entailed sentence (positive), contradicting sentences of the same premise (hard negatives)."""
    by_premise: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: {"E": [], "C": []})
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            label = row["entailment_label"][0]
            if label in "EC":
                by_premise[row["sentence_A"].strip()][label].append(row["sentence_B"].strip())
    rows = []
    for premise, v in by_premise.items():
        for pos in v["E"][:1]:
            rows.append({"query": premise, "positive": pos, "negatives": v["C"][:2], "source": "sick"})
    return rows


def stsb_pairs(path: Path) -> list[tuple[float, str, str]]:
    with path.open(encoding="utf-8") as f:
        return [
            (float(r[4]), r[5].strip(), r[6].strip()) for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]


def build_dcg_files(train_path: Path, out: Path) -> tuple[int, int]:
    """The DCG demo: ``demo_corpus.jsonl`` = every distinct positive and hard negative of the training rows (in order
    of first appearance, ids ``doc-NNNN``), and ``demo_train_dcg.jsonl`` = the rows with ``positive_ids`` into it."""
    rows = [json.loads(line) for line in train_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = list(dict.fromkeys(t for r in rows for t in [r["positive"], *r.get("negatives", [])]))
    doc_id = {t: f"doc-{i:04d}" for i, t in enumerate(texts)}
    with (out / "demo_corpus.jsonl").open("w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"id": doc_id[t], "text": t}, ensure_ascii=False) + "\n")
    with (out / "demo_train_dcg.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({**r, "positive_ids": [doc_id[r["positive"]]]}, ensure_ascii=False) + "\n")
    return len(texts), len(rows)


def build_unsup_texts(stsb_train: Path, out: Path, n: int = 500, seed: int = 1) -> int:
    """``demo_unsup.txt``: distinct STS-B train sentences, one per line (the unsupervised demo set)."""
    texts = list(dict.fromkeys(t for _, a, b in stsb_pairs(stsb_train) for t in (a, b) if t))
    random.Random(seed).shuffle(texts)
    (out / "demo_unsup.txt").write_text("\n".join(texts[:n]) + "\n", encoding="utf-8")
    return min(n, len(texts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dcg-only", action="store_true", help="only rebuild the DCG corpus/rows from demo_train.jsonl")
    args = ap.parse_args()
    if args.dcg_only:
        docs, rows = build_dcg_files(args.out / "demo_train.jsonl", args.out)
        print(f"wrote a corpus of {docs} documents and {rows} rows with positive_ids")
        return
    rng = random.Random(args.seed)
    sick = sick_rows(args.shared / "sick" / "SICK_train_trial.txt")
    with_negs = [r for r in sick if r["negatives"]]
    without = [r for r in sick if not r["negatives"]]
    rng.shuffle(without)
    sts = [
        {"query": a, "positive": b, "negatives": [], "source": "stsb"}
        for s, a, b in stsb_pairs(args.shared / "stsb" / "sts-train.csv")
        if s >= 4.0
    ]
    rng.shuffle(sts)
    train = with_negs + without[:250] + sts[:300]
    rng.shuffle(train)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "demo_train.jsonl").open("w", encoding="utf-8") as f:
        for i, row in enumerate(train):
            f.write(json.dumps({"id": f"demo-{i:04d}", **row}, ensure_ascii=False) + "\n")
    # Held-out evaluation sample: STS-B dev (never trained on), a random sample.
    dev_lines = (args.shared / "stsb" / "sts-dev.csv").read_text(encoding="utf-8").splitlines()
    rng.shuffle(dev_lines)
    dev_lines = dev_lines[:200]  # random order, so that any prefix (eval_sts_limit, --limit) spans the score range
    (args.out / "stsb_dev_sample.tsv").write_text("\n".join(dev_lines) + "\n", encoding="utf-8")
    print(f"wrote {len(train)} training rows ({len(with_negs)} with hard negatives) and {len(dev_lines)} dev pairs")
    print(f"wrote {build_unsup_texts(args.shared / 'stsb' / 'sts-train.csv', args.out)} unsupervised texts")
    docs, rows = build_dcg_files(args.out / "demo_train.jsonl", args.out)
    print(f"wrote a DCG corpus of {docs} documents and {rows} rows with positive_ids")


if __name__ == "__main__":
    main()
