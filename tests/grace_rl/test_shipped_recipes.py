"""Every shipped recipe parses (a renamed key or a wrong value type fails here, not after a model load), and the two
shipped recipes ask for the paraphrasing instruction the protocol figures were measured with."""

from __future__ import annotations

from pathlib import Path

import pytest

from grace_rl.prompts import PARAPHRASE_INSTRUCTION
from grace_rl.train import parse_args

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_recipe_parses(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = ["--config", str(recipe), "--output_dir", str(tmp_path / "run")]
    if "_gpu" in recipe.name:  # parsed on the CPU: transformers refuses bf16 without an accelerator
        argv += ["--bf16", "false", "--use_cpu", "true"]
    script_args, args, model_args = parse_args(argv)
    assert args.max_steps > 0 and args.num_generations >= 2 and model_args.model_name_or_path


@pytest.mark.parametrize("name", ["grace_smollm2_cpu.yaml", "grace_unsup_smollm2_cpu.yaml"])
def test_the_shipped_recipes_use_the_paraphrasing_instruction(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    _, args, model_args = parse_args(["--config", f"configs/{name}", "--output_dir", str(tmp_path / "run")])
    assert args.instruction == PARAPHRASE_INSTRUCTION
    assert not model_args.use_peft and args.learning_rate == 2e-5 and args.temperature == 1.2
    assert args.embedding_loss_weight == 1.0
