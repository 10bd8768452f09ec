"""Inference API: ``GraceEncoder.from_pretrained(...).encode(texts)`` writes a rationale per text and pools."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from grace_rl.errors import UserError
from grace_rl.models import load_model, load_tokenizer, require_safetensors, resolve_model_path
from grace_rl.prompts import DEFAULT_INSTRUCTION, RationaleTemplate
from grace_rl.run_files import atomic_write
from rollout.embedder import ENCODE_BATCH_SIZE, Embedder, EmbedRequest, generation_eos, rationale_end_ids

logger = logging.getLogger(__name__)

GRACE_META = "grace_config.json"

# How a text is embedded inside the chat template: `rationale` (GRACE: a generated rationale of the budget, 0 = the
# text alone) or `echo` (the text again in the rationale slot, no generation). A `grace_config.json` may also say
# `plain` (the text without any template: a sentence-transformers model, `grace_rl.contrastive`), which this class
# does not do.
EMBEDDINGS = ("rationale", "echo")


def echo_requests(embedder: Embedder, texts: Sequence[str]) -> list[EmbedRequest]:
    """Echo embeddings (Springer et al., 2024, "Repetition improves language model embeddings"): each text's rationale
    slot holds the text's own tokens again (as tokenised inside its prompt, after `max_text_tokens` fitting), so mean
    pooling over text + "rationale" gives every pooled echo token a view of the whole text. No generation."""
    requests = []
    for text in texts:
        prompt = embedder.prompt_tokens(text)
        requests.append(EmbedRequest(text, prompt.ids[prompt.start : prompt.end]))
    return requests


def save_grace_meta(
    output_dir: str | Path, instruction: str, pooling: str, max_rationale_tokens: int, **extra: object
) -> None:
    """Record how the model was trained to embed, so ``from_pretrained`` uses the same template and pooling.

    ``extra`` keys are written too (``None`` values are left out): ``embedding`` (see :data:`EMBEDDINGS`; ``plain``
    for a plain-text contrastive model), ``max_text_tokens``, and for a frozen-embedder run ``reward_embedder``
    (``frozen`` or a sentence-transformers model) and ``embedder_model`` (the frozen policy's starting model)."""
    meta = {"instruction": instruction, "pooling": pooling, "max_rationale_tokens": max_rationale_tokens}
    meta.update({k: v for k, v in extra.items() if v is not None})
    atomic_write(Path(output_dir, GRACE_META), json.dumps(meta, indent=2) + "\n")


def check_encode_options(
    max_rationale_tokens: int | None, num_rationales: int, temperature: float, batch_size: int
) -> None:
    """The numbers of :meth:`GraceEncoder.encode`: a budget >= 0 (`None` = the model's), >= 1 rationale, a finite
    temperature >= 0 (> 0 for several rationales), a batch size >= 1."""
    budget = max_rationale_tokens
    if budget is not None and not (isinstance(budget, int) and budget >= 0):
        raise UserError(f"max_rationale_tokens must be an integer >= 0 (0 = no rationale), got {budget!r}.")
    if num_rationales < 1:
        raise UserError(f"num_rationales must be >= 1, got {num_rationales}.")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise UserError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}.")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}.")
    if num_rationales > 1 and temperature <= 0:
        raise UserError("num_rationales > 1 needs temperature > 0 (greedy rationales would all be the same).")


