from __future__ import annotations

import json
import logging
import threading

import datasets
import faiss
import numpy as np
import pytest
import torch

from grace_rl.prompts import RationaleTemplate
from rollout.corpus import Corpus, CorpusError, load_corpus
from rollout.corpus_index import SIDECAR_NAME, CorpusIndex, IndexSettings, select_refresh_rows, staleness
from rollout.embedder import Embedder
from rollout.pool import LocalEmbeddingPool


def make_corpus(n: int = 20) -> Corpus:
    return Corpus(tuple(f"d{i}" for i in range(n)), tuple(f"document number {i}" for i in range(n)))


class VersionedPool:
    """Embeddings that depend on (text, weights): ``weights`` stands for the policy's optimizer step."""

    def __init__(self, dim: int = 8) -> None:
        self.dim, self.weights = dim, 0
        self.calls: list[list[str]] = []
        self.generated: list[str] = []

    def vector(self, text: str, rationale=()) -> torch.Tensor:
        seed = abs(hash((text, tuple(rationale), self.weights))) % (2**31)
        return torch.nn.functional.normalize(
            torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)), dim=0
        )

    def embed(self, requests, pooling="mean"):
        self.calls.append([r.text for r in requests])
        return torch.stack([self.vector(r.text, r.rationale_ids) for r in requests])  # (N, H)

    def generate_rationales(self, texts, max_new_tokens, temperature=0.0):
        self.generated.extend(texts)
        return [(5, 6)] * len(texts)

    def decode(self, ids):
        return " ".join(map(str, ids))


def built(n=20, settings=None, pool=None) -> tuple[CorpusIndex, VersionedPool]:
    pool = pool or VersionedPool()
    index = CorpusIndex(make_corpus(n), settings or IndexSettings(use_gpu=False))
    index.build(pool, step=0, show_progress_bar=False)
    return index, pool


# ---- corpus files -------------------------------------------------------------------------------------------------


def test_corpus_loads_jsonl_tsv_and_saved_dataset_alike(tmp_path):
    docs = [{"id": f"x{i}", "text": f"text {i}"} for i in range(3)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "c.tsv").write_text("".join(f"{d['id']}\t{d['text']}\n" for d in docs))
    datasets.Dataset.from_list(docs).save_to_disk(str(tmp_path / "saved"))
    expected = load_corpus(tmp_path / "c.jsonl")
    assert expected.doc_ids == ("x0", "x1", "x2") and expected.texts[2] == "text 2"
    for other in ("c.tsv", "saved"):
        got = load_corpus(tmp_path / other)
        assert (got.doc_ids, got.texts) == (expected.doc_ids, expected.texts)
    assert expected.row_of("x1") == 1 and expected.row_of("nope") is None
    assert expected.ids_with_text("text 0") == ["x0"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "text": "t"}', '{"id": "a", "text": "u"}'], "duplicate id 'a'"),
        (['{"id": "a", "text": "  "}'], "non-empty string"),
        (['{"text": "t"}'], r"missing field\(s\) \['id'\]"),
        (["{not json"], "line 1 is not valid JSON"),
    ],
)
def test_bad_corpus_files_name_the_row(tmp_path, lines, message):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


# ---- pure selection / staleness -----------------------------------------------------------------------------------


def test_selection_is_round_robin_then_oldest_first():
    versions = np.zeros(10, dtype=np.int64)
    assert select_refresh_rows(versions, cursor=0, count=3).tolist() == [0, 1, 2]
    assert select_refresh_rows(versions, cursor=8, count=3).tolist() == [8, 9, 0]
    versions[[0, 1, 2, 3]] = 5  # refreshed recently: the rest go first
    assert select_refresh_rows(versions, cursor=2, count=7).tolist() == [4, 5, 6, 7, 8, 9, 2]
    priority = np.zeros(10, dtype=bool)
    priority[[1, 7]] = True
    assert select_refresh_rows(versions, cursor=2, count=3, priority=priority).tolist() == [7, 1, 4]


def test_staleness_is_age_in_steps():
    assert staleness(np.array([0, 2, 4, 4]), step=5) == {"staleness_mean": 2.5, "staleness_max": 5.0}


# ---- refresh --------------------------------------------------------------------------------------------------------


