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
from rollout.embedder import ENCODE_BATCH_SIZE, Embedder, EmbedRequest

logger = logging.getLogger(__name__)

GRACE_META = "grace_config.json"


def save_grace_meta(output_dir: str | Path, instruction: str, pooling: str, max_rationale_tokens: int) -> None:
    """Record how the model was trained to embed, so ``from_pretrained`` uses the same template and pooling."""
    meta = {"instruction": instruction, "pooling": pooling, "max_rationale_tokens": max_rationale_tokens}
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
    """

    def __init__(
        self,
        model,
        tokenizer,
        instruction: str = DEFAULT_INSTRUCTION,
        pooling: str = "mean",
        max_rationale_tokens: int = 32,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_rationale_tokens = max_rationale_tokens
        self.embedder = Embedder(model, tokenizer, RationaleTemplate(instruction))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        trust_remote_code: bool = False,
        merge_lora: bool = True,
        instruction: str | None = None,
    ) -> GraceEncoder:
        """Load the default id, any local HF model directory, or a GRACE output directory (merged or LoRA adapter).

        ``instruction`` overrides the rationale instruction (default: the one the run trained with, from its
        ``grace_config.json``, else :data:`DEFAULT_INSTRUCTION`), e.g. to evaluate a base model under a trained
        run's prompt."""
        path = Path(name_or_path).expanduser()
        meta = {}
        if path.is_dir() and (path / GRACE_META).is_file():
            meta = json.loads((path / GRACE_META).read_text(encoding="utf-8"))
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
        return cls(
            model,
            tokenizer,
            instruction=instruction if instruction is not None else meta.get("instruction", DEFAULT_INSTRUCTION),
            pooling=meta.get("pooling", "mean"),
            max_rationale_tokens=int(meta.get("max_rationale_tokens", 32)),
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
        Greedy (``temperature=0``) is deterministic.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        budget = self._check(max_rationale_tokens, num_rationales, temperature, batch_size)
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
        rationale_ids = self.embedder.generate_rationales(
            texts, budget, temperature, num_rationales, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        per_text = [t for t in texts for _ in range(num_rationales)]
        requests = [EmbedRequest(t, r) for t, r in zip(per_text, rationale_ids, strict=True)]
        emb = self.embedder.embed(
            requests, pooling=pooling or self.pooling, batch_size=batch_size, normalize=normalize
        )  # (N * R, H)
        return self._finish(emb, rationale_ids, len(texts), num_rationales, normalize, single, return_rationales)

    def _check(
        self, max_rationale_tokens: int | None, num_rationales: int, temperature: float, batch_size: int
    ) -> int:
        """The rationale budget to use; refuses settings that cannot work (see `check_encode_options`)."""
        budget = self.max_rationale_tokens if max_rationale_tokens is None else max_rationale_tokens
        check_encode_options(budget, num_rationales, temperature, batch_size)
        return budget

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