class GraceEncoder:
    """Embeds texts as GRACE does: generate a rationale (greedy by default), then mean-pool text + rationale.

    Args:
        model: a causal LM (plain or peft).
        tokenizer: its tokenizer.
        instruction: the rationale instruction (system turn).
        pooling: default pooling mode.
        max_rationale_tokens: default rationale budget.
        max_text_tokens: input-text tokens kept (a longer text is cut at its end).
        frozen_embedder: an embedding pool that embeds text + rationale instead of the model itself (a frozen-embedder
            run: ``rollout.frozen``); the model then only writes the rationales.
        embedding: `rationale` (generate, the default) or `echo` (:func:`echo_requests`: the text repeated in the
            rationale slot, pooled the same way; no generation, so budgets, temperature and rationale counts do not
            apply; `pooling="rationale_only"` pools the repeat alone, as Springer et al. do).
    """

    def __init__(
        self,
        model,
        tokenizer,
        instruction: str = DEFAULT_INSTRUCTION,
        pooling: str = "mean",
        max_rationale_tokens: int = 32,
        max_text_tokens: int = 512,
        frozen_embedder=None,
        embedding: str = "rationale",
    ) -> None:
        if embedding not in EMBEDDINGS:
            raise UserError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}.")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_rationale_tokens = max_rationale_tokens
        self.instruction = instruction
        self.embedder = Embedder(model, tokenizer, RationaleTemplate(instruction), max_text_tokens=max_text_tokens)
        self.frozen_embedder = frozen_embedder
        self.embedding = embedding

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        trust_remote_code: bool = False,
        merge_lora: bool = True,
        instruction: str | None = None,
        embedding: str | None = None,
    ) -> GraceEncoder:
        """Load the default id, any local HF model directory, or a GRACE output directory (merged or LoRA adapter).

        ``instruction`` overrides the rationale instruction (default: the one the run trained with, from its
        ``grace_config.json``, else :data:`DEFAULT_INSTRUCTION`), e.g. to evaluate a base model under a trained
        run's prompt. ``embedding`` overrides the way texts are embedded (:data:`EMBEDDINGS`; default: the
        ``embedding`` of ``grace_config.json``, else ``rationale``)."""
        path = Path(name_or_path).expanduser()
        meta = {}
        if path.is_dir() and (path / GRACE_META).is_file():
            meta = json.loads((path / GRACE_META).read_text(encoding="utf-8"))
        embedding = embedding if embedding is not None else meta.get("embedding", "rationale")
        if embedding not in EMBEDDINGS:
            raise UserError(
                f"{path / GRACE_META} says embedding {embedding!r}: a plain-text sentence-transformers model "
                "(grace_rl.contrastive); load it with sentence_transformers.SentenceTransformer, or pass "
                f"embedding= one of {EMBEDDINGS} to embed it inside the chat template."
            )
        if path.is_dir() and (path / "adapter_config.json").is_file():
            from peft import PeftConfig, PeftModel

            require_safetensors(path, prefix="adapter_model")  # never unpickle an adapter_model.bin
            base_path = resolve_model_path(PeftConfig.from_pretrained(str(path)).base_model_name_or_path)
            model = PeftModel.from_pretrained(load_model(base_path, trust_remote_code=trust_remote_code), str(path))
            model = model.merge_and_unload() if merge_lora else model
            tokenizer = load_tokenizer(
                path if (path / "tokenizer_config.json").is_file() else base_path, trust_remote_code
            )
        else:
            resolved = resolve_model_path(name_or_path)
            model = load_model(resolved, trust_remote_code=trust_remote_code)
            tokenizer = load_tokenizer(resolved, trust_remote_code)
        model.eval()
        instruction = instruction if instruction is not None else meta.get("instruction", DEFAULT_INSTRUCTION)
        max_text_tokens = int(meta.get("max_text_tokens", 512))
        frozen = None
        if meta.get("reward_embedder"):
            ends = rationale_end_ids(tokenizer, generation_eos(model))
            frozen = _frozen_embedder(meta, tokenizer, instruction, ends, max_text_tokens, trust_remote_code)
        return cls(
            model,
            tokenizer,
            instruction=instruction,
            pooling=meta.get("pooling", "mean"),
            max_rationale_tokens=int(meta.get("max_rationale_tokens", 32)),
            max_text_tokens=max_text_tokens,
            frozen_embedder=frozen,
            embedding=embedding,
        )

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = ENCODE_BATCH_SIZE,
        max_rationale_tokens: int | None = None,
        num_rationales: int = 1,
        temperature: float = 0.0,
        pooling: str | None = None,
        normalize: bool = True,
        show_progress_bar: bool = True,
        return_rationales: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, list[list[str]]]:
        """Embed ``texts``: ``(N, H)`` float32 (normalised by default).

        Each text's rationale is written and pooled in one pass: the embedding comes from the hidden states computed
        while generating (:meth:`rollout.embedder.Embedder.encode`; texts batched by prompt length, input order
        kept). ``max_rationale_tokens=0`` pools the text alone; ``num_rationales > 1`` samples several rationales in
        the same ``generate`` call (at ``temperature``, which must then be > 0) and averages their embeddings.
        Greedy (``temperature=0``) is deterministic. With ``embedding="echo"`` no rationale is written: one forward
        pass pools the text and its repeat (:func:`echo_requests`); the budget and temperature are ignored.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        budget = self._check(max_rationale_tokens, num_rationales, temperature, batch_size)
        if self.frozen_embedder is not None:  # the policy writes, the frozen model embeds
            rationale_ids = self.embedder.generate_rationales(
                texts, budget, temperature, num_rationales, batch_size=batch_size, show_progress_bar=show_progress_bar
            )
            per_text = [t for t in texts for _ in range(num_rationales)]
            requests = [EmbedRequest(t, r) for t, r in zip(per_text, rationale_ids, strict=True)]
            emb = self.embed_requests(requests, pooling)  # (N * R, H), normalised
            return self._finish(emb, rationale_ids, len(texts), num_rationales, normalize, single, return_rationales)
        if self.embedding == "echo":
            return self._encode_echo(
                texts, batch_size, pooling, normalize, show_progress_bar, single, return_rationales
            )
        emb, rationale_ids = self.embedder.encode(
            texts,
            budget,
            temperature,
            num_rationales,
            pooling=pooling or self.pooling,
            batch_size=batch_size,
            normalize=normalize,
            show_progress_bar=show_progress_bar,
        )  # (N * R, H)
        return self._finish(emb, rationale_ids, len(texts), num_rationales, normalize, single, return_rationales)

    def encode_separate_pass(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 16,
        max_rationale_tokens: int | None = None,
        num_rationales: int = 1,
        temperature: float = 0.0,
        pooling: str | None = None,
        normalize: bool = True,
        show_progress_bar: bool = False,
        return_rationales: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, list[list[str]]]:
        """The reference :meth:`encode`: ``generate`` the rationales (in input order), then embed text + rationale in
        a second, separate forward pass. Same arguments and result; slower (kept for equivalence tests and
        ``bench/encode_speed.py``)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        budget = self._check(max_rationale_tokens, num_rationales, temperature, batch_size)
        if self.embedding == "echo":
            return self._encode_echo(
                texts, batch_size, pooling, normalize, show_progress_bar, single, return_rationales
            )
        rationale_ids = self.embedder.generate_rationales(
            texts, budget, temperature, num_rationales, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        per_text = [t for t in texts for _ in range(num_rationales)]
        requests = [EmbedRequest(t, r) for t, r in zip(per_text, rationale_ids, strict=True)]
        emb = self.embedder.embed(
            requests, pooling=pooling or self.pooling, batch_size=batch_size, normalize=normalize
        )  # (N * R, H)
        return self._finish(emb, rationale_ids, len(texts), num_rationales, normalize, single, return_rationales)

    def embed_requests(
        self,
        requests: Sequence[EmbedRequest],
        pooling: str | None = None,
        batch_size: int = 16,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Embed given (text, rationale ids) requests as this model does: a frozen-embedder run's frozen model
        (always L2-normalised), else the policy's own pooled states. ``(N, H)`` float32 on the CPU."""
        if self.frozen_embedder is not None:
            return self.frozen_embedder.embed(list(requests), pooling or self.pooling)
        return self.embedder.embed(
            requests, pooling=pooling or self.pooling, batch_size=batch_size, normalize=normalize
        )

    def _check(
        self, max_rationale_tokens: int | None, num_rationales: int, temperature: float, batch_size: int
    ) -> int:
        """The rationale budget to use; refuses settings that cannot work (see `check_encode_options`)."""
        budget = self.max_rationale_tokens if max_rationale_tokens is None else max_rationale_tokens
        check_encode_options(budget, num_rationales, temperature, batch_size)
        if self.embedding == "echo" and num_rationales != 1:
            raise UserError(f"Echo embeddings write no rationale: num_rationales must be 1, got {num_rationales}.")
        return budget

    def _encode_echo(
        self,
        texts: list[str],
        batch_size: int,
        pooling: str | None,
        normalize: bool,
        show_progress_bar: bool,
        single: bool,
        return_rationales: bool,
    ) -> np.ndarray | tuple[np.ndarray, list[list[str]]]:
        """One forward pass per batch over prompt + the text again (:func:`echo_requests`); no ``generate``."""
        requests = echo_requests(self.embedder, texts)
        emb = self.embedder.embed(
            requests,
            pooling=pooling or self.pooling,
            batch_size=batch_size,
            normalize=normalize,
            show_progress_bar=show_progress_bar,
        )  # (N, H)
        echoes = [r.rationale_ids for r in requests]
        return self._finish(emb, echoes, len(texts), 1, normalize, single, return_rationales)

    def _finish(
        self,
        emb: torch.Tensor,
        rationale_ids: list[tuple[int, ...]],
        n: int,
        num_rationales: int,
        normalize: bool,
        single: bool,
        return_rationales: bool,
    ) -> np.ndarray | tuple[np.ndarray, list[list[str]]]:
        """Average each text's ``num_rationales`` embeddings ``(N * R, H) -> (N, H)``; numpy; decoded rationales."""
        emb = emb.view(n, num_rationales, -1).mean(dim=1)  # (N, H)
        if normalize and num_rationales > 1:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        array = emb.numpy().astype(np.float32)
        if single:
            array = array[0]
        if return_rationales:
            decoded = [self.tokenizer.decode(list(r), skip_special_tokens=True) for r in rationale_ids]
            grouped = [decoded[i * num_rationales : (i + 1) * num_rationales] for i in range(n)]
            return array, grouped
        return array


def _frozen_embedder(
    meta: dict, tokenizer, instruction: str, ends: list[int], max_text_tokens: int, trust_remote_code: bool
):
    """The frozen embedder a frozen-embedder run trained against (its ``grace_config.json``): a sentence-transformers
    encoder, or the frozen starting policy (``embedder_model``) pooling text + rationale inside the template."""
    from rollout.frozen import FROZEN_POLICY, SentenceTransformerPool, frozen_policy_pool

    if meta["reward_embedder"] != FROZEN_POLICY:
        return SentenceTransformerPool(meta["reward_embedder"], tokenizer, ends)
    base = meta.get("embedder_model")
    if not base:
        raise UserError(
            f"{GRACE_META}: reward_embedder is 'frozen' but embedder_model (the starting model) is missing."
        )
    model = load_model(resolve_model_path(base), trust_remote_code=trust_remote_code)
    return frozen_policy_pool(model, tokenizer, RationaleTemplate(instruction), ends, max_text_tokens=max_text_tokens)
