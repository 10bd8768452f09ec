"""`grace-rl report`: one self-contained HTML file for a run (plots as embedded PNGs, inline CSS/JS, no network).

Sections: reward terms, rationale length and truncation rate per step (mean line, 10-90 % band); a filterable,
sortable, paginated table of rollouts; the trainer's metrics (`metrics.jsonl`); a per-step summary table. Large logs
are sampled (:func:`grace_rl.inspection.log.sample_records`) and the page says so. The page's CSS and JavaScript are
package data (`grace_rl/inspection/assets/report.css` and `report.js`), inlined into every page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from grace_rl.inspection.log import (
    Run,
    StepSummary,
    is_truncated,
    metric_series,
    rationale_length,
    run_facts,
    sample_records,
    summarize_steps,
    values_by_step,
)
from grace_rl.run_files import METRICS_LOG, RATIONALE_LOG, RUN_FILE, SUMMARY_FILE, atomic_write, refuse_overwriting

logger = logging.getLogger(__name__)

NCOLS = 4
FIRST_METRICS = ("loss", "reward", "reward_std")


@cache
def asset(name: str) -> str:
    """The text of `grace_rl/inspection/assets/<name>` (package data: the report's CSS and JavaScript)."""
    return resources.files("grace_rl.inspection").joinpath("assets", name).read_text(encoding="utf-8")


def _png_data_uri(fig: Figure) -> str:
    FigureCanvasAgg(fig)  # Agg explicitly: no pyplot, no global backend switch, no display needed
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(n: int, row_height: float = 2.4) -> tuple[Figure, list[Any]]:
    nrows = max(1, math.ceil(n / NCOLS))
    height = row_height * nrows
    fig = Figure(figsize=(12, height))
    # fixed margins in inches (constrained/tight layout cost seconds per figure on a small CPU)
    fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.3 / height, bottom=0.45 / height, wspace=0.3, hspace=0.6)
    axes = fig.subplots(nrows, NCOLS, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _band_panel(ax: Any, per_step: dict[int, list[float]], title: str) -> None:
    steps = list(per_step)
    values = [np.asarray(v) for v in per_step.values()]
    ax.plot(steps, [v.mean() for v in values], marker="o", ms=3, lw=1.5)
    if any(len(v) > 1 for v in values):
        lo = [np.percentile(v, 10) for v in values]
        hi = [np.percentile(v, 90) for v in values]
        ax.fill_between(steps, lo, hi, alpha=0.2, lw=0)
    _style(ax, title)


def _style(ax: Any, title: str, xlabel: str = "step", fontsize: int = 10) -> None:
    ax.set_title(title, fontsize=fontsize)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if xlabel == "step":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_rollouts(run: Run, summaries: list[StepSummary]) -> str | None:
    """Reward, each term, advantage, rationale length, truncation rate by step, and reward vs length."""
    if not run.records:
        return None
    keys = ["reward", *run.terms, "advantage", "length"]
    titles = {"reward": "reward (total)", "advantage": "advantage", "length": "rationale length (words)"}
    fig, axes = _grid(len(keys) + 2)
    for ax, key in zip(axes, keys):
        _band_panel(ax, values_by_step(run.records, key), titles.get(key, f"term: {key}"))
    ax = axes[len(keys)]
    rates = [(s.step, s.truncation_rate) for s in summaries if s.truncation_rate is not None]
    if rates:
        ax.plot([s for s, _ in rates], [r for _, r in rates], marker="o", ms=3, color="tab:red")
        ax.set_ylim(-0.05, 1.05)
    else:
        ax.text(0.5, 0.5, "no truncation term\nor field in the log", ha="center", va="center", fontsize=9)
    _style(ax, "truncation rate")
    ax = axes[len(keys) + 1]
    pts = [(rationale_length(r), r["reward"], r["step"]) for r in run.records if r.get("reward") is not None]
    if pts:
        xs, ys, steps = zip(*pts)
        sc = ax.scatter(xs, ys, c=steps, s=8, alpha=0.6, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="step", ticks=MaxNLocator(integer=True))
    _style(ax, "reward vs rationale length", xlabel="words")
    return _png_data_uri(fig)


def split_metrics(series: dict[str, tuple[list[int], list[float]]]) -> tuple[list[str], list[str]]:
    """(names to plot, names logged once, e.g. `train_runtime`, to show as a table) in display order."""
    longest = max((len(s) for s, _ in series.values()), default=0)
    plotted = [n for n, (s, _) in series.items() if len(s) >= 2 or longest <= 1]
    plotted.sort(key=lambda n: (n not in FIRST_METRICS, FIRST_METRICS.index(n) if n in FIRST_METRICS else 0))
    return plotted, [n for n in series if n not in plotted]


def plot_metrics(series: dict[str, tuple[list[int], list[float]]], names: list[str]) -> str | None:
    if not names:
        return None
    fig, axes = _grid(len(names), row_height=2.0)
    for ax, name in zip(axes, names):
        steps, values = series[name]
        ax.plot(steps, values, marker="o", ms=2.5, lw=1.2, color="tab:purple")
        _style(ax, name, fontsize=9)
    return _png_data_uri(fig)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value + 0.0:.{digits}g}"  # + 0.0 turns -0.0 into 0.0


