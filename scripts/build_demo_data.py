"""Build the shipped demo data from ../shared/data (SICK, STS Benchmark). Run once by maintainers; output is committed.

python scripts/build_demo_data.py --shared ../shared/data --out data
python scripts/build_demo_data.py --dcg-only --out data   # only the DCG corpus + rows, from data/demo_train.jsonl

Training uses SICK TRAIN rows only (SICK TRIAL is a dev set). The shipped dev samples hold no sentence of any training
file written here (``grace_rl.eval.protocol.normalise``: the evaluation protocol's definition of "the same text").
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
from pathlib import Path

from grace_rl.eval.devsets import read_sick_rows, read_stsb_rows, training_texts
from grace_rl.eval.protocol import held_out_mask


def sick_rows(path: Path, split: str = "TRAIN") -> list[dict]:
    """Premise -> entailed sentence (positive), contradicting sentences of the same premise (hard negatives), from the
    rows of one SICK split (``SemEval_set``)."""
    by_premise: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: {"E": [], "C": []})
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["SemEval_set"].strip() != split:
                continue
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


def write_dev_samples(shared: Path, out: Path, seed: int, n: int = 200) -> dict[str, tuple[int, int, int]]:
    """The shipped dev samples, ``n`` random pairs each (random order, so any prefix spans the score range), none with
    a sentence of the training files in ``out``: ``stsb_dev_sample.tsv`` (STS-B dev, 7 tab-separated fields) and
    ``sick_trial_sample.tsv`` (SICK TRIAL rows with the SICK header). Returns per file (pairs, held out, written)."""
    texts = training_texts(out)
    rng = random.Random(seed)
    stsb = read_stsb_rows(shared / "stsb" / "sts-dev.csv")
    stsb_kept = [r for r, keep in zip(stsb, held_out_mask([(r[5], r[6]) for r in stsb], texts), strict=True) if keep]
    rng.shuffle(stsb_kept)
    lines = ["\t".join(r) for r in stsb_kept[:n]]
    (out / "stsb_dev_sample.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    header, sick = read_sick_rows(shared / "sick" / "SICK_train_trial.txt", "TRIAL")
    sentences = [(r["sentence_A"].strip(), r["sentence_B"].strip()) for r in sick]
    sick_kept = [r for r, keep in zip(sick, held_out_mask(sentences, texts), strict=True) if keep]
    rng.shuffle(sick_kept)
    lines = ["\t".join(header), *("\t".join(r[h] for h in header) for r in sick_kept[:n])]
    (out / "sick_trial_sample.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "stsb_dev_sample.tsv": (len(stsb), len(stsb_kept), min(n, len(stsb_kept))),
        "sick_trial_sample.tsv": (len(sick), len(sick_kept), min(n, len(sick_kept))),
    }


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
    print(f"wrote {len(train)} training rows ({len(with_negs)} with hard negatives)")
    print(f"wrote {build_unsup_texts(args.shared / 'stsb' / 'sts-train.csv', args.out)} unsupervised texts")
    docs, rows = build_dcg_files(args.out / "demo_train.jsonl", args.out)
    print(f"wrote a DCG corpus of {docs} documents and {rows} rows with positive_ids")
    for name, (total, held_out, written) in write_dev_samples(args.shared, args.out, args.seed).items():
        print(f"wrote {written} dev pairs to {name} ({held_out} of {total} pairs share no sentence with training)")


if __name__ == "__main__":
    main()
