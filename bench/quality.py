"""Embedding quality on a sample of STS-B dev: base model without / with a greedy rationale, a trained model, and the
test-time scaling curve (Spearman vs rationale budget).

The sample is ``--pairs`` rows spread evenly over ``--data`` (``data/stsb_dev_sample.tsv`` is sorted by gold score,
so its first rows would cover only low scores); it is written next to the results for reproduction. Each model runs
one greedy sweep over the budgets (rationales written once at the largest budget and truncated, see
``grace_rl.eval.scaling``), so the "no rationale" (budget 0) and "greedy rationale" rows are points of that sweep.

    nice -n 10 python bench/quality.py                                   # base model only
    nice -n 10 python bench/quality.py --trained runs/grace_smollm2_cpu  # plus a trained GRACE output dir
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, RESULTS, add_threads_option, set_threads, table, write_result

from grace_rl.encoder import GraceEncoder
from grace_rl.eval.scaling import parse_budgets, scaling_curve, write_scaling
from grace_rl.eval.sts import evaluate_sts
from grace_rl.models import DEFAULT_MODEL_ID


def spread_sample(path: Path, pairs: int, out: Path) -> tuple[Path, list[float]]:
    """Write ``pairs`` lines of the STS-B file ``path`` taken at evenly spaced positions to ``out``."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if pairs > len(lines):
        raise ValueError(f"--pairs {pairs} exceeds the {len(lines)} pairs of {path}.")
    picked = [lines[i] for i in np.linspace(0, len(lines) - 1, pairs).round().astype(int)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(picked) + "\n", encoding="utf-8")
    return out, [float(line.split("\t")[4]) for line in picked]


def sweep(label: str, model: str, data: Path, budgets: list[int], batch_size: int) -> dict[str, Any]:
    start = time.perf_counter()
    encoder = GraceEncoder.from_pretrained(model)
    load = time.perf_counter() - start
    start = time.perf_counter()
    points = scaling_curve(encoder, budgets, _sts(data), batch_size=batch_size, show_progress_bar=True)
    seconds = time.perf_counter() - start
    files = write_scaling(points, "sts", RESULTS / f"quality_scaling_{label}", {"model": model})
    return {
        "label": label,
        "model": model,
        "own_budget": encoder.max_rationale_tokens,
        "points": points,
        "load_seconds": round(load, 1),
        "sweep_seconds": round(seconds, 1),
        **files,
    }


def _sts(data: Path):
    def evaluate(encoder, **kwargs):
        return evaluate_sts(encoder, data, "stsb", None, **kwargs)

    return evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "stsb_dev_sample.tsv")
    parser.add_argument("--pairs", type=int, default=100, help="Pairs sampled evenly over --data.")
    parser.add_argument("--base", default=DEFAULT_MODEL_ID, help="Base model (default id or local HF dir).")
    parser.add_argument("--trained", default=None, help="A GRACE output dir (e.g. runs/grace_smollm2_cpu).")
    parser.add_argument("--budget", type=int, default=32, help="The 'greedy rationale' row's budget.")
    parser.add_argument(
        "--scaling", type=parse_budgets, default=[0, 8, 16, 32, 64], help="Budgets, e.g. 0,8,16,32,64."
    )
    parser.add_argument("--batch-size", type=int, default=16)
    add_threads_option(parser)
    cli = parser.parse_args()
    set_threads(cli.threads)
    logging.basicConfig(level=logging.WARNING)
    budgets = sorted({0, cli.budget, *cli.scaling})
    data, gold = spread_sample(cli.data, cli.pairs, RESULTS / f"stsb_sample_{cli.pairs}.tsv")
    runs = [sweep("base", cli.base, data, budgets, cli.batch_size)]
    if cli.trained:
        if not Path(cli.trained).is_dir():
            raise SystemExit(f"--trained {cli.trained} is not a directory; train first (make demo) or fix the path.")
        runs.append(sweep("trained", cli.trained, data, budgets, cli.batch_size))

    def at(run: dict[str, Any], budget: int) -> dict[str, Any]:
        return next(p for p in run["points"] if p["max_rationale_tokens"] == budget)

    rows = []
    for run in runs:
        for budget, what in ((0, "none"), (cli.budget, f"greedy, <= {cli.budget} tokens")):
            p = at(run, budget)
            rows.append([f"{run['label']} ({run['model']})", what, p["mean_rationale_tokens"], p["spearman"]])
    print(f"STS-B dev sample: {len(gold)} pairs (gold {min(gold):.1f}..{max(gold):.1f}) from {cli.data.name}")
    print(table(["model", "rationale", "mean tokens", "Spearman x100"], rows))
    curve_rows = [
        [b, *[f"{at(r, b)['spearman']:.2f} ({at(r, b)['mean_rationale_tokens']:.1f} tok)" for r in runs]]
        for b in budgets
    ]
    print("\nScaling (greedy, Spearman x100 and mean rationale tokens used):")
    print(table(["budget", *[r["label"] for r in runs]], curve_rows))
    print("seconds per sweep: " + ", ".join(f"{r['label']} {r['sweep_seconds']}" for r in runs))
    path = write_result("quality", {"data": str(data), "pairs": len(gold), "budget": cli.budget, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
