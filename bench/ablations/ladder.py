"""The ablation ladder of docs/ablations.md as one table per dev set, from the protocol's sweep cache.

Every rung is evaluated first with `grace-rl eval protocol` (same `--limit`, `--budgets`, `--base-echo`): this script
reads those sweeps back (an uncached one is computed, so run it after the protocol calls) and prints, per dev set,
each rung's Spearman at its training budget and at its best budget (each seed, 95% bootstrap interval), the paired
difference to the rung one line up (same seed, same pairs), training seconds and encode texts/s; then the issue's
target differences (shipped hybrid minus embedding-loss-only, minus the contrastive baseline at equal wall-clock,
minus contrastive-trained echo). Writes the numbers as JSON with `--json`.

    python bench/ablations/ladder.py --limit 400 --budgets 0,8,16,32 --json docs/quality/ablation_ladder.json

Rung directories default to docs/ablations.md's names under `--runs` (runs/ablations); `--hybrid` names the shipped
recipe's two runs when they were trained elsewhere.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.eval.devsets import load_dev_sets
from grace_rl.eval.protocol import evaluate_model, model_specs
from grace_rl.eval.protocol_samples import evaluate_samples
from grace_rl.eval.specs import ProtocolSettings, SampleSettings
from grace_rl.eval.stats import paired_difference_interval, spearman, spearman_interval
from grace_rl.models import cache_root
from grace_rl.prompts import PARAPHRASE_INSTRUCTION


@dataclass
class Rung:
    name: str
    trains: str
    labels: list[str]  # one model label per seed (base rungs: one label)
    train_seconds: list[float | None]


def _train_seconds(run: Path) -> float | None:
    if (run / "baseline.json").is_file():
        return json.loads((run / "baseline.json").read_text())["train_seconds"]
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            rec = json.loads(line)
            if "train_runtime" in rec:
                return float(rec["train_runtime"])
    return None


def _fmt(ci) -> str:
    return f"{ci.point:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def _fmt_diff(ci) -> str:
    return f"{ci.point:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/ablations"))
    p.add_argument(
        "--hybrid", default=None, help="Comma-separated run dirs of the shipped recipe (default RUNS/hybrid_sN)."
    )
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--budgets", default="0,8,16,32,64")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--samples-limit",
        type=int,
        default=None,
        help="Also compare the shipped hybrid with embedding-loss-only at K sampled rationales averaged (the "
        "sampled-K lever), on STS-B dev thinned to this many pairs (run `grace-rl eval protocol --datasets stsb-dev "
        "--limit N --budgets 32 --samples 1,4 --samples-trained-only` on both rungs first).",
    )
    p.add_argument("--samples", default="1,4")
    args = p.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",")]
    r = args.runs
    hybrid = [Path(x) for x in args.hybrid.split(",")] if args.hybrid else [r / f"hybrid_s{s}" for s in seeds]
    groups = {
        "contrastive, equal rows (plain)": ("MNRL", [r / f"st_plain_s{s}" for s in seeds]),
        "contrastive, equal rows (template)": ("MNRL", [r / f"st_template_s{s}" for s in seeds]),
        "contrastive, equal wall-clock (template)": ("MNRL", [r / f"st_wall_s{s}" for s in seeds]),
        "echo, contrastive": ("MNRL", [r / f"st_echo_s{s}" for s in seeds]),
        "embedding loss only": ("emb. loss", [r / f"emb_only_s{s}" for s in seeds]),
        "pure RL (GRACE)": ("GRPO", [r / f"rl_only_s{s}" for s in seeds]),
        "shipped hybrid": ("GRPO + emb. loss", hybrid),
    }
    trained = [run for _, runs in groups.values() for run in runs]
    specs = model_specs("smollm2-135m-instruct", trained, base_echo=True, instructions=[PARAPHRASE_INSTRUCTION])
    by_path = {Path(s.path): s for s in specs if s.role == "trained"}
    budgets = sorted({int(b) for b in args.budgets.split(",")} | {s.training_budget for s in by_path.values()})
    settings = ProtocolSettings(budgets=tuple(budgets), cache_dir=cache_root() / "protocol", show_progress_bar=False)
    devsets = load_dev_sets(["stsb-dev", "sick-trial"], None, limit=args.limit)

    rungs = [
        Rung("base", "-", ["base"], [0.0]),
        Rung("base+prompt", "-", ["base+prompt"], [0.0]),
    ]
    order = list(groups.items())
    rungs += [
        Rung(n, t, [by_path[x].label for x in runs], [_train_seconds(x) for x in runs]) for n, (t, runs) in order[:3]
    ]
    rungs.append(Rung("echo, untrained (base+prompt+echo)", "-", ["base+prompt+echo"], [0.0]))
    rungs += [
        Rung(n, t, [by_path[x].label for x in runs], [_train_seconds(x) for x in runs]) for n, (t, runs) in order[3:]
    ]

    spec_of = {s.label: s for s in specs}
    out: dict[str, Any] = {"limit": args.limit, "budgets": budgets, "datasets": {}}
    for ds in devsets:
        gold = ds.gold()
        n_unique = len({t for pair in ds.pairs for t in (pair.a, pair.b)})
        sweeps = {}
        for rung in rungs:
            for label in rung.labels:
                if label not in sweeps:
                    sweeps[label] = evaluate_model(spec_of[label], [ds], budgets, settings)[ds.name]

        def cos(label: str, budget: int, sweeps: dict = sweeps) -> np.ndarray:
            return np.asarray(next(p for p in sweeps[label]["points"] if p["budget"] == budget)["cosines"])

        def own_budget(label: str) -> int:
            s = spec_of[label]
            return s.training_budget if s.training_budget is not None else 32  # base rungs: the recipe's budget

        rows = []
        print(f"\n### {ds.name} ({len(ds.pairs)} pairs{'' if ds.limit is None else ', evenly spaced'})\n")
        print(
            "| rung | trains | at training budget | at best budget | vs rung above (paired, same seed) | train s "
            "| encode texts/s |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        prev = None
        for rung in rungs:
            cells_own, cells_best, cells_diff, rates, rec = [], [], [], [], {"rung": rung.name, "seeds": []}
            for i, label in enumerate(rung.labels):
                t = own_budget(label)
                own = spearman_interval(cos(label, t), gold, settings.n_boot, settings.seed)
                best_b = max(sorted(budgets), key=lambda b: spearman(cos(label, b), gold))
                best = spearman_interval(cos(label, best_b), gold, settings.n_boot, settings.seed)
                cells_own.append(f"{_fmt(own)} @{t}")
                cells_best.append(f"{_fmt(best)} @{best_b}")
                seed_rec = {
                    "label": label,
                    "budget": t,
                    "spearman": own.as_dict("spearman"),
                    "best_budget": best_b,
                    "best": best.as_dict("spearman"),
                    "train_seconds": rung.train_seconds[i],
                }
                if prev is not None:
                    other = prev.labels[min(i, len(prev.labels) - 1)]
                    d = paired_difference_interval(
                        cos(label, t), cos(other, own_budget(other)), gold, settings.n_boot, settings.seed
                    )
                    cells_diff.append(_fmt_diff(d))
                    seed_rec["vs_above"] = {"other": other, **d.as_dict("difference")}
                secs = sweeps[label]["seconds"]
                if secs:
                    rates.append(n_unique / secs)
                rec["seeds"].append(seed_rec)
            tsec = " / ".join("-" if s is None else f"{s:.0f}" for s in rung.train_seconds)
            rate = " / ".join(f"{x:.1f}" for x in rates) or "-"
            print(
                f"| {rung.name} | {rung.trains} | {' / '.join(cells_own)} | {' / '.join(cells_best)} | "
                f"{' / '.join(cells_diff) or '-'} | {tsec} | {rate} |"
            )
            rows.append(rec)
            prev = rung

        targets = []
        named = {x.name: x for x in rungs}
        print("\n| target difference (paired, at training budgets) | seed 0 | seed 1 |\n| --- | --- | --- |")
        for other, need in (
            ("embedding loss only", 2.0),
            ("contrastive, equal wall-clock (template)", 5.0),
            ("echo, contrastive", 2.0),
        ):
            cells = []
            for a, b in zip(named["shipped hybrid"].labels, named[other].labels, strict=True):
                d = paired_difference_interval(
                    cos(a, own_budget(a)), cos(b, own_budget(b)), gold, settings.n_boot, settings.seed
                )
                cells.append(_fmt_diff(d))
                targets.append({"a": a, "b": b, "target": need, **d.as_dict("difference")})
            print(f"| shipped hybrid minus {other} (target >= +{need:g}, lower end > 0) | {' | '.join(cells)} |")
        out["datasets"][ds.name] = {"info": ds.info(), "rungs": rows, "targets": targets}

    if args.samples_limit:
        out["sampled_k"] = _sampled_k(
            args,
            [by_path[x] for x in groups["shipped hybrid"][1]],
            [by_path[x] for x in groups["embedding loss only"][1]],
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"\nwrote {args.json}")


def _sampled_k(args: argparse.Namespace, hybrid: list, emb_only: list) -> list[dict[str, Any]]:
    """Shipped hybrid minus embedding-loss-only, seed by seed, at each count of sampled rationales averaged."""
    (ds,) = load_dev_sets(["stsb-dev"], None, limit=args.samples_limit)
    samples = SampleSettings(counts=tuple(int(c) for c in args.samples.split(",")), include_base=False)
    settings = ProtocolSettings(budgets=(32,), cache_dir=cache_root() / "protocol", show_progress_bar=False)
    gold, rows = ds.gold(), []
    print(f"\n### sampled-K lever: {ds.name}, {len(ds.pairs)} pairs, T={samples.temperature}, 32 tokens\n")
    print(
        "| rationales averaged | hybrid (s0 / s1) | embedding loss only (s0 / s1) | hybrid minus emb. only (paired) |"
    )
    print("| --- | --- | --- | --- |")
    sweeps = {s.label: evaluate_samples(s, [ds], 32, samples, settings)[ds.name]["points"] for s in hybrid + emb_only}
    for k in samples.counts:

        def cos(label: str, k: int = k) -> np.ndarray:
            return np.asarray(next(p for p in sweeps[label] if p["num_rationales"] == k)["cosines"])

        h = [spearman_interval(cos(s.label), gold) for s in hybrid]
        e = [spearman_interval(cos(s.label), gold) for s in emb_only]
        d = [
            paired_difference_interval(cos(a.label), cos(b.label), gold) for a, b in zip(hybrid, emb_only, strict=True)
        ]
        print(f"| {k} | {' / '.join(map(_fmt, h))} | {' / '.join(map(_fmt, e))} | {' / '.join(map(_fmt_diff, d))} |")
        rows.append(
            {
                "k": k,
                "hybrid": [x.as_dict("spearman") for x in h],
                "emb_only": [x.as_dict("spearman") for x in e],
                "difference": [x.as_dict("difference") for x in d],
            }
        )
    return rows


if __name__ == "__main__":
    main()
