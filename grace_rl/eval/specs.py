"""What an evaluation compares and how it runs: :class:`ModelSpec` (a model in the comparison) and
:class:`ProtocolSettings` (budgets, bootstrap, batch size, cache), shared by the greedy and the sampled sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_BUDGETS = (0, 8, 16, 32, 64)


@dataclass(frozen=True)
class ProtocolSettings:
    """How the protocol runs.

    Args:
        budgets (`tuple[int, ...]`, *optional*, defaults to `(0, 8, 16, 32, 64)`):
            rationale budgets every model is evaluated at (a trained model's training budget is added).
        n_boot (`int`, *optional*, defaults to `1000`):
            bootstrap resamples per interval.
        seed (`int`, *optional*, defaults to `0`):
            bootstrap seed (the same resamples for every interval of a dev set).
        level (`float`, *optional*, defaults to `0.95`):
            interval coverage.
        batch_size (`int`, *optional*, defaults to `32`):
            encoding batch size.
        cache_dir (`Path`, *optional*, defaults to `None`):
            where sweeps are cached as JSON (`None`: no cache).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            passed to the model loader.
        show_progress_bar (`bool`, *optional*, defaults to `True`):
            progress bars while encoding.
    """

    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    batch_size: int = 32
    cache_dir: Path | None = None
    trust_remote_code: bool = False
    show_progress_bar: bool = True


EMBEDDINGS = ("rationale", "echo", "plain")  # see grace_rl.eval.protocol's module docstring, 6.


@dataclass(frozen=True)
class ModelSpec:
    """A model in the comparison: `role` is `base` or `trained` (then `training_budget` is set); `instruction`
    overrides the model's own rationale instruction (its run's, else the default); `embedding` is one of
    :data:`EMBEDDINGS`."""

    label: str
    path: str
    role: str
    training_budget: int | None = None
    instruction: str | None = None
    embedding: str = "rationale"
