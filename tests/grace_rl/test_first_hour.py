"""A new user's first hour on a tiny run trained on the default model id: the commands printed at the end run as
printed in a new shell, the phases are announced with their timings, and the run directory is portable (the adapter
names the base model by its id; copied elsewhere with the cache relocated it loads and encodes the same)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.cli import main as cli_main
from grace_rl.commands.train import EXAMPLE_TEXT
from grace_rl.encoder import GraceEncoder

from ..recipes import write_recipe

REPO = Path(__file__).resolve().parents[2]
STS = REPO / "data" / "stsb_dev_sample.tsv"


def fresh_shell_env(cache: Path) -> dict[str, str]:
    """A new shell's environment: no active venv, nothing of it on PATH; this checkout importable; `cache` holding
    the stand-in for the default model."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "COLUMNS", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "venv" not in p)
    env["PYTHONPATH"] = str(REPO)  # the installed grace-rl is the editable main checkout; test this one
    env["GRACE_RL_CACHE"] = str(cache)
    return env


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def default_id_run(tmp_path_factory, tiny_model_dir):
    """Train 2 steps with `model_name_or_path: smollm2-135m-instruct`, the tiny model standing in for it in a cache
    at cache-a, once for this module; return (tmp dir, run dir, cache, printed stdout, log text)."""
    tmp = tmp_path_factory.mktemp("first-hour")
    cache = tmp / "cache-a"
    shutil.copytree(tiny_model_dir, cache / "models" / DEFAULT_MODEL_ID)
    rows = tmp / "rows.jsonl"
    rows.write_text("\n".join((REPO / "data" / "demo_train.jsonl").read_text().splitlines()[:16]) + "\n")
    settings = {"eval_sts_path": str(STS), "eval_sts_limit": 4, "save_strategy": "steps", "save_steps": 2}
    argv = write_recipe(tmp, Path(DEFAULT_MODEL_ID), rows, **settings)
    logger, handler, stdout = logging.getLogger("grace_rl"), _Collect(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv("GRACE_RL_CACHE", str(cache))
        mp.chdir(tmp)
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)  # pytest's root handler makes main()'s basicConfig a no-op
        try:
            assert cli_main(["train", *argv, "--model_name_or_path", DEFAULT_MODEL_ID]) == 0
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
    return tmp, tmp / "run", cache, stdout.getvalue(), "\n".join(handler.lines)


def printed_commands(stdout: str) -> list[str]:
    """The command lines of the "Next" block, as a user would copy them."""
    block = stdout[stdout.index("Next (in a new shell too, from ") :]
    return [line.split(":", 1)[1].strip() for line in block.splitlines()[1:] if re.match(r"  [a-zA-Z ]+:  ", line)]


def test_printed_commands_run_in_a_new_shell_and_outputs_are_portable(default_id_run, monkeypatch):
    tmp_path, run, cache, stdout, _ = default_id_run
    commands = printed_commands(stdout)
    assert [c.split()[1] for c in commands if not c.startswith("echo")] == ["inspect", "report"]
    assert any(" encode " in c for c in commands) and all(c.split()[0] != "grace-rl" for c in commands)
    env = fresh_shell_env(cache)
    results = [
        subprocess.run(["bash", "-c", c], cwd=tmp_path, env=env, capture_output=True, text=True) for c in commands
    ]
    for command, proc in zip(commands, results, strict=True):
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
    ids = {json.loads(line)["prompt_id"] for line in (run / "rationales.jsonl").read_text().splitlines()}
    shown = re.findall(r"prompt id (\S+)", results[0].stdout)  # inspect, piped: the top 3 rollouts' ids
    assert len(shown) == 3 and set(shown) <= ids, (shown, sorted(ids))  # whole ids, not cut
    assert (run / "report.html").stat().st_size > 10_000
    printed = np.load(run / "example_embedding.npy")
    assert printed.shape == (1, 32) and np.isfinite(printed).all()

    # portable: the adapter names the id as given, not cache-a's path
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == DEFAULT_MODEL_ID
    checkpoint = json.loads((run / "checkpoint-2" / "adapter_config.json").read_text())
    assert checkpoint["base_model_name_or_path"] == DEFAULT_MODEL_ID
    assert str(cache) not in (run / "adapter_config.json").read_text()
    # copied elsewhere, with the cache moved (the old one is gone): loads and encodes exactly as before
    elsewhere = tmp_path / "elsewhere" / "my-model"
    shutil.copytree(run, elsewhere)
    moved = shutil.copytree(cache, tmp_path / "cache-b")
    shutil.rmtree(cache)
    monkeypatch.setenv("GRACE_RL_CACHE", str(moved))
    encoder = GraceEncoder.from_pretrained(str(elsewhere))
    again = encoder.encode([EXAMPLE_TEXT], show_progress_bar=False)
    np.testing.assert_allclose(again, printed, atol=1e-5)


