"""The one STS evaluator: :func:`sweep` embeds texts at each rationale budget or sampled-rationale count, and
:func:`score_sts` scores STS pairs from those embeddings with :mod:`grace_rl.eval.stats` (Spearman, bootstrap
interval). `eval sts` (one point, `--scaling`, `--scaling-samples`), `eval protocol` (budget and count sweeps, cached)
and the demo's before/after evaluation all call :func:`sweep_sts` (both in one), so they score alike.

What a sweep does, by its arguments:

- `budgets=None`, no `samples`: one `encoder.encode(texts, **encode_kwargs)` (the encoder's own settings).
- `budgets` and an encoder that writes no rationale (echo, or a sentence-transformers model): one encoding, the same
  embeddings at every budget, 0 rationale tokens.
- `budgets`: :func:`grace_rl.eval.scaling.scaling_curve` (greedy: each text's rationale written once at the largest
  budget, every smaller budget from the same generation, with the mean rationale tokens used; sampled: a fresh
  encoding per budget, the largest first).
- `samples` (counts such as `[1, 2, 4, 8]`): `max(samples)` rationales sampled per text in one generation at
  `max_rationale_tokens` and `temperature` (after `torch.manual_seed(seed)` when a seed is given); the point for `k`
  averages the first `k` (in float64) and renormalises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from grace_rl.errors import UserError
from grace_rl.eval.scaling import scaling_curve
from grace_rl.eval.stats import Interval, Pair, spearman, spearman_interval
from rollout.embedder import EmbedRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPoint:
    """The texts' embeddings at one point of a sweep.

    Args:
        budget (`int` or `None`):
            the rationale budget (`None`: the encoder's own, for a single encoding).
        num_rationales (`int`):
            rationales averaged per text.
        embeddings (`np.ndarray`):
            `(N, H)` float64, rows L2-normalised, row i for text i.
        mean_rationale_tokens (`float`, *optional*):
            rationale tokens actually written per text (`None` where not counted: a single or sampled encoding).
    """

    budget: int | None
    num_rationales: int
    embeddings: np.ndarray
    mean_rationale_tokens: float | None = None


@dataclass(frozen=True)
class StsPoint:
    """STS scores at one point of a sweep: `spearman` (x100, unrounded) of `cosines` (`(n,)`, one per pair) against
    the gold scores; `interval` when asked for (:func:`score_sts`)."""

    budget: int | None
    num_rationales: int
    spearman: float
    cosines: np.ndarray
    mean_rationale_tokens: float | None = None
    interval: Interval | None = None

    def record(self, axis: str) -> dict[str, Any]:
        """The protocol's cached form of the point: `{axis: budget or count, "spearman", "mean_rationale_tokens",
        "cosines"}` (`axis` is `"budget"` or `"num_rationales"`)."""
        return {
            axis: self.budget if axis == "budget" else self.num_rationales,
            "spearman": self.spearman,
            "mean_rationale_tokens": self.mean_rationale_tokens,
            "cosines": self.cosines.tolist(),
        }


def unit_rows(emb: Any) -> np.ndarray:
    """`(N, H)` float64 with rows L2-normalised (an encoder's float32 output, already unit or not)."""
    emb = np.asarray(emb, dtype=np.float64)  # (N, H)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)
    return emb


def _writes_rationales(encoder) -> bool:
    """False for a sentence-transformers model (no `embedder`) and for echo embeddings."""
    return hasattr(encoder, "embedder") and getattr(encoder, "embedding", "rationale") == "rationale"


def _encode_once(encoder, texts: Sequence[str], encode_kwargs: dict[str, Any]) -> np.ndarray:
    """One encoding of `texts` by a model that writes no rationale (the budget does not apply)."""
    batch = {k: encode_kwargs[k] for k in ("batch_size", "show_progress_bar") if k in encode_kwargs}
    if hasattr(encoder, "embedder"):  # GraceEncoder (echo)
        return unit_rows(encoder.encode(list(texts), **batch))
    return unit_rows(encoder.encode(list(texts), convert_to_numpy=True, **batch))  # SentenceTransformer


def _budget_sweep(encoder, texts: Sequence[str], budgets: Sequence[int], encode_kwargs: dict[str, Any]):
    """:func:`scaling_curve` over `budgets`, keeping each budget's embeddings."""
    kwargs = dict(encode_kwargs)
    temperature, num_rationales = kwargs.pop("temperature", 0.0), kwargs.pop("num_rationales", 1)
    embeddings: dict[int, np.ndarray] = {}

    def evaluate(enc, max_rationale_tokens: int, **kw: Any) -> dict[str, Any]:
        emb = enc.encode(texts, max_rationale_tokens=max_rationale_tokens, **kw)  # (N, H)
        embeddings[max_rationale_tokens] = unit_rows(emb)
        return {}

    points = scaling_curve(encoder, budgets, evaluate, temperature, num_rationales, **kwargs)
    return [
        SweepPoint(
            p["max_rationale_tokens"],
            num_rationales,
            embeddings[p["max_rationale_tokens"]],
            p.get("mean_rationale_tokens"),
        )
        for p in points
    ]


def _sample_sweep(
    encoder, texts: Sequence[str], counts: Sequence[int], seed: int | None, encode_kwargs: dict[str, Any]
) -> list[SweepPoint]:
    """`max(counts)` sampled rationales per text in one generation pass; the point for `k` averages the first `k`."""
    temperature = encode_kwargs.get("temperature", 0.0)
    if temperature <= 0:
        raise UserError(f"Sampling several rationales needs temperature > 0, got {temperature}.")
    if encode_kwargs.get("num_rationales", 1) != 1:
        raise UserError("A rationale-count sweep sets the rationales per text itself; leave num_rationales at 1.")
    if not _writes_rationales(encoder):
        raise UserError("A rationale-count sweep needs an encoder that writes rationales (not echo or plain).")
    budget = encode_kwargs.get("max_rationale_tokens")
    budget = encoder.max_rationale_tokens if budget is None else budget
    most = max(counts)
    if seed is not None:
        torch.manual_seed(seed)
    batch_size, progress = encode_kwargs.get("batch_size", 16), encode_kwargs.get("show_progress_bar", True)
    if getattr(encoder, "frozen_embedder", None) is not None:  # its policy writes, its frozen model embeds
        rationales = encoder.embedder.generate_rationales(
            list(texts), budget, temperature, most, batch_size=batch_size, show_progress_bar=progress
        )
        per_text = [t for t in texts for _ in range(most)]
        emb = encoder.embed_requests([EmbedRequest(t, r) for t, r in zip(per_text, rationales, strict=True)])
    else:
        emb, rationales = encoder.embedder.encode(
            list(texts),
            budget,
            temperature,
            most,
            pooling=encoder.pooling,
            batch_size=batch_size,
            show_progress_bar=progress,
        )  # (N * K, H), each L2-normalised; the rationales grouped by text
    emb = emb.view(len(texts), most, -1).double()  # (N, K, H)
    lengths = np.array([len(r) for r in rationales], dtype=np.float64).reshape(len(texts), most)  # (N, K)
    return [
        SweepPoint(
            budget,
            k,
            torch.nn.functional.normalize(emb[:, :k].mean(dim=1), dim=-1).numpy(),  # (N, H)
            float(lengths[:, :k].mean()),
        )
        for k in sorted(counts)
    ]


def sweep(
    encoder,
    texts: Sequence[str],
    budgets: Sequence[int] | None = None,
    samples: Sequence[int] | None = None,
    seed: int | None = None,
    **encode_kwargs: Any,
) -> list[SweepPoint]:
    """Embed `texts` once per point of a sweep (see the module docstring for what each argument selects).

    Args:
        encoder (`GraceEncoder` or `SentenceTransformer`):
            what embeds the texts.
        texts (`Sequence[str]`):
            the texts, each once.
        budgets (`Sequence[int]`, *optional*):
            rationale budgets (`None`: one encoding with the encoder's settings).
        samples (`Sequence[int]`, *optional*):
            rationale counts to average (then `budgets` must be `None`).
        seed (`int`, *optional*):
            `torch.manual_seed` before sampling the rationales of `samples`.
        encode_kwargs:
            as `GraceEncoder.encode` (`batch_size`, `max_rationale_tokens`, `num_rationales`, `temperature`,
            `show_progress_bar`).

    Returns:
        One :class:`SweepPoint` per budget or count, ascending.
    """
    if samples is not None:
        if budgets is not None:
            raise UserError("A sweep runs over rationale budgets or over rationale counts, not both.")
        return _sample_sweep(encoder, texts, samples, seed, encode_kwargs)
    if budgets is None:
        emb = unit_rows(encoder.encode(list(texts), **encode_kwargs))  # (N, H)
        return [SweepPoint(encode_kwargs.get("max_rationale_tokens"), encode_kwargs.get("num_rationales", 1), emb)]
    if not _writes_rationales(encoder):
        emb = _encode_once(encoder, texts, encode_kwargs)
        return [SweepPoint(t, 1, emb, 0.0) for t in sorted(budgets)]
    return _budget_sweep(encoder, list(texts), budgets, encode_kwargs)


def pair_texts(pairs: Sequence[Pair]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The distinct texts of `pairs` (first occurrence order) and each pair's two rows in them: `(U,)`, `(n,)`,
    `(n,)`."""
    a, b = [p.a for p in pairs], [p.b for p in pairs]
    unique = list(dict.fromkeys(a + b))
    row = {t: i for i, t in enumerate(unique)}
    return unique, np.array([row[t] for t in a]), np.array([row[t] for t in b])


def score_sts(
    points: Sequence[SweepPoint],
    pairs: Sequence[Pair],
    rows: tuple[np.ndarray, np.ndarray] | None = None,
    intervals: bool = False,
) -> list[StsPoint]:
    """Score `pairs` at each point: cosine of each pair's embeddings, Spearman x100 against the gold scores, and with
    `intervals` the 95% percentile bootstrap interval (:func:`grace_rl.eval.stats.spearman_interval`, its defaults).
    `rows` are the pairs' rows in the swept texts (default: :func:`pair_texts`)."""
    ia, ib = rows if rows is not None else pair_texts(pairs)[1:]
    gold = np.array([p.score for p in pairs], dtype=np.float64)  # (n,)
    scored = []
    for p in points:
        cos = (p.embeddings[ia] * p.embeddings[ib]).sum(axis=1)  # (n,)
        interval = spearman_interval(cos, gold) if intervals else None
        scored.append(
            StsPoint(p.budget, p.num_rationales, spearman(cos, gold), cos, p.mean_rationale_tokens, interval)
        )
        logger.info("budget %s, %d rationale(s): Spearman %.2f", p.budget, p.num_rationales, scored[-1].spearman)
    return scored


def sweep_sts(
    encoder,
    pairs: Sequence[Pair],
    budgets: Sequence[int] | None = None,
    samples: Sequence[int] | None = None,
    seed: int | None = None,
    intervals: bool = False,
    **encode_kwargs: Any,
) -> list[StsPoint]:
    """:func:`sweep` over the distinct texts of `pairs`, scored by :func:`score_sts` (same arguments)."""
    if len(pairs) < 2:
        raise UserError(f"A Spearman correlation needs >= 2 pairs, got {len(pairs)}.")
    texts, ia, ib = pair_texts(pairs)
    return score_sts(sweep(encoder, texts, budgets, samples, seed, **encode_kwargs), pairs, (ia, ib), intervals)
