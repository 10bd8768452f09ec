"""Up-front checks, run by :func:`grace_rl.train.main` after the rows are validated and before anything is written to
`output_dir`: a bad input fails in seconds, naming the file, row, field and fix, instead of at step 3,000.

Already checked elsewhere, before this runs: the config's invariants (`GraceConfig.__post_init__`: reward names,
weights, temperatures, `num_generations`, refresh fraction, ...) and every training row
(:func:`grace_rl.data.validate_supervised`: types, empty or over-long texts, columns, duplicate ids).

Here: every numeric option finite and in range, enough rows for one optimizer step, every text within the model's
context (:mod:`grace_rl.input_checks`), the STS file read through, the rows against the config (gold
`positive_ids` in the corpus; a `hard_negative` term needs some row with negatives), the configured paths (exist,
right kind), the model directory (readable config, safetensors only, no unknown custom code unless
`trust_remote_code`), the checkpoint to resume from (:mod:`grace_rl.checkpoint_check`), the output directory
(not another run's, nor a user's files; see :mod:`grace_rl.resume`), and, under deepspeed, stale op build locks
(:mod:`grace_rl.extension_locks`: warned, since a compile may be running elsewhere).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.config import GraceConfig, GraceScriptArguments
from grace_rl.data import DataValidationError
from grace_rl.errors import UserError
from grace_rl.extension_locks import warn_stale_extension_locks
from grace_rl.input_checks import check_enough_rows, check_numbers, check_token_lengths
from grace_rl.models import check_model_dir, resolve_model_path
from grace_rl.resume import RESUME_OFF, check_not_finished, check_output_dir, resolve_checkpoint, run_fingerprint

if TYPE_CHECKING:
    from trl import ModelConfig

    from rollout.corpus import Corpus

logger = logging.getLogger(__name__)

SHOW_ERRORS = 5  # bad rows listed in one error


@dataclass
class Preflight:
    """What the checks resolved: the model directory, the checkpoint to resume from, the run fingerprint, the run
    artifacts already in `output_dir` (deleted when `overwrite_output_dir`), and the corpus (loaded once, for the
    gold-document check and the trainer's index)."""

    model_path: Path
    checkpoint: Path | None
    fingerprint: dict[str, Any]
    existing: list[str] = field(default_factory=list)
    corpus: Corpus | None = None


def check_paths(script_args: GraceScriptArguments, args: GraceConfig) -> None:
    """Paths from the config: resolved, and of the right kind."""
    checks = [
        ("dataset_path", script_args.dataset_path, "exists"),
        ("eval_sts_path", script_args.eval_sts_path, "file"),
    ]
    checks.append(("corpus_path", args.corpus_path, "exists"))
    if isinstance(args.deepspeed, str):
        checks.append(("deepspeed", args.deepspeed, "file"))
    for name, value, kind in checks:
        if not value:
            continue
        path = Path(value).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"{name} {path} does not exist; fix the path in the config or command line.")
        if kind == "file" and not path.is_file():
            raise FileNotFoundError(f"{name} {path} is not a file; point {name} at a file.")


def check_eval_sts(script_args: GraceScriptArguments) -> None:
    """`eval_sts_path` is read now (format, scores), not after training."""
    if script_args.eval_sts_path:
        from grace_rl.eval.sts import read_sts

        read_sts(script_args.eval_sts_path, "stsb", script_args.eval_sts_limit)


def check_gold_ids(rows: list[dict[str, Any]], corpus: Corpus, source: str) -> None:
    """Every row's gold documents (`positive_ids`, else the positive's text) must be in the corpus (the one check
    per run: the trainer's index is built over this same corpus)."""
    from reward.retrieval import resolve_gold

    searcher = SimpleNamespace(corpus=corpus)  # resolve_gold reads only `.corpus`
    errors = []
    for n, row in enumerate(rows, start=1):
        try:
            resolve_gold(
                searcher, row.get("positive_ids"), row["positive"], where=f"{source}: row {n} ({row['prompt_id']})"
            )
        except ValueError as err:
            errors.append(str(err))
    if errors:
        raise DataValidationError(
            f"{len(errors)} row(s) have no gold document in the corpus (field 'positive_ids'):\n  "
            + "\n  ".join(errors[:SHOW_ERRORS])
        )


