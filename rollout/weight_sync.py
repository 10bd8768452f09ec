"""Policy-weight sync from the trainer to an embedding pool.

What travels: with LoRA only the adapter weights (`peft.get_peft_model_state_dict`: a few MB), with full
fine-tuning the whole state dict. The pool puts it once into its transport (Ray's object store) and every actor
loads it. A version number (the trainer's optimizer step) goes with it; every embedding carries the version of the
weights it was computed with, so the reward can refuse stale ones.

Multi-process trainers: rank 0 owns the pool and sends; under DeepSpeed ZeRO-3 the parameters are partitioned, so
every rank joins the gather (the callback runs on every rank and only rank 0 talks to the pool).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import torch
from transformers import TrainerCallback

from rollout.distributed import gathered_parameters

logger = logging.getLogger(__name__)


def is_lora(model: torch.nn.Module) -> bool:
    """Whether `model` is peft-wrapped (then only its adapter weights are synced)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _zero3_enabled() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def _storage_key(t: torch.Tensor) -> tuple[int, int, tuple[int, ...]]:
    return t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)


def policy_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of what the pool needs: LoRA adapter weights, or the full state dict for full fine-tuning.

    Tied tensors (e.g. `lm_head.weight` = the input embeddings) travel once, under their first name.
    """
    lora = is_lora(model)
    params = [p for p in model.parameters() if p.requires_grad] if lora else list(model.parameters())
    with gathered_parameters(params):  # ZeRO-3: every rank joins the gather
        if lora:
            from peft import get_peft_model_state_dict

            state = get_peft_model_state_dict(model)
        else:
            state = model.state_dict()
        out, seen = {}, set()
        for name, t in state.items():
            if _storage_key(t) not in seen:
                seen.add(_storage_key(t))
                out[name] = t.detach().to("cpu", copy=True).contiguous()
        return out


def load_policy_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load what :func:`policy_weights` produced into a model built the same way (LoRA or plain)."""
    if is_lora(model):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, weights)
        unexpected = list(getattr(result, "unexpected_keys", []))
        if unexpected:
            raise ValueError(
                f"Adapter weights {unexpected[:5]} do not exist in the actor's model: the trainer's peft config "
                "and the actor's differ (rebuild the pool from the trainer's model)."
            )
        return
    if any(name.endswith(("lora_A.weight", "lora_B.weight")) for name in weights):
        raise ValueError("Got LoRA adapter weights but the actor's model has no adapter: its spec lacks peft_config.")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    own = model.state_dict()
    loaded = {_storage_key(own[name]) for name in weights}
    untied = [name for name in missing if _storage_key(own[name]) not in loaded]  # tied ones were loaded via alias
    if unexpected or untied:
        raise ValueError(
            f"Full weights do not match the actor's model: missing {untied[:5]}, unexpected {list(unexpected)[:5]}. "
            "The trainer's and the actor's architectures differ (rebuild the pool from the trainer's model)."
        )


class WeightReceiver(Protocol):
    """A pool that holds its own copy of the policy (the Ray pool)."""

    def sync_weights(self, weights: dict[str, torch.Tensor], version: int) -> None: ...


class WeightSyncCallback(TrainerCallback):
    """Sends the policy's weights to `pool` when training starts and after every `every`-th optimizer step.

    Add it before any callback that embeds at those events (the corpus index refresh). Runs on every rank (ZeRO-3
    needs all ranks for the gather); only the rank holding `pool` sends.

    Args:
        pool (`WeightReceiver`, *optional*):
            the receiving pool on the rank that owns it, `None` on the other ranks.
        get_model (`Callable[[], torch.nn.Module]`):
            returns the unwrapped (peft or plain) policy model.
        every (`int`, *optional*, defaults to `1`):
            sync period in optimizer steps (1 = after every step).
        collective (`bool`, *optional*):
            whether extracting the weights needs every rank (DeepSpeed ZeRO-3); default: detect.
    """

    def __init__(
        self,
        pool: WeightReceiver | None,
        get_model: Callable[[], torch.nn.Module],
        every: int = 1,
        collective: bool | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"weight sync period must be >= 1 optimizer step, got {every}.")
        self.pool = pool
        self.get_model = get_model
        self.every = every
        self.collective = _zero3_enabled() if collective is None else collective
        self.synced_version: int | None = None

    def sync(self, version: int) -> None:
        """Push the current weights as `version` (on every rank when the gather is collective)."""
        if self.pool is not None or self.collective:
            weights = policy_weights(self.get_model())
            if self.pool is not None:
                self.pool.sync_weights(weights, version)
                logger.debug("Synced %d weight tensors to the embedding pool (version %d)", len(weights), version)
        self.synced_version = version

    def ensure_synced(self, version: int) -> None:
        """Sync once if nothing was sent yet (before the first generation batch, after a checkpoint resume)."""
        if self.synced_version is None:
            self.sync(version)

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        self.sync(state.global_step)  # after a checkpoint's weights are restored, before anything embeds
        return control

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if state.global_step % self.every == 0:
            self.sync(state.global_step)
        return control
