"""Work done once per multi-process run: on the main process only, on its accelerator, while the other ranks wait.

Evaluation (STS before / after training) greedily writes a rationale for every text: with 8 ranks it would be done
8 times, and before training on the CPU (the model is loaded without a device). :func:`run_on_main_process` runs it
once, on rank 0's device; under DeepSpeed ZeRO-3 every rank first joins the parameter gather (collective), so rank 0
sees full weights. The result is broadcast, so every rank returns the same summary.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from rollout.distributed import gathered_parameters, zero3_partitioned
from rollout.generate_patch import patched_generate

logger = logging.getLogger(__name__)

T = TypeVar("T")


def init_deepspeed_comm(args: Any) -> None:
    """Register the running process group with DeepSpeed's communication layer (several processes, `deepspeed` set).

    On the CPU accelerate starts `torch.distributed` (gloo) itself and never initialises `deepspeed.comm`, so
    `deepspeed.zero.Init` (ZeRO-3 model loading) would take the world for 1 process and stop with "train_batch_size
    is not equal to micro_batch_per_gpu * gradient_acc_step * world_size". On GPUs accelerate has already done it
    (then this is a no-op).
    """
    if not getattr(args, "deepspeed", None) or args.world_size <= 1:
        return
    import deepspeed.comm

    if not deepspeed.comm.is_initialized():
        deepspeed.comm.init_distributed(dist_backend="gloo" if args.use_cpu else None)


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


@contextlib.contextmanager
def solo_generation(model: torch.nn.Module) -> Iterator[None]:
    """`model.generate` without `synced_gpus` for the duration: under ZeRO-3 HF generate otherwise waits for every
    rank at each decoding step, and the other ranks are waiting for the main process (a deadlock)."""
    with patched_generate(model, lambda generate: functools.partial(generate, synced_gpus=False)):
        yield


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
            with solo_generation(model) if state.num_processes > 1 else contextlib.nullcontext():
                result[0] = fn(model)
        if state.num_processes > 1:
            state.wait_for_everyone()
    if state.num_processes > 1:
        broadcast_object_list(result, from_process=0)
    return result[0]
