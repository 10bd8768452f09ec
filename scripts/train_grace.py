"""Train GRACE with TRL's GRPO: the thin script the `deepspeed` / `accelerate launch` launchers need.

    grace-rl train --config configs/grace_smollm2_cpu.yaml                 # the entry point
    python scripts/train_grace.py --config configs/grace_smollm2_cpu.yaml   # the same, as a script
    deepspeed scripts/train_grace.py --config configs/grace_smollm2_cpu.yaml
    accelerate launch --config_file configs/accelerate/cpu.yaml scripts/train_grace.py --config ...

Any config key can be overridden on the command line, e.g. `--max_steps 2 --output_dir runs/try`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from grace_rl.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
