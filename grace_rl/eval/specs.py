"""What an evaluation compares and how it runs: :class:`ModelSpec` (a model in the comparison) and
:class:`ProtocolSettings` (budgets, bootstrap, batch size, cache), shared by the greedy and the sampled sweeps, and
:class:`SampleSettings` (the protocol's rationale-count sweep)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grace_rl.errors import UserError

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


DEFAULT_COUNTS = (1, 2, 4, 8)
DEFAULT_TEMPERATURE = 0.7


@dataclass(frozen=True)
class SampleSettings:
    """The rationale-count sweep.

    Args:
        counts (`tuple[int, ...]`, *optional*, defaults to `(1, 2, 4, 8)`):
            numbers of sampled rationales averaged (each >= 1; 1 is always added, the gains are measured from it).
        temperature (`float`, *optional*, defaults to `0.7`):
            sampling temperature (> 0).
        budget (`int`, *optional*):
            tokens per rationale, the same for every model; `None`: the trained runs' training budget (they must
            share one).
        seed (`int`, *optional*, defaults to `0`):
            `torch.manual_seed` before each model's sampling on each dev set.
        include_base (`bool`, *optional*, defaults to `True`):
            sweep the base model too (its greedy sweep stays the bar either way).
    """

    counts: tuple[int, ...] = DEFAULT_COUNTS
    temperature: float = DEFAULT_TEMPERATURE
    budget: int | None = None
    seed: int = 0
    include_base: bool = True

    def __post_init__(self) -> None:
        counts = tuple(sorted({int(c) for c in self.counts} | {1}))
        if counts[0] < 1:
            raise UserError(f"Rationale counts must all be >= 1, got {list(self.counts)}.")
        object.__setattr__(self, "counts", counts)
        if not self.temperature > 0:
            raise UserError(f"Sampling several rationales needs a temperature > 0, got {self.temperature}.")
        if self.budget is not None and self.budget < 1:
            raise UserError(f"The sample budget must be >= 1 token (0 = no rationale to sample), got {self.budget}.")
