"""The protocol on the ablation ladder's models: a sentence-transformers baseline directory and echo embeddings are
model specs; neither writes a rationale, so each is encoded once and stands at every budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grace_rl.cli import main as cli_main
from grace_rl.eval import devsets
from grace_rl.eval.protocol import model_specs
from grace_rl.eval.stats import spearman
from grace_rl.prompts import PARAPHRASE_INSTRUCTION


@pytest.fixture()
def plain_baseline(tmp_path, tiny_model_dir):
    """An (untrained) `grace-rl baseline` directory in plain mode: the tiny model on the text alone."""
    from sentence_transformers import SentenceTransformer

    from grace_rl.contrastive import GraceTextEmbedding
    from grace_rl.encoder import save_grace_meta
    from grace_rl.models import load_model, load_tokenizer

    out = tmp_path / "baseline_plain"
    module = GraceTextEmbedding(load_model(tiny_model_dir), load_tokenizer(tiny_model_dir), mode="plain")
    SentenceTransformer(modules=[module], device="cpu").save(str(out))
    save_grace_meta(out, PARAPHRASE_INSTRUCTION, "mean", 0, embedding="plain")
    return out


def _cosines(emb: np.ndarray, pairs) -> np.ndarray:
    """Cosine per pair; `emb` holds the pairs' distinct texts in first-occurrence order (a's, then b's)."""
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    index = {t: i for i, t in enumerate(dict.fromkeys([p.a for p in pairs] + [p.b for p in pairs]))}
    return np.array([emb[index[p.a]] @ emb[index[p.b]] for p in pairs])


def test_protocol_evaluates_a_baseline_directory_and_base_echo(
    tmp_path, tiny_model_dir, plain_baseline, monkeypatch, capsys
):
    from grace_rl.contrastive import load_contrastive
    from grace_rl.encoder import GraceEncoder

    monkeypatch.delenv(devsets.SHARED_ENV, raising=False)
    monkeypatch.setattr(devsets, "DEFAULT_SHARED", tmp_path / "absent")  # use the shipped samples
    prefix = tmp_path / "proto"
    argv = ["eval", "protocol", "--base", str(tiny_model_dir), "--trained", str(plain_baseline), "--base-echo"]
    argv += ["--budgets", "0,2", "--limit", "12", "--bootstrap", "50", "--no-cache", "--out", str(prefix)]
    argv += ["--datasets", "stsb-dev"]
    assert cli_main(argv) == 0
    results = json.loads(prefix.with_suffix(".json").read_text())
    models = {m["label"]: m for m in results["models"]}
    assert list(models) == ["base", "base+prompt", "base+echo", "base+prompt+echo", "baseline_plain"]
    assert [m.get("embedding", "rationale") for m in models.values()] == [
        "rationale",
        "rationale",
        "echo",
        "echo",
        "plain",
    ]
    assert models["baseline_plain"]["role"] == "trained" and models["baseline_plain"]["training_budget"] == 0
    (stsb,) = devsets.load_dev_sets(["stsb-dev"], limit=12)
    gold = stsb.gold()
    texts = list(dict.fromkeys([p.a for p in stsb.pairs] + [p.b for p in stsb.pairs]))
    expected = {
        "baseline_plain": load_contrastive(plain_baseline).encode(texts, convert_to_numpy=True),
        "base+prompt+echo": GraceEncoder.from_pretrained(
            str(tiny_model_dir), instruction=PARAPHRASE_INSTRUCTION, embedding="echo"
        ).encode(texts, show_progress_bar=False),
    }
    for label, emb in expected.items():
        points = models[label]["results"]["stsb-dev"]["points"]
        assert [p["budget"] for p in points] == [0, 2]
        assert len({p["spearman"] for p in points}) == 1  # the same at every budget
        assert all(p["mean_rationale_tokens"] == 0 for p in points)
        assert points[0]["spearman"] == pytest.approx(spearman(_cosines(emb, stsb.pairs), gold), abs=0.011)
    (headline,) = results["headlines"]
    assert headline["model"] == "baseline_plain" and headline["training_budget"] == 0
    bases = [m for m in models.values() if m["role"] == "base"]
    bar = max(p["spearman"] for m in bases for p in m["results"]["stsb-dev"]["points"])
    assert headline["base_spearman"] == pytest.approx(bar, abs=0.011)  # the echo variants are in the bar


def test_a_sentence_transformers_directory_without_grace_config_is_a_plain_model_at_budget_0(tmp_path):
    st = tmp_path / "st_model"
    st.mkdir()
    (st / "modules.json").write_text("[]")
    (spec_base, spec_st) = model_specs("base-model", [st])
    assert (spec_st.role, spec_st.training_budget, spec_st.embedding) == ("trained", 0, "plain")
    run = tmp_path / "run"
    run.mkdir()
    (run / "grace_config.json").write_text(json.dumps({"max_rationale_tokens": 8, "embedding": "mean"}))
    with pytest.raises(ValueError, match="embedding must be one of"):
        model_specs("base-model", [run])
