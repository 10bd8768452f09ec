"""Config invariants, data and trainer wiring of the corpus index / DCG reward, and a tiny end-to-end run."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from grace_rl.config import GraceConfig
from grace_rl.corpus_setup import CorpusRefreshCallback
from grace_rl.data import DataValidationError, validate_supervised
from grace_rl.inspection.log import read_rationales
from grace_rl.preflight import check_gold_ids
from grace_rl.train import main, parse_args
from rollout.corpus import Corpus
from rollout.corpus_index import CorpusIndex, IndexSettings

from ..recipes import write_recipe

REPO = Path(__file__).resolve().parents[2]
DEMO_CORPUS = str(REPO / "data" / "demo_corpus.jsonl")


def make(**kw):
    base = dict(
        output_dir="/tmp/x",
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=2,
        report_to="none",
        reward_terms=["contrastive", "dcg"],
        term_weights=[1.0, 1.0],
        corpus_path=DEMO_CORPUS,
    )
    return GraceConfig(**{**base, **kw})


def test_dcg_config_is_valid_and_fills_the_corpus_rationale_budget():
    cfg = make(max_completion_length=24)
    assert cfg.corpus_rationale_tokens == 24 and cfg.dcg_k <= cfg.search_depth
    off = make(reward_terms=["contrastive"], term_weights=[1.0], corpus_path="null")
    assert off.corpus_path is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(corpus_path=None), "set corpus_path"),
        (dict(reward_terms=["contrastive"], term_weights=[1.0]), "'dcg' is not in reward_terms"),
        (dict(refresh_fraction=0.0), r"refresh_fraction must be in \(0, 1\]"),
        (dict(refresh_fraction=1.5), r"refresh_fraction must be in \(0, 1\]"),
        (dict(refresh_every_steps=-1), "refresh_every_steps"),
        (dict(dcg_k=20, search_depth=10), "dcg_k <= search_depth"),
        (dict(dcg_k=0), "dcg_k <= search_depth"),
        (dict(refresh_policy="newest"), "refresh_policy"),
        (dict(index_type="hnsw"), "index_type"),
        (dict(corpus_anchor_mode="both"), "corpus_anchor_mode"),
        (dict(ivf_nprobe=0), "ivf_nprobe"),
    ],
)
def test_corpus_invariants_fail_with_a_fix(kw, message):
    with pytest.raises(ValueError, match=message):
        make(**kw)


@pytest.mark.skipif("directions" not in GraceConfig.__dataclass_fields__, reason="no directions option")
def test_dcg_needs_query_side_rollouts():
    with pytest.raises(ValueError, match="query-side"):
        make(directions=["q2d", "d2q"])


def test_positive_ids_are_kept_as_strings_on_every_row():
    rows = validate_supervised(
        [{"query": "q", "positive": "p", "positive_ids": ["d1", 7]}, {"query": "q2", "positive": "p2"}]
    )
    assert [r["positive_ids"] for r in rows] == [["d1", "7"], []]
    assert "positive_ids" not in validate_supervised([{"query": "q", "positive": "p"}])[0]
    with pytest.raises(DataValidationError, match="row 1: field 'positive_ids' must be a list"):
        validate_supervised([{"query": "q", "positive": "p", "positive_ids": "d1"}])


def test_gold_check_lists_rows_without_a_corpus_document():
    corpus = Corpus(("d0", "d1"), ("alpha", "beta"))
    ok = [
        {"prompt_id": "a", "positive": "whatever", "positive_ids": ["d1"]},
        {"prompt_id": "b", "positive": "alpha", "positive_ids": []},
    ]
    check_gold_ids(ok, corpus, "rows.jsonl")
    bad = [{"prompt_id": "c", "positive": "gamma"}, {"prompt_id": "d", "positive": "beta"}]
    with pytest.raises(DataValidationError, match=r"(?s)1 row\(s\).*rows.jsonl: row 1 \(c\)"):
        check_gold_ids(bad, corpus, "rows.jsonl")


def test_reward_weights_are_refused_with_a_pointer_to_term_weights():
    with pytest.raises(ValueError, match="set term_weights"):
        make(reward_weights=[1.0])


class TextPool:
    """Embeds a text as a fixed random vector per (text, weights)."""

    weights = 0

    def embed(self, requests, pooling="mean"):
        out = []
        for r in requests:
            g = torch.Generator().manual_seed(abs(hash((r.text, self.weights))) % (2**31))
            out.append(torch.nn.functional.normalize(torch.randn(6, generator=g), dim=0))
        return torch.stack(out)  # (N, 6)

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        return [()] * len(texts)


def test_refresh_callback_builds_refreshes_every_k_steps_logs_and_saves(tmp_path):
    corpus = Corpus(tuple(f"d{i}" for i in range(10)), tuple(f"t{i}" for i in range(10)))
    index = CorpusIndex(corpus, IndexSettings(use_gpu=False))
    metrics = defaultdict(list)
    cb = CorpusRefreshCallback(
        index,
        TextPool(),
        every=2,
        fraction=0.2,
        log_metric=lambda k, v: metrics[k].append(v),
        save_dir=tmp_path / "ix",
    )
    state = SimpleNamespace(global_step=0, is_local_process_zero=True, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    assert index.is_built and set(index.versions.tolist()) == {0}
    for step in range(1, 5):
        state.global_step = step
        cb.on_step_end(None, state, None)
    assert sorted(index.versions.tolist()) == [0] * 6 + [2, 2, 4, 4]
    assert metrics["index/refreshed_frac"] == [0.0, 0.2, 0.0, 0.2]
    assert metrics["index/staleness_max"] == [1.0, 2.0, 3.0, 4.0]
    assert metrics["index/staleness_mean"][-1] == pytest.approx((6 * 4 + 2 * 2) / 10)
    cb.on_train_end(None, state, None)
    assert CorpusIndex.load(tmp_path / "ix").versions.tolist() == index.versions.tolist()


def dcg_recipe(tmp_path: Path, model_dir: Path, rows: Path) -> list[str]:
    """The tiny end-to-end recipe with the dcg term: corpus = the rows' positives and negatives."""
    records = [json.loads(line) for line in rows.read_text().splitlines()]
    texts = list(dict.fromkeys(t for r in records for t in [r["positive"], *r["negatives"]]))
    ids = {t: f"doc-{i}" for i, t in enumerate(texts)}
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"id": ids[t], "text": t}) + "\n" for t in texts))
    dcg_rows = [{**r, "positive_ids": [ids[r["positive"]]]} for r in records]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dcg_rows))
    return write_recipe(
        tmp_path,
        model_dir,
        tmp_path / "rows.jsonl",
        max_steps=3,
        reward_terms=["contrastive", "dcg", "truncation"],
        term_weights=[1.0, 1.0, 0.1],
        anchor_mode="plain",
        corpus_path=str(tmp_path / "corpus.jsonl"),
        corpus_anchor_mode="rationale",
        corpus_rationale_tokens=3,
        dcg_k=5,
        search_depth=10,
        refresh_every_steps=1,
        refresh_fraction=0.25,
    )


