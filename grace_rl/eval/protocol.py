"""The evaluation protocol behind every quality figure the project states.

1. **Held out**: a dev pair is dropped when either sentence occurs in any training text, compared after
   :func:`normalise` (:func:`dedup_pairs`, which also counts the dropped pairs).
2. **Matched budgets**: every model is evaluated with greedy rationales at the same budgets (default 0 / 8 / 16 / 32
   / 64 tokens; 0 = the text alone). Each text's rationale is written once at the largest budget and truncated for
   the smaller ones (:class:`grace_rl.eval.scaling.PrefixRationaleEncoder`); the mean rationale tokens actually used
   are recorded per budget.
3. **Intervals**: every Spearman gets a 95% percentile bootstrap interval over pairs (:func:`spearman_interval`);
   the difference between two systems on the same pairs gets a *paired* interval (:func:`paired_difference_interval`:
   both systems are scored on the same resampled pairs).
4. **Headline**: trained model at its training budget (`max_rationale_tokens` of its `grace_config.json`) minus
   the base model at the base model's best budget, with the paired interval (:func:`headline`).
5. **Matched prompts**: the base model is evaluated with the default instruction and, when a trained run was trained
   with another instruction, also with that run's instruction (`base+prompt`); the bar is the best base point over
   both, so a gain that comes from a better prompt alone is not counted (:func:`model_specs`).

Sweeps are cached as JSON, keyed by the model (path, GRACE config, weight digests: a retrained adapter is a new key),
the digest of the pairs and the budgets (:mod:`grace_rl.eval.protocol_cache`), so the base model is evaluated once per
dev set.
:mod:`grace_rl.eval.devsets` reads the dev sets; :mod:`grace_rl.eval.protocol_report` prints and plots the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from grace_rl.errors import UserError
from grace_rl.eval.protocol_cache import GRACE_META, PROTOCOL_VERSION, cache_key, load_sweep, save_sweep

if TYPE_CHECKING:
    from grace_rl.eval.protocol_samples import SampleSettings

logger = logging.getLogger(__name__)

DEFAULT_BUDGETS = (0, 8, 16, 32, 64)


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


# --- held-out check ------------------------------------------------------------------------------------------------


def _edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def normalise(text: str) -> str:
    """The form two texts are compared in: NFKC, casefolded, whitespace runs collapsed to one space, punctuation and
    spaces stripped from both ends. `normalise("  A man is playing a GUITAR. ") == "a man is playing a guitar"`."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(text)
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    return text[start:end]


def held_out_mask(pairs: Iterable[Sequence], training_texts: Iterable[str]) -> list[bool]:
    """Per pair (its first two items are the sentences): `True` when neither sentence equals a training text after
    :func:`normalise`."""
    seen = {normalise(t) for t in training_texts}
    seen.discard("")  # a text of only punctuation says nothing about overlap
    return [normalise(p[0]) not in seen and normalise(p[1]) not in seen for p in pairs]


def dedup_pairs(pairs: Iterable[Sequence], training_texts: Iterable[str]) -> tuple[list[Pair], int]:
    """Drop every pair whose first or second sentence equals a training text after :func:`normalise`.

    Returns the kept pairs (in order, as :class:`Pair`) and the number of dropped pairs.
    """
    pairs = [Pair(str(p[0]), str(p[1]), float(p[2])) for p in pairs]
    kept = [p for p, keep in zip(pairs, held_out_mask(pairs, training_texts), strict=True) if keep]
    return kept, len(pairs) - len(kept)


