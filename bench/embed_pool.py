"""Embedding pool throughput, `local` vs `ray` (1 and 2 actors), and the share of a training step spent embedding.

Part 1 embeds `--texts` demo queries, each followed by a `--rationale_tokens` rationale, with the default model
wrapped in the CPU recipe's LoRA adapter (as during training): in process (`local`), then through a Ray pool of 1
and of 2 actors that together reserve the machine's CPUs (actor start-up and the LoRA weight sync are timed too, and
the pool's embeddings are checked against the local ones). Part 2 trains `--steps` GRPO steps of the CPU recipe with
each backend and reports which share of a step went to the embedding pool (rollout + anchor embeddings, and the
anchors' greedy rationales).

    nice -n 10 python bench/embed_pool.py
    nice -n 10 python bench/embed_pool.py --texts 128 --steps 0      # throughput only

Prints a table and writes `bench/results/embed_pool.json`. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
RECIPE = REPO / "configs" / "grace_smollm2_cpu.yaml"
RATIONALE = "The sentence describes an everyday scene; its key entities and the action they perform matter most. "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=64, help="texts per throughput measurement")
    parser.add_argument("--rationale_tokens", type=int, default=32, help="rationale length appended to each text")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per backend (after one warm-up)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray pool sizes to measure")
    parser.add_argument("--steps", type=int, default=1, help="training steps per backend for the step share (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS / "embed_pool.json")
    return parser.parse_args()


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    cells = [headers, *[[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def recipe(overrides: list[str]):
    from grace_rl.train import parse_args as parse_recipe

    out = f"/tmp/grace-bench-embed-pool-{os.getpid()}"
    base = ["--config", str(RECIPE), "--output_dir", out, "--eval_sts_path", "null", "--rationale_log", "false"]
    base += ["--use_peft", "true"]  # the pool syncs a LoRA adapter here (the CPU recipe fine-tunes every weight)
    return parse_recipe([*base, *overrides])


def policy_and_requests(n: int, rationale_tokens: int):
    """The default model with the recipe's (untrained) LoRA adapter, its tokenizer, template and `n` requests."""
    from peft import get_peft_model
    from trl import get_peft_config

    from grace_rl.models import load_model, load_tokenizer, resolve_model_path
    from grace_rl.prompts import RationaleTemplate
    from rollout.embedder import EmbedRequest

    _, args, model_args = recipe([])
    path = resolve_model_path(model_args.model_name_or_path)
    tokenizer = load_tokenizer(path)
    model = get_peft_model(load_model(path), get_peft_config(model_args)).eval()
    rows = [json.loads(line) for line in (REPO / "data" / "demo_train.jsonl").read_text().splitlines() if line]
    texts = [r["query"] for r in rows[:n]]
    ids = tokenizer(RATIONALE * 8, add_special_tokens=False)["input_ids"][:rationale_tokens]
    return model, tokenizer, RationaleTemplate(args.instruction), [EmbedRequest(t, tuple(ids)) for t in texts]


