"""The ray embedding backend: the plain actor (no Ray), balanced shards, version refusal, and (marker ``ray``) the
real pool on a local 2-CPU cluster: equivalence after a sync (full FT and LoRA), order, a killed actor."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, TrainerCallback

from grace_rl.config import GraceConfig
from grace_rl.prompts import RationaleTemplate
from reward.grace_reward import GraceReward, StaleEmbeddingsError
from rollout.actor import NOT_SYNCED, EmbeddingActor, ModelSpec
from rollout.embedder import Embedder, EmbedRequest
from rollout.pool import LocalEmbeddingPool, VersionedEmbeddings
from rollout.ray_pool import RayEmbeddingPool, RayPoolOptions, actor_resources, balanced_shards
from rollout.weight_sync import policy_weights

TEMPLATE = RationaleTemplate("Explain the text.")
TEXTS = [
    "A man plays a guitar.",
    "Two dogs run across a very wide and green field while children watch them.",
    "Hi.",
    "The stock market fell sharply on Monday after the announcement.",
    "A woman is slicing an onion.",
    "Cats sleep.",
    "Someone is riding a bicycle down a steep hill in the rain.",
]
REQUESTS = [EmbedRequest(t, tuple(range(300, 300 + k))) for k, t in enumerate(TEXTS)]


def trained(model_dir, lora: bool) -> torch.nn.Module:
    """The tiny model as a trainer holds it after some steps: trainable weights moved away from the saved ones."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def own_embeddings(model, tokenizer, requests=REQUESTS) -> torch.Tensor:
    return LocalEmbeddingPool(Embedder(model, tokenizer, TEMPLATE)).embed(requests)


# ---- without Ray -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_actor_equals_trainer_model_after_load_weights(tiny_model_dir, tokenizer, lora):
    model = trained(tiny_model_dir, lora)
    weights = policy_weights(model)
    if lora:
        assert weights and all("lora_" in k for k in weights)  # adapters only travel
    else:  # the whole state dict, the tied LM head once (as the input embeddings)
        assert set(model.state_dict()) - set(weights) == {"lm_head.weight"}
    actor = EmbeddingActor(ModelSpec.from_model(model, tokenizer, TEMPLATE))
    before, version = actor.embed(REQUESTS)
    expected = own_embeddings(model, tokenizer)
    assert version == NOT_SYNCED and (before - expected).abs().max() > 1e-3
    assert actor.load_weights(weights, 7) == 7
    after, version = actor.embed(REQUESTS)
    assert version == 7 and (after - expected).abs().max() < 1e-5
    local = Embedder(model, tokenizer, TEMPLATE).generate_rationales(TEXTS[:3], max_new_tokens=4)
    assert actor.generate_rationales(TEXTS[:3], max_new_tokens=4) == (local, 7)


def test_spec_needs_a_local_model_directory(tiny_model, tokenizer):
    with pytest.raises(ValueError, match="local directory"):
        ModelSpec.from_model(tiny_model, tokenizer, TEMPLATE)


def test_balanced_shards_hand_example_and_properties():
    assert balanced_shards([5, 1, 1, 3], 2) == [[0], [1, 2, 3]]
    assert balanced_shards([1, 1], 3) == [[0], [1], []]
    rng = random.Random(0)
    costs = [rng.randint(1, 50) for _ in range(101)]
    shards = balanced_shards(costs, 4)
    assert sorted(i for s in shards for i in s) == list(range(101))
    loads = [sum(costs[i] for i in s) for s in shards]
    assert max(loads) - min(loads) <= max(costs)


def test_gpus_requested_only_on_clusters_that_have_them(monkeypatch):
    ray = pytest.importorskip("ray")
    options = RayPoolOptions(num_actors=2, num_cpus=1.0, num_gpus=0.5)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert actor_resources(options) == (1.0, 0.0)  # never a fractional GPU on a CPU-only cluster
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    assert actor_resources(options) == (1.0, 0.5)
    with pytest.raises(ValueError, match="lower ray_num_actors"):
        actor_resources(RayPoolOptions(num_actors=3, num_cpus=1.0))
    assert actor_resources(RayPoolOptions(num_actors=3, num_cpus=1.0), fixed_size=False) == (1.0, 0.0)


class VersionedPool:
    """Embeddings tagged with a fixed weight version (what a pool synced at ``version`` returns)."""

    def __init__(self, version: int) -> None:
        self.version = version

    def embed_with_version(self, requests, pooling="mean"):
        vectors = torch.nn.functional.normalize(torch.randn(len(requests), 8), dim=-1)
        return VersionedEmbeddings(vectors, torch.full((len(requests),), self.version, dtype=torch.long))

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        return [(7,)] * len(texts)

    def decode(self, ids):
        return ""


def reward_batch(step: int) -> dict:
    return dict(
        prompts=["q0", "q0", "q1", "q1"],
        completions=["a", "b", "c", "d"],
        completion_ids=[[5, 2], [6, 2], [7, 2], [8, 2]],
        query=["q0", "q0", "q1", "q1"],
        positive=["p0", "p0", "p1", "p1"],
        trainer_state=SimpleNamespace(global_step=step),
    )


