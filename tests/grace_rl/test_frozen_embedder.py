"""Frozen-embedder mode (`reward_embedder`): the reward embeds with a model that never trains, so only the policy's
rationales change; the corpus index is built once and never refreshed; the trained run encodes with the same frozen
model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from grace_rl.config import GraceConfig
from grace_rl.data import build_dataset, load_supervised
from grace_rl.encoder import GraceEncoder
from grace_rl.prompts import RationaleTemplate
from grace_rl.train import main, parse_args
from grace_rl.trainer import GraceTrainer, build_reward
from rollout.corpus_index import CorpusIndex
from rollout.embedder import EmbedRequest
from rollout.frozen import SentenceTransformerPool, join_rationale, resolve_sentence_transformer
from tests.recipes import write_recipe

MINILM = "all-minilm-l6-v2"


def dcg_files(tmp_path: Path, rows: Path) -> tuple[Path, Path]:
    """Corpus = the rows' positives and negatives; rows with `positive_ids` into it."""
    records = [json.loads(line) for line in rows.read_text().splitlines()]
    texts = list(dict.fromkeys(t for r in records for t in [r["positive"], *r["negatives"]]))
    ids = {t: f"doc-{i}" for i, t in enumerate(texts)}
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": ids[t], "text": t}) + "\n" for t in texts))
    out = tmp_path / "dcg_rows.jsonl"
    out.write_text("".join(json.dumps({**r, "positive_ids": [ids[r["positive"]]]}) + "\n" for r in records))
    return corpus, out


def frozen_args(tmp_path: Path, model_dir: Path, corpus: Path, embedder: str, **kw) -> GraceConfig:
    settings = dict(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        max_steps=2,
        per_device_train_batch_size=6,
        num_generations=3,
        max_completion_length=5,
        learning_rate=1e-2,
        loss_type="dr_grpo",
        scale_rewards="none",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        reward_terms=["dcg", "contrastive"],
        term_weights=[1.0, 0.5],
        anchor_mode="plain",
        corpus_path=str(corpus),
        dcg_k=3,
        search_depth=5,
        reward_embedder=embedder,
        embedding_batch_size=8,
        rationale_log=False,
    )
    settings.update(kw)
    return GraceConfig(**settings)


def train_frozen(tmp_path, model_dir, tokenizer, demo_rows, embedder):
    corpus, rows = dcg_files(tmp_path, demo_rows)
    args = frozen_args(tmp_path, model_dir, corpus, embedder)
    trainer = GraceTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_dir)),
        args=args,
        processing_class=tokenizer,
        grace_reward=build_reward(args, tokenizer),
        train_dataset=build_dataset(load_supervised(rows), RationaleTemplate(args.instruction)),
    )
    return trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> int:
    return sum(not torch.equal(before[k], v) for k, v in module.state_dict().items())


class CountingIndex(CorpusIndex):
    """Counts builds and refreshes."""

    builds = 0
    refreshes = 0

    def build(self, *a, **kw):
        type(self).builds += 1
        return super().build(*a, **kw)

    def refresh(self, *a, **kw):
        type(self).refreshes += 1
        return super().refresh(*a, **kw)


@pytest.mark.parametrize("embedder", ["frozen", MINILM])
def test_frozen_embedder_never_changes_while_the_policy_trains(
    tmp_path, tiny_model_dir, tokenizer, demo_rows, embedder
):
    trainer = train_frozen(tmp_path, tiny_model_dir, tokenizer, demo_rows, embedder)
    pool = trainer.embedding_pool.pool
    frozen_module = pool.embedder.model if embedder == "frozen" else pool.model
    assert frozen_module is not trainer.model
    frozen_before, policy_before = snapshot(frozen_module), snapshot(trainer.model)
    probe = [EmbedRequest("A man is playing a guitar.", (11, 12, 13))]
    emb_before = pool.embed(probe)
    CountingIndex.builds = CountingIndex.refreshes = 0
    index = CountingIndex(trainer.corpus_index.corpus, trainer.corpus_index.settings)
    trainer.use_corpus_index(index)
    trainer.train()
    assert trainer.state.global_step == 2
    assert changed(policy_before, trainer.model) > 0  # the policy trained
    assert changed(frozen_before, frozen_module) == 0  # the embedder did not
    assert torch.equal(pool.embed(probe), emb_before)
    assert CountingIndex.builds == 1 and CountingIndex.refreshes == 0  # built once, never refreshed
    assert (index.versions == 0).all()


