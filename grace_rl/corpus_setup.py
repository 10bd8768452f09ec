"""Trainer side of the corpus index: building it from the config and refreshing it during training.

`GraceTrainer` builds the index with :func:`build_corpus_index` (from the corpus the preflight already loaded and
checked every training row's gold documents against), attaches it to the reward, and registers
:class:`CorpusRefreshCallback`: the index is embedded at the start of training (after a checkpoint's weights are
restored) and partially re-embedded every K optimizer steps; its staleness is logged as `index/*` metrics through
the trainer's `log_metric`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from grace_rl.config import GraceConfig
from rollout.corpus import Corpus, load_corpus
from rollout.corpus_index import CorpusIndex
from rollout.index_settings import IndexSettings
from rollout.pool import EmbeddingPool

logger = logging.getLogger(__name__)


def index_settings(args: GraceConfig) -> IndexSettings:
    """The :class:`IndexSettings` of a `GraceConfig`."""
    return IndexSettings(
        index_type=args.index_type,
        ivf_nlist=args.ivf_nlist,
        ivf_nprobe=args.ivf_nprobe,
        embed_mode=args.corpus_anchor_mode,
        rationale_tokens=args.corpus_rationale_tokens,
        rationale_temperature=args.anchor_temperature,
        pooling=args.pooling,
        refresh_policy=args.refresh_policy,
        use_gpu=args.index_use_gpu,
    )


class CorpusRefreshCallback(TrainerCallback):
    """Builds the corpus index when training starts, re-embeds `fraction` of it every `every` optimizer steps
    with the current weights, logs `index/staleness_mean|max`, `index/refreshed_frac`,
    `index/refreshed_ever_frac` and `index/refresh_seconds` each step, and saves it when training ends."""

    def __init__(
        self,
        index: CorpusIndex,
        pool: EmbeddingPool,
        every: int,
        fraction: float,
        log_metric: Callable[[str, float], None],
        save_dir: str | Path | None = None,
    ) -> None:
        self.index, self.pool, self.every, self.fraction = index, pool, every, fraction
        self.log_metric = log_metric
        self.save_dir = save_dir

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback hook
        if not self.index.is_built:
            self.index.build(self.pool, step=state.global_step, show_progress_bar=state.is_local_process_zero)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback hook
        step = state.global_step
        if self.every and step % self.every == 0:
            report = self.index.refresh(self.pool, step, self.fraction)
            logger.debug("Refreshed %d corpus rows at step %d in %.2f s", report.rows, step, report.embed_seconds)
        for name, value in self.index.stats(step).items():
            self.log_metric(f"index/{name}", value)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback hook
        if self.save_dir is not None and state.is_world_process_zero and self.index.is_built:
            self.index.save(self.save_dir)


def build_corpus_index(args: GraceConfig, corpus: Corpus | None = None) -> CorpusIndex | None:
    """The (not yet embedded) corpus index of `args.corpus_path`; `None` when no corpus is configured.

    Args:
        args (`GraceConfig`):
            The training config (`corpus_path` and the index settings).
        corpus (`Corpus`, *optional*):
            The corpus already loaded by the preflight (`grace_rl.preflight`), so it is read once per run; loaded
            from `args.corpus_path` when not given.
    """
    if not args.corpus_path:
        return None
    return CorpusIndex(corpus if corpus is not None else load_corpus(args.corpus_path), index_settings(args))
