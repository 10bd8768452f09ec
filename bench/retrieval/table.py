"""Render a `grace-rl eval retrieval-protocol` JSON as the Markdown tables of docs/retrieval.md.

python bench/retrieval/table.py runs/retrieval_protocol.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    result = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115
    print("| row | query budget (tokens used) | nDCG@10 [95% CI] | recall@100 [95% CI] |")
    print("| --- | --- | --- | --- |")
    for r in result["rows"]:
        nd, rc = r["ndcg@10_ci"], r["recall@100_ci"]
        print(
            f"| {r['label']} | {r['budget']} ({r['mean_rationale_tokens']:.1f}) | {r['ndcg@10']:.2f} [{nd[0]:.2f}, "
            f"{nd[1]:.2f}] | {r['recall@100']:.2f} [{rc[0]:.2f}, {rc[1]:.2f}] |"
        )
    print()
    print("| paired difference | nDCG@10 [95% CI] | recall@100 |")
    print("| --- | --- | --- |")
    for c in result["comparisons"]:
        nd = c["ndcg@10_ci"]
        print(
            f"| {c['a']} minus {c['b']} ({c['what']}) | {c['ndcg@10']:+.2f} [{nd[0]:+.2f}, {nd[1]:+.2f}] | "
            f"{c['recall@100']:+.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
