"""Statistics of the STS evaluation, shared by every sweep (`eval sts`, the scaling curves, the protocol, the demo's
before/after): the pairs (:class:`Pair`, :class:`DevSet`), Spearman, and percentile bootstrap intervals over pairs,
plain and paired (pure numpy; scipy's `rankdata` on first use)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class Pair(NamedTuple):
    """One STS pair: two sentences and the gold similarity score."""

    a: str
    b: str
    score: float


@dataclass
class DevSet:
    """A deduplicated dev set ready to evaluate.

    Args:
        name (`str`):
            `stsb-dev` or `sick-trial`.
        pairs (`list[Pair]`):
            the pairs evaluated (after deduplication and `limit`).
        source (`str`):
            the file the pairs were read from.
        kind (`str`):
            `full` (the complete public file) or `sample` (the small sample shipped in `data/`).
        total (`int`):
            usable pairs in `source` before deduplication.
        dropped (`int`):
            pairs dropped because a sentence occurs in training.
        limit (`int`, *optional*, defaults to `None`):
            the number of evenly spaced pairs kept after deduplication (`None`: all).
    """

    name: str
    pairs: list[Pair]
    source: str
    kind: str
    total: int
    dropped: int
    limit: int | None = None
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.digest = pairs_digest(self.pairs)

    def gold(self) -> np.ndarray:
        return np.array([p.score for p in self.pairs], dtype=np.float64)  # (n,)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "pairs_total": self.total,
            "dropped": self.dropped,
            "pairs_kept": self.total - self.dropped,
            "limit": self.limit,
            "pairs": len(self.pairs),
            "digest": self.digest,
        }


def pairs_digest(pairs: Sequence[Pair]) -> str:
    """A short sha256 of the pairs (texts and scores, in order): part of the cache key."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.a, p.b, p.score], ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval (all x100 for Spearman)."""

    point: float
    low: float
    high: float

    def as_dict(self, name: str) -> dict[str, float]:
        """`{name: point, "ci_low": low, "ci_high": high}`, rounded to 2 decimals."""
        return {name: round(self.point, 2), "ci_low": round(self.low, 2), "ci_high": round(self.high, 2)}


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Spearman of `(B, n)` arrays (average ranks for ties): `(B,)`, NaN for a constant row."""
    from scipy.stats import rankdata  # here, so that importing the module (CLI, data scripts) stays light

    rx = rankdata(x, axis=-1)  # (B, n)
    ry = rankdata(y, axis=-1)  # (B, n)
    rx -= rx.mean(axis=-1, keepdims=True)
    ry -= ry.mean(axis=-1, keepdims=True)
    num = (rx * ry).sum(axis=-1)  # (B,)
    den = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    """Spearman x100 of two `(n,)` vectors (equals `scipy.stats.spearmanr`)."""
    return (
        float(spearman_rows(np.asarray(pred, dtype=np.float64)[None], np.asarray(gold, dtype=np.float64)[None])[0])
        * 100
    )


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """`(n_boot, n)` indices of pairs resampled with replacement (seeded, so intervals are reproducible)."""
    if n < 2 or n_boot < 1:
        raise ValueError(f"A bootstrap needs >= 2 pairs and >= 1 resample; got n={n}, n_boot={n_boot}.")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the finite `values` (resamples of constant data are NaN)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    finite = values[np.isfinite(values)]
    if finite.size < max(1, values.size // 2):
        raise ValueError(
            f"Only {finite.size} of {values.size} bootstrap resamples had a defined Spearman (constant data?); "
            "evaluate more pairs."
        )
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _resampled(values: np.ndarray, idx: np.ndarray, chunk: int = 256) -> list[np.ndarray]:
    return [values[idx[i : i + chunk]] for i in range(0, len(idx), chunk)]  # each (<= chunk, n)


def spearman_interval(
    pred: np.ndarray, gold: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Spearman x100 of `pred` vs `gold` with a percentile bootstrap interval over resampled pairs."""
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)  # (n,), (n,)
    idx = bootstrap_indices(len(gold), n_boot, seed)  # (B, n)
    stats = np.concatenate(
        [spearman_rows(p, g) for p, g in zip(_resampled(pred, idx), _resampled(gold, idx), strict=True)]
    )  # (B,)
    low, high = _percentiles(stats * 100, level)
    return Interval(spearman(pred, gold), low, high)


def paired_difference_interval(
    pred_a: np.ndarray, pred_b: np.ndarray, gold: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Spearman(a) - Spearman(b) (x100) on the same pairs, with a paired bootstrap interval: each resample of pairs
    scores both systems, so the variation the two share (which pairs were drawn) cancels in the difference."""
    a, b = np.asarray(pred_a, dtype=np.float64), np.asarray(pred_b, dtype=np.float64)  # (n,), (n,)
    gold = np.asarray(gold, dtype=np.float64)  # (n,)
    idx = bootstrap_indices(len(gold), n_boot, seed)  # (B, n)
    diffs = [
        spearman_rows(ra, g) - spearman_rows(rb, g)
        for ra, rb, g in zip(_resampled(a, idx), _resampled(b, idx), _resampled(gold, idx), strict=True)
    ]
    low, high = _percentiles(np.concatenate(diffs) * 100, level)
    return Interval(spearman(a, gold) - spearman(b, gold), low, high)