def test_tiny_training_run_with_the_dcg_term(tmp_path, tiny_model_dir, demo_rows):
    summary = main(*parse_args(dcg_recipe(tmp_path, tiny_model_dir, demo_rows)))
    assert summary["steps"] == 3
    out = tmp_path / "run"
    records = list(read_rationales(out))
    assert len(records) == 3 * 6
    for r in records:
        assert 0.0 <= r["rewards"]["dcg"] <= 1.0 and "gold_rank" in r
        expected = r["rewards"]["contrastive"] + r["rewards"]["dcg"] + 0.1 * r["rewards"]["truncation"]
        assert abs(r["reward"] - expected) < 1e-4
    logged = [m for m in read_rationales(out / "metrics.jsonl") if "loss" in m]
    assert [m["step"] for m in logged] == [1, 2, 3]
    n_docs = len((tmp_path / "corpus.jsonl").read_text().splitlines())
    per_refresh = -(-n_docs // 4) / n_docs  # ceil(0.25 N) / N
    for m in logged:
        assert m["index/staleness_max"] == m["step"]  # rows embedded at the start, never refreshed yet
        assert 0 < m["index/staleness_mean"] < m["step"]
        assert m["index/refreshed_frac"] == pytest.approx(per_refresh)
        assert "grace/dcg" in m and "grace/dcg_mrr" in m
    saved = CorpusIndex.load(out / "corpus_index")
    assert len(saved) == n_docs and saved.versions.max() == 3
    assert (saved.versions == 0).any()  # so the oldest rows are `step` steps old at every step
