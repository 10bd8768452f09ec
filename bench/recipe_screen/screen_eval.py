"""Screening evaluation: Spearman x100 with a 95% bootstrap interval at each rationale budget (one greedy
`grace_rl.eval.sweep.sweep_sts`), and (``--against``) the paired interval of the difference to another run's saved
cosines (e.g. the base model at its best budget).

    python bench/recipe_screen/screen_eval.py MODEL --budgets 8,0 --tag base
    python bench/recipe_screen/screen_eval.py runs/experiments/r2 --budgets 32,0 --tag r2s0 --against base_8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from grace_rl.encoder import GraceEncoder
from grace_rl.eval.stats import Pair, paired_difference_interval
from grace_rl.eval.sts import read_sts
from grace_rl.eval.sweep import sweep_sts

OUT = Path(__file__).resolve().parents[2] / "bench" / "results" / "screen"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data", type=Path, default=OUT / "dev_screen.tsv")
    parser.add_argument("--budgets", default="32,0")
    parser.add_argument("--tag", required=True, help="Name of this run's saved cosines: OUT/cos_TAG_BUDGET.npy.")
    parser.add_argument("--against", default=None, help="TAG_BUDGET of saved cosines for the paired difference.")
    args = parser.parse_args()
    a, b, gold = read_sts(args.data, "stsb")
    gold = np.asarray(gold)
    pairs = [Pair(*p) for p in zip(a, b, gold, strict=True)]
    encoder = GraceEncoder.from_pretrained(args.model)
    budgets = [int(x) for x in args.budgets.split(",")]
    points = {p.budget: p for p in sweep_sts(encoder, pairs, budgets, intervals=True, show_progress_bar=True)}
    for budget in budgets:
        cos = points[budget].cosines  # (P,)
        np.save(OUT / f"cos_{args.tag}_{budget}.npy", cos)
        result = {"tag": args.tag, "budget": budget, **points[budget].interval.as_dict("spearman")}
        if args.against:
            diff = paired_difference_interval(cos, np.load(OUT / f"cos_{args.against}.npy"), gold)
            result["minus_" + args.against] = diff.as_dict("difference")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
