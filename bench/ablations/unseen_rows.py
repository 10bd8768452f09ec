"""The training rows a GRACE run never saw: its dataset minus every row id its `rationales.jsonl` logged.

A second training stage that starts from a run (configs/experiments/emb_then_rl.yaml) trains on these, so its reward is
not read off rows the starting model has already fitted (there the InfoNCE reward is saturated: no spread, no
advantage).

python bench/ablations/unseen_rows.py --run runs/ablations/emb_only_s0 --out runs/data/unseen_emb_only_s0.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grace_rl.errors import UserError
from grace_rl.inspection.log import read_rationales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="A GRACE run directory with rationales.jsonl.")
    parser.add_argument("--data", type=Path, default=Path("data/demo_train.jsonl"), help="The run's training rows.")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:  # the project's reader: a torn middle line names the file and line
        seen = {record["prompt_id"] for record in read_rationales(args.run)}
        rows = [line for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = [line for line in rows if json.loads(line)["id"] not in seen]
    except (OSError, ValueError, KeyError, UserError) as err:
        parser.error(f"{type(err).__name__}: {err}")
    if not kept:
        parser.error(f"every row of {args.data} was seen by {args.run}: nothing to write")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    print(f"{len(kept)} of {len(rows)} rows unseen by {args.run} ({len(seen)} row ids seen) -> {args.out}")


if __name__ == "__main__":
    main()
