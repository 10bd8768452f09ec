"""Portable run outputs: the adapter records the base model id as the user gave it, and the run directory gets a
model card (`README.md`) generated from the recipe and `grace_summary.json` instead of PEFT's empty template.

A LoRA adapter's `adapter_config.json` names its base model in `base_model_name_or_path`; PEFT fills it with the
loaded model's path, which for the embedded default is this machine's cache directory. Recording the id as given
(`smollm2-135m-instruct`, or the user's own path) lets `GraceEncoder.from_pretrained` resolve it again wherever the
run directory is copied to (`grace_rl.models.resolve_model_path`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.run_files import RATIONALE_LOG, SUMMARY_FILE, atomic_write

logger = logging.getLogger(__name__)

MODEL_CARD = "README.md"
ADAPTER_CONFIG = "adapter_config.json"


def record_base_model_id(directory: str | Path, model_id: str) -> bool:
    """Make the adapter saved in `directory` name `model_id` as its base model (`adapter_config.json`'s
    `base_model_name_or_path`, rewritten atomically); `False` when `directory` holds no adapter (full weights).

    PEFT records the loaded model's path when it saves; the id is written afterwards, not set on the live model,
    because PEFT then looks an id that is not a local directory up on the Hugging Face hub at every save.

    Args:
        directory (`str` or `Path`):
            A run's `output_dir` or one of its `checkpoint-N` folders.
        model_id (`str`):
            The base model as the user gave it (`model_name_or_path` of the recipe).
    """
    path = Path(directory, ADAPTER_CONFIG)
    if not path.is_file():
        return False
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = model_id
    atomic_write(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return True


class BaseModelIdCallback(TrainerCallback):
    """Records the base model id in every checkpoint's adapter (see :func:`record_base_model_id`).

    Args:
        model_id (`str`):
            The base model as the user gave it.
    """

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero:
            record_base_model_id(Path(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"), self.model_id)
        return control


def _quality_rows(summary: dict[str, Any]) -> list[str]:
    rows = []
    for label, result in summary.items():
        if isinstance(result, dict) and "spearman" in result:
            budget = result.get("rationale_tokens", result.get("max_rationale_tokens", "–"))
            seconds = result.get("seconds", "–")
            rows.append(f"| {label} | {result['spearman']} | {result.get('n', '–')} | {budget} | {seconds} |")
    return rows


def _recipe_lines(script_args: Any, training_args: Any, model_args: Any) -> list[str]:
    weights = training_args.term_weights or [1.0] * len(training_args.reward_terms)
    terms = ", ".join(f"`{t}` x {w}" for t, w in zip(training_args.reward_terms, weights, strict=False))
    if model_args.use_peft:
        targets = model_args.lora_target_modules or "PEFT's defaults"
        adapter = f"LoRA r={model_args.lora_r}, alpha={model_args.lora_alpha}, target modules {targets}"
    else:
        adapter = "full fine-tuning"
    per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    return [
        f"- Base model: `{model_args.model_name_or_path or DEFAULT_MODEL_ID}` ({adapter})",
        f"- Task: {script_args.task}; reward terms: {terms}",
        f"- GRPO: {training_args.num_generations} rationales per text of at most {training_args.max_completion_length}"
        f" tokens, {per_step} rollouts per device and optimizer step, learning rate {training_args.learning_rate},"
        f" loss `{training_args.loss_type}`",
        f"- Embedding: `{training_args.pooling}` pooling of text + rationale, anchors `{training_args.anchor_mode}`",
        f"- Instruction: {training_args.instruction!r}",
    ]


def bar_note(headline: dict[str, Any]) -> str:
    """`, default instruction` when a run's headline bar is the base under the default instruction rather than the
    recipe's own (matched prompts, `grace_rl.train._headline`); empty otherwise."""
    return ", default instruction" if headline.get("base_model", "base") != "base" else ""


