"""The evaluation protocol's second test-time-scaling axis: several sampled rationales averaged per text.

At one rationale budget (matched across models: the trained runs' training budget by default), each text's
`max(counts)` rationales are sampled once at `temperature` (seeded) and the point for `k` averages the first `k`
embeddings (:func:`sample_pairs`; `k` of `K` independent samples are distributed as `k` fresh ones, so the nested
points equal separate `encode(num_rationales=k)` runs in distribution at the cost of the largest one). Every point
gets the protocol's 95% bootstrap interval, and per model and dev set two paired differences are reported
(:func:`sample_gains`): the most rationales minus one sampled rationale, and minus the greedy rationale at the same
budget (from the budget sweep). Sweeps are cached like the budget sweeps (the key adds counts, temperature, budget
and sampling seed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from grace_rl.encoder import GraceEncoder
from grace_rl.errors import UserError
from grace_rl.eval.protocol_cache import cache_key, embedded_by, load_sweep, save_sweep
from grace_rl.eval.specs import ModelSpec, ProtocolSettings, SampleSettings
from grace_rl.eval.stats import DevSet, Pair, paired_difference_interval, spearman_interval
from grace_rl.eval.sweep import sweep_sts

logger = logging.getLogger(__name__)


def sample_budget(specs: Sequence[ModelSpec], samples: SampleSettings) -> int:
    """The budget every model samples at: `samples.budget`, else the trained runs' common training budget."""
    if not samples.include_base and not any(s.role == "trained" for s in specs):
        raise UserError("--samples-trained-only needs at least one --trained run (there is none to sample).")
    if samples.budget is not None:
        return samples.budget
    own = sorted({s.training_budget for s in specs if s.training_budget is not None and s.embedding == "rationale"})
    if len(own) != 1 or own[0] < 1:
        raise UserError(
            f"The rationale-count sweep needs one budget for every model; the trained runs have training budgets "
            f"{own or 'none (no --trained run)'}: give --sample-budget N."
        )
    return own[0]


def sample_pairs(
    encoder,
    pairs: Sequence[Pair],
    counts: Sequence[int],
    budget: int,
    temperature: float,
    seed: int = 0,
    batch_size: int = 32,
    show_progress_bar: bool = True,
) -> list[dict[str, Any]]:
    """One encoder on one dev set: `max(counts)` rationales sampled per text in one generation pass, averaged
    (:func:`grace_rl.eval.sweep.sweep_sts` over `counts`, after `torch.manual_seed(seed)`).

    Returns per count `{"num_rationales", "spearman" (x100), "mean_rationale_tokens", "cosines"}`: the cached form.
    """
    points = sweep_sts(
        encoder,
        pairs,
        samples=counts,
        seed=seed,
        max_rationale_tokens=budget,
        temperature=temperature,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
    )
    return [p.record("num_rationales") for p in points]


def evaluate_samples(
    spec: ModelSpec, devsets: Sequence[DevSet], budget: int, samples: SampleSettings, settings: ProtocolSettings
) -> dict[str, dict[str, Any]]:
    """:func:`sample_pairs` for one model on every dev set, from the cache when possible (as the budget sweeps)."""
    encoder = None
    out: dict[str, dict[str, Any]] = {}
    for ds in devsets:
        key = (
            cache_key(spec.path, ds.digest, [budget], spec.instruction)
            | embedded_by(spec.path)
            | {"samples": {"counts": list(samples.counts), "temperature": samples.temperature, "seed": samples.seed}}
        )
        record = load_sweep(settings.cache_dir, key) if settings.cache_dir else None
        if record is not None:
            logger.info("%s on %s: cached rationale-count sweep", spec.label, ds.name)
            out[ds.name] = {**record, "cached": True}
            continue
        if encoder is None:
            encoder = GraceEncoder.from_pretrained(
                spec.path, trust_remote_code=settings.trust_remote_code, instruction=spec.instruction
            )
        logger.info(
            "%s on %s: %s sampled rationales of <= %d tokens at temperature %g",
            spec.label,
            ds.name,
            list(samples.counts),
            budget,
            samples.temperature,
        )
        start = time.perf_counter()
        points = sample_pairs(
            encoder,
            ds.pairs,
            samples.counts,
            budget,
            samples.temperature,
            samples.seed,
            settings.batch_size,
            settings.show_progress_bar,
        )
        record = {"key": key, "points": points, "seconds": round(time.perf_counter() - start, 1)}
        if settings.cache_dir:
            save_sweep(settings.cache_dir, record)
        out[ds.name] = {**record, "cached": False}
    return out


