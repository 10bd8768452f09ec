"""GRACE training step vs plain TRL GRPO (trivial length reward): same model, batch, lengths and process.

Runs `--warmup` + `--steps` optimizer steps of each configuration on the CPU recipe's shapes (LoRA, 4 prompts x
4 rationales of <= 32 tokens) and reports the mean step time and the share of it spent in the GRACE reward callable
(embedding rollouts and anchors, anchor rationales, reward terms) and in the corpus index (refresh + search; only when
the recipe configures a corpus). Timings come from TRL's own profiling contexts (`<Trainer>.<reward name>`,
`transformers.generate`) and GRACE's `grace/*_seconds` / `index/refresh_seconds` metrics.

    nice -n 10 python bench/step_overhead.py                      # grace (rationale anchors written with the rollouts,
                                                                  # then in a call of their own), grace (plain), TRL
    nice -n 10 python bench/step_overhead.py --steps 5 -- --max_completion_length 64   # recipe overrides after --
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from typing import Any

from _common import (
    StepTimer,
    add_threads_option,
    build_trainer,
    logged,
    mean,
    recipe_args,
    set_threads,
    table,
    trl_profiling,
    write_result,
)

GOAL_SHARE = 15.0  # percent of a step spent on embedding + reward + index


def run(kind: str, overrides: list[str], warmup: int, steps: int) -> dict[str, Any]:
    """Train `warmup + steps` steps and summarise the measured ones."""
    script_args, args, model_args = recipe_args(
        [*overrides, "--max_steps", str(warmup + steps), "--logging_steps", "1"]
    )
    timer = StepTimer()
    with trl_profiling() as profile:
        trainer = build_trainer(kind, script_args, args, model_args, callbacks=[timer])
        start = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - start
    name = type(trainer).__name__
    measured = range(warmup, warmup + steps)
    reward_key = f"{name}.grace" if kind == "grace" else f"{name}.length_reward"
    per_step = {
        "step_seconds": [timer.seconds[i] for i in measured],
        "generate_seconds": [profile[i].get(f"{name}.transformers.generate", 0.0) for i in measured],
        "reward_seconds": [profile[i].get(reward_key, 0.0) for i in measured],
        "embed_seconds": [logged(trainer, "grace/embed_seconds")[i] for i in measured],
        "anchor_rationale_seconds": [logged(trainer, "grace/anchor_rationale_seconds")[i] for i in measured],
        "index_seconds": [
            logged(trainer, "index/refresh_seconds")[i] + logged(trainer, "grace/dcg_search_seconds")[i]
            for i in measured
        ],
        "completion_mean_length": [logged(trainer, "completions/mean_length")[i] for i in measured],
    }
    summary = {key: round(mean(values), 3) for key, values in per_step.items()}
    step = summary["step_seconds"]
    summary.update(
        kind=kind,
        anchor_mode=getattr(args, "anchor_mode", None) if kind == "grace" else None,
        anchor_generation=getattr(args, "anchor_generation", None) if kind == "grace" else None,
        reward_share_pct=round(100 * (summary["reward_seconds"] + summary["index_seconds"]) / step, 1),
        generate_share_pct=round(100 * summary["generate_seconds"] / step, 1),
        train_seconds_total=round(total, 1),
        batch=f"{args.per_device_train_batch_size // args.num_generations} prompts x {args.num_generations}",
        max_completion_length=args.max_completion_length,
        tuning="LoRA" if model_args.use_peft else "full fine-tuning",
        per_step=per_step,
    )
    del trainer
    gc.collect()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=1, help="Unmeasured steps first.")
    parser.add_argument("--steps", type=int, default=3, help="Measured steps per configuration.")
    parser.add_argument("--skip-rationale-anchors", action="store_true", help="Only plain anchors + TRL baseline.")
    parser.add_argument("overrides", nargs="*", help="Recipe overrides (after --), e.g. --max_completion_length 64.")
    add_threads_option(parser)
    cli = parser.parse_args()
    set_threads(cli.threads)
    logging.basicConfig(level=logging.WARNING)
    rationale = ["--anchor_mode", "rationale", "--anchor_generation"]
    configs = [
        ("grace", [*rationale, "with_rollouts"]),
        ("grace", [*rationale, "separate"]),
        ("grace", ["--anchor_mode", "plain"]),
        ("plain", []),
    ]
    if cli.skip_rationale_anchors:
        configs = configs[2:]
    results = [run(kind, [*extra, *cli.overrides], cli.warmup, cli.steps) for kind, extra in configs]
    baseline = results[-1]["step_seconds"]
    rows = []
    for r in results:
        label = "TRL GRPO, length reward"
        if r["kind"] == "grace":
            label = f"GRACE, anchors={r['anchor_mode']}"
            label += f" ({r['anchor_generation']})" if r["anchor_mode"] == "rationale" else ""
        rows.append(
            [
                label,
                r["step_seconds"],
                r["generate_seconds"],
                r["reward_seconds"],
                r["embed_seconds"],
                r["anchor_rationale_seconds"],
                r["index_seconds"],
                f"{r['reward_share_pct']}%",
                f"{100 * (r['step_seconds'] - baseline) / r['step_seconds']:.1f}%",
                f"{100 * (r['step_seconds'] - baseline) / baseline:+.1f}%",
            ]
        )
    headers = [
        "run",
        "step s",
        "generate s",
        "reward s",
        "embed s",
        "anchor rat. s",
        "index s",
        "reward+index share",
        "vs TRL: extra share",
        "overhead vs TRL",
    ]
    print(
        f"{cli.steps} measured steps after {cli.warmup} warm-up; batch {results[0]['batch']}, "
        f"<= {results[0]['max_completion_length']} tokens; {results[0]['tuning']}; "
        f"goal: reward+index share <= {GOAL_SHARE}%"
    )
    print(table(headers, rows))
    path = write_result("step_overhead", {"warmup": cli.warmup, "steps": cli.steps, "runs": results})
    print(f"wrote {path}")
    parts = [
        f"{'rationale anchors ' + r['anchor_generation'] if r['anchor_mode'] == 'rationale' else 'plain anchors'} "
        f"{100 * (r['step_seconds'] - baseline) / baseline:+.1f}%"
        for r in results
        if r["kind"] == "grace"
    ]
    print("step overhead vs TRL GRPO (target <= +10%): " + ", ".join(parts))


if __name__ == "__main__":
    main()
