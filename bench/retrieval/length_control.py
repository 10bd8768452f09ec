"""Length-matched control for the retrieval protocol: the untrained policy forced to write rationales of at least
`--min-tokens` tokens (HF generate's `min_new_tokens`: end tokens are suppressed until then), embedded exactly as its
protocol row is (`policy_rows`: greedy, documents as plain text cut to 128 tokens).

A trained writer that spends its whole 32-token budget while the untrained one stops at ~22 tokens could gain from
length alone; the protocol's rule is that such a gain is not a gain. This prints the base under the run's instruction
free and forced, each trained run, and the paired differences (trained minus forced base at the same budget is the
length-matched gain). Rows are cached beside the protocol's (`~/.cache/grace-rl/retrieval`).

python bench/retrieval/length_control.py --trained runs/scifact_frozen_minlen_s0 runs/scifact_frozen_minlen_s1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grace_rl.eval.protocol import run_instruction
from grace_rl.eval.retrieval_models import (
    RetrievalSettings,
    cached_rows,
    compare,
    load_encoder,
    policy_rows,
    row_key,
)
from grace_rl.eval.retrieval_protocol import load_devset
from grace_rl.models import cache_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trained", nargs="+", required=True, help="run directories sharing one instruction")
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--min-tokens", type=int, default=32)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--data-dir", default="data/scifact")
    parser.add_argument("--out", default=None, help="write the rows and differences as JSON here")
    args = parser.parse_args()
    instruction = run_instruction(args.trained[0])
    if any(run_instruction(r) != instruction for r in args.trained[1:]):
        parser.error("--trained runs must share one instruction (the base is shown under it)")
    devset = load_devset(args.data_dir)
    settings = RetrievalSettings(budgets=(0, 16, args.budget), cache_dir=cache_root() / "retrieval")

    base_key = row_key(args.base, devset, settings, instruction=instruction, kind="policy")
    free = cached_rows(
        settings, base_key, "base", lambda: policy_rows(load_encoder(args.base, instruction), "base", devset, settings)
    )
    label = f"base forced to >= {args.min_tokens} tokens"
    forced_key = {**base_key, "min_new_tokens": args.min_tokens}
    forced = cached_rows(
        settings,
        forced_key,
        label,
        lambda: policy_rows(
            load_encoder(args.base, instruction, min_new_tokens=args.min_tokens), label, devset, settings
        ),
    )
    rows = {"base": free, label: forced}
    for run in args.trained:
        name = Path(run).resolve().name
        rows[name] = cached_rows(
            settings,
            row_key(run, devset, settings, kind="policy"),
            name,
            lambda r=run, n=name: policy_rows(load_encoder(r), n, devset, settings),
        )
    at = {name: next(r for r in rs if r.budget == args.budget) for name, rs in rows.items()}
    result = {
        "instruction": instruction,
        "budget": args.budget,
        "min_tokens": args.min_tokens,
        "rows": [],
        "differences": [],
    }
    print(f"{devset.info()['name']}: {len(devset.query_ids)} queries; nDCG@10 x100 at budget {args.budget} [95% CI]")
    for name, row in at.items():
        summary = row.summary(settings.n_boot, settings.seed)
        result["rows"].append(summary)
        ci = summary["ndcg@10_ci"]
        print(
            f"  {name:36s} {summary['mean_rationale_tokens']:5.1f} tokens  {summary['ndcg@10']:6.2f} "
            f"[{ci[0]:.2f}, {ci[1]:.2f}]"
        )
    pairs = [(label, "base")] + [(Path(r).resolve().name, label) for r in args.trained]
    pairs += [(Path(r).resolve().name, "base") for r in args.trained]
    for a, b in pairs:
        diff = compare(at[a], at[b], settings)
        result["differences"].append(diff)
        ci = diff["ndcg@10_ci"]
        print(f"  {a} minus {b}: {diff['ndcg@10']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
