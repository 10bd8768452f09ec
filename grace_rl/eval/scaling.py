"""Test-time scaling: the same evaluation at several rationale budgets, written as JSON and a PNG plot.

Greedy decoding is prefix-consistent: the greedy rationale with a budget of `T` tokens is the first `T` tokens of
the greedy rationale with any larger budget. :class:`PrefixRationaleEncoder` uses that to write each text's rationale
once, at the largest budget, and to serve every smaller budget by truncation (a curve over 0, 8, 16, 32, 64 tokens
costs one 64-token generation instead of 120 tokens' worth). With the sweep's budgets given and a local embedder, the
embeddings at every budget also come from that one generation (`Embedder.encode_budgets`: the states captured while
generating, pooled with the rationale cut at each budget), so a sweep costs one `encode()` at the largest budget.

:func:`scaling_curve` runs any evaluation at each budget (`eval retrieval --scaling`); STS sweeps go through it via
:func:`grace_rl.eval.sweep.sweep`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.errors import UserError
from rollout.embedder import EmbedRequest

logger = logging.getLogger(__name__)

# The metric each task is plotted by (the first is the headline).
TASK_METRICS = {"sts": ("spearman",), "retrieval": ("ndcg@10", "mrr@10", "recall@100")}


def parse_budgets(spec: str) -> list[int]:
    """`"0,8,16"` -> `[0, 8, 16]` (sorted, unique, each >= 0)."""
    try:
        budgets = sorted({int(part) for part in spec.split(",") if part.strip()})
    except ValueError as err:
        raise UserError(f"--scaling takes comma-separated token budgets such as 0,8,16,32; got {spec!r}.") from err
    if not budgets or budgets[0] < 0:
        raise UserError(f"--scaling needs at least one budget, all >= 0; got {spec!r}.")
    return budgets


class PrefixRationaleEncoder:
    """Wraps a :class:`~grace_rl.encoder.GraceEncoder` for greedy budget sweeps (see the module docstring).

    Each distinct text gets one greedy rationale of `max_budget` tokens (cached); `encode(...,
    max_rationale_tokens=T)` embeds the text with its first `T` tokens. Also counts the rationale tokens actually
    used (a greedy rationale may end before its budget), read by :func:`scaling_curve`.

    Args:
        encoder: the encoder whose model, template and pooling are used.
        max_budget (`int`):
            the largest budget that will be asked for.
    """

    def __init__(self, encoder, max_budget: int, budgets: Sequence[int] | None = None) -> None:
        if getattr(encoder, "embedding", "rationale") != "rationale":
            raise UserError(
                f"A budget sweep needs generated rationales; this encoder embeds by {encoder.embedding!r} (the same "
                "at every budget): encode once instead."
            )
        self.encoder = encoder
        self.max_budget = max_budget
        self.budgets = tuple(sorted(set(budgets))) if budgets else None
        if self.budgets and self.budgets[-1] > max_budget:
            raise UserError(f"A budget of {self.budgets[-1]} is above max_budget {max_budget}.")
        self._rationales: dict[str, tuple[int, ...]] = {}
        self._embeddings: dict[str, np.ndarray] = {}  # text -> (K, H) unnormalised, one row per self.budgets
        # A frozen-embedder run's policy writes and its frozen model embeds: the policy's own states (one pass) would
        # be the wrong embeddings, so the rationales are written once and the frozen model embeds each prefix.
        self.one_pass = (
            self.budgets is not None
            and getattr(encoder, "frozen_embedder", None) is None
            and hasattr(getattr(encoder, "embedder", None), "encode_budgets")
        )
        self.reset_counts()

    def reset_counts(self) -> None:
        self.tokens_used = 0
        self.texts_seen = 0

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 16,
        max_rationale_tokens: int | None = None,
        num_rationales: int = 1,
        temperature: float = 0.0,
        pooling: str | None = None,
        normalize: bool = True,
        show_progress_bar: bool = True,
    ) -> np.ndarray:
        """`(N, H)` float32 embeddings, as `GraceEncoder.encode` with a greedy rationale of the given budget."""
        budget = self.encoder.max_rationale_tokens if max_rationale_tokens is None else max_rationale_tokens
        if num_rationales != 1 or temperature > 0:
            raise UserError(
                "Prefix reuse only holds for one greedy rationale; use num_rationales=1 and temperature=0 "
                f"(got {num_rationales} and {temperature})."
            )
        if not 0 <= budget <= self.max_budget:
            raise UserError(f"Budget {budget} is outside [0, {self.max_budget}]; raise max_budget.")
        if self.one_pass and budget in self.budgets and pooling in (None, self.encoder.pooling):
            return self._encode_one_pass(texts, budget, batch_size, normalize, show_progress_bar)
        missing = [t for t in dict.fromkeys(texts) if t not in self._rationales] if budget > 0 else []
        if missing:
            ids = self.encoder.embedder.generate_rationales(
                missing, self.max_budget, 0.0, 1, batch_size=batch_size, show_progress_bar=show_progress_bar
            )
            self._rationales.update(zip(missing, ids, strict=True))
        requests = [EmbedRequest(t, self._rationales[t][:budget] if budget > 0 else ()) for t in texts]
        self.tokens_used += sum(len(r.rationale_ids) for r in requests)
        self.texts_seen += len(requests)
        emb = self.encoder.embed_requests(requests, pooling, batch_size, normalize)  # (N, H): frozen model or own
        return emb.numpy().astype(np.float32)

    def _encode_one_pass(
        self, texts: Sequence[str], budget: int, batch_size: int, normalize: bool, show_progress_bar: bool
    ) -> np.ndarray:
        """Serve `budget` from the per-budget embeddings of one generation at the largest budget (computed for texts
        not seen yet)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._embeddings]
        if missing:
            emb, ids = self.encoder.embedder.encode_budgets(
                missing,
                self.budgets,
                pooling=self.encoder.pooling,
                batch_size=batch_size,
                normalize=False,
                show_progress_bar=show_progress_bar,
            )  # (M, K, H)
            self._embeddings.update(zip(missing, emb.numpy(), strict=True))
            self._rationales.update(zip(missing, ids, strict=True))
        k = self.budgets.index(budget)
        out = np.stack([self._embeddings[t][k] for t in texts]).astype(np.float32)  # (N, H)
        self.tokens_used += sum(min(len(self._rationales[t]), budget) for t in texts)
        self.texts_seen += len(texts)
        if normalize:
            out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out


