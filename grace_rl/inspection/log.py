"""Pure data behind `grace-rl inspect` and `grace-rl report`: read a run directory's logs, summarise them per step,
filter and rank rollouts. No printing, no plotting, and no torch/transformers import (reading a log stays fast).

A run directory holds `rationales.jsonl` (one record per rollout per step: `step, prompt_id, prompt, rationale,
rewards{term: value}, reward, advantage`), optionally `metrics.jsonl` (one trainer log per line) and
`grace_summary.json`. A value that was not finite during training is stored as `null` and is skipped by every mean
and ranking here.
"""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grace_rl.errors import UserError
from grace_rl.run_files import METRICS_LOG, RATIONALE_LOG, RUN_FILE, SUMMARY_FILE, iter_jsonl, read_jsonl

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("step", "prompt_id", "rationale", "rewards")
# Sort keys that exist on every record besides the reward terms.
BUILTIN_KEYS = ("abs_advantage", "reward", "advantage", "length")
# The default order of every rollout list: largest |advantage| first, the rollouts GRPO pushed hardest (up or down);
# a group whose rollouts all scored alike has advantage 0 and nothing to learn from, so it comes last.
DEFAULT_ORDER = "abs_advantage"


def order_label(key: str) -> str:
    """How a sort key reads in a title: `|advantage|` for `abs_advantage`, else the key."""
    return "|advantage|" if key == "abs_advantage" else key


@dataclass
class Run:
    """Everything a run directory holds that the inspector reads."""

    path: Path
    records: list[dict[str, Any]]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    @property
    def terms(self) -> list[str]:
        """Reward term names in first-seen order."""
        return reward_terms(self.records)

    @property
    def steps(self) -> list[int]:
        return sorted({int(r["step"]) for r in self.records})


@dataclass
class StepSummary:
    """Means over the rollouts of one step (`None` where no rollout had a finite value)."""

    step: int
    rollouts: int
    prompts: int
    reward: float | None
    advantage_std: float | None
    terms: dict[str, float | None]
    length: float | None
    truncation_rate: float | None


def read_rationales(path: str | Path) -> list[dict[str, Any]]:
    """Records of a rationale log (`path` or `path/rationales.jsonl`); a torn last line is skipped with a warning
    (the run may still be writing), a torn middle line raises naming the file and line."""
    path = Path(path)
    if path.is_dir():
        path = path / RATIONALE_LOG
    return read_jsonl(path, skip_torn_tail=True)


def load_run(run_dir: str | Path) -> Run:
    """Read `rationales.jsonl` (required), `metrics.jsonl` and `grace_summary.json` (both optional)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir} is not a directory; pass a training output_dir (it holds {RATIONALE_LOG})."
        )
    log = run_dir / RATIONALE_LOG
    if not log.is_file():
        started = (run_dir / RUN_FILE).is_file()
        done = [run_dir / METRICS_LOG, run_dir / SUMMARY_FILE, *run_dir.glob("checkpoint-*")]
        progressed = any(path.exists() for path in done)
        if started and not progressed:  # a run that has not finished its first step yet
            raise FileNotFoundError(
                f"{log} does not exist yet: the run in {run_dir} has not finished its first step (the log is written "
                "after each step) - wait for step 1, then run the command again."
            )
        raise FileNotFoundError(f"{log} does not exist; train with `rationale_log: true` to write it.")
    records = [check_record(rec, f"{log}:{line}") for line, rec in iter_jsonl(log, skip_torn_tail=True)]
    return Run(path=run_dir, records=records, metrics=load_metrics(run_dir), summary=load_summary(run_dir))


def check_record(rec: Any, where: str) -> dict[str, Any]:
    """One rationale-log record: an object with the required fields, an integer `step`, `rewards` an object of
    numbers (or null), `reward`/`advantage` numbers (or null). Raises `ValueError` naming `where` and the field."""
    hint = "is this a GRACE rationale log?"
    if not isinstance(rec, dict):
        raise UserError(f"{where}: a record must be a JSON object, got {type(rec).__name__} {rec!r:.40} - {hint}")
    missing = [k for k in REQUIRED_FIELDS if k not in rec]
    if missing:
        raise UserError(f"{where}: the record lacks {missing} - {hint}")
    if isinstance(rec["step"], bool) or not isinstance(rec["step"], int):
        raise UserError(f"{where}: field 'step' must be an integer, got {rec['step']!r:.40} - {hint}")
    rewards = rec["rewards"]
    if rewards is not None and not isinstance(rewards, dict):
        raise UserError(f"{where}: field 'rewards' must be an object {{term: number}}, got {type(rewards).__name__}")
    values = {f"rewards.{k}": v for k, v in (rewards or {}).items()}
    values.update({k: rec.get(k) for k in ("reward", "advantage")})
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{where}: field {name!r} must be a number or null, got {value!r:.40}")
    return rec


def load_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """`grace_summary.json` (`None` when absent); an unreadable one raises naming the file."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON summary ({err}) - delete it or restore it.") from err
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(summary).__name__} - delete it or restore it.")
    return summary


