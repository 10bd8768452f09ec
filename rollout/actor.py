"""The embedding worker: rebuilds the policy from a picklable spec and embeds with the weights it was last sent.

:class:`EmbeddingActor` is plain Python (unit-testable without Ray); :mod:`rollout.ray_pool` wraps it with
`ray.remote` where it creates actors.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rollout.embedder import Embedder, EmbedRequest, MessagesFn
from rollout.errors import UserError

logger = logging.getLogger(__name__)

NOT_SYNCED = -1  # the version of an actor that has not received weights yet (fresh or restarted)


@dataclass(frozen=True)
class ModelSpec:
    """Everything an actor needs to rebuild the trainer's model (weights arrive later through a sync).

    Args:
        model_path (`str`):
            local Hugging Face model directory the base weights load from.
        tokenizer (`Any`):
            the trainer's tokenizer (pickled as is).
        messages_fn (`MessagesFn`):
            the rationale template (text -> chat messages).
        dtype (`str`, *optional*, defaults to `"float32"`):
            parameter dtype name (`float32`, `bfloat16`, ...).
        peft_config (`Any`):
            the trainer's adapter config (LoRA) or `None` for full fine-tuning.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            passed to `from_pretrained`.
        max_length (`int`, *optional*, defaults to `512`):
            input-text tokens the embedder keeps (`Embedder.max_text_tokens`; the rationale is never cut).
    """

    model_path: str
    tokenizer: Any
    messages_fn: MessagesFn
    dtype: str = "float32"
    peft_config: Any = None
    trust_remote_code: bool = False
    max_length: int = 512

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        tokenizer: Any,
        messages_fn: MessagesFn,
        max_length: int = 512,
        trust_remote_code: bool = False,
    ) -> ModelSpec:
        """The spec of a trainer's (unwrapped, plain or peft) model loaded from a local directory."""
        from rollout.weight_sync import is_lora  # imports transformers' trainer stack: not at module import

        lora = is_lora(model)
        base = model.get_base_model() if lora else model
        path = str(getattr(base, "name_or_path", "") or "")
        if not (Path(path) / "config.json").is_file():
            raise UserError(
                f"The ray embedding backend rebuilds the model in each actor from a local directory, but the "
                f"trainer's model came from {path!r}, which is not one. Load the model from a local directory "
                "(save_pretrained first), or use embedding_backend: local."
            )
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        peft_config = copy.deepcopy(model.peft_config[model.active_adapter]) if lora else None
        return cls(path, tokenizer, messages_fn, dtype, peft_config, trust_remote_code, max_length)

    def build(self, device: str = "cpu") -> torch.nn.Module:
        """Load the base model (plus an untrained adapter of the same config) on `device`."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            self.model_path,
            dtype=getattr(torch, self.dtype),
            trust_remote_code=self.trust_remote_code,
            use_safetensors=True,
        )
        if self.peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, copy.deepcopy(self.peft_config))
        return model.to(device).eval()


class EmbeddingActor:
    """One embedding worker. Every result is returned with the weight version it was computed with.

    A fresh (or restarted) actor holds the base weights and version :data:`NOT_SYNCED` until
    :meth:`load_weights` is called; the pool checks the version of every result.

    Args:
        spec (`ModelSpec`):
            how to rebuild the model.
        device (`str`, *optional*, defaults to `"cpu"`):
            `cpu` or `cuda` (the pool passes `cuda` only when it reserved a GPU for the actor).
        batch_size (`int`, *optional*, defaults to `32`):
            sequences per forward pass.
        num_threads (`int`, *optional*):
            torch CPU threads (`None` = leave torch's default).
    """

    def __init__(
        self, spec: ModelSpec, device: str = "cpu", batch_size: int = 32, num_threads: int | None = None
    ) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.model = spec.build(device)
        self.embedder = Embedder(self.model, spec.tokenizer, spec.messages_fn, spec.max_length)
        self.batch_size = batch_size
        self.version = NOT_SYNCED
        logger.info("Embedding actor ready (pid %d, %s, %s)", os.getpid(), device, spec.model_path)

    def load_weights(self, weights: dict[str, torch.Tensor], version: int) -> int:
        """Load synced weights (adapters or full state dict) and adopt `version`."""
        from rollout.weight_sync import load_policy_weights

        load_policy_weights(self.model, weights)
        self.version = int(version)
        return self.version

    def get_version(self) -> int:
        return self.version

    def embed(self, requests: Sequence[EmbedRequest], pooling: str = "mean") -> tuple[torch.Tensor, int]:
        """`((N, H) embeddings in input order, weight version)`."""
        vectors = self.embedder.embed(requests, pooling=pooling, batch_size=self.batch_size)  # (N, H)
        return vectors, self.version

    def generate_rationales(
        self, texts: Sequence[str], max_new_tokens: int, temperature: float = 0.0
    ) -> tuple[list[tuple[int, ...]], int]:
        """`(one rationale per text, weight version)`."""
        ids = self.embedder.generate_rationales(texts, max_new_tokens, temperature, batch_size=self.batch_size)
        return ids, self.version
