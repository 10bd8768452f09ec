"""Train GRACE with TRL's GRPO.

    python scripts/train_grace.py --config configs/grace_smollm2_cpu.yaml
    deepspeed scripts/train_grace.py --config configs/grace_smollm2_cpu.yaml
    accelerate launch --config_file configs/accelerate/cpu.yaml scripts/train_grace.py --config ...

Any config key can be overridden on the command line, e.g. ``--max_steps 2 --output_dir runs/try``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from grace_rl.train import main, parse_args  # noqa: E402

if __name__ == "__main__":
    summary = main(*parse_args())
    print(json.dumps(summary, indent=2))
    if summary.get("output_dir"):
        out = summary["output_dir"]
        if summary.get("before") and summary.get("after"):
            before, after = summary["before"]["spearman"], summary["after"]["spearman"]
            print(f"\nSTS Spearman x100 (greedy rationale): before {before} -> after {after}")
        print(f"Model (adapter or weights) + rationale log: {out}")
        print(f"  look at the rationales:  grace-rl inspect {out} --top 3 --by reward")
        print(f"  HTML report:             grace-rl report {out} -o {out}/report.html")
        print(f"  embed text:              grace-rl encode --model {out} --input texts.txt --output emb.npy")