def check_rows_against_config(rows: list[dict[str, Any]], args: GraceConfig, source: str) -> Corpus | None:
    """Row checks that depend on the config; returns the corpus it loaded (`None` without `corpus_path`)."""
    if (
        "hard_negative" in args.reward_terms
        and not args.mined_negatives
        and not any(row.get("negatives") for row in rows)
    ):
        raise DataValidationError(
            f"{source}: reward term 'hard_negative' scores a row's own hard negatives, but no row has a non-empty "
            "'negatives' list (the term would be 0 everywhere); add negatives or drop the term and its weight."
        )
    if not args.corpus_path:
        return None
    from rollout.corpus import load_corpus

    corpus = load_corpus(args.corpus_path)
    if "dcg" in args.reward_terms:  # mined negatives alone need no gold document (there is just none to skip)
        check_gold_ids(rows, corpus, source)
    return corpus


def warn_inexact_resume(args: GraceConfig) -> None:
    """Checkpoints inside a generation window resume with a fresh generation (TRL does not save its buffer)."""
    window = max(1, args.steps_per_generation * args.num_iterations // max(args.gradient_accumulation_steps, 1))
    if window > 1 and str(args.save_strategy).endswith("steps") and args.save_steps % window:
        logger.warning(
            "One generation batch spans %d optimizer steps but save_steps=%s is not a multiple of it: resuming from "
            "such a checkpoint re-generates rollouts instead of replaying them exactly.",
            window,
            args.save_steps,
        )
    if args.save_only_model:
        logger.warning("save_only_model=true: checkpoints hold no optimizer/scheduler/RNG state; resume is not exact.")


def preflight(
    script_args: GraceScriptArguments, args: GraceConfig, model_args: ModelConfig, rows: list[dict[str, Any]]
) -> Preflight:
    """Run every check (read-only) and return what they resolved; raises on the first bad input."""
    source = str(script_args.dataset_path)
    check_numbers(script_args, args, model_args)
    check_paths(script_args, args)
    check_enough_rows(rows, args, source)
    check_eval_sts(script_args)
    corpus = check_rows_against_config(rows, args, source=source)
    model_path = resolve_model_path(model_args.model_name_or_path or DEFAULT_MODEL_ID)
    check_model_dir(model_path, args.trust_remote_code)
    check_token_lengths(rows, args, model_path, source)
    if args.trust_remote_code:
        logger.warning("trust_remote_code=true: %s may run its own Python code when loaded.", model_path)
    overwrite = bool(args.overwrite_output_dir)
    resume = args.resume_from_checkpoint
    if overwrite and resume not in (None, False) and str(resume).strip().lower() not in RESUME_OFF:
        raise UserError(
            "resume_from_checkpoint and overwrite_output_dir contradict each other: resuming continues the run in "
            "output_dir, overwriting deletes it. Pass only one."
        )
    checkpoint = resolve_checkpoint(resume, args.output_dir)
    fingerprint = run_fingerprint(script_args, args, model_args, model_path)
    existing = check_output_dir(args.output_dir, fingerprint, checkpoint is not None, overwrite)
    if checkpoint is not None:
        check_not_finished(checkpoint, args.max_steps, args.num_train_epochs)  # a finished run: nothing to resume
        warn_inexact_resume(args)
    if args.deepspeed:
        warn_stale_extension_locks()  # a killed op compile would make this run wait forever, silently
    return Preflight(model_path, checkpoint, fingerprint, existing, corpus)