def pairs_digest(pairs: Sequence[Pair]) -> str:
    """A short sha256 of the pairs (texts and scores, in order): part of the cache key."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.a, p.b, p.score], ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


# --- Spearman with bootstrap intervals (pure numpy) ----------------------------------------------------------------


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


# --- models ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtocolSettings:
    """How the protocol runs.

    Args:
        budgets (`tuple[int, ...]`, *optional*, defaults to `(0, 8, 16, 32, 64)`):
            rationale budgets every model is evaluated at (a trained model's training budget is added).
        n_boot (`int`, *optional*, defaults to `1000`):
            bootstrap resamples per interval.
        seed (`int`, *optional*, defaults to `0`):
            bootstrap seed (the same resamples for every interval of a dev set).
        level (`float`, *optional*, defaults to `0.95`):
            interval coverage.
        batch_size (`int`, *optional*, defaults to `32`):
            encoding batch size.
        cache_dir (`Path`, *optional*, defaults to `None`):
            where sweeps are cached as JSON (`None`: no cache).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            passed to the model loader.
        show_progress_bar (`bool`, *optional*, defaults to `True`):
            progress bars while encoding.
    """

    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    batch_size: int = 32
    cache_dir: Path | None = None
    trust_remote_code: bool = False
    show_progress_bar: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """A model in the comparison: `role` is `base` or `trained` (then `training_budget` is set); `instruction`
    overrides the model's own rationale instruction (its run's, else the default)."""

    label: str
    path: str
    role: str
    training_budget: int | None = None
    instruction: str | None = None


def _run_config(run_dir: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """(path, parsed `grace_config.json` of a GRACE run, or None when the file is missing); a file that is not a JSON
    object is an error naming it."""
    meta = Path(run_dir) / GRACE_META
    if not meta.is_file():
        return meta, None
    try:
        config = json.loads(meta.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{meta}: not valid JSON ({err}); fix or remove the file.") from None
    if not isinstance(config, dict):
        raise UserError(f"{meta}: expected a JSON object, got {type(config).__name__}; fix the file.")
    return meta, config


def training_budget(run_dir: str | Path) -> int:
    """The rationale budget a GRACE run trained with (`max_rationale_tokens` of its `grace_config.json`)."""
    meta, config = _run_config(run_dir)
    if config is None:
        raise FileNotFoundError(
            f"{meta} not found: a trained model must be a GRACE output directory (training writes {GRACE_META}); "
            "train first or fix the path."
        )
    value = config.get("max_rationale_tokens")
    if not isinstance(value, int) or value < 0:
        raise UserError(f"{meta}: max_rationale_tokens must be an integer >= 0, got {value!r}; fix the file.")
    return value


def run_instruction(run_dir: str | Path) -> str:
    """The rationale instruction a GRACE run trained with (its `grace_config.json`; the default when not recorded)."""
    from grace_rl.prompts import DEFAULT_INSTRUCTION

    meta, config = _run_config(run_dir)
    value = (config or {}).get("instruction")
    if value is None:
        return DEFAULT_INSTRUCTION
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{meta}: instruction must be a non-empty string, got {value!r}; fix the file.")
    return value


def _unique(label: str, labels: set[str]) -> str:
    """`label`, primed until it is not in `labels`; added to `labels`."""
    while label in labels:
        label += "'"
    labels.add(label)
    return label


def model_specs(base: str, trained: Sequence[str | Path]) -> list[ModelSpec]:
    """The base model (default instruction); the base model again under each other instruction the trained runs
    were trained with (`base+prompt`, numbered when there are several: matched prompts); then each trained run
    labelled by its directory name (made unique)."""
    from grace_rl.prompts import DEFAULT_INSTRUCTION

    specs = [ModelSpec("base", str(base), "base")]
    labels = {"base"}
    runs = [
        ModelSpec(_unique(Path(run).resolve().name or str(run), labels), str(run), "trained", training_budget(run))
        for run in trained
    ]
    prompts = [p for p in dict.fromkeys(run_instruction(s.path) for s in runs) if p != DEFAULT_INSTRUCTION]
    for i, prompt in enumerate(prompts, start=1):
        label = _unique("base+prompt" if len(prompts) == 1 else f"base+prompt{i}", labels)
        specs.append(ModelSpec(label, str(base), "base", instruction=prompt))
    return specs + runs


# --- running the protocol ------------------------------------------------------------------------------------------


def sweep_pairs(
    encoder, pairs: Sequence[Pair], budgets: Sequence[int], batch_size: int = 32, show_progress_bar: bool = True
) -> list[dict[str, Any]]:
    """One encoder on one dev set at every budget (greedy; each rationale written once at the largest budget).

    Returns per budget `{"budget", "spearman" (x100), "mean_rationale_tokens", "cosines"}` (cosines per pair).
    """
    from grace_rl.eval.scaling import scaling_curve

    a, b = [p.a for p in pairs], [p.b for p in pairs]
    unique = list(dict.fromkeys(a + b))
    row = {t: i for i, t in enumerate(unique)}
    ia, ib = np.array([row[t] for t in a]), np.array([row[t] for t in b])  # (n,), (n,)
    gold = np.array([p.score for p in pairs], dtype=np.float64)  # (n,)
    cosines: dict[int, np.ndarray] = {}

    def evaluate(enc, max_rationale_tokens: int, **kwargs: Any) -> dict[str, Any]:
        emb = np.asarray(enc.encode(unique, max_rationale_tokens=max_rationale_tokens, **kwargs), dtype=np.float64)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)  # (U, H)
        cos = (emb[ia] * emb[ib]).sum(axis=1)  # (n,)
        cosines[max_rationale_tokens] = cos
        return {"spearman": spearman(cos, gold)}

    points = scaling_curve(encoder, budgets, evaluate, batch_size=batch_size, show_progress_bar=show_progress_bar)
    return [
        {
            "budget": p["max_rationale_tokens"],
            "spearman": p["spearman"],
            "mean_rationale_tokens": p["mean_rationale_tokens"],
            "cosines": cosines[p["max_rationale_tokens"]].tolist(),
        }
        for p in points
    ]


def evaluate_model(
    spec: ModelSpec, devsets: Sequence[DevSet], budgets: Sequence[int], settings: ProtocolSettings
) -> dict[str, dict[str, Any]]:
    """Sweep one model over every dev set, from the cache when possible (the model is loaded only on a miss).

    Returns per dev set name the record `{"key", "points" (with cosines), "seconds", "cached"}`.
    """
    encoder = None
    out: dict[str, dict[str, Any]] = {}
    for ds in devsets:
        key = cache_key(spec.path, ds.digest, budgets, spec.instruction)
        record = load_sweep(settings.cache_dir, key) if settings.cache_dir else None
        if record is not None:
            logger.info("%s on %s: cached sweep (%.1f s when computed)", spec.label, ds.name, record["seconds"])
            out[ds.name] = {**record, "cached": True}
            continue
        if encoder is None:
            from grace_rl.encoder import GraceEncoder

            encoder = GraceEncoder.from_pretrained(
                spec.path, trust_remote_code=settings.trust_remote_code, instruction=spec.instruction
            )
        logger.info("%s on %s: %d pairs at budgets %s", spec.label, ds.name, len(ds.pairs), list(budgets))
        start = time.perf_counter()
        points = sweep_pairs(encoder, ds.pairs, budgets, settings.batch_size, settings.show_progress_bar)
        record = {"key": key, "points": points, "seconds": round(time.perf_counter() - start, 1)}
        if settings.cache_dir:
            save_sweep(settings.cache_dir, record)
        out[ds.name] = {**record, "cached": False}
    return out


def with_intervals(points: Sequence[dict[str, Any]], gold: np.ndarray, settings: ProtocolSettings) -> list[dict]:
    """The public form of a sweep's points: budget, Spearman with its interval, mean rationale tokens."""
    rows = []
    for p in points:
        ci = spearman_interval(np.asarray(p["cosines"]), gold, settings.n_boot, settings.seed, settings.level)
        rows.append(
            {"budget": p["budget"], **ci.as_dict("spearman"), "mean_rationale_tokens": p["mean_rationale_tokens"]}
        )
    return rows


