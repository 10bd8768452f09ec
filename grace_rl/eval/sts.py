"""Offline evaluation: STS (Spearman of cosine vs gold) on STS-B / SICK / JSONL files."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from grace_rl.run_files import iter_jsonl

logger = logging.getLogger(__name__)

STS_FORMATS = ("stsb", "sick", "jsonl")


def read_sts(
    path: str | Path, fmt: str = "stsb", limit: int | None = None
) -> tuple[list[str], list[str], list[float]]:
    """Sentence pairs and gold scores. `stsb`: STS-B TSV (score col 5, sentences 6-7); `sick`: SICK TSV with a
    header (relatedness_score); `jsonl`: rows `{sentence1, sentence2, score}`."""
    path = Path(path)
    if fmt not in STS_FORMATS:
        raise ValueError(f"Unknown STS format {fmt!r}; choose one of {STS_FORMATS}.")
    a, b, s = [], [], []
    with path.open(encoding="utf-8") as f:
        if fmt == "stsb":
            for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(row) < 7:
                    raise ValueError(f"{path}: line {n} has {len(row)} fields; the STS-B layout needs 7.")
                s.append(float(row[4]))
                a.append(row[5])
                b.append(row[6])
        elif fmt == "sick":
            for row in csv.DictReader(f, delimiter="\t"):
                a.append(row["sentence_A"])
                b.append(row["sentence_B"])
                s.append(float(row["relatedness_score"]))
        else:
            for _, row in iter_jsonl(path):
                a.append(row["sentence1"])
                b.append(row["sentence2"])
                s.append(float(row["score"]))
    if limit is not None:
        a, b, s = a[:limit], b[:limit], s[:limit]
    if len(a) < 2:
        raise ValueError(f"{path}: need at least 2 pairs for a Spearman correlation, found {len(a)}.")
    return a, b, s


def sts_spearman(emb_a: np.ndarray, emb_b: np.ndarray, gold: list[float]) -> float:
    """Spearman (x100) between row-wise cosine similarity and gold scores."""
    na = emb_a / np.linalg.norm(emb_a, axis=1, keepdims=True).clip(min=1e-12)
    nb = emb_b / np.linalg.norm(emb_b, axis=1, keepdims=True).clip(min=1e-12)
    cos = (na * nb).sum(axis=1)
    return float(spearmanr(cos, gold).statistic * 100)


def evaluate_sts(
    encoder, path: str | Path, fmt: str = "stsb", limit: int | None = None, **encode_kwargs: Any
) -> dict[str, Any]:
    """Encode both sides of each pair with `encoder` and return `{"task": "sts", "n", "spearman"}`."""
    a, b, gold = read_sts(path, fmt, limit)
    unique = list(dict.fromkeys(a + b))
    emb = encoder.encode(unique, **encode_kwargs)
    row = {t: i for i, t in enumerate(unique)}
    score = sts_spearman(emb[[row[t] for t in a]], emb[[row[t] for t in b]], gold)
    return {"task": "sts", "n": len(gold), "spearman": round(score, 2)}