def _summary_table(summaries: list[StepSummary], terms: list[str]) -> str:
    head = ["step", "rollouts", "prompts", "reward", *terms, "adv std", "length", "truncated"]
    rows = []
    for s in summaries:
        cells = [s.step, s.rollouts, s.prompts, _fmt(s.reward), *(_fmt(s.terms[t]) for t in terms)]
        rate = "–" if s.truncation_rate is None else f"{100 * s.truncation_rate:.0f} %"
        cells += [_fmt(s.advantage_std), _fmt(s.length, 3), rate]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    thead = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="summary"><thead><tr>{thead}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _rows_json(records: list[dict[str, Any]], terms: list[str]) -> str:
    rows = [
        {
            "s": int(r["step"]),
            "id": str(r["prompt_id"]),
            "p": str(r.get("prompt") or ""),
            "r": str(r.get("rationale") or ""),
            "rw": r.get("reward"),
            "adv": r.get("advantage"),
            "len": rationale_length(r),
            "tr": is_truncated(r),
            "t": [(r.get("rewards") or {}).get(t) for t in terms],
        }
        for r in records
    ]
    # "<" escaped so that no rationale can close the <script> element that carries the data.
    return json.dumps({"terms": terms, "rows": rows}, ensure_ascii=False).replace("<", "\\u003c")


def _facts(run: Run, n_records: int) -> str:
    facts, summary = run_facts(run, n_records, sts_sizes=True), run.summary or {}
    if "seconds_per_step" in summary:
        facts.append(f"{summary['seconds_per_step']} s/step")
    return " · ".join(html.escape(str(f)) for f in facts)


def _metrics_section(run: Run) -> str:
    if not run.metrics:
        return (
            f'<p class="note">No {METRICS_LOG} in this run directory (runs older than that file do not write it), '
            "so there are no trainer metrics to plot.</p>"
        )
    series = metric_series(run.metrics)
    plotted, once = split_metrics(series)
    parts = []
    uri = plot_metrics(series, plotted)
    if uri:
        parts.append(f'<img class="plot" alt="trainer metrics by step" src="{uri}">')
    if once:
        cells = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{_fmt(series[n][1][-1], 6)}</td><td>{series[n][0][-1]}</td></tr>"
            for n in once
        )
        parts.append(
            '<table class="summary"><thead><tr><th>logged once</th><th>value</th><th>step</th></tr></thead>'
            f"<tbody>{cells}</tbody></table>"
        )
    return "\n".join(parts)


def build_report(run: Run, *, max_rows: int = 5000, page_size: int = 50, seed: int = 0) -> tuple[str, str]:
    """The HTML page and the sentence saying which rollouts the table holds (all, or a sample)."""
    summaries = summarize_steps(run.records)
    rows, note = sample_records(run.records, max_rows, seed=seed)
    rollouts = plot_rollouts(run, summaries)
    rollout_img = (
        f'<img class="plot" alt="reward terms by step" src="{rollouts}">' if rollouts else "<p>Empty log.</p>"
    )
    steps_open = " open" if len(summaries) <= 30 else ""
    body = f"""
<h1>GRACE run: {html.escape(str(run.path))}</h1>
<p class="facts">{_facts(run, len(run.records))}</p>
<nav><a href="#plots">plots</a> · <a href="#rationales">rationales</a> · <a href="#metrics">trainer metrics</a>
 · <a href="#steps">per-step summary</a></nav>
<h2 id="plots">Rollouts by step <small>mean line, 10–90 % band over the step's rollouts</small></h2>
{rollout_img}
<h2 id="rationales">Rationales</h2>
<p class="note" id="sampling">Table holds {html.escape(note)}; paginated, {page_size} rows per page by default.</p>
<div class="controls">
 <label>step <select id="f-step"><option value="">all</option></select></label>
 <label>prompt id <input id="f-id" list="ids" placeholder="any" size="14"><datalist id="ids"></datalist></label>
 <label>search <input id="f-text" placeholder="rationale or prompt text" size="24"></label>
 <label>sort by <select id="f-sort"></select></label>
 <button id="f-dir" type="button" title="sort direction">↓ desc</button>
 <label>rows <select id="f-size"><option>25</option><option>50</option><option>100</option>
 <option>250</option></select></label>
</div>
<div class="pager"><button id="prev" type="button">‹ prev</button> <span id="status"></span>
 <button id="next" type="button">next ›</button></div>
<table id="rollouts"><thead></thead><tbody></tbody></table>
<h2 id="metrics">Trainer metrics <small>{METRICS_LOG}</small></h2>
{_metrics_section(run)}
<h2 id="steps">Per-step summary <small>means over each step's rollouts; length in words</small></h2>
<details{steps_open}><summary>{len(summaries)} steps</summary>{_summary_table(summaries, run.terms)}</details>
<footer>Generated by <code>grace-rl report</code> from {RATIONALE_LOG}. Self-contained: no network access.</footer>
<script type="application/json" id="rows-data">{_rows_json(rows, run.terms)}</script>
<script>const PAGE_SIZE = {int(page_size)};
{asset("report.js")}</script>
"""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>GRACE report: {html.escape(run.path.name)}</title><style>{asset('report.css')}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    return page, note


def report_inputs(run_dir: str | Path) -> list[Path]:
    """The files of a run that the report reads (an output may not replace them)."""
    return [Path(run_dir) / name for name in (RATIONALE_LOG, METRICS_LOG, SUMMARY_FILE, RUN_FILE)]


def write_report(run: Run, out: str | Path, **kwargs: Any) -> tuple[Path, str]:
    """Write :func:`build_report`'s page to `out`; returns the path and the sampling note."""
    out = refuse_overwriting(out, report_inputs(run.path))  # -o RUN/rationales.jsonl must not replace the log
    page, note = build_report(run, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, page)
    logger.info("wrote %s (%d bytes; table holds %s)", out, len(page), note)
    return out, note
