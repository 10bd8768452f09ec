"""Length-matched control for the STS protocol: the base model under the runs' instruction forced to write rationales
of at least `--min-tokens` tokens (HF generate's `min_new_tokens`: end tokens are suppressed until then), swept as the
protocol sweeps (greedy, one generation at the budget), against each trained run's cached protocol sweep.

A trained writer that spends its whole 32-token budget while the untrained one stops at ~20 tokens could gain from
length alone; the protocol's rule is that such a gain is not a gain. Prints, per dev set, the base free and forced and
each run at `--budget`, and the paired differences (run minus forced base is the length-matched gain). Run
`grace-rl eval protocol --limit L --budgets B --trained RUNS` first with the same `--limit` and `--budgets`: the runs'
and the free base's sweeps are read from its cache; the forced base is cached beside them.

python bench/ablations/sts_length_control.py --trained runs/sts_frozen_floor_s0 runs/sts_frozen_floor_s1 --limit 400
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grace_rl.eval.devsets import DATA_DIR, load_dev_sets
from grace_rl.eval.protocol import run_instruction, sweep_pairs
from grace_rl.eval.protocol_cache import cache_key, embedded_by, load_sweep, save_sweep
from grace_rl.eval.retrieval_models import load_encoder
from grace_rl.eval.stats import paired_difference_interval, spearman_interval
from grace_rl.models import cache_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trained", nargs="+", required=True, help="run directories sharing one instruction")
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--min-tokens", type=int, default=32)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--budgets", default="0,8,16,32", help="the protocol call's --budgets (for its cache keys)")
    parser.add_argument("--limit", type=int, default=None, help="the protocol call's --limit")
    parser.add_argument("--datasets", default="stsb-dev,sick-trial")
    parser.add_argument("--shared-data", default=None)
    parser.add_argument("--out", default=None, help="write the rows and differences as JSON here")
    args = parser.parse_args()
    instruction = run_instruction(args.trained[0])
    if any(run_instruction(r) != instruction for r in args.trained[1:]):
        parser.error("--trained runs must share one instruction (the base is shown under it)")
    budgets = sorted({int(b) for b in args.budgets.split(",")} | {args.budget})
    cache = cache_root() / "protocol"
    devsets = load_dev_sets(args.datasets.split(","), args.shared_data, DATA_DIR, args.limit)
    label = f"base+prompt forced to >= {args.min_tokens} tokens"
    result = {"instruction": instruction, "budget": args.budget, "min_tokens": args.min_tokens, "datasets": {}}
    for ds in devsets:
        gold = ds.gold()
        base_record = load_sweep(cache, cache_key(args.base, ds.digest, budgets, instruction))
        if base_record is None:
            parser.error(f"{ds.name}: no cached base+prompt sweep at budgets {budgets}; run the protocol first")
        forced_key = cache_key(args.base, ds.digest, [args.budget], instruction) | {"min_new_tokens": args.min_tokens}
        forced = load_sweep(cache, forced_key)
        if forced is None:
            encoder = load_encoder(args.base, instruction, min_new_tokens=args.min_tokens)
            forced = {"key": forced_key, "points": sweep_pairs(encoder, ds.pairs, [args.budget]), "seconds": 0.0}
            save_sweep(cache, forced)
        points = {"base+prompt": base_record["points"], label: forced["points"]}
        for run in args.trained:
            record = load_sweep(cache, cache_key(run, ds.digest, budgets) | embedded_by(run))
            if record is None:
                parser.error(f"{run} on {ds.name}: no cached protocol sweep at budgets {budgets}; run the protocol")
            points[Path(run).resolve().name] = record["points"]
        at = {name: next(p for p in pts if p["budget"] == args.budget) for name, pts in points.items()}
        rows, diffs = [], []
        print(f"{ds.name}: {len(ds.pairs)} pairs; Spearman x100 at budget {args.budget} [95% CI]")
        for name, p in at.items():
            ci = spearman_interval(p["cosines"], gold)
            rows.append({"label": name, "tokens": p["mean_rationale_tokens"], **ci.as_dict("spearman")})
            print(
                f"  {name:40s} {p['mean_rationale_tokens']:5.1f} tokens  {ci.point:6.2f} [{ci.low:.2f}, {ci.high:.2f}]"
            )
        names = [Path(r).resolve().name for r in args.trained]
        for a, b in [(label, "base+prompt")] + [(n, label) for n in names] + [(n, "base+prompt") for n in names]:
            iv = paired_difference_interval(at[a]["cosines"], at[b]["cosines"], gold)
            diffs.append({"a": a, "b": b, **iv.as_dict("difference")})
            print(f"  {a} minus {b}: {iv.point:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}]")
        result["datasets"][ds.name] = {"pairs": len(ds.pairs), "rows": rows, "differences": diffs}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
