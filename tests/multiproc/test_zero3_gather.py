"""DeepSpeed ZeRO-3 on 2 CPU ranks (gloo): partitioned parameters are gathered before the weight sync, the embedder and
evaluation read them (tests/multiproc/zero3_worker.py). Reference: the same tiny model loaded plainly here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from grace_rl.prompts import RationaleTemplate
from rollout.embedder import Embedder, EmbedRequest
from rollout.weight_sync import policy_weights

from . import zero3_worker
from .test_training_2proc import torchrun

pytestmark = pytest.mark.multiproc


def test_zero3_partitioned_model_is_gathered_for_weight_sync_embedding_and_evaluation(
    tmp_path, tiny_model_dir, tokenizer
):
    torchrun(2, str(Path(zero3_worker.__file__)), str(tiny_model_dir), str(tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    out = torch.load(tmp_path / "weights.pt")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    full = sum(p.numel() for p in model.parameters())
    assert result["partitioned"] and result["local_numel"] == 0 and result["full_numel"] == full
    assert result["shard_numel"] < full  # this rank holds a part only ...
    assert result["embed_without_gather"] != "ran"  # ... so the embedder fails on it without a gather
    assert result["gathered_numel"] == full and result["local_numel_after"] == 0
    expected_weights = policy_weights(model)
    assert out["weights"].keys() == expected_weights.keys()
    assert all(torch.equal(out["weights"][k], v) for k, v in expected_weights.items())
    requests = [EmbedRequest(t, r) for t, r in zero3_worker.REQUESTS]
    expected = Embedder(model, tokenizer, RationaleTemplate("Explain the text.")).embed(requests)
    assert (out["sharded"] - expected).abs().max() < 1e-5
    assert (out["evaluated"] - expected).abs().max() < 1e-5
