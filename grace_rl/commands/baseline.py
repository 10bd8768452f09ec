"""`grace-rl baseline`: the contrastive baseline (sentence-transformers + MultipleNegativesRankingLoss) on the same
base model and rows as a GRACE recipe; see :mod:`grace_rl.contrastive` and docs/ablations.md."""

from __future__ import annotations

import argparse
import json

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.commands import HelpFormatter, examples

MODES = ("plain", "template", "echo")  # grace_rl.contrastive.MODES (checked there); not imported: --help stays fast


def cmd_baseline(args: argparse.Namespace) -> int:
    from grace_rl.contrastive import BaselineSettings, train_baseline
    from grace_rl.prompts import PARAPHRASE_INSTRUCTION
    from grace_rl.run_files import refuse_output_dir

    settings = BaselineSettings(
        output_dir=args.output_dir,
        model=args.model,
        data=args.data,
        embedding=args.embedding,
        instruction=args.instruction or PARAPHRASE_INSTRUCTION,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        scale=args.scale,
        seed=args.seed,
        max_rows=args.max_rows,
    )
    refuse_output_dir(args.output_dir, "--output-dir")  # not into a run or a saved model; before any model loads
    summary = train_baseline(settings, trust_remote_code=args.trust_remote_code)
    print(json.dumps({k: summary[k] for k in ("steps", "train_seconds", "rows")} | {"output_dir": args.output_dir}))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline",
        help="Contrastive baseline: fine-tune the base model with sentence-transformers (MNRL) on the same rows.",
        description="Fine-tune the base model as an embedder with sentence-transformers' MultipleNegativesRankingLoss "
        "(in-batch + the rows' hard negatives), mean pooling, full fine-tuning; save a sentence-transformers "
        "directory that `grace-rl eval protocol --trained DIR` evaluates at budget 0. Prints one JSON line.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl baseline --output-dir runs/baseline/plain_s0                       # equal rows: 20 x 4",
            "grace-rl baseline --output-dir runs/baseline/template_s0 --embedding template",
            "grace-rl baseline --output-dir runs/baseline/wall_s0 --max-steps 100000 --max-seconds 900",
            "grace-rl eval protocol --trained runs/baseline/plain_s0 runs/baseline/template_s0",
        ),
    )
    p.add_argument(
        "--output-dir",
        required=True,
        help="Where the sentence-transformers directory is saved: a new folder (a training run's folder, a saved "
        "model's, or one inside them is refused).",
    )
    p.add_argument("--model", default=DEFAULT_MODEL_ID, help="Base model: the default id or a local HF dir.")
    p.add_argument("--data", default="data/demo_train.jsonl", help="Supervised rows {query, positive, negatives?}.")
    p.add_argument(
        "--embedding",
        choices=MODES,
        default="plain",
        help="plain: the text alone; template: inside the chat template with --instruction (GRACE at budget 0); "
        "echo: the template with the text repeated in the rationale slot.",
    )
    p.add_argument("--instruction", default=None, help="System turn of template/echo (default: the shipped recipe's).")
    p.add_argument("--max-steps", type=int, default=20, help="Optimizer steps (the shipped recipe's 20).")
    p.add_argument("--max-seconds", type=float, default=None, help="Stop the training loop after this many seconds.")
    p.add_argument("--batch-size", type=int, default=4, help="Rows per step (the recipe's 4 prompts).")
    p.add_argument("--learning-rate", type=float, default=2e-5, help="Constant learning rate.")
    p.add_argument("--scale", type=float, default=20.0, help="MNRL scale = 1 / temperature (20 = 0.05).")
    p.add_argument("--seed", type=int, default=0, help="Shuffling seed.")
    p.add_argument("--max-rows", type=int, default=None, help="Use only the first N rows.")
    p.add_argument("--trust-remote-code", action="store_true", help="Allow custom model code (off by default).")
    p.set_defaults(func=cmd_baseline)
