"""Recipe-screening data: training rows (SICK TRAIN premise -> entailed / contradicted sentences, STS-B train pairs
scored >= 4) and 400 STS-B dev pairs deduplicated against every training text (these rows + the shipped data files).

    python bench/recipe_screen/build_screen_data.py [--shared ../shared/data]   # writes bench/results/screen/
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
from pathlib import Path

from grace_rl.eval.protocol import normalise

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench" / "results" / "screen"


def sick_rows(path: Path) -> list[dict]:
    by: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: {"E": [], "C": []})
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row.get("SemEval_set", "TRAIN") == "TRAIN" and row["entailment_label"][0] in "EC":
                by[row["sentence_A"].strip()][row["entailment_label"][0]].append(row["sentence_B"].strip())
    return [
        {"query": p, "positive": pos, "negatives": v["C"][:2], "source": "sick"}
        for p, v in by.items()
        for pos in v["E"][:1]
    ]


def stsb(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as f:
        return [r[:7] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]


def shipped_texts() -> set[str]:
    texts = {normalise(t) for t in (REPO / "data" / "demo_unsup.txt").read_text(encoding="utf-8").split("\n") if t}
    for name in ("demo_corpus.jsonl", "demo_train.jsonl"):
        for line in (REPO / "data" / name).read_text(encoding="utf-8").split("\n"):
            if line.strip():
                d = json.loads(line)
                texts |= {normalise(d[k]) for k in ("text", "query", "positive") if k in d}
                texts |= {normalise(t) for t in d.get("negatives", [])}
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    rows = sick_rows(args.shared / "sick" / "SICK_train_trial.txt")
    rows += [
        {"query": r[5].strip(), "positive": r[6].strip(), "negatives": [], "source": "stsb"}
        for r in stsb(args.shared / "stsb" / "sts-train.csv")
        if float(r[4]) >= 4.0
    ]
    random.Random(0).shuffle(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({**r, "id": f"tr-{i:05d}"}, ensure_ascii=False) for i, r in enumerate(rows)]
    (OUT / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen = shipped_texts() | {normalise(t) for r in rows for t in [r["query"], r["positive"], *r["negatives"]]}
    dev = stsb(args.shared / "stsb" / "sts-dev.csv")
    kept = [r for r in dev if normalise(r[5]) not in seen and normalise(r[6]) not in seen]
    random.Random(1).shuffle(kept)
    (OUT / "dev_screen.tsv").write_text("".join("\t".join(r) + "\n" for r in kept[:400]), encoding="utf-8")
    print(f"train rows {len(rows)}; STS-B dev {len(dev)} pairs, {len(kept)} held out, 400 written to {OUT}")


if __name__ == "__main__":
    main()