def sample_gains(
    points: Sequence[dict[str, Any]],
    greedy_cosines: Sequence[float],
    gold: np.ndarray,
    settings: ProtocolSettings,
) -> dict[str, Any]:
    """Paired differences of the most rationales averaged minus one sampled rationale, and minus the greedy one."""
    by_k = {p["num_rationales"]: p for p in points}
    most, one = by_k[max(by_k)], by_k[1]
    vs_one = paired_difference_interval(
        np.asarray(most["cosines"]), np.asarray(one["cosines"]), gold, settings.n_boot, settings.seed, settings.level
    )
    vs_greedy = paired_difference_interval(
        np.asarray(most["cosines"]), np.asarray(greedy_cosines), gold, settings.n_boot, settings.seed, settings.level
    )
    return {
        "num_rationales": most["num_rationales"],
        "spearman": round(most["spearman"], 2),
        "vs_one_sample": vs_one.as_dict("difference"),
        "vs_greedy": vs_greedy.as_dict("difference"),
    }


def run_samples(
    specs: Sequence[ModelSpec],
    devsets: Sequence[DevSet],
    greedy: dict[str, dict[str, dict[str, Any]]],
    samples: SampleSettings,
    settings: ProtocolSettings,
) -> dict[str, Any]:
    """The rationale-count sweep of every model on every dev set (JSON-able, `results["samples"]`).

    `greedy` holds the budget sweeps (`greedy[label][dataset]["points"]`, with cosines) and must include the
    sample budget, so each model's greedy rationale at that budget is the reference of `vs_greedy`.
    """
    budget = sample_budget(specs, samples)
    models, gains = [], []
    for spec in specs:
        if (spec.role == "base" and not samples.include_base) or spec.embedding != "rationale":
            continue  # echo / plain models write no rationale to sample
        sweeps = evaluate_samples(spec, devsets, budget, samples, settings)
        results = {}
        for ds in devsets:
            gold = ds.gold()
            points = sweeps[ds.name]["points"]
            results[ds.name] = {
                "points": [
                    {
                        "num_rationales": p["num_rationales"],
                        **spearman_interval(
                            np.asarray(p["cosines"]), gold, settings.n_boot, settings.seed, settings.level
                        ).as_dict("spearman"),
                        "mean_rationale_tokens": p["mean_rationale_tokens"],
                    }
                    for p in points
                ],
                "seconds": sweeps[ds.name]["seconds"],
                "cached": sweeps[ds.name]["cached"],
            }
            greedy_point = next((p for p in greedy[spec.label][ds.name]["points"] if p["budget"] == budget), None)
            if greedy_point is None:
                raise UserError(f"The budget sweep of {spec.label} has no budget {budget}; include it in the budgets.")
            greedy_spearman = round(greedy_point["spearman"], 2)
            gains.append(
                {"model": spec.label, "dataset": ds.name, "greedy_spearman": greedy_spearman}
                | sample_gains(points, greedy_point["cosines"], gold, settings)
            )
        models.append({"label": spec.label, "role": spec.role, "results": results})
    return {
        "budget": budget,
        "temperature": samples.temperature,
        "counts": list(samples.counts),
        "seed": samples.seed,
        "models": models,
        "gains": gains,
    }