def run_facts(run: Run, n_records: int | None = None, sts_sizes: bool = False) -> list[str]:
    """One-line facts about a run: rollouts (`n_records`, default all), steps, terms, STS before/after (with the
    pair count when `sts_sizes`)."""
    n = len(run.records) if n_records is None else n_records
    facts = [f"{n} rollouts", f"{len(run.steps)} steps", f"terms: {', '.join(run.terms) or 'none'}"]
    summary = run.summary or {}
    for label in ("before", "after"):
        res = summary.get(label)
        if isinstance(res, dict) and "spearman" in res:
            size = f" (n={res.get('n', '?')})" if sts_sizes else ""
            facts.append(f"STS {label}{':' if sts_sizes else ''} {res['spearman']}{size}")
    return facts


def load_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Trainer logs from `metrics.jsonl`; an empty list (logged at INFO) when the run predates that file."""
    path = Path(run_dir) / METRICS_LOG
    if not path.is_file():
        logger.info("%s does not exist (older run?); no training metrics to show.", path)
        return []
    rows = list(iter_jsonl(path, skip_torn_tail=True))
    for line, row in rows:
        if not isinstance(row, dict):
            raise UserError(f"{path}:{line}: a metrics row must be a JSON object, got {type(row).__name__}.")
    return [row for _, row in rows]


def reward_terms(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for rec in records:
        seen.update(dict.fromkeys(rec.get("rewards") or {}))
    return list(seen)


def sort_keys(records: list[dict[str, Any]]) -> list[str]:
    """Names accepted by :func:`value_of` and `--by`."""
    return [*BUILTIN_KEYS, *reward_terms(records)]


def rationale_length(rec: dict[str, Any]) -> int:
    """Rationale length in whitespace-separated words (the log holds text, not token ids)."""
    return len(str(rec.get("rationale") or "").split())


def is_truncated(rec: dict[str, Any]) -> bool | None:
    """A `truncated` field when present, else `truncation` term < 0; `None` when the log cannot tell."""
    if rec.get("truncated") is not None:
        return bool(rec["truncated"])
    value = (rec.get("rewards") or {}).get("truncation")
    return None if value is None else value < 0


def value_of(rec: dict[str, Any], key: str) -> float | None:
    """`reward`, `advantage`, `abs_advantage` (its magnitude), `length` or a reward term of one record; `None` when
    absent or not finite."""
    if key == "length":
        return float(rationale_length(rec))
    if key == "abs_advantage":
        value = value_of(rec, "advantage")
        return None if value is None else abs(value)
    value = rec.get(key) if key in ("reward", "advantage") else (rec.get("rewards") or {}).get(key)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def summarize_steps(records: list[dict[str, Any]]) -> list[StepSummary]:
    """One :class:`StepSummary` per step, in step order."""
    terms = reward_terms(records)
    by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_step[int(rec["step"])].append(rec)
    out = []
    for step in sorted(by_step):
        recs = by_step[step]
        advantages = [v for v in (value_of(r, "advantage") for r in recs) if v is not None]
        truncated = [t for t in (is_truncated(r) for r in recs) if t is not None]
        out.append(
            StepSummary(
                step=step,
                rollouts=len(recs),
                prompts=len({str(r["prompt_id"]) for r in recs}),
                reward=_mean([value_of(r, "reward") for r in recs]),
                advantage_std=statistics.pstdev(advantages) if advantages else None,
                terms={t: _mean([value_of(r, t) for r in recs]) for t in terms},
                length=_mean([value_of(r, "length") for r in recs]),
                truncation_rate=sum(truncated) / len(truncated) if truncated else None,
            )
        )
    return out


def filter_records(
    records: list[dict[str, Any]],
    *,
    step: int | None = None,
    prompt_id: str | None = None,
    grep: str | None = None,
) -> list[dict[str, Any]]:
    """Records of one step and/or one prompt id (compared as text), and/or whose rationale or prompt contains `grep`
    (case-insensitive). Order is kept."""
    needle = grep.lower() if grep else None
    out = []
    for rec in records:
        if step is not None and int(rec["step"]) != step:
            continue
        if prompt_id is not None and str(rec["prompt_id"]) != str(prompt_id):
            continue
        if needle is not None and needle not in f"{rec.get('rationale') or ''}\n{rec.get('prompt') or ''}".lower():
            continue
        out.append(rec)
    return out


def rank_records(records: list[dict[str, Any]], by: str, k: int, *, bottom: bool = False) -> list[dict[str, Any]]:
    """The `k` records with the highest (or, with `bottom`, lowest) `by` value; records without a finite value
    are left out; ties keep log order."""
    return [records[i] for i in ranked_indices(records, by, k, bottom=bottom)]


def ranked_indices(records: list[dict[str, Any]], by: str, k: int, *, bottom: bool = False) -> list[int]:
    """Positions of :func:`rank_records`' result in `records`."""
    keys = sort_keys(records)
    if records and by not in keys:
        raise UserError(f"cannot rank by {by!r}: this log has {keys}.")
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}.")
    scored = [(value_of(r, by), i) for i, r in enumerate(records)]
    kept = [(v, i) for v, i in scored if v is not None]
    kept.sort(key=lambda vi: (vi[0] if bottom else -vi[0], vi[1]))
    return [i for _, i in kept[:k]]


