"""Test-time scaling over the number of sampled rationales: STS Spearman with 1, 2, 4, 8 rationales averaged.

Each text's `max(counts)` rationales are sampled once (one `generate` call per batch, at `temperature`) and pooled
from the generation pass; the point for `k` rationales averages the first `k` of them. `k` of `K` independent
samples are distributed as `k` fresh ones, so the curve equals separate `encode(num_rationales=k)` runs in
distribution at the cost of the largest one, and its points are nested (less noise between neighbours). Every point
carries a 95% percentile bootstrap interval over resampled pairs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grace_rl.errors import UserError
from grace_rl.eval.stats import spearman_interval
from grace_rl.eval.sts import read_sts

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


def pair_cosines(emb: np.ndarray, a: Sequence[str], b: Sequence[str], row: dict[str, int]) -> np.ndarray:
    """`(P,)` cosine of each pair's two texts (`row` maps a text to its row of `emb`)."""
    ea, eb = emb[[row[t] for t in a]], emb[[row[t] for t in b]]
    ea = ea / np.linalg.norm(ea, axis=1, keepdims=True).clip(min=1e-12)
    eb = eb / np.linalg.norm(eb, axis=1, keepdims=True).clip(min=1e-12)
    return (ea * eb).sum(axis=1)


def sampled_embeddings(
    encoder,
    texts: Sequence[str],
    count: int,
    budget: int,
    temperature: float,
    batch_size: int = 16,
    show_progress_bar: bool = True,
) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """`count` rationales sampled per text in one generation pass: `(N, K, H)` L2-normalised embeddings (the text's
    `K` samples in a row) and the `N * K` rationales (token ids), grouped by text."""
    emb, rationales = encoder.embedder.encode(
        texts,
        budget,
        temperature,
        count,
        pooling=encoder.pooling,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
    )  # (N * K, H), each L2-normalised
    return emb.view(len(texts), count, -1), rationales  # (N, K, H)


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
    """STS Spearman (x100, with a 95% bootstrap interval) of `encoder` with each count of averaged rationales.

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
    a, b, gold = read_sts(path, fmt, limit)
    if len(gold) < 2:
        raise UserError(f"{path}: a Spearman interval needs >= 2 pairs, got {len(gold)}.")
    unique = list(dict.fromkeys(a + b))
    row = {t: i for i, t in enumerate(unique)}
    budget = encoder.max_rationale_tokens if max_rationale_tokens is None else max_rationale_tokens
    most = max(counts)
    emb, _ = sampled_embeddings(encoder, unique, most, budget, temperature, batch_size, show_progress_bar)  # (N, K, H)
    points = []
    for k in sorted(counts):
        averaged = torch.nn.functional.normalize(emb[:, :k].mean(dim=1), dim=-1).numpy()  # (N, H)
        point = spearman_interval(pair_cosines(averaged, a, b, row), np.asarray(gold)).as_dict("spearman")
        points.append({"num_rationales": k, **point, "n": len(gold)})
        logger.info("%d rationale(s): %s", k, point)
    return points


def evaluate_sts_interval(
    encoder, path: str | Path, fmt: str = "stsb", limit: int | None = None, **encode_kwargs: Any
) -> dict[str, Any]:
    """`grace_rl.eval.sts.evaluate_sts` plus the 95% bootstrap interval: `{"task", "n", "spearman", "ci_low",
    "ci_high"}` (an `evaluate` for `grace_rl.eval.scaling.scaling_curve`)."""
    a, b, gold = read_sts(path, fmt, limit)
    if len(gold) < 2:
        raise UserError(f"{path}: a Spearman interval needs >= 2 pairs, got {len(gold)}.")
    unique = list(dict.fromkeys(a + b))
    emb = encoder.encode(unique, **encode_kwargs)  # (N, H)
    row = {t: i for i, t in enumerate(unique)}
    interval = spearman_interval(pair_cosines(emb, a, b, row), np.asarray(gold))
    return {"task": "sts", "n": len(gold), **interval.as_dict("spearman")}


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
