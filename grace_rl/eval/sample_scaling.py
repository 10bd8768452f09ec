"""STS test-time scaling curves with 95% bootstrap intervals (`eval sts --scaling` over rationale budgets,
`--scaling-samples` over the number of sampled rationales averaged, e.g. 1, 2, 4, 8) and their plot; each curve is
one :func:`grace_rl.eval.sweep.sweep_sts`.

The count curve: each text's `max(counts)` rationales are sampled once (one `generate` call per batch, at
`temperature`) and pooled from the generation pass; the point for `k` rationales averages the first `k` of them. `k`
of `K` independent samples are distributed as `k` fresh ones, so the curve equals separate `encode(num_rationales=k)`
runs in distribution at the cost of the largest one, and its points are nested (less noise between neighbours).
Every point carries a 95% percentile bootstrap interval over resampled pairs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grace_rl.errors import UserError
from grace_rl.eval.stats import Pair
from grace_rl.eval.sts import evaluate_sts, read_sts
from grace_rl.eval.sweep import sweep_sts

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_TEMPERATURE = 0.7


def parse_counts(spec: str) -> list[int]:
    """`"1,2,4"` -> `[1, 2, 4]` (sorted, unique, each >= 1)."""
    try:
        counts = sorted({int(part) for part in spec.split(",") if part.strip()})
    except ValueError as err:
        raise UserError(
            f"--scaling-samples takes comma-separated rationale counts such as 1,2,4,8; got {spec!r}."
        ) from err
    if not counts or counts[0] < 1:
        raise UserError(f"--scaling-samples needs at least one rationale count, all >= 1; got {spec!r}.")
    return counts


def sts_budget_curve(
    encoder,
    path: str | Path,
    budgets: Sequence[int],
    fmt: str = "stsb",
    limit: int | None = None,
    **encode_kwargs: Any,
) -> list[dict[str, Any]]:
    """STS Spearman (x100, with a 95% bootstrap interval) of `encoder` at each rationale budget (one
    :func:`grace_rl.eval.sweep.sweep_sts`; `encode_kwargs` as `GraceEncoder.encode`).

    Returns:
        One point per budget, ascending: `{"task", "n", "spearman", "ci_low", "ci_high", "max_rationale_tokens"}`,
        greedy sweeps also `"mean_rationale_tokens"` (tokens actually used per text).
    """
    pairs = _pairs(path, fmt, limit)
    points = []
    for p in sweep_sts(encoder, pairs, budgets, intervals=True, **encode_kwargs):
        point = {"task": "sts", "n": len(pairs), **p.interval.as_dict("spearman"), "max_rationale_tokens": p.budget}
        if p.mean_rationale_tokens is not None:
            point["mean_rationale_tokens"] = p.mean_rationale_tokens
        points.append(point)
    return points


def sts_samples_curve(
    encoder,
    path: str | Path,
    counts: Sequence[int],
    temperature: float = DEFAULT_SAMPLE_TEMPERATURE,
    fmt: str = "stsb",
    limit: int | None = None,
    max_rationale_tokens: int | None = None,
    batch_size: int = 16,
    show_progress_bar: bool = True,
) -> list[dict[str, Any]]:
    """STS Spearman (x100, with a 95% bootstrap interval) of `encoder` with each count of averaged rationales (one
    :func:`grace_rl.eval.sweep.sweep_sts` over `counts`).

    Args:
        encoder (`GraceEncoder`):
            the encoder (its embedder, pooling and default budget are used).
        path (`str` or `Path`):
            the STS file (`grace_rl.eval.sts.read_sts`).
        counts (`Sequence[int]`):
            rationale counts, e.g. `[1, 2, 4, 8]`.
        temperature (`float`, *optional*, defaults to `0.7`):
            sampling temperature (> 0).
        fmt, limit: as `read_sts`.
        max_rationale_tokens (`int`, *optional*):
            budget per rationale (default: the encoder's).
        batch_size, show_progress_bar: as `GraceEncoder.encode`.

    Returns:
        One point per count, ascending: `{"num_rationales", "spearman", "ci_low", "ci_high", "n"}`.
    """
    if temperature <= 0:
        raise UserError(f"Sampling several rationales needs temperature > 0, got {temperature}.")
    pairs = _pairs(path, fmt, limit)
    points = sweep_sts(
        encoder,
        pairs,
        samples=counts,
        intervals=True,
        max_rationale_tokens=max_rationale_tokens,
        temperature=temperature,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
    )
    return [{"num_rationales": p.num_rationales, **p.interval.as_dict("spearman"), "n": len(pairs)} for p in points]


def evaluate_sts_interval(
    encoder, path: str | Path, fmt: str = "stsb", limit: int | None = None, **encode_kwargs: Any
) -> dict[str, Any]:
    """One point with its interval: `grace_rl.eval.sts.evaluate_sts(..., intervals=True)`."""
    return evaluate_sts(encoder, path, fmt, limit, intervals=True, **encode_kwargs)


def _pairs(path: str | Path, fmt: str, limit: int | None) -> list[Pair]:
    a, b, gold = read_sts(path, fmt, limit)
    return [Pair(*p) for p in zip(a, b, gold, strict=True)]


def write_curves(
    curves: list[dict[str, Any]], x_key: str, xlabel: str, prefix: str | Path, meta: dict[str, Any]
) -> dict[str, str]:
    """Write `PREFIX.json` (`meta` + `curves`, each `{"model", "points"}`) and `PREFIX.png`: STS Spearman against
    `x_key` (e.g. `num_rationales`, `max_rationale_tokens`), one line per curve with its 95% interval shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".png")
    payload = {**meta, "task": "sts", "x": x_key, "curves": curves}
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for curve in curves:
        model, points = curve["model"], curve["points"]
        xs = [p[x_key] for p in points]
        (line,) = ax.plot(xs, [p["spearman"] for p in points], marker="o", label=Path(str(model)).name or str(model))
        lows, highs = [p["ci_low"] for p in points], [p["ci_high"] for p in points]
        ax.fill_between(xs, lows, highs, alpha=0.2, color=line.get_color())
    xs = sorted({p[x_key] for curve in curves for p in curve["points"]})
    if x_key == "num_rationales":
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("STS Spearman x100 (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return {"json": str(json_path), "plot": str(png_path)}
