"""Worker for tests/multiproc/test_zero3_gather.py (not a test itself): DeepSpeed ZeRO-3 partitioning on 2 CPU ranks.

    torchrun --standalone --nproc_per_node 2 zero3_worker.py MODEL_DIR OUT_DIR

The tiny model is loaded as the trainer loads it under ZeRO-3 (`from_pretrained` while an `HfDeepSpeedConfig` with
stage 3 is alive: `deepspeed.zero.Init` partitions every parameter across the 2 ranks). Then, with DeepSpeed's own
API underneath (`deepspeed.zero.GatheredParameters`):
- `policy_weights` (the Ray weight sync's payload) gathers full tensors;
- a `ShardedPool` whose `full_weights` gathers the parameters embeds with full weights;
- `run_on_main_process` (evaluation) gathers on both ranks and embeds on rank 0 only.
Rank 0 writes the results to OUT_DIR (`result.json`, `weights.pt`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

REQUESTS = [("A man plays a guitar.", (400, 401)), ("Two dogs run in a field.", ()), ("Stocks dropped.", (402,))]


def main(model_dir: str, out_dir: str) -> None:
    state = PartialState(cpu=True)  # gloo, as accelerate starts it on the CPU
    torch.set_num_threads(1)
    import deepspeed.comm
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations import HfDeepSpeedConfig

    from grace_rl.main_process import init_deepspeed_comm, run_on_main_process
    from grace_rl.prompts import RationaleTemplate
    from rollout.distributed import ShardedPool, gathered_parameters, zero3_partitioned
    from rollout.embedder import Embedder, EmbedRequest
    from rollout.pool import LocalEmbeddingPool
    from rollout.weight_sync import policy_weights

    class Args:  # the fields of GraceConfig that init_deepspeed_comm reads
        deepspeed, world_size, use_cpu = "zero3", state.num_processes, True

    init_deepspeed_comm(Args())
    assert deepspeed.comm.is_initialized() and deepspeed.comm.get_world_size() == 2
    config = {"train_micro_batch_size_per_gpu": 1, "train_batch_size": 2, "zero_optimization": {"stage": 3}}
    keep_alive = HfDeepSpeedConfig(config)  # noqa: F841 - transformers reads it through a weak reference
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    params = list(model.parameters())
    requests = [EmbedRequest(t, r) for t, r in REQUESTS]
    embedder = Embedder(model, tokenizer, RationaleTemplate("Explain the text."))
    result = {
        "partitioned": len(zero3_partitioned(params)) == len(params),
        "local_numel": sum(p.numel() for p in params),  # 0: each parameter's data is a shard held elsewhere
        "full_numel": sum(p.ds_numel for p in params),
        "shard_numel": sum(p.ds_tensor.numel() for p in params),
    }
    try:
        embedder.embed(requests)
        result["embed_without_gather"] = "ran"
    except Exception as err:  # noqa: BLE001 - empty (partitioned) weights; recorded for the test
        result["embed_without_gather"] = f"{type(err).__name__}: {err}"
    weights = policy_weights(model)
    pool = ShardedPool(LocalEmbeddingPool(embedder), full_weights=lambda: gathered_parameters(model.parameters()))
    sharded = pool.embed(requests)  # (3, H) on every rank
    evaluated = run_on_main_process(model, lambda m: Embedder(m, tokenizer, embedder.messages_fn).embed(requests))
    with gathered_parameters(params):
        result["gathered_numel"] = sum(p.numel() for p in params)
    result["local_numel_after"] = sum(p.numel() for p in params)  # partitioned again on exit
    if state.is_main_process:
        torch.save({"weights": weights, "sharded": sharded, "evaluated": evaluated}, Path(out_dir, "weights.pt"))
        Path(out_dir, "result.json").write_text(json.dumps(result), encoding="utf-8")
    state.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
