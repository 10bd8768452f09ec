"""A recipe with its own instruction: the run's before/after evaluation also scores the base model under the default
instruction, and the headline's bar is the better of the two (a gain from the prompt alone is not a gain)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from grace_rl.cli import main as cli_main
from grace_rl.train import _headline

from ..recipes import write_recipe

REPO = Path(__file__).resolve().parents[2]


def _result(by_budget: dict[int, float], cosines: dict[int, list[float]], default=None) -> dict:
    out = {"by_budget": {str(b): v for b, v in by_budget.items()}, "_cosines": cosines, "_gold": [1.0, 2.0, 3.0, 4.0]}
    if default:
        out["by_budget_default_instruction"] = {str(b): v for b, v in default[0].items()}
        out["_default_cosines"] = default[1]
    return out


def test_headline_bar_is_the_better_of_the_recipe_and_the_default_instruction():
    up, flat, down = [0.1, 0.2, 0.3, 0.4], [0.3, 0.1, 0.4, 0.2], [0.4, 0.3, 0.2, 0.1]
    after = _result({6: 100.0}, {6: up})
    recipe_only = _result({0: -100.0, 6: 40.0}, {0: down, 6: flat})
    h = _headline(recipe_only, after, 6)
    assert (h["base_model"], h["base_best_budget"], h["base_spearman"]) == ("base", 6, 40.0)
    both = _result({0: -100.0, 6: 40.0}, {0: down, 6: flat}, default=({0: 100.0, 6: 40.0}, {0: up, 6: flat}))
    h = _headline(both, after, 6)
    assert (h["base_model"], h["base_best_budget"], h["base_spearman"]) == ("base (default instruction)", 0, 100.0)
    assert h["difference"] == 0.0  # the trained model only matches the default prompt's bar


def test_a_run_with_its_own_instruction_scores_the_base_under_both(tmp_path, tiny_model_dir):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join((REPO / "data" / "demo_train.jsonl").read_text().splitlines()[:12]) + "\n")
    settings = {
        "eval_sts_path": str(REPO / "data" / "stsb_dev_sample.tsv"),
        "eval_sts_limit": 8,
        "eval_base_budgets": [0, 3],
        "instruction": "Paraphrase the text.",
        "max_steps": 1,
    }
    argv = write_recipe(tmp_path, tiny_model_dir, rows, **settings)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli_main(["train", *argv]) == 0
    summary = json.loads((tmp_path / "run" / "grace_summary.json").read_text())
    before, h = summary["before"], summary["headline"]
    assert set(before["by_budget"]) == set(before["by_budget_default_instruction"]) == {"0", "3", "6"}
    assert before["by_budget"] != before["by_budget_default_instruction"]  # the prompt changes the embeddings
    scores = [(v, "base") for v in before["by_budget"].values()]
    scores += [(v, "base (default instruction)") for v in before["by_budget_default_instruction"].values()]
    best = max(v for v, _ in scores)
    assert h["base_spearman"] == best and (best, h["base_model"]) in scores
    assert "_default_cosines" not in before
    assert "base, default instruction: 0: " in stdout.getvalue()
    card = (tmp_path / "run" / "README.md").read_text()
    assert "Base model with the default instruction (also a candidate for the bar): 0 tokens: " in card
