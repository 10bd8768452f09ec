"""A 2-process ``torchrun`` (CPU, gloo) scores one generation batch split across ranks: in-batch negatives and groups
must span the global batch, so every rank's rewards equal a single process's rewards over the whole batch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from grace_rl.prompts import RationaleTemplate
from rollout.embedder import Embedder
from rollout.pool import LocalEmbeddingPool

pytestmark = pytest.mark.multiproc  # make test-multiproc

WORKER = Path(__file__).with_name("multiprocess_gather_worker.py")
REPO = Path(__file__).resolve().parents[2]


def load_worker():
    spec = importlib.util.spec_from_file_location("multiprocess_gather_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def test_two_process_rewards_equal_single_process_rewards_on_the_global_batch(tmp_path, tiny_model_dir, tokenizer):
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(WORKER), str(tiny_model_dir), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())

    worker = load_worker()
    batch = worker.full_batch(tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    pool = LocalEmbeddingPool(Embedder(model, tokenizer, RationaleTemplate("Explain the text.")), batch_size=4)
    expected = worker.make_reward(pool)(**batch)

    assert result["world"] == 2 and result["local_lengths"] == [3, 3]  # each rank returned its own slice
    assert result["record_ids"] == batch["prompt_id"]  # records too, in global order
    assert max_diff(result["sharded"], expected) < 1e-3
    assert max_diff(result["main"], expected) < 1e-3
    assert max_diff(result["captured"], expected) < 1e-3 and result["served"] == [6, 6]  # all rollouts, both ranks
    # Without the gather, rank 0 would score its half alone (other negatives, half of row1's group): different.
    alone = worker.make_reward(pool)(**{k: v[:3] for k, v in batch.items()})
    assert max_diff(alone, expected[:3]) > 1e-2