def timed_passes(pool, requests, repeats: int) -> tuple[float, torch.Tensor]:
    """Texts per second over `repeats` passes after a warm-up pass; also returns the embeddings."""
    out = pool.embed(requests[:4])  # warm-up (thread pools, prompt cache)
    start = time.perf_counter()
    for _ in range(repeats):
        out = pool.embed(requests)
    return len(requests) * repeats / (time.perf_counter() - start), out


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    import ray

    from rollout.actor import ModelSpec
    from rollout.embedder import Embedder
    from rollout.pool import LocalEmbeddingPool
    from rollout.ray_pool import RayEmbeddingPool, RayPoolOptions
    from rollout.weight_sync import policy_weights

    model, tokenizer, template, requests = policy_and_requests(args.texts, args.rationale_tokens)
    cores = os.cpu_count() or 1
    local = LocalEmbeddingPool(Embedder(model, tokenizer, template), batch_size=16)
    rate, reference = timed_passes(local, requests, args.repeats)
    rows = [{"backend": "local", "actors": 0, "cpus": torch.get_num_threads(), "texts_per_s": rate}]
    logging.info("local: %.2f texts/s", rate)
    weights = policy_weights(model)
    ray.init(num_cpus=cores, include_dashboard=False, namespace="grace-rl-bench", log_to_driver=False)
    try:
        for n in args.actors:
            cpus = max(1, cores // n)
            start = time.perf_counter()
            pool = RayEmbeddingPool(
                ModelSpec.from_model(model, tokenizer, template), RayPoolOptions(num_actors=n, num_cpus=cpus)
            )
            startup = time.perf_counter() - start
            try:
                start = time.perf_counter()
                pool.sync_weights(weights, version=0)
                sync = time.perf_counter() - start
                rate, out = timed_passes(pool, requests, args.repeats)
            finally:
                pool.close()
            row = {"backend": "ray", "actors": n, "cpus": n * cpus, "texts_per_s": rate, "startup_s": startup}
            row.update(lora_sync_s=sync, max_abs_diff_vs_local=float((out - reference).abs().max()))
            rows.append(row)
            logging.info("ray x%d: %s", n, row)
    finally:
        ray.shutdown()
    payload_mb = sum(t.numel() * t.element_size() for t in weights.values()) / 2**20
    base_state = model.get_base_model().state_dict()  # full fine-tuning would send this without the adapters
    unique = {t.untyped_storage().data_ptr(): t for k, t in base_state.items() if "lora_" not in k}  # tied once
    full_mb = sum(t.numel() * t.element_size() for t in unique.values()) / 2**20
    for row in rows:
        row.update(lora_payload_mb=payload_mb, full_payload_mb=full_mb)
    return rows


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def step_share(backend: str, steps: int) -> dict[str, Any]:
    """Train `steps` recipe steps with `backend`; mean step time and the pool's share of it."""
    from trl import get_peft_config

    from grace_rl.data import build_dataset, load_supervised
    from grace_rl.models import load_model, load_tokenizer, resolve_model_path
    from grace_rl.prompts import RationaleTemplate
    from grace_rl.trainer import GraceTrainer, build_reward

    script_args, args, model_args = recipe(["--embedding_backend", backend, "--max_steps", str(steps)])
    path = resolve_model_path(model_args.model_name_or_path)
    tokenizer = load_tokenizer(path)
    timer = StepTimer()
    trainer = GraceTrainer(
        model=load_model(path),
        args=args,
        processing_class=tokenizer,
        grace_reward=build_reward(args, tokenizer),
        train_dataset=build_dataset(load_supervised(script_args.dataset_path), RationaleTemplate(args.instruction)),
        peft_config=get_peft_config(model_args),
        callbacks=[timer],
    )
    try:
        trainer.train()
    finally:
        if trainer.ray_pool is not None:
            trainer.ray_pool.close()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    step = sum(timer.seconds) / len(timer.seconds)
    embed = sum(e["grace/embed_seconds"] for e in logs) / len(logs)
    anchors = sum(e["grace/anchor_rationale_seconds"] for e in logs) / len(logs)
    return {
        "backend": backend,
        "steps": steps,
        "step_s": step,
        "embed_s": embed,
        "anchor_rationale_s": anchors,
        "embed_share_pct": 100 * embed / step,
        "pool_share_pct": 100 * (embed + anchors) / step,
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args()
    rows = throughput(args)
    shares = [step_share(b, args.steps) for b in ("local", "ray")] if args.steps > 0 else []
    tp_headers = ["backend", "actors", "CPUs", "texts/s", "start-up s", "LoRA sync s", "max |diff| vs local"]
    tp_rows = [
        [r["backend"], r["actors"], r["cpus"], r["texts_per_s"], r.get("startup_s", "-"), r.get("lora_sync_s", "-"),
         f"{r['max_abs_diff_vs_local']:.1e}" if "max_abs_diff_vs_local" in r else "-"]
        for r in rows
    ]  # fmt: skip
    print(
        f"\nEmbedding throughput: {args.texts} texts + {args.rationale_tokens}-token rationales, default model + LoRA"
    )
    print(table(tp_headers, tp_rows))
    print(
        f"weight payload per sync: LoRA {rows[0]['lora_payload_mb']:.1f} MB, full {rows[0]['full_payload_mb']:.1f} MB"
    )
    if shares:
        print(f"\nShare of a training step spent in the embedding pool (CPU recipe, {args.steps} step(s) each)")
        sh_headers = ["backend", "step s", "embed s", "anchor rationales s", "embed %", "embed + rationales %"]
        print(table(sh_headers, [[s["backend"], s["step_s"], s["embed_s"], s["anchor_rationale_s"],
                                  s["embed_share_pct"], s["pool_share_pct"]] for s in shares]))  # fmt: skip
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "throughput": rows, "step_share": shares}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
