"""The tiny CPU recipe shared by the end-to-end tests: a YAML file run through the real entry point (``--config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY_SETTINGS: dict[str, Any] = {
    "use_peft": True,
    "lora_r": 4,
    "lora_alpha": 8,
    "lora_target_modules": ["q_proj", "v_proj"],
    "use_cpu": True,
    "bf16": False,
    "gradient_checkpointing": False,
    "max_steps": 2,
    "per_device_train_batch_size": 6,
    "num_generations": 3,
    "max_completion_length": 6,
    "learning_rate": 1e-3,
    "loss_type": "dr_grpo",
    "scale_rewards": "none",
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
}


def write_recipe(tmp_path: Path, model_dir: Path, rows: Path, **settings: Any) -> list[str]:
    """Write ``tmp_path/recipe.yaml`` (tiny settings + ``settings``; output in ``tmp_path/run``); return the argv."""
    recipe = {
        "model_name_or_path": str(model_dir),
        "dataset_path": str(rows),
        "output_dir": str(tmp_path / "run"),
        **TINY_SETTINGS,
        **settings,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return ["--config", str(path)]