def test_partial_refresh_equals_a_full_rebuild_on_the_refreshed_rows():
    index, pool = built(20)
    old = index.vectors()  # (20, 8)
    pool.weights = 3  # the policy moved
    report = index.refresh(pool, step=3, fraction=0.25)
    assert report.rows == 5 and report.fraction == 0.25
    fresh, _ = built(20, pool=pool)  # full rebuild with the new weights
    refreshed = np.flatnonzero(index.versions == 3)
    assert refreshed.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(index.vectors(refreshed), fresh.vectors(refreshed), atol=1e-6)
    untouched = np.flatnonzero(index.versions == 0)
    np.testing.assert_allclose(index.vectors(untouched), old[untouched], atol=1e-6)
    assert not np.allclose(index.vectors(refreshed), old[refreshed])
    # searching the refreshed index == brute force over the expected mixed matrix
    expected = old.copy()
    expected[refreshed] = fresh.vectors(refreshed)
    queries = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    scores, ids = index.search(queries, k=5)
    brute = np.argsort(-(queries @ expected.T), axis=1)[:, :5]
    assert ids == [[f"d{r}" for r in row] for row in brute]


def test_partial_refresh_with_the_tiny_model_matches_a_rebuild(tiny_model, tokenizer):
    pool = LocalEmbeddingPool(Embedder(tiny_model, tokenizer, RationaleTemplate("Explain.")), batch_size=4)
    index, _ = built(12, pool=pool)
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    index.refresh(pool, step=1, fraction=0.5)
    rebuilt, _ = built(12, pool=pool)
    rows = np.flatnonzero(index.versions == 1)
    assert len(rows) == 6
    np.testing.assert_allclose(index.vectors(rows), rebuilt.vectors(rows), atol=1e-5)


