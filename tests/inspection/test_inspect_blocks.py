"""`grace-rl inspect` piped or in a narrow terminal: one block per rollout with whole ids, term names and texts, the
prompt and the rationale under their own labels."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from grace_rl.inspection.blocks import use_blocks
from grace_rl.inspection.inspector import Selection, inspect_run

REPO = Path(__file__).resolve().parents[2]
LONG_ID = "demo-0007-a-prompt-id-longer-than-any-column"
PROMPT = "A man is playing a guitar on a stage in front of a small crowd"
RATIONALE = (
    "The text describes a musical performance: a single musician, an acoustic instrument, a live audience, and "
    "a public place, so it is about music and entertainment rather than about the guitar as an object."
)
TERMS = {"group_contrastive": 0.625, "hard_negative": -0.25, "truncation": -0.0}


def tiny_log(path: Path) -> Path:
    """Two steps x (the long id + a short one) x 2 rollouts; the long id's step-2 rollout 0 has the best reward."""
    path.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in (1, 2):
        for pid, prompt in ((LONG_ID, PROMPT), ("b", "short input")):
            for g in (0, 1):
                best = (step, pid, g) == (2, LONG_ID, 0)
                rewards = {t: v + (1.0 if best else 0.0) * (t == "group_contrastive") for t, v in TERMS.items()}
                rationale = RATIONALE if best else f"rationale {step} {pid} {g}"
                rec = {"step": step, "prompt_id": pid, "prompt": prompt, "rationale": rationale, "rewards": rewards}
                rec.update(reward=sum(rewards.values()), advantage=0.5 if best else -0.1, rationale_tokens=9)
                lines.append(json.dumps(rec))
    (path / "rationales.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def flat(text: str) -> str:
    return " ".join(text.split())


def test_piped_inspect_shows_whole_ids_terms_and_rationale(tmp_path):
    run = tiny_log(tmp_path / "run")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # as in a fresh shell
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cli = f"{sys.executable} -m grace_rl.cli inspect {run}"
    out = subprocess.run(
        ["bash", "-c", f"{cli} --top 1 | cat && echo SPLIT && {cli} | cat"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    top, summary = out.split("SPLIT\n")
    assert f"prompt id {LONG_ID}" in top  # the whole id, not "demo-…"
    for term in TERMS:
        assert term in top and term in summary  # whole term names (the table cut them to "group…")
    assert "group_contrastive +1.625" in top and "reward +1.375" in top and "advantage +0.500" in top
    assert "…" not in out
    # the prompt and the rationale, whole and in that order, each under its own label
    prompt_at, rationale_at = top.index("\nprompt:\n"), top.index("\nrationale:\n")
    assert prompt_at < rationale_at
    assert flat(top[prompt_at:rationale_at]) == f"prompt: {PROMPT}"
    assert flat(top[rationale_at:]) == f"rationale: {RATIONALE}"
    assert max(len(line) for line in out.splitlines()) <= 80  # piped: rich's default 80 columns, wrapped not cut
    assert "── step 1 · 4 rollouts · 2 prompts" in summary and "── step 2" in summary


@pytest.mark.parametrize(
    ("layout", "width", "terminal", "blocks"),
    [
        ("auto", 80, True, True),
        ("auto", 99, True, True),
        ("auto", 100, True, False),
        ("auto", 200, False, True),  # piped / redirected
        ("table", 60, False, False),
        ("blocks", 200, True, True),
    ],
)
def test_layout_choice(layout, width, terminal, blocks):
    console = Console(file=io.StringIO(), width=width, force_terminal=terminal)
    assert use_blocks(console, layout) is blocks


def test_narrow_terminal_prompt_history_in_blocks(tmp_path):
    run = tiny_log(tmp_path / "run")
    buffer = io.StringIO()
    console = Console(file=buffer, width=60, force_terminal=True, color_system=None)
    inspect_run(run, Selection(prompt_id=LONG_ID), console)
    out = buffer.getvalue()
    assert f"prompt id: {LONG_ID}" in out and out.count("\nprompt:\n") == 1  # the prompt once, above the steps
    assert out.index("step 1: 2 rollouts") < out.index("step 2: 2 rollouts")
    assert out.count("\nrationale:\n") == 4 and flat(RATIONALE) in flat(out)
    assert max(len(line) for line in out.splitlines()) <= 60
    with pytest.raises(ValueError, match="--layout 'grid' is not one of auto, table, blocks"):
        inspect_run(run, Selection(layout="grid"), console)
