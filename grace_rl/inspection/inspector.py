"""The terminal inspector behind `grace-rl inspect RUN_DIR`: per-step means, best/worst rollouts, one input's
rationales across steps (rich tables). Every list of rollouts is ordered by `--by`, by default largest |advantage|
first (:data:`grace_rl.inspection.log.DEFAULT_ORDER`), and its title says so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grace_rl.errors import UserError
from grace_rl.inspection import blocks
from grace_rl.inspection.log import (
    DEFAULT_ORDER,
    Run,
    filter_records,
    is_truncated,
    known_prompt_ids,
    load_run,
    order_label,
    ordered_records,
    prompt_history,
    rank_records,
    rationale_length,
    run_facts,
    summarize_steps,
    value_of,
)


def _num(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "–"
    value += 0.0  # -0.0 (an untruncated rollout's truncation term) prints as 0.0
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _header(console: Console, run: Run) -> None:
    facts = run_facts(run)
    if not run.metrics:
        facts.append("no metrics.jsonl")
    console.print(Text(str(run.path), style="bold"), Text(" · ".join(facts), style="dim"))


def _summary_table(run: Run, step: int | None = None) -> Table:
    table = Table(title="Per-step means over rollouts", title_justify="left")
    for name in ["step", "rollouts", "prompts", "reward", *run.terms, "adv std", "words", "truncated"]:
        table.add_column(name, justify="right")
    for s in summarize_steps(run.records):
        if step is not None and s.step != step:
            continue
        rate = "?" if s.truncation_rate is None else f"{100 * s.truncation_rate:.0f}%"
        terms = [_num(s.terms[t]) for t in run.terms]
        length = "–" if s.length is None else f"{s.length:.1f}"
        row = [str(s.step), str(s.rollouts), str(s.prompts), _num(s.reward), *terms, _num(s.advantage_std, False)]
        table.add_row(*row, length, rate)
    return table


def _rationale_cell(rec: dict[str, Any], grep: str | None, with_prompt: bool) -> Text:
    text = Text()
    if with_prompt:  # labelled, so that it is clear where the prompt ends and the rationale begins
        text.append("prompt: ", style="bold")
        text.append(f"{rec.get('prompt') or ''}\n", style="dim italic")
        text.append("rationale: ", style="bold")
    text.append(str(rec.get("rationale") or ""))
    if grep:
        text.highlight_words([grep], style="bold black on yellow", case_sensitive=False)
    return text


def _records_table(run: Run, records: list[dict[str, Any]], title: str, grep: str | None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("step", justify="right")
    table.add_column("prompt id")
    table.add_column("reward", justify="right")
    table.add_column("adv", justify="right")
    for term in run.terms:
        table.add_column(term, justify="right")
    table.add_column("words", justify="right")
    table.add_column("prompt / rationale", ratio=1, min_width=30)
    for rec in records:
        words = f"{rationale_length(rec)}{' T' if is_truncated(rec) else ''}"
        terms = [_num(value_of(rec, t)) for t in run.terms]
        cells = [
            str(rec["step"]),
            str(rec["prompt_id"]),
            _num(value_of(rec, "reward")),
            _num(value_of(rec, "advantage")),
        ]
        table.add_row(*cells, *terms, words, _rationale_cell(rec, grep, with_prompt=True))
    return table


def _pick_steps(steps: list[int], columns: int) -> list[int]:
    """At most `columns` of `steps`, evenly spaced, always the first and the last."""
    if len(steps) <= columns:
        return steps
    picks = {round(i * (len(steps) - 1) / (columns - 1)) for i in range(columns)} if columns > 1 else {0}
    return [steps[i] for i in sorted(picks)]


def _history_table(run: Run, history: dict[int, list[dict[str, Any]]], steps: list[int], grep: str | None) -> Table:
    table = Table(show_lines=True, expand=True)
    for step in steps:
        table.add_column(f"step {step}", ratio=1)
    cells = []
    for step in steps:
        cell = Text()
        for n, rec in enumerate(history[step]):
            if n:
                cell.append("\n\n")
            head = f"reward {_num(value_of(rec, 'reward'))}  adv {_num(value_of(rec, 'advantage'))}"
            cell.append(head + ("  truncated" if is_truncated(rec) else "") + "\n", style="bold")
            cell.append("  ".join(f"{t} {_num(value_of(rec, t))}" for t in run.terms) + "\n", style="dim")
            cell.append_text(_rationale_cell(rec, grep, with_prompt=False))
        cells.append(cell)
    table.add_row(*cells)
    return table


@dataclass
class Selection:
    """Which rollouts `inspect_run` shows (all `None`: the per-step summary).

    Parameters:
        step (`int` or `None`): only this step.
        prompt_id (`str` or `None`): one input's rationales across steps, side by side.
        grep (`str` or `None`): rationale or prompt contains this text (any case).
        top (`int` or `None`): the K best rollouts by `by`.
        bottom (`int` or `None`): the K worst rollouts by `by`.
        by (`str`): the order of every rollout list: `abs_advantage` (the default, largest |advantage| first),
            `reward`, `advantage`, `length` or a reward term.
        limit (`int`): most rollouts listed by `step` / `grep`, and (up to :data:`DEFAULT_TOP`) under the per-step
            means of the default view.
        columns (`int`): most steps side by side for `prompt_id`.
        layout (`str`): `table`, `blocks` (one block per record: whole ids and texts), or `auto` (blocks when
            the output is piped or narrower than `blocks.MIN_TABLE_WIDTH` columns).
    """

    step: int | None = None
    prompt_id: str | None = None
    grep: str | None = None
    top: int | None = None
    bottom: int | None = None
    by: str = DEFAULT_ORDER
    limit: int = 20
    columns: int = 4
    layout: str = "auto"


# Rollouts the default view (no selection) lists under the per-step means.
DEFAULT_TOP = 5


def _check_selection(run: Run, args: Selection) -> None:
    ordered_records(run.records[:1], args.by)  # an unknown --by fails before anything prints
    if args.step is not None and args.step not in run.steps:
        steps = run.steps
        span = f"{steps[0]}..{steps[-1]}" if steps else "none"
        raise UserError(f"--step {args.step} is not in the log (steps: {span}).")
    if args.prompt_id is not None and not filter_records(run.records, prompt_id=args.prompt_id):
        raise UserError(
            f"--prompt-id {args.prompt_id!r} is not in the log; ids look like {known_prompt_ids(run.records, 5)}."
        )


def inspect_run(run_dir: str | Path, args: Selection, console: Console | None = None) -> None:
    """Print the selected view of the run in `run_dir` to `console` (stdout by default).

    Args:
        run_dir (`str` or `Path`):
            A training `output_dir` (holds `rationales.jsonl`).
        args (`Selection`):
            What to show.
        console (`rich.console.Console`, *optional*):
            Where to print.
    """
    console = console or Console()
    run = load_run(run_dir)
    _check_selection(run, args)
    as_blocks = blocks.use_blocks(console, args.layout)
    _header(console, run)
    selecting = any(v is not None for v in (args.step, args.prompt_id, args.grep, args.top, args.bottom))
    label = order_label(args.by)
    if not selecting:
        _print_steps(console, run, as_blocks)
        shown = ordered_records(run.records, args.by)[: min(args.limit, DEFAULT_TOP)]
        title = f"Top {len(shown)} of {len(run.records)} rollouts by {label}, largest first"
        _print_records(console, run, shown, title, None, as_blocks)
        console.print(f"Ordered by {label}; --by TERM for another order, --top/--bottom K, --step N to select.")
        return
    records = filter_records(run.records, step=args.step, prompt_id=args.prompt_id, grep=args.grep)
    where = ", ".join(
        f"{name} {value!r}"
        for name, value in (("step", args.step), ("prompt id", args.prompt_id), ("containing", args.grep))
        if value is not None
    )
    if args.step is not None:
        _print_steps(console, run, as_blocks, step=args.step)
    if not records:
        console.print(f"No rollouts match ({where}).")
        return
    suffix = f" ({where})" if where else ""
    if args.top is not None or args.bottom is not None:
        for k, bottom in ((args.top, False), (args.bottom, True)):
            if k is not None:
                ranked = rank_records(records, args.by, k, bottom=bottom)
                first = "smallest" if bottom else "largest"
                title = f"{'Bottom' if bottom else 'Top'} {len(ranked)} by {label}{suffix}, {first} first"
                _print_records(console, run, ranked, title, args.grep, as_blocks)
        return
    if args.prompt_id is not None:
        _print_history(console, run, records, args, as_blocks)
        return
    shown = ordered_records(records, args.by)[: args.limit]
    _print_records(
        console, run, shown, f"{len(records)} rollouts{suffix}, largest {label} first", args.grep, as_blocks
    )
    if len(records) > len(shown):
        console.print(f"{len(records) - len(shown)} more not shown; raise --limit, or use --top/--bottom.")


def _print_steps(console: Console, run: Run, as_blocks: bool, step: int | None = None) -> None:
    if as_blocks:
        blocks.print_steps(console, run, [s for s in summarize_steps(run.records) if step in (None, s.step)])
    else:
        console.print(_summary_table(run, step=step))


def _print_records(
    console: Console, run: Run, records: list[dict[str, Any]], title: str, grep: str | None, as_blocks: bool
) -> None:
    if as_blocks:
        blocks.print_records(console, run, records, title, grep)
    else:
        console.print(_records_table(run, records, title, grep))


def _print_history(
    console: Console, run: Run, records: list[dict[str, Any]], args: Selection, as_blocks: bool
) -> None:
    history = prompt_history(records, args.prompt_id)
    steps = _pick_steps(list(history), args.columns)
    if as_blocks:
        console.print(Text("prompt id: ", style="bold") + Text(str(args.prompt_id)))
        console.print(
            blocks.labelled("prompt", str(records[0].get("prompt") or ""), console.width, args.grep, style="italic")
        )
    else:
        console.print(Text(f"prompt {args.prompt_id}: ", style="bold") + Text(str(records[0].get("prompt") or "")))
    if len(history) > args.columns:
        console.print(f"{len(history)} steps; showing {args.columns} evenly spaced (use --columns or --step).")
    if as_blocks:
        blocks.print_history(console, run, history, steps, args.grep)
    else:
        console.print(_history_table(run, history, steps, args.grep))
