"""`main(script_args, training_args, model_args)`: the supervised GRACE training run."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from trl import ModelConfig, TrlParser, get_peft_config

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.config import GraceConfig, GraceScriptArguments
from grace_rl.data import build_dataset, load_supervised, load_unsupervised
from grace_rl.encoder import GraceEncoder, save_grace_meta
from grace_rl.errors import UserError, ZeroStepsError
from grace_rl.eval.stats import Pair
from grace_rl.eval.sts import read_sts
from grace_rl.eval.sweep import sweep_sts
from grace_rl.field_rules import CHECK
from grace_rl.main_process import init_deepspeed_comm, run_on_main_process
from grace_rl.model_card import BaseModelIdCallback, record_base_model_id, write_model_card
from grace_rl.models import load_model, load_tokenizer
from grace_rl.phases import PhaseLog, StepEstimateCallback
from grace_rl.preflight import preflight
from grace_rl.prompts import DEFAULT_INSTRUCTION, RationaleTemplate
from grace_rl.resume import start_run
from grace_rl.run_files import RATIONALE_LOG, SUMMARY_FILE, atomic_write
from grace_rl.trainer import GraceTrainer, build_reward
from rollout.frozen import FROZEN_POLICY

logger = logging.getLogger("grace_rl")


class _RecipeParser(TrlParser):
    """TRL's parser whose argument errors (`max_steps: abc`) raise `ValueError` naming the recipe, so the entry
    point's error layer prints them as one line, instead of argparse's usage text and `SystemExit`."""

    recipe = "the command line"

    def error(self, message: str):  # noqa: D102 - argparse hook
        raise UserError(f"{self.recipe}: {message} - fix the value (see `grace-rl train --help`).")

    @staticmethod
    def _parse_dataclass_field(parser, field: dataclasses.Field) -> None:
        """argparse gets a field's metadata as keywords: the value rule (`grace_rl.field_rules.checked`) stays out."""
        if CHECK in field.metadata:
            field = copy.copy(field)
            field.metadata = types.MappingProxyType({k: v for k, v in field.metadata.items() if k != CHECK})
        TrlParser._parse_dataclass_field(parser, field)

    def parse_args_and_config(self, args=None, **kwargs):
        """TRL's parse, with the recipe read by :func:`grace_rl.recipes.load_recipe` (its `base:` chain resolved,
        every file checked first: size, alias bombs, duplicate keys, list shapes)."""
        from grace_rl.input_checks import list_keys
        from grace_rl.recipes import load_recipe

        args = list(args) if args is not None else sys.argv[1:]
        if "--config" not in args:
            return super().parse_args_and_config(args, **kwargs)
        at = args.index("--config")
        path = args[at + 1] if at + 1 < len(args) else ""
        args = args[:at] + args[at + 2 :]
        self.recipe = f"{path} (or the command line)"
        recipe = load_recipe(path, list_keys(*self.dataclass_types))
        env = recipe.pop("env", {})  # as TRL: the recipe's environment variables
        if not isinstance(env, dict):
            raise UserError(f"{path}: env must be a mapping of environment variables, got {env!r}.")
        for key, value in env.items():
            os.environ[key] = str(value)
        unknown = self.set_defaults_with_config(**recipe)
        if unknown:
            raise ValueError(f"Unknown arguments from config file: {unknown}. Remove them, or fix their names.")
        return super().parse_args_and_config(args, **kwargs)


def parse_args(argv: list[str] | None = None) -> tuple[GraceScriptArguments, GraceConfig, ModelConfig]:
    from grace_rl.input_checks import ALL_LINEAR, check_numbers

    parser = _RecipeParser((GraceScriptArguments, GraceConfig, ModelConfig))
    try:
        parsed = parser.parse_args_and_config(args=argv)
    except UserError:
        raise
    except TypeError as err:  # a recipe value of the wrong type (e.g. `max_completion_length: null`) in a check
        raise UserError(f"{parser.recipe}: a value has the wrong type ({err}) - check the recipe's values.") from err
    except ValueError as err:  # TRL / transformers checking the values they parse (unknown keys, invariants)
        raise UserError(f"{parser.recipe}: {err} - fix the recipe (see `grace-rl train --help`).") from err
    model_args = parsed[2]
    targets = model_args.lora_target_modules  # TRL turns a one-item list into a string, which peft reads as a regex
    if isinstance(targets, str) and targets != ALL_LINEAR:
        model_args.lora_target_modules = [targets]
    check_numbers(*parsed)  # again in the preflight; here it runs before the rows are loaded
    return parsed


