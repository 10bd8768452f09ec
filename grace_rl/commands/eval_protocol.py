"""`grace-rl eval protocol`: base vs trained models at matched rationale budgets on deduplicated dev sets, with
bootstrap intervals and the headline (see :mod:`grace_rl.eval.protocol`). `bench/quality.py` wraps it."""

from __future__ import annotations

import argparse
from pathlib import Path

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.commands import HelpFormatter, examples
from grace_rl.errors import UserError

# Not imported from grace_rl.eval (checked there), so that `grace-rl --help` stays fast.
DEV_SET_NAMES = ("stsb-dev", "sick-trial")  # grace_rl.eval.devsets.DEV_SETS
DEFAULT_BUDGETS = (0, 8, 16, 32, 64)  # grace_rl.eval.specs.DEFAULT_BUDGETS


def _datasets(spec: str) -> list[str]:
    from grace_rl.eval.devsets import parse_dataset_names

    try:
        return parse_dataset_names(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _budgets(spec: str) -> list[int]:
    from grace_rl.eval.scaling import parse_budgets

    try:
        return parse_budgets(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _counts(spec: str) -> list[int]:
    from grace_rl.eval.sample_scaling import parse_counts

    try:
        return parse_counts(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).replace("--scaling-samples", "--samples")) from err


def add_protocol_options(p: argparse.ArgumentParser, out_default: str = "eval_protocol") -> None:
    """The protocol's options (shared with `bench/quality.py`)."""
    p.add_argument(
        "--trained", nargs="+", default=[], metavar="RUN_DIR", help="GRACE output dirs (one per training seed)."
    )
    p.add_argument("--base", default=DEFAULT_MODEL_ID, help="Base model: the default id or a local HF dir.")
    p.add_argument(
        "--base-echo",
        action="store_true",
        help="Also evaluate each base variant with echo embeddings (the text repeated, no rationale); they join the "
        "bar (docs/ablations.md).",
    )
    p.add_argument(
        "--instruction",
        nargs="+",
        default=[],
        metavar="TEXT",
        help="Also evaluate the base model under each of these rationale instructions (`base+prompt` rows; they join "
        "the bar), e.g. a base model under a prompt of your own, with or without --trained.",
    )
    p.add_argument(
        "--datasets", type=_datasets, default=list(DEV_SET_NAMES), help=f"Any of {','.join(DEV_SET_NAMES)}."
    )
    p.add_argument(
        "--budgets",
        type=_budgets,
        default=list(DEFAULT_BUDGETS),
        metavar="T1,T2,...",
        help="Rationale budgets (greedy; 0 = no rationale). A trained model's training budget is added.",
    )
    p.add_argument("--out", default=out_default, metavar="PREFIX", help="Writes PREFIX.json and PREFIX.png.")
    p.add_argument("--limit", type=int, default=None, help="Evaluate N evenly spaced held-out pairs per dev set.")
    p.add_argument(
        "--shared-data",
        default=None,
        metavar="DIR",
        help="Folder with stsb/ and sick/ (default $GRACE_RL_SHARED_DATA, else <repo>/../shared/data; "
        "missing: the samples in data/).",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="The repo's data/ (training texts, samples).")
    p.add_argument("--cache-dir", type=Path, default=None, help="Sweep cache (default $GRACE_RL_CACHE/protocol).")
    p.add_argument("--no-cache", action="store_true", help="Neither read nor write the sweep cache.")
    p.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples per interval.")
    p.add_argument("--seed", type=int, default=0, help="Bootstrap seed.")
    p.add_argument("--batch-size", type=int, default=32, help="Texts per generation batch (memory).")
    p.add_argument("--trust-remote-code", action="store_true", help="Allow custom model code (off by default).")
    p.add_argument(
        "--samples",
        type=_counts,
        default=None,
        metavar="K1,K2,...",
        help="Also sweep the number of sampled rationales averaged (e.g. 1,2,4,8), every model at one budget; "
        "writes PREFIX_samples.png.",
    )
    p.add_argument("--sample-temperature", type=float, default=0.7, help="Sampling temperature of --samples (> 0).")
    p.add_argument(
        "--sample-budget",
        type=int,
        default=None,
        metavar="TOKENS",
        help="Tokens per sampled rationale (default: the trained runs' training budget).",
    )
    p.add_argument("--sample-seed", type=int, default=0, help="torch seed before each model's sampling.")
    p.add_argument(
        "--samples-trained-only", action="store_true", help="With --samples: sample the trained runs only (time)."
    )


def run_protocol_command(args: argparse.Namespace) -> dict[str, str]:
    """Run the protocol as `args` say, print the report and write PREFIX.json + PREFIX.png (returned)."""
    from grace_rl.eval.devsets import DATA_DIR, load_dev_sets
    from grace_rl.eval.protocol import ProtocolSettings, model_specs, run_protocol
    from grace_rl.eval.protocol_report import format_report, write_report
    from grace_rl.eval.protocol_samples import sample_budget
    from grace_rl.eval.specs import SampleSettings
    from grace_rl.models import cache_root
    from grace_rl.run_files import refuse_outputs

    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be >= 1, got {args.bootstrap}.")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}.")
    written = [f"{args.out}{suffix}" for suffix in (".json", ".png", "_samples.png")]
    refuse_outputs(args.out, written, [], "--out")  # before any model is loaded
    instructions = getattr(args, "instruction", [])
    specs = model_specs(args.base, args.trained, args.base_echo, instructions)  # bad run dir: fails before the data
    samples = None
    if args.samples is not None:
        samples = SampleSettings(
            counts=tuple(args.samples),
            temperature=args.sample_temperature,
            budget=args.sample_budget,
            seed=args.sample_seed,
            include_base=not args.samples_trained_only,
        )
        sample_budget(specs, samples)  # no common budget: fail before any data is read
    devsets = load_dev_sets(args.datasets, args.shared_data, args.data_dir or DATA_DIR, args.limit)
    settings = ProtocolSettings(
        budgets=tuple(args.budgets),
        n_boot=args.bootstrap,
        seed=args.seed,
        batch_size=args.batch_size,
        cache_dir=None if args.no_cache else (args.cache_dir or cache_root() / "protocol"),
        trust_remote_code=args.trust_remote_code,
    )
    results = run_protocol(args.base, args.trained, devsets, settings, samples, args.base_echo, instructions)
    files = write_report(results, args.out)
    print(format_report(results))
    print("wrote " + " and ".join(files.values()))
    return files


def cmd_eval_protocol(args: argparse.Namespace) -> int:
    run_protocol_command(args)
    return 0


def add_parser(tasks: argparse._SubParsersAction) -> None:
    """Add `protocol` to the `grace-rl eval` tasks."""
    p = tasks.add_parser(
        "protocol",
        help="Base vs trained at matched rationale budgets on deduplicated dev sets, with 95%% bootstrap intervals.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl eval protocol --trained runs/grace_smollm2_cpu            # base + one run, both dev sets",
            "grace-rl eval protocol --trained RUN_A RUN_B --datasets stsb-dev --limit 200",
            "grace-rl eval protocol --trained runs/grace_smollm2_cpu --budgets 0,8,16,32,64 --out runs/quality",
            "grace-rl eval protocol --trained RUN_A RUN_B --datasets stsb-dev --samples 1,2,4,8  # + averaging",
            "grace-rl eval protocol --trained runs/baseline/plain_s0 RUN --base-echo   # baseline + echo rungs",
            'grace-rl eval protocol --instruction "Paraphrase the text." --limit 200  # base under a prompt of yours',
        ),
    )
    add_protocol_options(p)
    p.set_defaults(func=cmd_eval_protocol)