def test_reward_refuses_embeddings_older_than_allowed():
    reward = GraceReward(["contrastive"], [1.0], anchor_mode="plain", max_weight_staleness=1, pool=VersionedPool(3))
    assert len(reward(**reward_batch(step=4))) == 4  # one step old: allowed
    with pytest.raises(StaleEmbeddingsError, match=r"2 optimizer steps old.*max_weight_staleness=1"):
        reward(**reward_batch(step=5))
    unchecked = GraceReward(["contrastive"], [1.0], anchor_mode="plain", pool=VersionedPool(3))
    assert len(unchecked(**reward_batch(step=50))) == 4


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(weight_sync_every=3, max_weight_staleness=1), "max_weight_staleness"),
        (dict(weight_sync_every=0), "weight_sync_every"),
        (dict(ray_num_actors=0), "ray_num_actors"),
        (dict(ray_actor_num_gpus=-1.0), "ray_actor_num_gpus"),
    ],
)
def test_config_rejects_bad_ray_settings(kw, message):
    base = dict(output_dir="/tmp/x", use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=2)
    with pytest.raises(ValueError, match=message):
        GraceConfig(**base, report_to="none", embedding_backend="ray", **kw)


# ---- with Ray (a local 2-CPU cluster per module) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, namespace="grace-rl-tests", log_to_driver=False)
    yield ray
    ray.shutdown()


def make_pool(model, tokenizer, num_actors: int, **options) -> RayEmbeddingPool:
    spec = ModelSpec.from_model(model, tokenizer, TEMPLATE)
    return RayEmbeddingPool(spec, RayPoolOptions(num_actors=num_actors, num_cpus=1, batch_size=3, **options))


@pytest.mark.ray
def test_ray_pool_lora_equivalence_order_and_killed_actor(ray_cluster, tiny_model_dir, tokenizer):
    model = trained(tiny_model_dir, lora=True)
    expected = own_embeddings(model, tokenizer)
    pool = make_pool(model, tokenizer, num_actors=2, chunk_size=2)  # 7 requests: 2 calls per actor
    try:
        with pytest.raises(RuntimeError, match="sync_weights"):
            pool.embed(REQUESTS)
        pool.sync_weights(policy_weights(model), version=3)
        out = pool.embed_with_version(REQUESTS)
        assert out.versions.tolist() == [3] * len(REQUESTS)
        assert (out.vectors - expected).abs().max() < 1e-5  # equivalence and input order
        reversed_out = pool.embed(REQUESTS[::-1])
        assert (reversed_out - expected.flip(0)).abs().max() < 1e-5
        local = Embedder(model, tokenizer, TEMPLATE).generate_rationales(TEXTS, max_new_tokens=4)
        assert pool.generate_rationales(TEXTS, max_new_tokens=4) == local
        # A crashed actor restarts with base weights; the pool re-sends the adapters and re-runs its shard.
        ray_cluster.kill(pool.actors[0], no_restart=False)
        again = pool.embed_with_version(REQUESTS)
        assert (again.vectors - expected).abs().max() < 1e-5 and again.versions.tolist() == [3] * len(REQUESTS)
        assert pool.stats["retries"] >= 1 and pool.stats["resyncs"] >= 1
    finally:
        pool.close()


@pytest.mark.ray
def test_ray_pool_full_finetuning_equivalence(ray_cluster, tiny_model_dir, tokenizer):
    model = trained(tiny_model_dir, lora=False)
    pool = make_pool(model, tokenizer, num_actors=1)
    try:
        pool.sync_weights(policy_weights(model), version=0)
        assert (pool.embed(REQUESTS) - own_embeddings(model, tokenizer)).abs().max() < 1e-5
    finally:
        pool.close()


class KillActorAfterFirstStep(TrainerCallback):
    """Kills (with restart) one embedding actor right after step 1's weight sync: step 2 must still complete."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            import ray

            ray.kill(self.trainer.ray_pool.actors[0], no_restart=False)
        return control


def tiny_training_args(tmp_path, model_dir, rows) -> tuple[GraceConfig, LoraConfig]:
    args = GraceConfig(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        bf16=False,
        max_steps=2,
        per_device_train_batch_size=6,
        num_generations=3,
        max_completion_length=6,
        learning_rate=1e-2,
        loss_type="dr_grpo",
        scale_rewards="none",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        reward_terms=["contrastive", "consistency"],
        term_weights=[1.0, 0.1],
        anchor_mode="rationale",
        anchor_rationale_tokens=4,
        anchor_generation="separate",  # the pool writes + embeds the anchors each step (with_rollouts: captured)
        embedding_backend="ray",
        ray_num_actors=2,
        embedding_batch_size=4,
    )
    return args, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


@pytest.mark.ray
def test_training_step_completes_after_an_actor_is_killed(ray_cluster, tmp_path, tiny_model_dir, tokenizer, demo_rows):
    from grace_rl.data import build_dataset, load_supervised
    from grace_rl.inspection.log import read_rationales
    from grace_rl.trainer import GraceTrainer, build_reward

    args, peft_config = tiny_training_args(tmp_path, tiny_model_dir, demo_rows)
    template = RationaleTemplate(args.instruction)
    trainer = GraceTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
        args=args,
        processing_class=tokenizer,
        grace_reward=build_reward(args, tokenizer),
        train_dataset=build_dataset(load_supervised(demo_rows), template),
        peft_config=peft_config,
    )
    try:
        trainer.add_callback(KillActorAfterFirstStep(trainer))
        trainer.train()
        assert trainer.state.global_step == 2
        assert [r["step"] for r in read_rationales(tmp_path / "run" / "rationales.jsonl")] == [1] * 6 + [2] * 6
        assert trainer.ray_pool.stats["retries"] >= 1 and trainer.ray_pool.synced_version == 2
        # the restarted actor holds the final (step 2) weights again
        own = LocalEmbeddingPool(Embedder(trainer.model, tokenizer, template)).embed(REQUESTS)
        assert (trainer.ray_pool.embed(REQUESTS) - own).abs().max() < 1e-5
    finally:
        trainer.ray_pool.close()
