"""The record-per-block layout of `grace-rl inspect`, for narrow terminals and pipes (`| less`, `| cat`, a file).

Tables squeeze every column into the width and cut ids, term names and texts to a few characters; here each step or
rollout is a block of short lines that wrap instead, so whole ids, term names and the full prompt and rationale are
always shown, the prompt and the rationale under their own labels. Nothing is cut: text wraps at the width.
"""

from __future__ import annotations

import textwrap
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from grace_rl.errors import UserError
from grace_rl.inspection.log import Run, StepSummary, is_truncated, rationale_length, value_of

# Below this width the tables of the inspector cut ids and texts; `auto` then uses blocks.
MIN_TABLE_WIDTH = 100
LAYOUTS = ("auto", "table", "blocks")
INDENT = "    "


def use_blocks(console: Console, layout: str) -> bool:
    """Whether `layout` (`auto`, `table` or `blocks`) means blocks on `console`: `auto` picks blocks when the output
    is not a terminal (piped or redirected) or the terminal is narrower than `MIN_TABLE_WIDTH` columns."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout!r} is not one of {', '.join(LAYOUTS)}.")
    if layout != "auto":
        return layout == "blocks"
    return not console.is_terminal or console.width < MIN_TABLE_WIDTH


def num(value: float | None, signed: bool = True) -> str:
    """A value as the inspector prints it (`–` when missing; -0.0 prints as 0.0)."""
    if value is None:
        return "–"
    value += 0.0
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def labelled(label: str, body: str, width: int, grep: str | None = None, style: str = "") -> Text:
    """`label:` on its own line, then `body` indented and wrapped at `width` columns (never cut)."""
    lines = [
        textwrap.fill(para, width, initial_indent=INDENT, subsequent_indent=INDENT, break_on_hyphens=False) or INDENT
        for para in (body or "(empty)").splitlines()
    ]
    text = Text(f"{label}:\n", style="bold")
    body_text = Text("\n".join(lines), style=style)
    if grep:
        body_text.highlight_words([grep], style="bold black on yellow", case_sensitive=False)
    return text.append_text(body_text)


def record_block(
    run: Run, rec: dict[str, Any], width: int, grep: str | None = None, with_prompt: bool = True
) -> Group:
    """One rollout: a heading (step, whole prompt id, direction), reward, advantage and length, one line per reward
    term, then the prompt and the rationale under their own labels."""
    length = f"{rationale_length(rec)} words" + (", truncated" if is_truncated(rec) else "")
    if rec.get("rationale_tokens") is not None:
        length = f"{rec['rationale_tokens']} tokens, {length}"
    head = f"── step {rec['step']} · prompt id {rec['prompt_id']}" + (
        f" · {rec['direction']}" if rec.get("direction") else ""
    )
    facts = Text(f"{INDENT}reward {num(value_of(rec, 'reward'))} · advantage {num(value_of(rec, 'advantage'))}")
    facts.append(f" · {length}")
    parts: list[Any] = [Text(head, style="bold"), facts]
    parts += [Text(f"{INDENT}{term} {num(value_of(rec, term))}") for term in run.terms]
    if with_prompt:
        parts.append(labelled("prompt", str(rec.get("prompt") or ""), width, grep, style="italic"))
    parts.append(labelled("rationale", str(rec.get("rationale") or ""), width, grep))
    return Group(*parts)


def print_records(console: Console, run: Run, records: list[dict[str, Any]], title: str, grep: str | None) -> None:
    """`title`, then one block per record, a blank line between blocks."""
    console.print(Text(title, style="bold underline"))
    for rec in records:
        console.print()
        console.print(record_block(run, rec, console.width, grep))


def step_block(run: Run, s: StepSummary) -> Text:
    """One step's means: counts, reward, advantage spread, length, truncation rate, then one line per term."""
    rate = "?" if s.truncation_rate is None else f"{100 * s.truncation_rate:.0f}%"
    length = "–" if s.length is None else f"{s.length:.1f}"
    head = f"── step {s.step} · {s.rollouts} rollouts · {s.prompts} prompts\n"
    block = Text(head, style="bold")
    block.append(f"{INDENT}reward {num(s.reward)} · advantage std {num(s.advantage_std, False)}\n")
    block.append(f"{INDENT}words {length} · truncated {rate}\n")
    for term in run.terms:
        block.append(f"{INDENT}{term} {num(s.terms[term])}\n")
    block.rstrip()
    return block


def print_steps(console: Console, run: Run, summaries: list[StepSummary]) -> None:
    """The per-step means, one block per step."""
    console.print(Text("Per-step means over rollouts", style="bold underline"))
    for s in summaries:
        console.print(step_block(run, s))


def print_history(
    console: Console, run: Run, history: dict[int, list[dict[str, Any]]], steps: list[int], grep: str | None
) -> None:
    """One input's rollouts at `steps` (best first within a step); the prompt is printed once by the caller."""
    for step in steps:
        console.print()
        console.print(Text(f"step {step}: {len(history[step])} rollouts", style="bold underline"))
        for n, rec in enumerate(history[step]):
            if n:
                console.print()
            console.print(record_block(run, rec, console.width, grep, with_prompt=False))
