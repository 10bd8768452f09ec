"""The evaluation protocol behind every quality figure the project states.

1. **Held out**: a dev pair is dropped when either sentence occurs in any training text, compared after
   :func:`normalise` (:func:`dedup_pairs`, which also counts the dropped pairs).
2. **Matched budgets**: every model is evaluated with greedy rationales at the same budgets (default 0 / 8 / 16 / 32
   / 64 tokens; 0 = the text alone). Each text's rationale is written once at the largest budget and truncated for
   the smaller ones (:func:`grace_rl.eval.sweep.sweep`, the sweep every STS figure uses); the mean rationale tokens
   actually used are recorded per budget.
3. **Intervals**: every Spearman gets a 95% percentile bootstrap interval over pairs (:func:`spearman_interval`);
   the difference between two systems on the same pairs gets a *paired* interval (:func:`paired_difference_interval`:
   both systems are scored on the same resampled pairs).
4. **Headline**: trained model at its training budget (`max_rationale_tokens` of its `grace_config.json`) minus
   the base model at the base model's best budget, with the paired interval (:func:`headline`).
5. **Matched prompts**: the base model is evaluated with the default instruction and, when a trained run was trained
   with another instruction, also with that run's instruction (`base+prompt`); the bar is the best base point over
   both, so a gain that comes from a better prompt alone is not counted (:func:`model_specs`). With `base_echo` the
   base model's echo embeddings (the text repeated instead of a rationale) join the bar too (`base+echo`).
6. **Embeddings without a rationale**: a model spec's `embedding` is `rationale` (GRACE: generated, swept over the
   budgets), `echo` or `plain` (a sentence-transformers model on the text alone, e.g. `grace-rl baseline`); the last
   two do not depend on the budget, so they are encoded once and the same cosines stand at every budget.

Sweeps are cached as JSON, keyed by the model (path, GRACE config, weight digests: a retrained adapter is a new key),
the digest of the pairs and the budgets (:mod:`grace_rl.eval.protocol_cache`), so the base model is evaluated once per
dev set.
:mod:`grace_rl.eval.devsets` reads the dev sets; :mod:`grace_rl.eval.protocol_report` prints and plots the results.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.errors import UserError
from grace_rl.eval.protocol_cache import (
    GRACE_META,
    PROTOCOL_VERSION,
    cache_key,
    embedded_by,
    load_sweep,
    save_sweep,
)
from grace_rl.eval.specs import EMBEDDINGS, ModelSpec, ProtocolSettings, SampleSettings
from grace_rl.eval.stats import DevSet, Pair, paired_difference_interval, spearman_interval
from grace_rl.prompts import DEFAULT_INSTRUCTION

logger = logging.getLogger(__name__)

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


# --- models ---------------------------------------------------------------------------------------------------------


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


def _is_sentence_transformers(run_dir: str | Path) -> bool:
    """A sentence-transformers directory (`modules.json`) without a `grace_config.json`: a plain model at budget 0."""
    return (Path(run_dir) / "modules.json").is_file() and not (Path(run_dir) / GRACE_META).is_file()


def run_embedding(run_dir: str | Path) -> str:
    """How a trained model embeds: the `embedding` of its `grace_config.json` (default `rationale`), `plain` for a
    sentence-transformers directory without one."""
    if _is_sentence_transformers(run_dir):
        return "plain"
    meta, config = _run_config(run_dir)
    value = (config or {}).get("embedding", "rationale")
    if value not in EMBEDDINGS:
        raise UserError(f"{meta}: embedding must be one of {EMBEDDINGS}, got {value!r}; fix the file.")
    return value


def training_budget(run_dir: str | Path) -> int:
    """The rationale budget a GRACE run trained with (`max_rationale_tokens` of its `grace_config.json`; 0 for a
    sentence-transformers directory without one)."""
    if _is_sentence_transformers(run_dir):
        return 0
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


def model_specs(
    base: str, trained: Sequence[str | Path], base_echo: bool = False, instructions: Sequence[str] = ()
) -> list[ModelSpec]:
    """The base model (default instruction); the base model again under each other instruction the trained runs
    were trained with, then under each of `instructions` not already there (`base+prompt`, numbered when there are
    several: matched prompts, and a base model evaluated under a prompt of one's choice); with `base_echo`, each of
    these base variants again with echo embeddings (`...+echo`); then each trained run (a GRACE run or a
    sentence-transformers directory) labelled by its directory name (made unique)."""
    for prompt in instructions:
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f"--instruction: empty ({prompt!r}); give the rationale instruction, or leave it out.")

    specs = [ModelSpec("base", str(base), "base")]
    labels = {"base"}
    runs = [
        ModelSpec(
            _unique(Path(run).resolve().name or str(run), labels),
            str(run),
            "trained",
            training_budget(run),
            embedding=run_embedding(run),
        )
        for run in trained
    ]
    own = [run_instruction(s.path) for s in runs]
    prompts = [p for p in dict.fromkeys([*own, *instructions]) if p != DEFAULT_INSTRUCTION]
    for i, prompt in enumerate(prompts, start=1):
        label = _unique("base+prompt" if len(prompts) == 1 else f"base+prompt{i}", labels)
        specs.append(ModelSpec(label, str(base), "base", instruction=prompt))
    if base_echo:
        specs += [
            ModelSpec(_unique(f"{s.label}+echo", labels), s.path, "base", instruction=s.instruction, embedding="echo")
            for s in list(specs)
        ]
    return specs + runs


# --- running the protocol ------------------------------------------------------------------------------------------


def sweep_pairs(
    encoder, pairs: Sequence[Pair], budgets: Sequence[int], batch_size: int = 32, show_progress_bar: bool = True
) -> list[dict[str, Any]]:
    """One encoder on one dev set at every budget (:func:`grace_rl.eval.sweep.sweep_sts`: greedy, each rationale
    written once at the largest budget; an echo or plain encoder is encoded once, the same cosines at every budget).

    Returns per budget `{"budget", "spearman" (x100), "mean_rationale_tokens", "cosines"}` (cosines per pair): the
    cached form.
    """
    from grace_rl.eval.sweep import sweep_sts  # here: it imports torch; dedup and devsets keep this module light

    points = sweep_sts(encoder, pairs, budgets, batch_size=batch_size, show_progress_bar=show_progress_bar)
    return [p.record("budget") for p in points]


def load_encoder(spec: ModelSpec, trust_remote_code: bool = False):
    """What encodes `spec`'s texts: a `SentenceTransformer` for `plain`, else a `GraceEncoder` (echo or rationale)."""
    if spec.embedding == "plain":
        from grace_rl.contrastive import load_contrastive  # torch, as below: dedup and devsets keep this module light

        return load_contrastive(spec.path, trust_remote_code=trust_remote_code)
    from grace_rl.encoder import GraceEncoder

    return GraceEncoder.from_pretrained(
        spec.path, trust_remote_code=trust_remote_code, instruction=spec.instruction, embedding=spec.embedding
    )


def evaluate_model(
    spec: ModelSpec, devsets: Sequence[DevSet], budgets: Sequence[int], settings: ProtocolSettings
) -> dict[str, dict[str, Any]]:
    """Sweep one model over every dev set, from the cache when possible (the model is loaded only on a miss).

    Returns per dev set name the record `{"key", "points" (with cosines), "seconds", "cached"}`.
    """
    encoder = None
    out: dict[str, dict[str, Any]] = {}
    for ds in devsets:
        key = cache_key(spec.path, ds.digest, budgets, spec.instruction) | embedded_by(spec.path)
        if spec.embedding != "rationale":
            key["embedding"] = spec.embedding
        record = load_sweep(settings.cache_dir, key) if settings.cache_dir else None
        if record is not None:
            logger.info("%s on %s: cached sweep (%.1f s when computed)", spec.label, ds.name, record["seconds"])
            out[ds.name] = {**record, "cached": True}
            continue
        if encoder is None:
            encoder = load_encoder(spec, settings.trust_remote_code)
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
    base_echo: bool = False,
    instructions: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole protocol: every model at every budget on every dev set, intervals, and a headline per trained
    model and dev set; with `samples`, also the rationale-count sweep (:mod:`grace_rl.eval.protocol_samples`,
    under `"samples"`). `base_echo` and `instructions` add base variants (:func:`model_specs`). Returns a JSON-able
    dict (see :mod:`grace_rl.eval.protocol_report` for the table and plot)."""
    start = time.perf_counter()
    specs = model_specs(base, trained, base_echo, instructions)
    own = {s.training_budget for s in specs if s.training_budget is not None}
    if samples is not None:
        from grace_rl.eval.protocol_samples import sample_budget  # it imports torch (the module stays light)

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
            **({"embedding": s.embedding} if s.embedding != "rationale" else {}),
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
        from grace_rl.eval.protocol_samples import run_samples  # it imports torch (the module stays light)

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
