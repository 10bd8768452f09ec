"""Offline evaluation: STS (Spearman of cosine vs gold) on STS-B / SICK / JSONL files: reading the pairs, and `eval
sts` for one point (the sweeps and scoring are :mod:`grace_rl.eval.sweep`)."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from grace_rl.errors import UserError
from grace_rl.eval.stats import Pair, spearman
from grace_rl.eval.sweep import sweep_sts, unit_rows
from grace_rl.run_files import check_regular_file, iter_jsonl

logger = logging.getLogger(__name__)

STS_FORMATS = ("stsb", "sick", "jsonl")


SCORE_RANGES = {"stsb": (0.0, 5.0), "sick": (1.0, 5.0), "jsonl": (-math.inf, math.inf)}
SICK_FIELDS = ("sentence_A", "sentence_B", "relatedness_score")


def read_sts(
    path: str | Path, fmt: str = "stsb", limit: int | None = None
) -> tuple[list[str], list[str], list[float]]:
    """Sentence pairs and gold scores. `stsb`: STS-B TSV (score col 5 in [0, 5], sentences 6-7); `sick`: SICK TSV
    with a header (relatedness_score in [1, 5]); `jsonl`: rows `{sentence1, sentence2, score}` (any finite score).

    Every problem raises `ValueError` naming `file:line` and the field: not UTF-8, too few fields, a score that is
    not a number or out of range, an empty sentence, a gold column with one value (Spearman is undefined)."""
    path = Path(path)
    check_regular_file(path, "STS file")
    if fmt not in STS_FORMATS:
        raise UserError(f"Unknown STS format {fmt!r}; choose one of {STS_FORMATS}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
        raise UserError(f"limit must be an integer >= 2 pairs (or none for all), got {limit!r}.")
    rows = _jsonl_rows(path) if fmt == "jsonl" else _tsv_rows(path, fmt)
    a, b, s = [], [], []
    for where, first, second, score in rows:
        a.append(_sentence(first, where, "sentence 1"))
        b.append(_sentence(second, where, "sentence 2"))
        s.append(_score(score, where, fmt))
        if limit is not None and len(a) == limit:
            break
    if len(a) < 2:
        raise UserError(f"{path}: need at least 2 pairs for a Spearman correlation, found {len(a)}.")
    if len(set(s)) < 2:
        raise UserError(f"{path}: every gold score is {s[0]}; a Spearman correlation needs different scores.")
    return a, b, s


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({err.reason}) - save the file as UTF-8.") from err


def _tsv_rows(path: Path, fmt: str) -> Iterator[tuple[str, Any, Any, Any]]:
    lines = _text(path).split("\n")
    if fmt == "stsb":
        for n, row in enumerate(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row:
                continue
            if len(row) < 7:
                raise UserError(f"{path}:{n}: {len(row)} tab-separated fields; the STS-B layout needs 7.")
            yield f"{path}:{n}", row[5], row[6], row[4]
        return
    reader = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = [f for f in SICK_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}:1: the SICK header lacks {missing}; it needs {list(SICK_FIELDS)}.")
    for n, row in enumerate(reader, start=2):
        absent = [f for f in SICK_FIELDS if row.get(f) is None]
        if absent:
            raise UserError(f"{path}:{n}: no value for {absent} (too few tab-separated fields).")
        yield f"{path}:{n}", row["sentence_A"], row["sentence_B"], row["relatedness_score"]


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any, Any, Any]]:
    for line, row in iter_jsonl(path):
        where = f"{path}:{line}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected an object {{sentence1, sentence2, score}}, got {type(row).__name__}.")
        absent = [f for f in ("sentence1", "sentence2", "score") if f not in row]
        if absent:
            raise UserError(f"{where}: missing field(s) {absent}; rows need sentence1, sentence2, score.")
        yield where, row["sentence1"], row["sentence2"], row["score"]


def _sentence(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {name} is {value!r}; it must be a non-empty string.")
    return value


def _score(value: Any, where: str, fmt: str) -> float:
    try:
        score = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        score = math.nan
    low, high = SCORE_RANGES[fmt]
    if not (math.isfinite(score) and low <= score <= high):
        rule = "a finite number" if fmt == "jsonl" else f"a number in [{low:g}, {high:g}]"
        raise UserError(f"{where}: gold score {value!r} is not {rule} - fix or remove the pair.")
    return score


def _defined(score: float, n: int) -> float:
    if not math.isfinite(score):
        raise UserError(
            f"Spearman is {score} over {n} pairs (every cosine similarity is the same, or not finite): the "
            "embeddings carry no ranking - check the model."
        )
    return score


def sts_spearman(emb_a: np.ndarray, emb_b: np.ndarray, gold: list[float]) -> float:
    """Spearman (x100) between row-wise cosine similarity and gold scores (as :func:`grace_rl.eval.sweep.score_sts`
    scores a sweep)."""
    cos = (unit_rows(emb_a) * unit_rows(emb_b)).sum(axis=1)  # (n,)
    return _defined(spearman(cos, np.asarray(gold, dtype=np.float64)), len(gold))


def evaluate_sts(
    encoder,
    path: str | Path,
    fmt: str = "stsb",
    limit: int | None = None,
    intervals: bool = False,
    **encode_kwargs: Any,
) -> dict[str, Any]:
    """Encode both sides of each pair with `encoder` (one :func:`grace_rl.eval.sweep.sweep_sts` point) and return
    `{"task": "sts", "n", "spearman"}`, with `intervals` also `"ci_low"`, `"ci_high"` (95% bootstrap)."""
    a, b, gold = read_sts(path, fmt, limit)
    pairs = [Pair(*p) for p in zip(a, b, gold, strict=True)]
    (point,) = sweep_sts(encoder, pairs, intervals=intervals, **encode_kwargs)
    score = {"spearman": round(_defined(point.spearman, len(pairs)), 2)}
    if point.interval is not None:
        score = point.interval.as_dict("spearman")
    return {"task": "sts", "n": len(pairs), **score}