def test_minilm_pool_embeds_text_plus_decoded_rationale(tokenizer):
    pool = SentenceTransformerPool(MINILM, tokenizer, end_token_ids=[tokenizer.eos_token_id])
    ids = tuple(tokenizer("cells divide quickly", add_special_tokens=False)["input_ids"])
    got = pool.embed([EmbedRequest("Cancer grows.", ids + (tokenizer.eos_token_id, 99))])
    want = pool.embed_texts([join_rationale("Cancer grows.", "cells divide quickly")])
    assert got.shape == (1, 384)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(pool.embed([EmbedRequest("Cancer grows.")]), pool.embed_texts(["Cancer grows."]))
    with pytest.raises(RuntimeError, match="plain text"):
        pool.generate_rationales(["x"], 4)


def test_a_frozen_run_encodes_with_its_frozen_embedder(tmp_path, tiny_model_dir, demo_rows):
    corpus, rows = dcg_files(tmp_path, demo_rows)
    argv = write_recipe(
        tmp_path,
        tiny_model_dir,
        rows,
        max_steps=1,
        reward_terms=["dcg"],
        term_weights=[1.0],
        anchor_mode="plain",
        corpus_path=str(corpus),
        dcg_k=3,
        search_depth=5,
        reward_embedder=MINILM,
        eval_sts_path=None,
    )
    main(*parse_args(argv))
    run = tmp_path / "run"
    meta = json.loads((run / "grace_config.json").read_text())
    assert meta["reward_embedder"] == MINILM
    enc = GraceEncoder.from_pretrained(str(run))
    emb, rationales = enc.encode(["Cancer grows."], max_rationale_tokens=4, return_rationales=True)
    pool = SentenceTransformerPool(MINILM, enc.tokenizer)
    want = pool.embed_texts([join_rationale("Cancer grows.", rationales[0][0])]).numpy()
    assert emb.shape == (1, 384)
    assert abs(emb - want).max() < 1e-5


def test_a_frozen_copy_run_finds_its_start_from_any_directory(tmp_path, tiny_model_dir, demo_rows, monkeypatch):
    """A frozen-copy run started from a relative model path (e.g. a stage-1 run, configs/experiments/emb_then_rl.yaml)
    records it as an absolute path, so encode() works from another working directory."""
    work = tmp_path / "work"
    shutil.copytree(tiny_model_dir, work / "start")
    monkeypatch.chdir(work)
    argv = write_recipe(
        tmp_path,
        Path("start"),
        demo_rows,
        max_steps=1,
        use_peft=False,
        reward_embedder="frozen",
        anchor_mode="plain",
        eval_sts_path=None,
    )
    main(*parse_args(argv))
    meta = json.loads((tmp_path / "run" / "grace_config.json").read_text())
    assert meta["reward_embedder"] == "frozen"
    assert meta["embedder_model"] == str((work / "start").resolve())
    monkeypatch.chdir(tmp_path)  # "start" no longer resolves from here
    emb = GraceEncoder.from_pretrained(str(tmp_path / "run")).encode(["Cancer grows."], max_rationale_tokens=4)
    assert emb.shape[0] == 1 and np.isfinite(emb).all()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"embedding_loss_weight": 1.0}, "embedding_loss_weight"),
        ({"anchor_mode": "rationale"}, "anchor_mode"),
        ({"corpus_anchor_mode": "rationale"}, "corpus_anchor_mode"),
        ({"embedding_backend": "ray"}, "embedding_backend"),
    ],
)
def test_frozen_mode_refuses_settings_that_need_a_live_embedder(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        frozen_args(tmp_path, tmp_path, Path("data/demo_corpus.jsonl"), "frozen", **kw)


def test_reward_embedder_values(tmp_path):
    assert frozen_args(tmp_path, tmp_path, Path("data/demo_corpus.jsonl"), "policy").reward_embedder is None
    assert frozen_args(tmp_path, tmp_path, Path("data/demo_corpus.jsonl"), "FROZEN").reward_embedder == "frozen"
    with pytest.raises(ValueError, match="neither 'frozen'"):
        frozen_args(tmp_path, tmp_path, Path("data/demo_corpus.jsonl"), str(tmp_path))
    assert (resolve_sentence_transformer(MINILM) / "modules.json").is_file()
