"""`grace-rl train` is the training entry point; `grace-rl --help` does not import the ML stack."""

from __future__ import annotations

import subprocess
import sys

from grace_rl.cli import main as cli_main
from grace_rl.inspection.log import read_rationales

from ..recipes import write_recipe


def test_help_imports_no_ml_stack():
    code = "import sys; from grace_rl.cli import build_parser; build_parser(); print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'grace_rl.commands.train'" in out
    assert not [m for m in ("'torch'", "'transformers'", "'trl'") if m in out]


def test_grace_rl_train_runs_a_recipe_with_overrides(tmp_path, tiny_model_dir, demo_rows, capsys):
    argv = write_recipe(tmp_path, tiny_model_dir, demo_rows, max_steps=1)
    assert cli_main(["train", *argv, "--logging_steps", "1"]) == 0
    assert '"steps": 1' in capsys.readouterr().out
    assert {r["step"] for r in read_rationales(tmp_path / "run")} == {1}
    assert cli_main(["train", *argv, "--num_generations", "1"]) == 2  # a config error: message, exit status 2
    assert "num_generations must be >= 2" in capsys.readouterr().err