def best_point(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The point with the highest Spearman: the bar. On a tie the smaller budget, then the first listed."""
    return max(sorted(points, key=lambda p: p["budget"]), key=lambda p: p["spearman"])


def headline(
    trained_points: Sequence[dict[str, Any]],
    base_points: Sequence[dict[str, Any]],
    gold: np.ndarray,
    budget: int,
    settings: ProtocolSettings,
) -> dict[str, Any]:
    """Trained at its training `budget` minus base at the base's best budget (highest Spearman on these pairs;
    the smaller budget on a tie), with the paired bootstrap interval of the difference.

    `base_points` may hold the sweeps of several base variants (matched prompts), each point tagged with its
    `"model"` label: the bar is the best point over all of them (`base_model` in the result; the first listed on a
    tie)."""
    trained = next((p for p in trained_points if p["budget"] == budget), None)
    if trained is None:
        raise UserError(f"The trained sweep has no budget {budget}; include it in the budgets.")
    best = best_point(base_points)
    ci = paired_difference_interval(
        np.asarray(trained["cosines"]),
        np.asarray(best["cosines"]),
        gold,
        settings.n_boot,
        settings.seed,
        settings.level,
    )
    return {
        "training_budget": budget,
        "trained_spearman": round(trained["spearman"], 2),
        "base_model": best.get("model", "base"),
        "base_best_budget": best["budget"],
        "base_spearman": round(best["spearman"], 2),
        **ci.as_dict("difference"),
    }


def run_protocol(
    base: str,
    trained: Sequence[str | Path],
    devsets: Sequence[DevSet],
    settings: ProtocolSettings,
    samples: SampleSettings | None = None,
) -> dict[str, Any]:
    """The whole protocol: every model at every budget on every dev set, intervals, and a headline per trained
    model and dev set; with `samples`, also the rationale-count sweep (:mod:`grace_rl.eval.protocol_samples`,
    under `"samples"`). Returns a JSON-able dict (see :mod:`grace_rl.eval.protocol_report` for the table and plot)."""
    start = time.perf_counter()
    specs = model_specs(base, trained)
    own = {s.training_budget for s in specs if s.training_budget is not None}
    if samples is not None:
        from grace_rl.eval.protocol_samples import sample_budget

        own.add(sample_budget(specs, samples))  # the greedy point the sampled ones are compared with
    budgets = sorted(set(settings.budgets) | own)
    if own - set(settings.budgets):
        logger.warning("Added the training budget(s) %s to the sweep budgets.", sorted(own - set(settings.budgets)))
    sweeps = {s.label: evaluate_model(s, devsets, budgets, settings) for s in specs}
    models = [
        {
            "label": s.label,
            "model": s.path,
            "role": s.role,
            "training_budget": s.training_budget,
            **({"instruction": s.instruction} if s.instruction is not None else {}),
            "results": {
                ds.name: {
                    "points": with_intervals(sweeps[s.label][ds.name]["points"], ds.gold(), settings),
                    "seconds": sweeps[s.label][ds.name]["seconds"],
                    "cached": sweeps[s.label][ds.name]["cached"],
                }
                for ds in devsets
            },
        }
        for s in specs
    ]
    bases = [s.label for s in specs if s.role == "base"]
    headlines = [
        {"model": s.label, "dataset": ds.name}
        | headline(
            sweeps[s.label][ds.name]["points"],
            [{**p, "model": b} for b in bases for p in sweeps[b][ds.name]["points"]],
            ds.gold(),
            s.training_budget,
            settings,
        )
        for s in specs
        if s.role == "trained"
        for ds in devsets
    ]
    extra = {}
    if samples is not None:
        from grace_rl.eval.protocol_samples import run_samples

        extra["samples"] = run_samples(specs, devsets, sweeps, samples, settings)
    return {
        "protocol_version": PROTOCOL_VERSION,
        "budgets": budgets,
        "bootstrap": {"n": settings.n_boot, "seed": settings.seed, "level": settings.level},
        "datasets": [ds.info() for ds in devsets],
        "models": models,
        "headlines": headlines,
        **extra,
        "seconds": round(time.perf_counter() - start, 1),
    }
