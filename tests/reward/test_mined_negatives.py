"""Hard negatives mined from the corpus index (ANCE style): which documents, how they join the context, the config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grace_rl.config import GraceConfig
from grace_rl.inspection.log import read_rationales
from grace_rl.train import main, parse_args
from reward import GraceReward
from reward.retrieval import mine_negatives
from rollout.corpus import Corpus
from rollout.corpus_index import CorpusIndex
from rollout.pool import VersionedEmbeddings

from ..recipes import write_recipe


class RankedIndex:
    """Fixed rankings (and scores) per query, ragged; records the depth asked and the documents noted."""

    def __init__(self, corpus: Corpus, rankings: list[list[str]], scores: list[list[float]] | None = None) -> None:
        self.corpus, self.rankings = corpus, rankings
        self.scores = scores or [[0.0] * len(r) for r in rankings]
        self.depths: list[int] = []
        self.used: set[str] = set()

    def search(self, queries, k):
        self.depths.append(k)
        return [s[:k] for s in self.scores[: len(queries)]], [r[:k] for r in self.rankings[: len(queries)]]

    def note_used(self, doc_ids):
        self.used.update(doc_ids)


def test_mining_skips_gold_ids_excluded_texts_and_repeated_texts():
    corpus = Corpus(("g", "self", "a", "a2", "b", "c"), ("pos", "query", "ta", "ta", "tb", "tc"))
    index = RankedIndex(corpus, [["g", "self", "a", "a2", "b", "c"], ["c", "b"]])
    mined = mine_negatives(index, torch.zeros(2, 4), [{"g"}, set()], [{"query", "pos"}, {"tc"}], k=2)
    assert mined == [["a", "b"], ["b"]]  # a2 repeats a's text; only one eligible doc for the second query
    assert index.depths == [2 + 1 + 8] and index.used == {"a", "b"}
    assert mine_negatives(index, torch.zeros(2, 4), [set(), set()], [set(), set()], k=1, depth=3) == [["g"], ["c"]]
    assert index.depths[-1] == 3
    scored = RankedIndex(corpus, [["a", "b", "c"], ["b", "c", "a"]], [[0.9, 0.5, 0.1], [0.7, 0.6, 0.2]])
    mined = mine_negatives(scored, torch.zeros(2, 4), [set(), set()], [set(), set()], k=2, max_scores=[0.8, 0.65])
    assert mined == [["b", "c"], ["c", "a"]]  # above its query's ceiling a document is skipped
    with pytest.raises(ValueError, match="k must be >= 1"):
        mine_negatives(index, torch.zeros(2, 4), [set(), set()], [set(), set()], k=0)
    with pytest.raises(ValueError, match="2 queries but 1 gold sets"):
        mine_negatives(index, torch.zeros(2, 4), [set()], [set(), set()], k=1)


VECTORS = {  # text -> direction in R^4 (unit after normalisation)
    "q0": [1.0, 0.0, 0.0, 0.0],
    "q1": [0.0, 1.0, 0.0, 0.0],
    "p0": [0.8, 0.0, 0.6, 0.0],
    "p1": [0.0, 0.8, 0.0, 0.6],
    "near0": [0.9, 0.1, 0.0, 0.1],  # the nearest non-gold document of row 0
    "near1": [0.1, 0.9, 0.1, 0.0],  # ... of row 1
    "far": [-1.0, -1.0, 0.0, 0.0],
}


class TextPool:
    """Rollout (query + rationale) and anchor embeddings fixed by text; rationale token t adds t/100 on axis 3."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_with_version(self, requests, pooling="mean"):
        self.calls.append([r.text for r in requests])
        rows = []
        for r in requests:
            v = torch.tensor(VECTORS[r.text])
            v[3] += sum(r.rationale_ids) / 100.0
            rows.append(torch.nn.functional.normalize(v, dim=0))
        return VersionedEmbeddings(torch.stack(rows))

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        return [()] * len(texts)


def corpus_index(pool: TextPool) -> CorpusIndex:
    texts = ("p0", "p1", "near0", "near1", "far", "q0")  # q0 is in the corpus: row 0 must not mine its own text
    index = CorpusIndex(Corpus(tuple(f"d-{t}" for t in texts), texts))
    index.build_from_vectors(pool.embed_with_version([_req(t) for t in texts]).vectors)
    return index


