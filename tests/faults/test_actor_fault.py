"""An embedding actor killed in the middle of a training step (after generation, while the reward asks the pool for
embeddings): the pool re-syncs the restarted actor and re-runs its shard, and the step completes."""

from __future__ import annotations

import pytest

from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args
from rollout.ray_pool import RayEmbeddingPool

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, namespace="grace-rl-faults", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_actor_killed_mid_step_the_step_completes(
    ray_cluster, tmp_path, tiny_model_dir, demo_rows, recipe, monkeypatch, tally
):
    real_run = RayEmbeddingPool._run
    seen = {"calls": 0, "killed": None, "pool": None}

    def run(self, method, shards, **kwargs):
        seen["calls"] += 1
        seen["pool"] = self
        if method == "embed" and seen["killed"] is None and seen["calls"] > 1:  # step 2: its first embed call
            seen["killed"] = seen["calls"]
            ray_cluster.kill(self.actors[0], no_restart=False)  # a crash: Ray restarts it with the base weights
        return real_run(self, method, shards, **kwargs)

    monkeypatch.setattr(RayEmbeddingPool, "_run", run)
    argv = recipe(tmp_path, tiny_model_dir, demo_rows, embedding_backend="ray", ray_num_actors=2, ray_actor_num_cpus=1)
    summary = main(*parse_args(argv))
    assert seen["killed"] is not None, "the fault was never injected"
    assert summary["steps"] == 2
    assert [r["step"] for r in read_rationales(tmp_path / "run")] == [1] * 6 + [2] * 6
    assert seen["pool"].stats["retries"] >= 1 and seen["pool"].stats["resyncs"] >= 1
    tally.fault_survived()