def test_phase_messages_and_model_card(default_id_run):
    _, run, _, _, log = default_id_run
    for phase in ("before-eval", "training", "after-eval"):
        assert re.search(rf"Phase {phase}: started \(.+\)", log), phase
        assert re.search(rf"Phase {phase}: done in \d+\.\d s", log), phase
    assert "Phase before-eval: started (STS on 4 pairs of" in log
    assert re.search(r"Phase after-eval: started \(.+\); about \d+\.\d s", log)  # estimated from before-eval
    assert re.search(r"Training: step 1/2, \d+\.\d s per step so far; about \d+\.\d s left", log)
    assert log.index("Phase before-eval: done") < log.index("Phase training: started") < log.index("step 1/2")

    card = (run / "README.md").read_text()
    summary = json.loads((run / "grace_summary.json").read_text())
    assert "[More Information Needed]" not in card  # not PEFT's template
    assert f"Base model: `{DEFAULT_MODEL_ID}` (LoRA r=4, alpha=8" in card
    assert "Optimizer steps: 2 (of max_steps 2)" in card and "demo_train" not in card  # rows came from rows.jsonl
    assert f"| before | {summary['before']['spearman']} | 4 | 6 |" in card
    assert f"| after | {summary['after']['spearman']} | 4 | 6 |" in card
    assert f'GraceEncoder.from_pretrained("{run}")' in card and "encoder.encode([" in card


def test_headline_is_trained_minus_the_base_at_its_best_budget(default_id_run):
    """The demo's headline follows the evaluation protocol: the base model is evaluated at 0 / 8 / 16 tokens and the
    training budget, and the trained model at its training budget is compared with the best of those."""
    _, run, _, stdout, _ = default_id_run
    summary = json.loads((run / "grace_summary.json").read_text())
    before, after, h = summary["before"], summary["after"], summary["headline"]
    assert set(before["by_budget"]) == {"0", "6", "8", "16"} and set(after["by_budget"]) == {"6"}
    assert before["spearman"] == before["by_budget"]["6"] and after["spearman"] == after["by_budget"]["6"]
    best = max(sorted(before["by_budget"], key=int), key=lambda b: before["by_budget"][b])
    assert (h["base_best_budget"], h["base_spearman"]) == (int(best), before["by_budget"][best])
    assert h["training_budget"] == 6 and h["trained_spearman"] == after["spearman"] and h["n"] == 4
    assert h["difference"] == pytest.approx(after["spearman"] - before["by_budget"][best], abs=0.011)
    assert "_cosines" not in before and "_gold" not in after  # internal, not in the summary
    assert f"{h['difference']:+.2f} [{h['ci_low']:+.2f}, {h['ci_high']:+.2f}] (paired 95% bootstrap)" in stdout
    assert f"base at each budget: 0: {before['by_budget']['0']}, 6: " in stdout
    assert (
        f"Headline (trained at 6 tokens minus the base at its best budget, {best} tokens)"
        in (run / "README.md").read_text()
    )