def _req(text):
    from rollout.embedder import EmbedRequest

    return EmbedRequest(text)


def batch(negatives=None):
    return dict(
        prompts=["q0", "q0", "q1", "q1"],
        completions=["r", "r", "r", "r"],
        completion_ids=[[1, 2], [5, 2], [3, 2], [9, 2]],
        query=["q0", "q0", "q1", "q1"],
        positive=["p0", "p0", "p1", "p1"],
        negatives=negatives or [[], [], [], []],
        prompt_id=["a", "a", "b", "b"],
        positive_ids=[["d-p0"]] * 2 + [None] * 2,  # row b's gold comes from its positive's text
    )


def test_mined_negatives_equal_the_same_documents_given_as_hard_negatives():
    """Mining with the real FAISS index picks each row's nearest non-gold document that is not its own text; the
    rewards then equal a run where those texts were the rows' `negatives` (and no other anchor changes)."""
    terms, weights = ["contrastive", "margin", "hard_negative"], [1.0, 1.0, 1.0]
    pool = TextPool()
    mined = GraceReward(
        terms, weights, pool=pool, corpus_index=corpus_index(pool), mined_negatives=1, mined_negative_max_ratio=None
    )
    metrics = {}
    scored = mined.score_batch(**batch(), log_metric=lambda k, v: metrics.__setitem__(k, v))
    got = scored.rewards
    assert [r["mined_negatives"] for r in scored.records] == [["d-near0"]] * 2 + [["d-near1"]] * 2
    assert pool.calls[-1] == ["near0", "near1"]  # one extra embed call, the mined texts only
    assert metrics["grace/mined_negatives_per_row"] == 1.0 and "grace/mined_search_seconds" in metrics
    ctx = scored.context
    assert ctx.hard_negative_mask.tolist() == [[False, False, True, False], [False, False, False, True]]
    assert ctx.in_batch_mask.tolist() == [[False, True, False, False], [True, False, False, False]]

    given = GraceReward(terms, weights, pool=TextPool())(**batch([["near0"]] * 2 + [["near1"]] * 2))
    assert got == pytest.approx(given, abs=1e-6)
    plain = GraceReward(terms, weights, pool=TextPool())(**batch())
    assert not np.allclose(got, plain, atol=1e-3)  # the mined negatives change the rewards
    assert all(r["rewards"]["hard_negative"] < 0 for r in scored.records)


def test_a_mined_document_that_is_another_rows_positive_becomes_this_rows_hard_negative():
    pool = TextPool()
    index = CorpusIndex(Corpus(("d-p0", "d-p1", "d-far"), ("p0", "p1", "far")))
    index.build_from_vectors(pool.embed_with_version([_req(t) for t in ("p0", "p1", "far")]).vectors)
    reward = GraceReward(
        ["contrastive"], [1.0], pool=pool, corpus_index=index, mined_negatives=1, mined_negative_max_ratio=None
    )
    scored = reward.score_batch(**batch())
    mined = [r["mined_negatives"] for r in scored.records]
    assert mined == [["d-p1"]] * 2 + [["d-p0"]] * 2  # the other row's positive is the nearest non-gold document
    ctx = scored.context
    assert ctx.anchors.size(0) == 2  # no new anchor: both were anchors already
    assert ctx.hard_negative_mask.tolist() == [[False, True], [True, False]]
    assert not ctx.in_batch_mask.any()  # counted once, as a hard negative


def test_documents_nearer_than_the_positive_are_not_mined_by_default():
    """near0 is closer to row 0's query (cos ~0.99) than its positive p0 (~0.8): likely an unlabelled positive, so
    with the default ceiling (1.0 x 0.8) row 0 mines the next document under it, near1, and row 1 mines near0."""
    pool = TextPool()
    reward = GraceReward(["contrastive"], [1.0], pool=pool, corpus_index=corpus_index(pool), mined_negatives=1)
    records = reward.score_batch(**batch()).records
    assert [r["mined_negatives"] for r in records] == [["d-near1"]] * 2 + [["d-near0"]] * 2
    with pytest.raises(ValueError, match="mined_negative_max_ratio must be > 0"):
        GraceReward(["contrastive"], [1.0], mined_negative_max_ratio=0.0)


