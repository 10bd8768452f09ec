"""Work done once per multi-process run: on the main process only, on its accelerator, while the other ranks wait.

Evaluation (STS before / after training) greedily writes a rationale for every text: with 8 ranks it would be done
8 times, and before training on the CPU (the model is loaded without a device). :func:`run_on_main_process` runs it
once, on rank 0's device; under DeepSpeed ZeRO-3 every rank first joins the parameter gather (collective), so rank 0
sees full weights. The result is broadcast, so every rank returns the same summary.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from rollout.distributed import gathered_parameters, zero3_partitioned

logger = logging.getLogger(__name__)

T = TypeVar("T")


def full_weights(model: torch.nn.Module, trainer: Any = None) -> contextlib.AbstractContextManager[Any]:
    """A context in which `model` has its full parameters on every rank (collective under ZeRO-3).

    Before training `model` is the loaded model (ZeRO-3 partitions it at load): its parameters are gathered. After
    training pass the `trainer`: TRL's `unwrap_model_for_generation` also takes ZeRO-3's per-layer hooks off the
    engine, so a forward pass on the main process alone does not wait for the other ranks.
    """
    if trainer is not None and zero3_partitioned(model.parameters()):
        from trl.models.utils import unwrap_model_for_generation

        return unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator, gather_deepspeed3_params=True)
    return gathered_parameters(model.parameters())


def run_on_main_process(model: torch.nn.Module, fn: Callable[[torch.nn.Module], T], trainer: Any = None) -> T:
    """`fn(model)` on the main process, on its accelerator; the other ranks wait and get the same result.

    Args:
        model (`torch.nn.Module`):
            The model `fn` evaluates (moved to the main process's device unless ZeRO-3 placed it).
        fn (`Callable[[torch.nn.Module], T]`):
            The work; its result must be picklable (it is broadcast to the other ranks).
        trainer (`GraceTrainer`, *optional*):
            After training: the trainer that holds `model` (see :func:`full_weights`).

    Returns:
        `fn`'s result, on every rank.
    """
    state = PartialState()
    result: list[Any] = [None]
    with full_weights(model, trainer):
        if state.is_main_process:
            if not zero3_partitioned(model.parameters()) and state.device.type != "cpu":
                model.to(state.device)  # evaluate on the accelerator, not where the model was loaded
            result[0] = fn(model)
        if state.num_processes > 1:
            state.wait_for_everyone()
    if state.num_processes > 1:
        broadcast_object_list(result, from_process=0)
    return result[0]
