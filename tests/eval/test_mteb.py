"""mteb 2.x wrapper: offline local tasks, scores equal to our own evaluators on the same embeddings."""

from __future__ import annotations

import json
import socket

import datasets
import huggingface_hub.constants
import mteb
import pytest
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta

from grace_rl.eval.mteb_model import GraceMtebModel, local_retrieval_task, local_sts_task
from grace_rl.eval.retrieval import evaluate_retrieval
from grace_rl.eval.sts import evaluate_sts

STS_ROWS = [
    (0.0, "A skier is jumping in the air over a snowfield.", "A woman is sitting near a flower bed."),
    (1.2, "A man is playing a flute.", "A man is eating a banana."),
    (2.4, "Two dogs play in the grass.", "Two dogs are running on a beach."),
    (3.0, "The cat sleeps on the sofa.", "A cat is lying on a couch."),
    (3.8, "A woman slices an onion.", "Someone is cutting an onion."),
    (4.4, "The stock market fell sharply.", "Stocks dropped steeply today."),
    (5.0, "A boy is riding a bike.", "A boy rides a bicycle."),
    (0.6, "It will rain tomorrow.", "The senate passed the bill."),
]


@pytest.fixture()
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 (env and the already-imported libraries' flags) and no socket may connect anywhere."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def refuse(self, address, *args, **kwargs):
        raise OSError(f"network access attempted during an offline test: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture()
def model(tiny_model_dir):
    return GraceMtebModel(str(tiny_model_dir), max_rationale_tokens=2)


def test_model_meta_is_set(model, tiny_model_dir):
    assert isinstance(model, AbsEncoder)
    meta = model.mteb_model_meta
    assert isinstance(meta, ModelMeta)
    assert meta.name == f"grace-rl/{tiny_model_dir.name}" and meta.embed_dim == 32
    assert meta.similarity_fn_name.value == "cosine"
    assert meta.experiment_kwargs["max_rationale_tokens"] == 2


def test_mteb_evaluate_local_sts_task_offline(model, tmp_path, offline):
    data = tmp_path / "sts.tsv"
    data.write_text("".join(f"main\tf\t2015\t{i}\t{s}\t{a}\t{b}\n" for i, (s, a, b) in enumerate(STS_ROWS)))
    task = local_sts_task(data, fmt="stsb", name="TinySTS")
    result = mteb.evaluate(model, [task], cache=None, show_progress_bar=False)
    assert not result.exceptions
    scores = result.task_results[0].scores["test"][0]
    ours = evaluate_sts(model.model, data, max_rationale_tokens=2, show_progress_bar=False)
    assert ours["n"] == len(STS_ROWS)
    assert 100 * scores["cosine_spearman"] == pytest.approx(ours["spearman"], abs=0.01)
    assert scores["main_score"] == scores["cosine_spearman"]


def test_mteb_evaluate_local_retrieval_task_offline(model, tmp_path, offline):
    docs = [b for _, _, b in STS_ROWS]
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(docs))
    )
    (tmp_path / "queries.tsv").write_text("".join(f"q{i}\t{a}\n" for i, (_, a, _) in enumerate(STS_ROWS)))
    (tmp_path / "qrels.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(len(STS_ROWS))))
    paths = (tmp_path / "corpus.jsonl", tmp_path / "queries.tsv", tmp_path / "qrels.tsv")
    result = mteb.evaluate(model, [local_retrieval_task(*paths)], cache=None, show_progress_bar=False)
    assert not result.exceptions
    scores = result.task_results[0].scores["test"][0]
    ours = evaluate_retrieval(model.model, *paths, max_rationale_tokens=2, show_progress_bar=False)
    assert 100 * scores["ndcg_at_10"] == pytest.approx(ours["ndcg@10"], abs=0.01)
    assert 100 * scores["mrr_at_10"] == pytest.approx(ours["mrr@10"], abs=0.01)
    assert scores["recall_at_100"] == 1.0 and ours["recall@100"] == 100.0