def test_mining_is_off_by_default_and_without_an_index():
    pool = TextPool()
    reward = GraceReward(["contrastive"], [1.0], pool=pool, corpus_index=corpus_index(pool))
    records = reward.score_batch(**batch()).records
    assert "mined_negatives" not in records[0] and len(pool.calls) == 2  # index build + one call
    with pytest.raises(ValueError, match="mined_negatives must be >= 0"):
        GraceReward(["contrastive"], [1.0], mined_negatives=-1)


def config(tmp_path, **kw):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "d0", "text": "a"}) + "\n")
    base = dict(
        output_dir=str(tmp_path / "x"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=2,
        report_to="none",
        reward_terms=["contrastive"],
        term_weights=[1.0],
        corpus_path=str(corpus),
        mined_negatives=2,
    )
    return GraceConfig(**{**base, **kw})


def test_mining_config_needs_a_corpus_and_a_term_that_reads_negatives(tmp_path):
    assert config(tmp_path).mined_negatives == 2  # a corpus without the dcg term is fine when mining
    with pytest.raises(ValueError, match="mined_negatives=2 mines hard negatives from a corpus index"):
        config(tmp_path, corpus_path=None)
    with pytest.raises(ValueError, match="no reward term reads them"):
        config(tmp_path, reward_terms=["consistency", "truncation"], term_weights=[1.0, 1.0])
    assert config(tmp_path, reward_terms=["consistency"], term_weights=[1.0], embedding_loss_weight=1.0)
    with pytest.raises(ValueError, match="mined_negatives must be >= 0"):
        config(tmp_path, mined_negatives=-1)
    with pytest.raises(ValueError, match="mined_negatives searches the corpus with query-side rollouts only"):
        config(tmp_path, directions=["q2d", "d2q"])
    assert config(tmp_path, mined_negative_max_ratio="null").mined_negative_max_ratio is None
    with pytest.raises(ValueError, match="mined_negative_max_ratio must be finite and > 0"):
        config(tmp_path, mined_negative_max_ratio=0.0)
    with pytest.raises(ValueError, match="mined_negatives is 0"):
        config(tmp_path, mined_negatives=0)


def test_tiny_training_run_mines_negatives_from_the_refreshed_index(tmp_path, tiny_model_dir, demo_rows):
    """Through the real entry point: rows without `negatives` or `positive_ids`, a corpus of other texts; every
    rollout's record names its row's mined documents, none of them the row's positive or query."""
    records = [json.loads(line) for line in demo_rows.read_text().splitlines()]
    texts = list(dict.fromkeys(t for r in records for t in [r["positive"], *r["negatives"]]))
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": f"doc-{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    rows = [{k: v for k, v in r.items() if k != "negatives"} for r in records]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = write_recipe(
        tmp_path,
        tiny_model_dir,
        tmp_path / "rows.jsonl",
        reward_terms=["contrastive", "truncation"],
        term_weights=[1.0, 0.1],
        anchor_mode="plain",
        corpus_path=str(tmp_path / "corpus.jsonl"),
        mined_negatives=2,
        refresh_every_steps=1,
        refresh_fraction=0.5,
    )
    assert main(*parse_args(argv))["steps"] == 2
    out = tmp_path / "run"
    text_of = {f"doc-{i}": t for i, t in enumerate(texts)}
    logged = list(read_rationales(out))
    assert len(logged) == 2 * 6
    positive_of = {r["query"]: r["positive"] for r in records}
    for rec in logged:
        assert len(rec["mined_negatives"]) == 2
        mined_texts = {text_of[d] for d in rec["mined_negatives"]}
        assert positive_of[rec["prompt"]] not in mined_texts and rec["prompt"] not in mined_texts
    metrics = [m for m in read_rationales(out / "metrics.jsonl") if "loss" in m]
    assert [m["grace/mined_negatives_per_row"] for m in metrics] == [2.0, 2.0]
