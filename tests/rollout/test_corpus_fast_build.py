"""A corpus index built through a pool that writes and pools each document's rationale in one pass (``encode``) equals
one built by generating the rationales and then embedding them."""

from __future__ import annotations

import numpy as np
import torch

from grace_rl.prompts import RationaleTemplate
from rollout.captured_pool import CapturingPool
from rollout.corpus import Corpus
from rollout.corpus_index import CorpusIndex, IndexSettings
from rollout.embedder import Embedder
from rollout.pool import LocalEmbeddingPool


class TwoPassPool:
    """The same pool without ``encode``: rationales are generated, then embedded."""

    def __init__(self, pool: LocalEmbeddingPool) -> None:
        self.generate_rationales = pool.generate_rationales
        self.embed = pool.embed
        self.decode = pool.decode


def test_corpus_build_with_encode_equals_generate_then_embed(tiny_model, tokenizer):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in tiny_model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3)  # varied greedy rationales (the default init repeats one token)
    texts = [f"document number {i} about {'dogs ' * (i % 4)}on a beach" for i in range(11)]
    corpus = Corpus(tuple(f"d{i}" for i in range(11)), tuple(texts))
    settings = IndexSettings(use_gpu=False, embed_mode="rationale", rationale_tokens=5, chunk_size=4)
    pool = LocalEmbeddingPool(Embedder(tiny_model, tokenizer, RationaleTemplate("Explain.")), batch_size=3)
    calls = []
    original = pool.encode
    pool.encode = lambda *a, **k: calls.append(len(a[0])) or original(*a, **k)
    fast = CorpusIndex(corpus, settings).embed_rows(pool, range(11))
    slow = CorpusIndex(corpus, settings).embed_rows(TwoPassPool(pool), range(11))
    assert calls == [4, 4, 3]  # the one-pass path was taken, chunk by chunk
    assert fast.shape == (11, 32) and np.abs(fast - slow).max() < 1e-5


def test_the_trainers_capturing_pool_keeps_the_one_pass_path(tiny_model, tokenizer):
    """The trainer wraps its pool in a CapturingPool: corpus builds through it still write and pool in one pass."""
    pool = LocalEmbeddingPool(Embedder(tiny_model, tokenizer, RationaleTemplate("Explain.")))
    assert CapturingPool(pool).encode == pool.encode
    assert not hasattr(CapturingPool(TwoPassPool(pool)), "encode")  # e.g. the Ray pool: generate, then embed