def test_every_row_is_refreshed_once_before_any_twice():
    index, pool = built(10)
    for step in range(1, 5):
        index.refresh(pool, step, fraction=0.3)  # 3 rows per refresh
    assert sorted(index.versions.tolist()) == [1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert index.refreshed.all()
    stats = index.stats(4)
    assert stats["staleness_max"] == 3.0 and stats["refreshed_frac"] == 0.3 and stats["refreshed_ever_frac"] == 1.0
    assert index.stats(5)["refreshed_frac"] == 0.0


def test_recent_policy_refreshes_gold_and_retrieved_documents_first():
    index, pool = built(10, IndexSettings(refresh_policy="recent", use_gpu=False))
    index.note_used(["d7", "d8", "unknown"])
    index.refresh(pool, step=1, fraction=0.3)
    assert np.flatnonzero(index.versions == 1).tolist() == [0, 7, 8]


def test_ids_survive_remove_and_readd():
    index, pool = built(20)
    for step in range(1, 4):
        pool.weights = step
        index.refresh(pool, step, fraction=0.4)
    assert index._master.ntotal == 20
    vectors = index.vectors()  # by id, after three remove + re-add rounds
    _, ids = index.search(vectors, k=1)
    assert [i[0] for i in ids] == [f"d{r}" for r in range(20)]
    expected = torch.stack([pool_vector(pool, index, r) for r in range(20)]).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def pool_vector(pool: VersionedPool, index: CorpusIndex, row: int) -> torch.Tensor:
    saved, pool.weights = pool.weights, int(index.versions[row])
    try:
        return pool.vector(index.corpus.texts[row])
    finally:
        pool.weights = saved


def test_searches_during_a_refresh_see_the_old_index_until_the_swap():
    index, pool = built(20)
    query = index.vectors([3])
    before = index.search(query, k=20)
    started, release = threading.Event(), threading.Event()

    class SlowPool(VersionedPool):
        def embed(self, requests, pooling="mean"):
            started.set()
            assert release.wait(10)
            return super().embed(requests, pooling)

    slow = SlowPool()
    slow.weights = 9
    worker = threading.Thread(target=index.refresh, args=(slow, 9, 0.5))
    worker.start()
    assert started.wait(10)
    during = []  # searched from another thread while the replacement vectors are being computed
    searcher = threading.Thread(target=lambda: during.extend(index.search(query, k=20)))
    searcher.start()
    searcher.join(10)
    finished_while_embedding = not searcher.is_alive()
    release.set()
    worker.join(10)
    after = index.search(query, k=20)
    assert finished_while_embedding  # a search does not wait for the embedding
    assert during[1] == before[1] and np.array_equal(during[0], before[0])
    assert after[1] != before[1]


def test_rationale_mode_embeds_documents_with_their_rationale():
    index, pool = built(4, IndexSettings(embed_mode="rationale", rationale_tokens=2, use_gpu=False))
    assert pool.generated == list(index.corpus.texts)
    np.testing.assert_allclose(index.vectors([0]), pool.vector(index.corpus.texts[0], (5, 6)).numpy()[None], atol=1e-6)


def test_ivf_index_refreshes_and_matches_flat_with_all_cells_probed():
    settings = IndexSettings(index_type="ivf", ivf_nlist=4, ivf_nprobe=4, use_gpu=False)
    ivf, pool = built(200, settings)
    flat, _ = built(200, pool=pool)
    pool.weights = 1
    ivf.refresh(pool, 1, 0.2)
    flat.refresh(pool, 1, 0.2)
    queries = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    assert ivf.search(queries, 10)[1] == flat.search(queries, 10)[1]


# ---- persistence / devices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_save_load_round_trip(tmp_path, index_type):
    settings = IndexSettings(index_type=index_type, ivf_nlist=2, refresh_policy="recent", use_gpu=False)
    index, pool = built(100, settings)
    pool.weights = 2
    index.refresh(pool, 2, 0.1)
    index.note_used(["d50"])
    index.save(tmp_path / "idx")
    index.refresh(pool, 3, 0.1)
    index.save(tmp_path / "idx")  # overwrite: one index file remains, no temp files
    names = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert len(names) == 2 and SIDECAR_NAME in names and not any(".tmp" in n for n in names)
    loaded = CorpusIndex.load(tmp_path / "idx")
    assert loaded.corpus == index.corpus and loaded.settings == index.settings
    assert loaded.versions.tolist() == index.versions.tolist() and loaded.cursor == index.cursor
    assert loaded.refreshed.tolist() == index.refreshed.tolist() and loaded._recent == index._recent
    np.testing.assert_array_equal(loaded.vectors(), index.vectors())
    queries = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    assert loaded.search(queries, 7)[1] == index.search(queries, 7)[1]


def test_load_rejects_a_directory_without_sidecar(tmp_path):
    with pytest.raises(FileNotFoundError, match="CorpusIndex.save"):
        CorpusIndex.load(tmp_path)


def test_gpu_failure_falls_back_to_cpu_and_logs(monkeypatch, caplog):
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)

    def broken_clone(*args):
        raise RuntimeError("no CUDA here")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", broken_clone, raising=False)
    with caplog.at_level(logging.WARNING, logger="rollout.corpus_index"):
        index, _ = built(10, IndexSettings(use_gpu=True))
    assert not index.on_gpu and "no CUDA here" in caplog.text
    assert index.search(index.vectors([4]), 1)[1] == [["d4"]]


def test_errors_name_the_fix():
    index = CorpusIndex(make_corpus(3), IndexSettings(use_gpu=False))
    with pytest.raises(RuntimeError, match="not built"):
        index.search(np.zeros((1, 8), np.float32), 1)
    index.build(VersionedPool(), show_progress_bar=False)
    with pytest.raises(ValueError, match="Query dim 4 != index dim 8"):
        index.search(np.zeros((1, 4), np.float32), 1)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        index.refresh(VersionedPool(), 1, 1.5)
    with pytest.raises(ValueError, match="refresh_policy"):
        IndexSettings(refresh_policy="newest")


def test_corpus_reader_accepts_beir_id_and_title(tmp_path):
    (tmp_path / "beir.jsonl").write_text(
        '{"_id": "d1", "title": "Cats", "text": "A cat sleeps."}\n{"_id": "d2", "title": "", "text": "Stocks."}\n'
    )
    corpus = load_corpus(tmp_path / "beir.jsonl")
    assert corpus.doc_ids == ("d1", "d2") and corpus.texts == ("Cats A cat sleeps.", "Stocks.")
    (tmp_path / "h.tsv").write_text("_id\ttitle\ttext\nd1\tCats\tA cat sleeps.\nd2\t\tStocks.\n")
    assert load_corpus(tmp_path / "h.tsv").texts == corpus.texts
