"""Paired differences between two trained runs on the STS dev sets, from the protocol's sweep cache.

`grace-rl eval protocol` gives each run against the bar (the base at its best budget); a lever is judged against its
twin (e.g. a recipe minus the same recipe with the policy gradient off, same seed). This prints, per dev set and per
`--pair A,B`, Spearman(A) - Spearman(B) x100 at each run's training budget with the protocol's paired bootstrap
interval (same pairs, 1,000 resamples). Evaluate both runs first with the same `--limit` / `--budgets`:

    grace-rl eval protocol --limit 400 --budgets 0,8,16,32 --trained RUN_A RUN_B --out runs/lever
    python bench/ablations/paired.py --limit 400 --budgets 0,8,16,32 --pair RUN_A,RUN_B [--pair ...] [--json OUT]

A run directory that no longer exists (runs are large; the ladder's were deleted after evaluation) is read from the
newest cached sweep that names its path, the dev set's pairs and the budgets; the table says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.eval.devsets import load_dev_sets
from grace_rl.eval.protocol import evaluate_model, model_specs
from grace_rl.eval.specs import ProtocolSettings
from grace_rl.eval.stats import paired_difference_interval, spearman_interval
from grace_rl.models import cache_root


def _read_cache(cache_dir: Path) -> list[tuple[float, dict[str, Any]]]:
    """Every readable cached sweep with its file's mtime (read once; deleted runs are looked up in it)."""
    records = []
    for f in cache_dir.glob("sweep-*.json"):
        try:
            records.append((f.stat().st_mtime, json.loads(f.read_text(encoding="utf-8"))))
        except (OSError, json.JSONDecodeError):
            continue
    return records


def _cached_by_path(
    records: list[tuple[float, dict[str, Any]]], run: Path, digest: str, budgets: list[int]
) -> dict[str, Any] | None:
    """The newest cached sweep of a deleted run directory (matched on its resolved path, pairs and budgets)."""
    hits = []
    for mtime, record in records:
        key = record.get("key", {})
        if (
            key.get("model", {}).get("model") == str(run.resolve())
            and key.get("pairs") == digest
            and key.get("budgets") == budgets
            and "embedding" not in key
            and "instruction" not in key
        ):
            hits.append((mtime, record))
    return max(hits, key=lambda h: h[0])[1] if hits else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", action="append", required=True, metavar="RUN_A,RUN_B", help="Report A minus B.")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--budgets", default="0,8,16,32,64")
    p.add_argument("--datasets", default="stsb-dev,sick-trial")
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="Compare at this budget (default: each run's own training budget; 32 for a deleted run).",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    pairs = []
    for spec in args.pair:
        parts = spec.split(",")
        if len(parts) != 2 or not all(parts):
            p.error(f"--pair {spec!r}: give two run directories separated by a comma")
        pairs.append((Path(parts[0]), Path(parts[1])))
    runs = list(dict.fromkeys(r for pair in pairs for r in pair))
    live = [r for r in runs if r.is_dir()]
    try:
        specs = {Path(s.path): s for s in model_specs("smollm2-135m-instruct", live) if s.role == "trained"}
    except (OSError, ValueError) as err:  # not a GRACE run directory, or an unreadable grace_config.json
        p.error(f"--pair: {err}")
    budgets = sorted({int(b) for b in args.budgets.split(",")} | {s.training_budget for s in specs.values()})
    settings = ProtocolSettings(budgets=tuple(budgets), cache_dir=cache_root() / "protocol", show_progress_bar=False)
    devsets = load_dev_sets(args.datasets.split(","), None, limit=args.limit)

    cached = _read_cache(settings.cache_dir) if any(r not in specs for r in runs) else []
    out: dict[str, Any] = {"limit": args.limit, "budgets": budgets, "datasets": {}}
    for ds in devsets:
        gold = ds.gold()
        sweeps: dict[Path, dict[str, Any]] = {}
        notes: dict[Path, str] = {}
        for run in runs:
            if run in specs:
                sweeps[run] = evaluate_model(specs[run], [ds], budgets, settings)[ds.name]
                continue
            record = _cached_by_path(cached, run, ds.digest, budgets)
            if record is None:
                p.error(
                    f"{run}: no such run directory and no cached sweep of it on {ds.name} at budgets {budgets} "
                    f"(limit {args.limit})"
                )
            sweeps[run], notes[run] = record, " (cached; run dir gone)"

        def at(run: Path, sweeps: dict = sweeps) -> tuple[int, np.ndarray]:
            points = sweeps[run]["points"]
            own = args.budget if args.budget is not None else (specs[run].training_budget if run in specs else 32)
            point = next((q for q in points if q["budget"] == own), None)
            if point is None:
                p.error(f"{run}: no sweep point at budget {own} (budgets {[q['budget'] for q in points]})")
            return own, np.asarray(point["cosines"])

        print(f"\n### {ds.name} ({len(ds.pairs)} pairs)\n")
        print("| A | B | A | B | A minus B (paired) |\n| --- | --- | --- | --- | --- |")
        rows = []
        for a, b in pairs:
            (ba, ca), (bb, cb) = at(a), at(b)
            sa = spearman_interval(ca, gold, settings.n_boot, settings.seed)
            sb = spearman_interval(cb, gold, settings.n_boot, settings.seed)
            d = paired_difference_interval(ca, cb, gold, settings.n_boot, settings.seed)
            print(
                f"| {a.name}{notes.get(a, '')} | {b.name}{notes.get(b, '')} | {sa.point:.2f} @{ba} | "
                f"{sb.point:.2f} @{bb} | {d.point:+.2f} [{d.low:+.2f}, {d.high:+.2f}] |"
            )
            rows.append(
                {
                    "a": str(a),
                    "b": str(b),
                    "a_budget": ba,
                    "b_budget": bb,
                    "a_spearman": sa.point,
                    "b_spearman": sb.point,
                    **d.as_dict("difference"),
                }
            )
        out["datasets"][ds.name] = {"info": ds.info(), "pairs": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
