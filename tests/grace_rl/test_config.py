from __future__ import annotations

import pytest

from grace_rl.config import GraceConfig


def make(**kw):
    base = dict(
        output_dir="/tmp/x",
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=2,
        report_to="none",
    )
    return GraceConfig(**{**base, **kw})


def test_defaults_are_valid_and_fill_anchor_budget():
    cfg = make(max_completion_length=24)
    assert cfg.anchor_rationale_tokens == 24 and cfg.remove_unused_columns is False


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(reward_terms=["contrastive", "nope"], term_weights=[1, 1]), "Unknown reward term"),
        (dict(reward_terms=["contrastive"], term_weights=[1.0, 2.0]), "one weight per term"),
        (dict(reward_terms=["margin", "margin"], term_weights=[1.0, 1.0]), "twice"),
        (dict(contrastive_temperature=0.0), "contrastive_temperature must be > 0"),
        (dict(hard_negative_weight=0.0), "hard_negative_weight must be finite and > 0"),
        (dict(hard_negative_weight=float("inf")), "hard_negative_weight"),
        (dict(anchor_mode="both"), "anchor_mode"),
        (dict(anchor_temperature=-1.0), "anchor_temperature"),
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(pooling="max"), "pooling"),
        (dict(embedding_backend="spark"), "embedding_backend"),
        (dict(num_generations=1, per_device_train_batch_size=4), "at least 2 generations"),
        (dict(reward_terms=["dcg"], term_weights=[1.0]), "corpus index"),
        (dict(reward_terms=["refinement"], term_weights=[1.0], refinement_prefixes=[1.0]), "at least 2 fractions"),
        (dict(max_completion_length=16, completion_length_schedule=[8, 32]), "raise max_completion_length"),
        (dict(completion_length_schedule=[]), "completion_length_schedule"),
        (dict(reward_terms=["refinement"], term_weights=[1.0], refinement_prefixes=[0.5, 0.25]), "increasing"),
        (dict(reward_terms=["refinement"], term_weights=[1.0], refinement_prefixes=[0.5, 1.5]), "in \\(0, 1\\]"),
    ],
)
def test_invariants_fail_with_a_fix(kw, message):
    with pytest.raises(ValueError, match=message):
        make(**kw)
