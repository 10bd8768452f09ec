"""`main(script_args, training_args, model_args)`: the supervised GRACE training run."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from trl import ModelConfig, TrlParser, get_peft_config

from grace_rl.config import GraceConfig, GraceScriptArguments
from grace_rl.data import build_dataset, load_supervised, load_unsupervised
from grace_rl.encoder import GraceEncoder, save_grace_meta
from grace_rl.eval.sts import evaluate_sts
from grace_rl.models import load_model, load_tokenizer
from grace_rl.preflight import preflight
from grace_rl.prompts import RationaleTemplate
from grace_rl.resume import start_run
from grace_rl.run_files import RATIONALE_LOG, SUMMARY_FILE, atomic_write
from grace_rl.trainer import GraceTrainer, build_reward

logger = logging.getLogger("grace_rl")


def parse_args(argv: list[str] | None = None) -> tuple[GraceScriptArguments, GraceConfig, ModelConfig]:
    parser = TrlParser((GraceScriptArguments, GraceConfig, ModelConfig))
    return parser.parse_args_and_config(args=argv)


def _eval(model, tokenizer, args: GraceConfig, script_args: GraceScriptArguments, label: str) -> dict[str, Any] | None:
    if not script_args.eval_sts_path:
        return None
    encoder = GraceEncoder(model, tokenizer, args.instruction, args.pooling, args.max_completion_length)
    start = time.perf_counter()
    result = evaluate_sts(
        encoder, script_args.eval_sts_path, "stsb", script_args.eval_sts_limit, show_progress_bar=True
    )
    result.update(
        label=label, rationale_tokens=args.max_completion_length, seconds=round(time.perf_counter() - start, 1)
    )
    logger.info("STS %s: %s", label, json.dumps(result))
    return result


def load_rows_for_task(script_args: GraceScriptArguments, training_args: GraceConfig) -> list[dict[str, Any]]:
    """Validated training rows for the configured task (supervised rows, or plain texts for the unsupervised task)."""
    if script_args.task == "supervised":
        return load_supervised(script_args.dataset_path, script_args.max_train_rows)
    if training_args.directions != ["q2d"]:
        raise ValueError(f"directions={training_args.directions}: the unsupervised task has only one side; use [q2d].")
    return load_unsupervised(script_args.dataset_path, script_args.text_column, script_args.max_train_rows)


def main(script_args: GraceScriptArguments, training_args: GraceConfig, model_args: ModelConfig) -> dict[str, Any]:
    """Train GRACE and return a summary (eval before/after, seconds per step, paths)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = load_rows_for_task(script_args, training_args)
    # Everything is checked (read-only) before anything is written to output_dir; see grace_rl/preflight.py.
    checked = preflight(script_args, training_args, model_args, rows)
    if training_args.world_size > 1:
        PartialState().wait_for_everyone()  # every rank has checked output_dir before rank 0 writes to it
    overwrite = training_args.overwrite_output_dir
    start_run(training_args.output_dir, checked.fingerprint, overwrite, is_main=training_args.should_save)
    model_path = checked.model_path
    trust = bool(training_args.trust_remote_code)
    tokenizer = load_tokenizer(model_path, trust)
    dtype = torch.bfloat16 if training_args.bf16 else torch.float32
    model = load_model(model_path, dtype=dtype, trust_remote_code=trust)
    template = RationaleTemplate(training_args.instruction)
    dataset = build_dataset(rows, template)
    summary: dict[str, Any] = {"before": _eval(model, tokenizer, training_args, script_args, "before")}
    trainer = GraceTrainer(
        model=model,
        args=training_args,
        processing_class=tokenizer,
        grace_reward=build_reward(training_args, tokenizer, model.generation_config),
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        corpus=checked.corpus,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checked.checkpoint) if checked.checkpoint else None)
    train_seconds = time.perf_counter() - start
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
        save_grace_meta(
            training_args.output_dir,
            training_args.instruction,
            training_args.pooling,
            training_args.max_completion_length,
        )
    steps = max(trainer.state.global_step, 1)
    summary.update(
        after=_eval(trainer.model, tokenizer, training_args, script_args, "after"),
        steps=trainer.state.global_step,
        train_seconds=round(train_seconds, 1),
        seconds_per_step=round(train_seconds / steps, 1),
        output_dir=str(Path(training_args.output_dir).resolve()),
        rationale_log=str(Path(training_args.output_dir, RATIONALE_LOG).resolve()),
    )
    if trainer.accelerator.is_main_process:
        atomic_write(Path(training_args.output_dir, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
    return summary
