"""Real multi-process training on the CPU (gloo) with the tiny model: `accelerate launch` and `torchrun`, 2 processes.

- supervised recipe through `accelerate launch --config_file configs/accelerate/cpu_2proc.yaml`: every rollout of
  the global batch comes from capture (`grace/rollouts_from_generation` == `grace/rollouts`), evaluation runs once
  (rank 0), the summary is written and printed once;
- unsupervised recipe through `torchrun --nproc_per_node 2`;
- fixed completions (tests/multiproc/injected_worker.py) with a layout where TRL puts one row's rollouts on both
  ranks: the reward scores every row whole over the global batch, and the rewards and advantages equal a
  1-process run's on the same completions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from trl import GRPOTrainer

from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args
from reward.grace_reward import GraceReward

from ..recipes import write_recipe
from . import injected_worker

pytestmark = pytest.mark.multiproc

REPO = Path(__file__).resolve().parents[2]
SUPERVISED = {
    "reward_terms": ["contrastive", "in_batch", "margin", "consistency", "truncation"],
    "term_weights": [1.0, 0.5, 0.5, 0.1, 0.1],
    "anchor_mode": "rationale",
    "anchor_rationale_tokens": 4,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    return proc


def torchrun(nproc: int, script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    return launch([*cmd, script, *args])


def training_logs(out: Path) -> tuple[list[dict], list[dict]]:
    """(rationale records, training-step metrics) of a run."""
    return list(read_rationales(out)), [m for m in read_rationales(out / "metrics.jsonl") if "loss" in m]


def check_groups(records: list[dict], group_size: int) -> None:
    """Consecutive `group_size` records per row; dr_grpo + scale_rewards=none: advantage = reward - row mean."""
    for s in range(0, len(records), group_size):
        group = records[s : s + group_size]
        assert len({(r["step"], r["prompt_id"]) for r in group}) == 1
        mean = sum(r["reward"] for r in group) / group_size
        assert all(abs(r["advantage"] - (r["reward"] - mean)) < 1e-4 for r in group)


def test_accelerate_two_processes_supervised_capture_every_rollout_and_evaluate_once(
    tmp_path, tiny_model_dir, demo_rows
):
    argv = write_recipe(
        tmp_path, tiny_model_dir, demo_rows, **SUPERVISED, eval_sts_path=str(REPO / "data" / "stsb_dev_sample.tsv"),
        eval_sts_limit=4,
    )  # fmt: skip
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu_2proc.yaml"]
    cmd += ["--main_process_port", str(free_port()), "scripts/train_grace.py", *argv]
    proc = launch(cmd)
    out = tmp_path / "run"
    records, metrics = training_logs(out)
    # 2 steps x 2 processes x 6 rollouts (per_device_train_batch_size) = 12 rollouts per step, 4 rows of 3
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert m["grace/rollouts"] == 12 and m["grace/rollouts_from_generation"] == 12  # no second embedding pass
    assert len(records) == 24 and [r["step"] for r in records] == [1] * 12 + [2] * 12
    check_groups(records, 3)
    summary = json.loads((out / "grace_summary.json").read_text())
    assert summary["steps"] == 2 and summary["before"]["n"] == 4 and summary["after"]["n"] == 4
    logs = proc.stdout + proc.stderr
    assert logs.count("STS before:") == 1 and logs.count("STS after:") == 1  # rank 0 only
    assert proc.stdout.count('"seconds_per_step"') == 1  # the summary is printed once
    assert (out / "adapter_model.safetensors").is_file()


def test_torchrun_two_processes_unsupervised(tmp_path, tiny_model_dir):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"Plain text number {i} about topic {i % 3}.\n" for i in range(12)), encoding="utf-8")
    terms = ["contrastive", "group_contrastive", "consistency", "truncation"]
    argv = write_recipe(
        tmp_path, tiny_model_dir, texts, task="unsupervised", reward_terms=terms, term_weights=[1.0, 0.5, 0.1, 0.1],
        anchor_mode="rationale", anchor_temperature=0.7, max_steps=1,
    )  # fmt: skip
    torchrun(2, "scripts/train_grace.py", *argv)
    records, metrics = training_logs(tmp_path / "run")
    assert len(records) == 12 and all(set(r["rewards"]) == set(terms) for r in records)
    assert metrics[0]["grace/rollouts"] == metrics[0]["grace/rollouts_from_generation"] == 12
    check_groups(records, 3)


def test_two_process_rewards_equal_one_process_rewards_on_the_same_completions(
    tmp_path, tiny_model_dir, demo_rows, monkeypatch
):
    # 3 rows x 2 rollouts per step. 2 processes x 3 rollouts: TRL puts the middle row's rollouts on both ranks.
    layout = {"num_generations": 2, "max_steps": 2, "save_strategy": "no", "max_completion_length": 6}
    # The injected completions stand in for generate, so anchors cannot ride along in it: the pool writes them.
    layout["anchor_generation"] = "separate"
    two = tmp_path / "two"
    two.mkdir()
    argv = write_recipe(two, tiny_model_dir, demo_rows, **SUPERVISED, **layout, per_device_train_batch_size=3)
    torchrun(2, str(Path(injected_worker.__file__)), str(two), *argv)
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]

    one = tmp_path / "one"
    one.mkdir()
    record = injected_worker.new_record()
    patched = [(GRPOTrainer, "_generate_single_turn"), (GraceReward, "score_batch"), (GraceReward, "build_context")]
    with monkeypatch.context() as patch:  # the same injected completions, in this process
        for cls, name in patched:
            patch.setattr(cls, name, getattr(cls, name))  # restored when the context ends
        injected_worker.install(record)
        main(
            *parse_args(
                write_recipe(one, tiny_model_dir, demo_rows, **SUPERVISED, **layout, per_device_train_batch_size=6)
            )
        )

    for step in range(2):
        local = [ranks[r]["local_prompt_ids"][step] for r in (0, 1)]
        assert local[0][-1] == local[1][0]  # a row's 2 rollouts were generated on 2 ranks ...
        for r in (0, 1):
            scored = ranks[r]["scored"][step]
            assert scored["row_keys"] == local[0] + local[1] == record["scored"][step]["row_keys"]
            assert scored["group_sizes"] == [2, 2, 2]  # ... and scored as one row of 2, on both ranks
            assert scored["in_batch_negatives"] == [2, 2, 2]  # in-batch negatives: the other 2 rows' positives
    records_2, metrics_2 = training_logs(two / "run")
    records_1, metrics_1 = training_logs(one / "run")
    assert len(records_2) == len(records_1) == 12
    # Step 1: the same weights, so the same rewards (measured: bitwise). Step 2 follows one DDP update vs one
    # 1-process update of the same global batch: the gradients agree up to float summation order, which Adam's first
    # step (update = lr * g / |g|) turns into up to +-lr on near-zero entries (measured: reward diffs <= 7e-4).
    for a, b in zip(records_2, records_1, strict=True):
        assert (a["step"], a["prompt_id"], a["rationale"]) == (b["step"], b["prompt_id"], b["rationale"])
        tolerance = 1e-6 if a["step"] == 1 else 3e-3
        assert abs(a["reward"] - b["reward"]) < tolerance and abs(a["advantage"] - b["advantage"]) < tolerance
    assert len({r["reward"] for r in records_1 if r["step"] == 1}) == 6  # rollouts differ: rewards differ
    check_groups(records_2, 2)
    assert [m["grace/rollouts_from_generation"] for m in metrics_2] == [0, 0]  # injected: nothing captured