def ordered_records(records: list[dict[str, Any]], by: str = DEFAULT_ORDER) -> list[dict[str, Any]]:
    """Every record, largest `by` value first (ties keep log order); records without a finite value come last, in
    log order."""
    ranked = ranked_indices(records, by, len(records)) if records else []
    kept = set(ranked)
    return [records[i] for i in ranked] + [r for i, r in enumerate(records) if i not in kept]


def prompt_history(records: list[dict[str, Any]], prompt_id: str) -> dict[int, list[dict[str, Any]]]:
    """One prompt's rollouts grouped by step (steps ascending, rollouts by reward, best first)."""
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in filter_records(records, prompt_id=prompt_id):
        grouped[int(rec["step"])].append(rec)
    return {s: sorted(grouped[s], key=_best_first) for s in sorted(grouped)}


def _best_first(rec: dict[str, Any]) -> float:
    value = value_of(rec, "reward")
    return -value if value is not None else math.inf


def known_prompt_ids(records: list[dict[str, Any]], limit: int = 10) -> list[str]:
    """Up to `limit` prompt ids in first-seen order (for error messages)."""
    return list(dict.fromkeys(str(r["prompt_id"]) for r in records))[:limit]


def metric_series(metrics: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """`{name: (steps, values)}` for every numeric trainer metric; `step` and `epoch` are not series."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in metrics:
        step = row.get("step")
        if step is None:
            continue
        for name, value in row.items():
            if name in ("step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            steps, values = series.setdefault(name, ([], []))
            steps.append(int(step))
            values.append(float(value))
    return series


def sample_records(records: list[dict[str, Any]], max_rows: int, seed: int = 0) -> tuple[list[dict[str, Any]], str]:
    """At most `max_rows` records (log order) and a sentence saying how they were chosen.

    When the log is larger: the `max_rows // 20` highest and lowest by reward (so the extremes are always there)
    plus a uniform random sample of the rest (`random.Random(seed)`).
    """
    n = len(records)
    if n <= max_rows:
        return list(records), f"all {n} rollouts"
    if max_rows < 1:
        raise UserError(f"max_rows must be >= 1, got {max_rows}.")
    k = max_rows // 20
    chosen = set()
    if k:
        chosen |= set(ranked_indices(records, "reward", k))
        chosen |= set(ranked_indices(records, "reward", k, bottom=True))
    rest = [i for i in range(n) if i not in chosen]
    chosen |= set(random.Random(seed).sample(rest, max_rows - len(chosen)))
    note = (
        f"a sample of {max_rows} of {n} rollouts: the {k} highest and {k} lowest by reward plus a uniform random "
        f"sample of the rest (seed {seed}); the full log is {RATIONALE_LOG}"
    )
    return [records[i] for i in sorted(chosen)], note


def values_by_step(records: list[dict[str, Any]], key: str) -> dict[int, list[float]]:
    """Finite `key` values of each step (steps ascending), for spread bands in plots."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for rec in records:
        value = value_of(rec, key)
        if value is not None:
            grouped[int(rec["step"])].append(value)
    return {s: grouped[s] for s in sorted(grouped)}
