"""Fault-injection suite (marker ``faults``): shared recipe helpers and the tally plugin.

Every test counts what it proved through the ``tally`` fixture; ``pytest_terminal_summary`` prints one line:
``faults tally: bad inputs N, faults survived M, rationale lines lost K``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..recipes import write_recipe

REPO = Path(__file__).resolve().parents[2]
_COUNTS = {"bad inputs": 0, "faults survived": 0, "rationale lines lost": 0}
_USED = {"tally": False}


class Tally:
    """Counters of the suite (module-level, so every test of the session adds to the same line)."""

    def bad_input(self) -> None:
        _COUNTS["bad inputs"] += 1

    def fault_survived(self) -> None:
        _COUNTS["faults survived"] += 1

    def lines_lost(self, n: int) -> None:
        _COUNTS["rationale lines lost"] += int(n)


@pytest.fixture()
def tally() -> Tally:
    _USED["tally"] = True
    return Tally()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: D103 - pytest hook
    if _USED["tally"]:
        line = ", ".join(f"{name} {value}" for name, value in _COUNTS.items())
        terminalreporter.write_line(f"faults tally: {line}")


def tiny_recipe(tmp_path: Path, model_dir: Path, rows: Path, **overrides) -> list[str]:
    """Command line for a tiny CPU run through the real entry point (a YAML recipe plus ``--config``)."""
    defaults = {
        "seed": 0,
        "reward_terms": ["contrastive", "consistency", "truncation"],
        "term_weights": [1.0, 0.1, 0.1],
        "anchor_mode": "plain",
    }
    return write_recipe(tmp_path, model_dir, rows, **{**defaults, **overrides})


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def dcg_data(tmp_path_factory) -> tuple[Path, Path]:
    """(rows, corpus): the first 12 demo rows with ``positive_ids`` and a 40-document corpus holding their golds."""
    folder = tmp_path_factory.mktemp("dcg-data")
    rows = [json.loads(x) for x in (REPO / "data" / "demo_train_dcg.jsonl").read_text().splitlines()[:12]]
    docs = [json.loads(x) for x in (REPO / "data" / "demo_corpus.jsonl").read_text().splitlines()]
    gold = {d for r in rows for d in r["positive_ids"]}
    corpus = [d for d in docs if d["id"] in gold] + [d for d in docs if d["id"] not in gold][: 40 - len(gold)]
    return write_jsonl(folder / "rows.jsonl", rows), write_jsonl(folder / "corpus.jsonl", corpus)


def dcg_overrides(corpus: Path, **extra) -> dict:
    return {
        "reward_terms": ["contrastive", "dcg", "consistency"],
        "term_weights": [1.0, 1.0, 0.1],
        "corpus_path": str(corpus),
        "dcg_k": 5,
        "search_depth": 10,
        "refresh_every_steps": 1,
        "refresh_fraction": 0.25,
        **extra,
    }


@pytest.fixture(scope="session")
def recipe():
    """``recipe(tmp_path, model_dir, rows, **overrides) -> argv`` (see :func:`tiny_recipe`)."""
    return tiny_recipe


@pytest.fixture(scope="session")
def jsonl():
    """``jsonl(path, rows) -> path``."""
    return write_jsonl


@pytest.fixture(scope="session")
def dcg_args():
    """``dcg_args(corpus, **extra) -> recipe overrides`` for the ``dcg`` term."""
    return dcg_overrides
