"""What a run says about itself: the after-eval's time estimate and the name of what training saved."""

from __future__ import annotations

from types import SimpleNamespace

from grace_rl.commands.train import saved_model_kind
from grace_rl.prompts import DEFAULT_INSTRUCTION, PARAPHRASE_INSTRUCTION
from grace_rl.train import after_eval_estimate


def test_after_eval_estimate_counts_the_before_evals_sweeps():
    # the before-eval writes the base's rationales under the recipe's instruction and again under the default one
    assert after_eval_estimate(60.0, SimpleNamespace(instruction=PARAPHRASE_INSTRUCTION)) == 30.0
    assert after_eval_estimate(60.0, SimpleNamespace(instruction=DEFAULT_INSTRUCTION)) == 60.0
    assert after_eval_estimate(None, SimpleNamespace(instruction=DEFAULT_INSTRUCTION)) is None


def test_saved_model_kind_names_what_is_in_the_run_directory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert saved_model_kind(tmp_path) == "full weights"
    (tmp_path / "adapter_config.json").write_text("{}")
    assert saved_model_kind(tmp_path) == "LoRA adapter"
