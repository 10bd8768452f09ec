"""The console prints one line per training log (`grace_rl.rationale_log.compact_log_line`, in place of the dict HF
prints) while `metrics.jsonl` keeps every key."""

from __future__ import annotations

import pytest
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments

from grace_rl.inspection.log import read_rationales
from grace_rl.rationale_log import (
    CompactPrinterCallback,
    CompactProgressCallback,
    compact_log_line,
    use_compact_console_log,
)
from grace_rl.train import main, parse_args

from ..recipes import write_recipe

STEP_LOG = {
    "loss": 0.0123456, "grad_norm": 0.0001, "learning_rate": 0.05, "num_tokens": 456.0,
    "completions/mean_length": 6.0, "reward": -0.0233201, "reward_std": 0.0033132, "frac_reward_zero_std": 0.0,
    "grace/contrastive": -0.000235, "grace/consistency": 0.76915, "grace/truncation": -1.0,
    "grace/truncated_frac": 0.5, "grace/embed_seconds": 8.6e-05, "entropy": 10.796, "epoch": 0.125,
}  # fmt: skip


def test_compact_line_by_hand():
    line = compact_log_line(STEP_LOG, 3, 24, ["contrastive", "consistency", "truncation", "dcg"], 2.46)
    assert line == (
        "step 3/24 | loss 0.01235 | reward -0.0233 ± 0.0033 | contrastive -0.0002 consistency +0.7692 "
        "truncation -1.0000 | truncated 50% | 2.5 s/step"
    )  # a term the log lacks (dcg) is left out
    assert compact_log_line({"loss": 0.5}, 1, 0) == "step 1 | loss 0.5"
    final = {"train_runtime": 9.4747, "train_samples_per_second": 1.9, "total_flos": 0.0, "train_loss": -1.6e-09}
    assert compact_log_line(final, 2, 2) == "trained 2 steps in 9.5 s | mean loss -1.6e-09"
    assert compact_log_line({"eval_loss": 0.25, "total_flos": 1.0}, 2, 2) == "eval_loss 0.25"


@pytest.mark.parametrize(
    ("disable_tqdm", "printer", "compact"),
    [(False, ProgressCallback, CompactProgressCallback), (True, PrinterCallback, CompactPrinterCallback)],
)
def test_hf_printers_are_swapped_for_the_compact_ones(tmp_path, tiny_model, disable_tqdm, printer, compact):
    args = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=disable_tqdm, use_cpu=True, report_to="none")
    trainer = Trainer(model=tiny_model, args=args)
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert printer in kinds
    use_compact_console_log(trainer, ["contrastive"])
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert printer not in kinds and kinds.count(compact) == 1


def test_tiny_run_prints_one_line_per_step_and_logs_every_key(tmp_path, tiny_model_dir, demo_rows, capsys):
    argv = write_recipe(tmp_path, tiny_model_dir, demo_rows, reward_terms=["contrastive", "truncation"],
                        term_weights=[1.0, 0.1], anchor_mode="plain")  # fmt: skip
    assert main(*parse_args(argv))["steps"] == 2
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in steps] == ["step 1/2", "step 2/2"], out
    for line in steps:
        assert " | loss " in line and " | reward " in line and "contrastive " in line and "truncation " in line
        assert line.endswith(" s/step")
    assert sum(line.startswith("trained 2 steps in ") for line in out.splitlines()) == 1
    assert "{'loss'" not in out and "'grad_norm'" not in out  # HF's dict is not printed
    metrics = list(read_rationales(tmp_path / "run" / "metrics.jsonl"))
    step_logs = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in step_logs] == [1, 2]
    for m in step_logs:  # the full dict: TRL's keys and ours
        assert {"grad_norm", "learning_rate", "reward", "reward_std", "entropy", "completions/mean_length"} <= set(m)
        assert {"grace/contrastive", "grace/truncation", "grace/truncated_frac", "grace/rollouts"} <= set(m)
    assert any("train_runtime" in m for m in metrics)