def scaling_curve(
    encoder,
    budgets: Sequence[int],
    evaluate: Callable[..., dict[str, Any]],
    temperature: float = 0.0,
    num_rationales: int = 1,
    **encode_kwargs: Any,
) -> list[dict[str, Any]]:
    """Run `evaluate(encoder, max_rationale_tokens=T, **encode_kwargs)` for each budget `T`.

    Greedy single-rationale sweeps go through :class:`PrefixRationaleEncoder` (one generation at the largest
    budget); sampled sweeps call the encoder afresh per budget. Each point is the evaluation's dict plus
    `max_rationale_tokens` and, for greedy sweeps, `mean_rationale_tokens` (tokens actually used per text).
    """
    greedy = temperature <= 0 and num_rationales == 1
    target = PrefixRationaleEncoder(encoder, max(budgets), budgets) if greedy else encoder
    kwargs = (
        dict(encode_kwargs)
        if greedy
        else {**encode_kwargs, "temperature": temperature, "num_rationales": num_rationales}
    )
    points = []
    for budget in sorted(budgets, reverse=True):  # the largest first: it writes the rationales the rest reuse
        start = time.perf_counter()
        if greedy:
            target.reset_counts()
        result = evaluate(target, max_rationale_tokens=budget, **kwargs)
        result["max_rationale_tokens"] = budget
        if greedy:
            result["mean_rationale_tokens"] = round(target.tokens_used / max(target.texts_seen, 1), 2)
        logger.info("budget %d: %s (%.1f s)", budget, result, time.perf_counter() - start)
        points.append(result)
    return sorted(points, key=lambda p: p["max_rationale_tokens"])


def write_scaling(points: list[dict[str, Any]], task: str, prefix: str | Path, meta: dict[str, Any]) -> dict[str, str]:
    """Write `PREFIX.json` (`meta` + the points) and `PREFIX.png` (metric vs rationale budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if task not in TASK_METRICS:
        raise UserError(f"Unknown task {task!r}; choose one of {sorted(TASK_METRICS)}.")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".png")
    json_path.write_text(json.dumps({**meta, "task": task, "points": points}, indent=2) + "\n", encoding="utf-8")
    budgets = [p["max_rationale_tokens"] for p in points]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for metric in TASK_METRICS[task]:
        ax.plot(budgets, [p[metric] for p in points], marker="o", label=metric)
    ax.set_xlabel("rationale budget (max tokens)")
    ax.set_ylabel("x100")
    ax.set_xticks(budgets)
    ax.set_title(f"{task}: {meta.get('model', '')}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return {"json": str(json_path), "plot": str(png_path)}
