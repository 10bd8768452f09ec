"""Unsupervised variant (plain texts) and bidirectional (q2d + d2q) rollouts, with a tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args

from .test_train_tiny import tiny_recipe

REPO = Path(__file__).resolve().parents[2]
UNSUP_TERMS = ["contrastive", "group_contrastive", "consistency", "truncation"]


def unsup_overrides(texts: Path) -> dict:
    return {
        "task": "unsupervised",
        "dataset_path": str(texts),
        "reward_terms": UNSUP_TERMS,
        "term_weights": [1.0, 0.5, 0.1, 0.1],
        "anchor_mode": "rationale",
        "anchor_temperature": 0.7,
    }


@pytest.fixture()
def texts(tmp_path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("".join(f"Plain text number {i} about topic {i % 3}.\n" for i in range(12)), encoding="utf-8")
    return path


def test_unsupervised_run_logs_unsupervised_terms(tmp_path, tiny_model_dir, texts):
    summary = main(*parse_args(tiny_recipe(tmp_path, tiny_model_dir, texts, **unsup_overrides(texts))))
    assert summary["steps"] == 2
    records = list(read_rationales(tmp_path / "run"))
    assert len(records) == 12
    assert all(set(r["rewards"]) == set(UNSUP_TERMS) for r in records)
    assert all(r["prompt"].startswith("Plain text number") for r in records)


def test_unsupervised_refuses_d2q(tmp_path, tiny_model_dir, texts):
    argv = tiny_recipe(tmp_path, tiny_model_dir, texts, **unsup_overrides(texts), directions=["q2d", "d2q"])
    with pytest.raises(ValueError, match="unsupervised task has only one side"):
        main(*parse_args(argv))


@pytest.mark.parametrize("schedule", ["step", "row"])
def test_both_directions_are_rolled_out(tmp_path, tiny_model_dir, demo_rows, schedule):
    argv = tiny_recipe(tmp_path, tiny_model_dir, demo_rows, directions=["q2d", "d2q"], direction_schedule=schedule)
    argv += ["--max_steps", "4", "--per_device_train_batch_size", "12"]
    main(*parse_args(argv))
    records = list(read_rationales(tmp_path / "run"))
    rows = {r["id"]: r for r in map(__import__("json").loads, demo_rows.read_text().splitlines())}
    by_direction = {d: [r for r in records if r["direction"] == d] for d in ("q2d", "d2q")}
    assert by_direction["q2d"] and by_direction["d2q"]
    for r in by_direction["q2d"]:
        assert r["prompt"] == rows[r["prompt_id"]]["query"]
    for r in by_direction["d2q"]:
        assert r["prompt"] == rows[r["prompt_id"]]["positive"]  # rolled out on the document
    if schedule == "step":
        assert {r["direction"] for r in records if r["step"] % 2 == 1} == {"q2d"}
        assert {r["direction"] for r in records if r["step"] % 2 == 0} == {"d2q"}


def test_accelerate_launch_runs_the_unsupervised_recipe(tmp_path, tiny_model_dir, texts):
    argv = tiny_recipe(tmp_path, tiny_model_dir, texts, **unsup_overrides(texts))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu.yaml"]
    cmd += ["scripts/train_grace.py", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(read_rationales(tmp_path / "run"))) == 12