def model_card(summary: dict[str, Any], script_args: Any, training_args: Any, model_args: Any) -> str:
    """The text of the run directory's `README.md`: recipe, data, steps, quality table and how to embed.

    Args:
        summary (`dict`):
            The run summary (what `grace_summary.json` holds).
        script_args (`GraceScriptArguments`), training_args (`GraceConfig`), model_args (`trl.ModelConfig`):
            The parsed recipe.

    Returns:
        `str`: Markdown with a YAML front matter.
    """
    out = Path(training_args.output_dir)
    base = model_args.model_name_or_path or DEFAULT_MODEL_ID
    rows = f", first {script_args.max_train_rows} rows" if script_args.max_train_rows else ""
    lines = ["---", "library_name: grace-rl", "tags: [grace, grpo, trl, text-embeddings, rationale]", "---", ""]
    lines += [f"# GRACE embedding model: {out.name}", ""]
    lines += ["Trained with grace-rl: the model writes a rationale about a text, and the mean-pooled hidden states"]
    lines += ["of text + rationale are the text's embedding.", "", "## Recipe", ""]
    lines += _recipe_lines(script_args, training_args, model_args)
    lines += [f"- Data: `{script_args.dataset_path}`{rows}", ""]
    lines += ["## Training", ""]
    lines += [f"- Optimizer steps: {summary.get('steps', '–')} (of max_steps {training_args.max_steps})"]
    lines += [
        f"- Training time: {summary.get('train_seconds', '–')} s ({summary.get('seconds_per_step', '–')} s/step)"
    ]
    lines += [f"- Rationale log: `{RATIONALE_LOG}` (`grace-rl inspect` / `grace-rl report` this directory)", ""]
    lines += ["## Quality", ""]
    quality = _quality_rows(summary)
    if quality:
        where = f"`{script_args.eval_sts_path}`" if script_args.eval_sts_path else "the STS file"
        lines += [f"STS Spearman x100 on {where} (greedy rationale; from `{SUMMARY_FILE}`):", ""]
        lines += ["| model | Spearman x100 | pairs | rationale tokens | seconds |", "| --- | --- | --- | --- | --- |"]
        lines += [*quality, ""]
        by_budget = (summary.get("before") or {}).get("by_budget")
        if by_budget:
            budgets = ", ".join(f"{b} tokens: {v}" for b, v in by_budget.items())
            lines += [f"Base model by rationale budget: {budgets}."]
        default = (summary.get("before") or {}).get("by_budget_default_instruction")
        if default:
            budgets = ", ".join(f"{b} tokens: {v}" for b, v in default.items())
            lines += [f"Base model with the default instruction (also a candidate for the bar): {budgets}."]
        h = summary.get("headline")
        if h:
            lines += [
                f"Headline (trained at {h['training_budget']} tokens minus the base at its best budget, "
                f"{h['base_best_budget']} tokens{bar_note(h)}): {h['difference']:+.2f} [{h['ci_low']:+.2f}, "
                f"{h['ci_high']:+.2f}] "
                f"(paired 95% bootstrap over {h['n']} pairs; one seed, one sample: see the project's "
                "`grace-rl eval protocol` for the full dev sets)."
            ]
        lines += [""]
    else:
        lines += ["Not evaluated during training (`eval_sts_path` was not set); see `grace-rl eval sts --help`.", ""]
    lines += ["## Use", "", "```python", "from grace_rl.encoder import GraceEncoder", ""]
    lines += [f'encoder = GraceEncoder.from_pretrained("{out}")  # this directory, wherever it is copied to']
    lines += ['embeddings = encoder.encode(["A man plays a guitar."])  # (1, hidden) float32, L2-normalised']
    lines += [
        "```",
        "",
        "```bash",
        f"grace-rl encode --model {out} --input texts.txt --output emb.npy",
        "```",
        "",
    ]
    lines += [f"The base model is recorded as `{base}` and resolved again where the model"]
    lines += ["is loaded (the embedded default is converted into `$GRACE_RL_CACHE` or `~/.cache/grace-rl` once)."]
    return "\n".join(lines) + "\n"


def write_model_card(summary: dict[str, Any], script_args: Any, training_args: Any, model_args: Any) -> Path:
    """Write :func:`model_card` to `<output_dir>/README.md` (replacing PEFT's template) and return its path."""
    path = Path(training_args.output_dir, MODEL_CARD)
    atomic_write(path, model_card(summary, script_args, training_args, model_args))
    logger.info("Model card: %s", path)
    return path