def _eval(model, tokenizer, args: GraceConfig, script_args: GraceScriptArguments, label: str) -> dict[str, Any] | None:
    """STS on the eval sample with greedy rationales: the base model (`label == "before"`) at the training budget and
    every `eval_base_budgets` budget (one generation at the largest, prefixes for the rest), the trained model at its
    training budget. The per-pair cosines stay in `_cosines` for :func:`_headline` (dropped from the summary)."""
    if not script_args.eval_sts_path:
        return None
    encoder = GraceEncoder(model, tokenizer, args.instruction, args.pooling, args.max_completion_length)
    budget = args.max_completion_length
    budgets = sorted({budget, *script_args.eval_base_budgets}) if label == "before" else [budget]
    start = time.perf_counter()
    a, b, gold = read_sts(script_args.eval_sts_path, "stsb", script_args.eval_sts_limit)
    pairs = [Pair(*p) for p in zip(a, b, gold, strict=True)]
    points = sweep_sts(encoder, pairs, budgets, batch_size=32, show_progress_bar=True)
    at = {p.budget: p for p in points}
    default_prompt = None  # matched prompts: a recipe with its own instruction is also compared with the default one
    if label == "before" and args.instruction != DEFAULT_INSTRUCTION:
        plain = GraceEncoder(model, tokenizer, DEFAULT_INSTRUCTION, args.pooling, args.max_completion_length)
        default_prompt = sweep_sts(plain, pairs, budgets, batch_size=32, show_progress_bar=True)
    result = {
        "task": "sts",
        "n": len(gold),
        "spearman": round(at[budget].spearman, 2),
        "label": label,
        "rationale_tokens": budget,
        "by_budget": {str(p.budget): round(p.spearman, 2) for p in points},
        "mean_rationale_tokens": {str(p.budget): p.mean_rationale_tokens for p in points},
        "seconds": round(time.perf_counter() - start, 1),
        "_cosines": {p.budget: p.cosines.tolist() for p in points},
        "_gold": gold,
    }
    if default_prompt is not None:
        result["by_budget_default_instruction"] = {str(p.budget): round(p.spearman, 2) for p in default_prompt}
        result["_default_cosines"] = {p.budget: p.cosines.tolist() for p in default_prompt}
    logger.info("STS %s: %s", label, json.dumps({k: v for k, v in result.items() if not k.startswith("_")}))
    return result


def _headline(before: dict[str, Any], after: dict[str, Any], budget: int) -> dict[str, Any]:
    """The evaluation protocol's headline on the eval sample: trained at its training `budget` minus the base at its
    best budget (0 included), with the paired 95% bootstrap interval (`grace_rl.eval.protocol.headline`)."""
    from grace_rl.eval.protocol import ProtocolSettings, headline

    def points(result: dict[str, Any], by: str = "by_budget", cosines: str = "_cosines", model: str = "base"):
        return [
            {"budget": b, "spearman": result[by][str(b)], "cosines": cos, "model": model}
            for b, cos in result.get(cosines, {}).items()
        ]

    gold = np.asarray(before["_gold"], dtype=np.float64)
    base = points(before, model="base")  # the base under the recipe's instruction
    base += points(before, "by_budget_default_instruction", "_default_cosines", "base (default instruction)")
    out = headline(points(after), base, gold, budget, ProtocolSettings())
    return {"n": len(gold), **out}


