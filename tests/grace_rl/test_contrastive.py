"""The contrastive baseline (sentence-transformers + MNRL): the embedding it trains is the one it is evaluated by, its
loss is InfoNCE over in-batch positives and hard negatives at the scale, and a short run saves a loadable model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grace_rl.contrastive import (
    BaselineSettings,
    GraceTextEmbedding,
    contrastive_datasets,
    load_contrastive,
    mnrl_loss,
    train_baseline,
)
from grace_rl.encoder import GraceEncoder
from grace_rl.prompts import PARAPHRASE_INSTRUCTION

TEXTS = ["A man is playing a guitar.", "Two dogs run through the snow.", "Rain."]
ROWS = [
    {"query": "A cat sits on a mat.", "positive": "A cat is sitting on a mat.", "negatives": []},
    {"query": "A man rides a horse.", "positive": "A person rides a horse.", "negatives": []},
    {"query": "Kids play football.", "positive": "Children are playing soccer.", "negatives": []},
    {"query": "A woman slices onions.", "positive": "Onions are cut by a woman.", "negatives": ["A woman eats."]},
    {"query": "The dog barks loudly.", "positive": "A dog is barking.", "negatives": ["The dog sleeps."]},
]


def _model(tiny_model, tokenizer, mode):
    from sentence_transformers import SentenceTransformer

    module = GraceTextEmbedding(tiny_model, tokenizer, mode=mode, instruction=PARAPHRASE_INSTRUCTION)
    return SentenceTransformer(modules=[module], device="cpu")


def _encode(model, texts) -> np.ndarray:
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


def test_the_trained_embedding_is_the_one_grace_evaluates(tiny_model, tokenizer):
    """`template` = GraceEncoder at budget 0, `echo` = GraceEncoder's echo, `plain` = the mean of the plain tokens."""
    grace = GraceEncoder(tiny_model, tokenizer, instruction=PARAPHRASE_INSTRUCTION)
    alone = grace.encode(TEXTS, max_rationale_tokens=0, show_progress_bar=False)
    np.testing.assert_allclose(_encode(_model(tiny_model, tokenizer, "template"), TEXTS), alone, atol=1e-5)
    grace.embedding = "echo"
    echo = grace.encode(TEXTS, show_progress_bar=False)
    np.testing.assert_allclose(_encode(_model(tiny_model, tokenizer, "echo"), TEXTS), echo, atol=1e-5)
    ids = tokenizer(TEXTS[1], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = tiny_model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]  # (T, H)
    plain = torch.nn.functional.normalize(hidden.mean(dim=0), dim=-1).numpy()
    np.testing.assert_allclose(_encode(_model(tiny_model, tokenizer, "plain"), TEXTS)[1], plain, atol=1e-5)


def _hand_infonce(anchors: np.ndarray, candidates: np.ndarray, scale: float) -> float:
    """Mean over anchors i of -log softmax(scale * cos(a_i, candidates))[i]: candidate i is a_i's positive."""
    logits = scale * anchors @ candidates.T  # (B, C), rows already unit norm
    logits -= logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.mean([log_softmax[i, i] for i in range(len(anchors))]))


@pytest.mark.parametrize("mode", ["plain", "template"])
def test_loss_on_two_tiny_batches_equals_infonce_by_hand(tiny_model, tokenizer, mode):
    """Batch 1: three pairs (in-batch negatives only); batch 2: two rows with a hard negative each (candidates: both
    positives, then both hard negatives)."""
    model = _model(tiny_model, tokenizer, mode)
    loss_fn = mnrl_loss(model, scale=10.0)  # not the library default (20): the scale must reach the loss
    datasets = contrastive_datasets(ROWS)
    assert {name: ds.column_names for name, ds in datasets.items()} == {
        "pairs": ["anchor", "positive"],
        "negatives_1": ["anchor", "positive", "negative_1"],
    }
    for name in ("pairs", "negatives_1"):
        batch = datasets[name][:]  # every row of the dataset: one batch
        columns = [batch[c] for c in datasets[name].column_names]
        features = [model.preprocess(col) for col in columns]
        with torch.no_grad():
            loss = float(loss_fn(features, labels=None))
        emb = [_encode(model, col) for col in columns]  # each (B, H)
        expected = _hand_infonce(emb[0], np.concatenate(emb[1:]), scale=10.0)
        assert abs(loss - expected) < 1e-5, (name, loss, expected)
        assert abs(_hand_infonce(emb[0], np.concatenate(emb[1:]), scale=20.0) - loss) > 1e-3
        if len(emb) > 2:  # the hard negatives are candidates
            assert abs(_hand_infonce(emb[0], emb[1], scale=10.0) - loss) > 1e-4


def test_a_short_run_changes_the_weights_and_saves_a_loadable_model(tiny_model_dir, tmp_path, tokenizer):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 2))
    out = tmp_path / "baseline"
    settings = BaselineSettings(
        output_dir=str(out),
        model=str(tiny_model_dir),
        data=str(rows),
        embedding="template",
        max_steps=3,
        batch_size=2,
        learning_rate=1e-3,
    )
    summary = train_baseline(settings)
    assert summary["steps"] == 3 and summary["datasets"] == {"pairs": 6, "negatives_1": 4}
    assert len(summary["losses"]) == 3 and all(np.isfinite(summary["losses"]))
    meta = json.loads((out / "grace_config.json").read_text())
    assert meta == {
        "instruction": PARAPHRASE_INSTRUCTION,
        "pooling": "mean",
        "max_rationale_tokens": 0,
        "embedding": "rationale",
    }
    trained = load_contrastive(out)
    base = GraceEncoder.from_pretrained(str(tiny_model_dir), instruction=PARAPHRASE_INSTRUCTION)
    before = base.encode(TEXTS, max_rationale_tokens=0, show_progress_bar=False)
    after = _encode(trained, TEXTS)
    assert not np.allclose(after, before, atol=1e-4)  # the weights moved
    # the saved root is a causal-LM directory: GRACE's encoder reads the same weights, template and budget
    grace = GraceEncoder.from_pretrained(str(out))
    np.testing.assert_allclose(grace.encode(TEXTS, show_progress_bar=False), after, atol=1e-5)


def test_a_wall_clock_budget_stops_the_run(tiny_model_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    settings = BaselineSettings(
        output_dir=str(tmp_path / "b"),
        model=str(tiny_model_dir),
        data=str(rows),
        max_steps=1000,
        max_seconds=1e-6,
        batch_size=2,
    )
    summary = train_baseline(settings)
    assert summary["steps"] == 1  # checked after each step
    assert json.loads((tmp_path / "b" / "grace_config.json").read_text())["embedding"] == "plain"
    with pytest.raises(ValueError, match="embedding must be one of"):
        BaselineSettings(output_dir="x", embedding="mean")
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:1] * 4))  # one distinct row: no batch of 2
    with pytest.raises(ValueError, match="trained no step"):
        train_baseline(BaselineSettings(output_dir=str(tmp_path / "c"), model=str(tiny_model_dir), data=str(rows)))