def _public(result: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if result is None else {k: v for k, v in result.items() if not k.startswith("_")}


def _start_eval_phase(
    phases: PhaseLog, name: str, script_args: GraceScriptArguments, args: GraceConfig, estimate: float | None = None
) -> None:
    if script_args.eval_sts_path:
        pairs = f"{script_args.eval_sts_limit} pairs of {script_args.eval_sts_path}"
        budget = args.max_completion_length
        budgets = sorted({budget, *script_args.eval_base_budgets}) if name == "before-eval" else [budget]
        what = "base model" if name == "before-eval" else "trained model"
        if name == "before-eval" and args.instruction != DEFAULT_INSTRUCTION:
            what += " (the recipe's instruction, then the default one: the bar is the better)"
        phases.start(name, f"STS on {pairs}, {what}, greedy rationales of {budgets} tokens", estimate)


def after_eval_estimate(before_seconds: float | None, args: GraceConfig) -> float | None:
    """The after-eval's expected seconds from the before-eval's: the before-eval writes the base model's rationales
    once per instruction (twice when the recipe has its own instruction: the matched-prompt bar), the after-eval
    writes the trained model's once, at the training budget."""
    if before_seconds is None:
        return None
    return before_seconds / (2 if args.instruction != DEFAULT_INSTRUCTION else 1)


def _start_training_phase(phases: PhaseLog, trainer: GraceTrainer, args: GraceConfig) -> None:
    what = f"{args.max_steps} optimizer steps" if args.max_steps > 0 else f"{args.num_train_epochs} epochs"
    phases.start("training", f"{what}, {args.num_generations} rationales per text; an estimate follows step 1")
    trainer.add_callback(StepEstimateCallback(enabled=phases.enabled))


def load_rows_for_task(script_args: GraceScriptArguments, training_args: GraceConfig) -> list[dict[str, Any]]:
    """Validated training rows for the configured task (supervised rows, or plain texts for the unsupervised task)."""
    if script_args.task == "supervised":
        return load_supervised(script_args.dataset_path, script_args.max_train_rows)
    if training_args.directions != ["q2d"]:
        raise UserError(f"directions={training_args.directions}: the unsupervised task has only one side; use [q2d].")
    return load_unsupervised(script_args.dataset_path, script_args.text_column, script_args.max_train_rows)


def frozen_copy_ref(model_id: str) -> str:
    """What a frozen-copy run records as its embedder (``embedder_model``): the default id as given, a local model
    directory as an absolute path, so that ``GraceEncoder.from_pretrained`` finds it from any working directory (a
    relative path recorded as given broke ``encode()`` outside the directory the run was trained from)."""
    path = Path(model_id).expanduser()
    return str(path.resolve()) if path.is_dir() else model_id


def main(script_args: GraceScriptArguments, training_args: GraceConfig, model_args: ModelConfig) -> dict[str, Any]:
    """Train GRACE and return a summary (eval before/after, seconds per step, paths)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if training_args.frozen_embedder and script_args.eval_sts_path:
        raise UserError(
            f"reward_embedder={training_args.reward_embedder!r}: the before/after STS evaluation pools the policy's "
            "own states, not the frozen embedder's; set eval_sts_path: null and evaluate the run with `grace-rl eval "
            "retrieval-protocol` (or encode(), which uses the frozen embedder)."
        )
    rows = load_rows_for_task(script_args, training_args)
    # Everything is checked (read-only) before anything is written to output_dir; see grace_rl/preflight.py.
    checked = preflight(script_args, training_args, model_args, rows)
    if training_args.world_size > 1:
        PartialState().wait_for_everyone()  # every rank has checked output_dir before rank 0 writes to it
    init_deepspeed_comm(training_args)  # before a ZeRO-3 model load (grace_rl/main_process.py)
    overwrite = training_args.overwrite_output_dir
    start_run(training_args.output_dir, checked.fingerprint, overwrite, is_main=training_args.should_save)
    model_path = checked.model_path
    trust = bool(training_args.trust_remote_code)
    tokenizer = load_tokenizer(model_path, trust)
    dtype = torch.bfloat16 if training_args.bf16 else torch.float32
    model = load_model(model_path, dtype=dtype, trust_remote_code=trust)
    template = RationaleTemplate(training_args.instruction)
    dataset = build_dataset(rows, template)
    phases = PhaseLog(enabled=training_args.process_index == 0)
    _start_eval_phase(phases, "before-eval", script_args, training_args)
    # Evaluation runs once, on the main process's accelerator; the other ranks wait (grace_rl/main_process.py).
    before = run_on_main_process(model, lambda m: _eval(m, tokenizer, training_args, script_args, "before"))
    summary: dict[str, Any] = {"before": _public(before)}
    phases.end("before-eval")
    trainer = GraceTrainer(
        model=model,
        args=training_args,
        processing_class=tokenizer,
        grace_reward=build_reward(training_args, tokenizer, model.generation_config),
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        corpus=checked.corpus,
    )
    model_id = model_args.model_name_or_path or DEFAULT_MODEL_ID  # adapters record it as given, not the cache path
    trainer.add_callback(BaseModelIdCallback(model_id))
    _start_training_phase(phases, trainer, training_args)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checked.checkpoint) if checked.checkpoint else None)
    train_seconds = time.perf_counter() - start
    if trainer.state.global_step == 0:  # the preflight makes this unreachable; never report an untrained model as done
        raise ZeroStepsError(
            f"training ran 0 optimizer steps over {len(dataset)} rows (max_steps={training_args.max_steps}); nothing "
            "was trained or saved - add rows or check max_steps / num_train_epochs."
        )
    phases.end("training")
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
        record_base_model_id(training_args.output_dir, model_id)
        save_grace_meta(
            training_args.output_dir,
            training_args.instruction,
            training_args.pooling,
            training_args.max_completion_length,
            max_text_tokens=training_args.max_text_tokens,
            reward_embedder=training_args.reward_embedder,
            embedder_model=frozen_copy_ref(model_id) if training_args.reward_embedder == FROZEN_POLICY else None,
        )
    steps = max(trainer.state.global_step, 1)
    estimate = after_eval_estimate(phases.seconds.get("before-eval"), training_args)
    _start_eval_phase(phases, "after-eval", script_args, training_args, estimate=estimate)
    after = run_on_main_process(
        trainer.model, lambda m: _eval(m, tokenizer, training_args, script_args, "after"), trainer=trainer
    )
    phases.end("after-eval")
    summary.update(
        after=_public(after),
        headline=_headline(before, after, training_args.max_completion_length) if before and after else None,
        steps=trainer.state.global_step,
        train_seconds=round(train_seconds, 1),
        seconds_per_step=round(train_seconds / steps, 1),
        output_dir=str(Path(training_args.output_dir).resolve()),
        rationale_log=str(Path(training_args.output_dir, RATIONALE_LOG).resolve()),
    )
    if trainer.accelerator.is_main_process:
        atomic_write(
            Path(training_args.output_dir, SUMMARY_FILE), json.dumps(summary, indent=2, allow_nan=False) + "\n"
        )
        write_model_card(summary, script_args, training_args, model_args)
    return summary
