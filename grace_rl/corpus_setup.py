"""Trainer wiring of the corpus index: config invariants, building the index, and refreshing it during training.

``GraceTrainer`` calls :func:`setup_corpus_index` after it has built the embedding pool: the corpus is loaded and every
training row's gold documents are checked at once (a bad id fails before any step), the index is embedded at the
start of training (after a checkpoint's weights are restored) and partially re-embedded every K optimizer steps by
:class:`CorpusRefreshCallback`, which also logs staleness as ``index/*`` metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grace_rl.run_files import CORPUS_INDEX_DIR
from reward.retrieval import resolve_gold
from rollout.corpus import load_corpus
from rollout.corpus_index import CORPUS_EMBED_MODES, INDEX_TYPES, REFRESH_POLICIES, CorpusIndex, IndexSettings
from rollout.pool import EmbeddingPool

logger = logging.getLogger(__name__)


def check_corpus_settings(args: Any) -> None:
    """``GraceConfig`` invariants of the corpus index and the ``dcg`` term (called from its ``__post_init__``)."""
    if isinstance(args.corpus_path, str) and args.corpus_path.strip().lower() in ("", "none", "null"):
        args.corpus_path = None
    uses_dcg = "dcg" in args.reward_terms
    if uses_dcg and not args.corpus_path:
        raise ValueError(
            "The 'dcg' term searches a corpus index: set corpus_path to a JSONL/TSV/saved dataset of {id, text} "
            "documents (e.g. data/demo_corpus.jsonl), or drop 'dcg' from reward_terms."
        )
    if args.corpus_path and not uses_dcg:
        raise ValueError(
            f"corpus_path={args.corpus_path!r} is set but 'dcg' is not in reward_terms {args.reward_terms}: add the "
            "term (and its weight) or unset corpus_path (--corpus_path null)."
        )
    if args.corpus_path and not Path(args.corpus_path).expanduser().exists():
        raise ValueError(f"corpus_path {args.corpus_path!r} does not exist; point it at a corpus file or directory.")
    if uses_dcg and list(getattr(args, "directions", ["q2d"])) != ["q2d"]:
        raise ValueError(
            f"The 'dcg' term searches with query-side rollouts only: use directions [q2d], got {args.directions}."
        )
    if not 0 < args.refresh_fraction <= 1:
        raise ValueError(f"refresh_fraction must be in (0, 1], got {args.refresh_fraction}.")
    if args.refresh_every_steps < 0:
        raise ValueError(f"refresh_every_steps must be >= 0 (0 = never refresh), got {args.refresh_every_steps}.")
    if not 1 <= args.dcg_k <= args.search_depth:
        raise ValueError(
            f"Need 1 <= dcg_k <= search_depth, got dcg_k={args.dcg_k}, search_depth={args.search_depth}: "
            "raise search_depth or lower dcg_k."
        )
    choices = {
        "refresh_policy": REFRESH_POLICIES,
        "index_type": INDEX_TYPES,
        "corpus_anchor_mode": CORPUS_EMBED_MODES,
    }
    for name, allowed in choices.items():
        if getattr(args, name) not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {getattr(args, name)!r}.")
    if args.ivf_nprobe < 1 or (args.ivf_nlist is not None and args.ivf_nlist < 1):
        raise ValueError(f"ivf_nprobe and ivf_nlist must be >= 1, got {args.ivf_nprobe}, {args.ivf_nlist}.")
    if args.corpus_rationale_tokens is None:
        args.corpus_rationale_tokens = args.anchor_rationale_tokens
    if args.corpus_rationale_tokens < 0:
        raise ValueError(f"corpus_rationale_tokens must be >= 0, got {args.corpus_rationale_tokens}.")


def index_settings(args: Any) -> IndexSettings:
    """The :class:`IndexSettings` of a ``GraceConfig``."""
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


def check_gold_documents(index: CorpusIndex, dataset: Any, show: int = 5) -> None:
    """Every row's gold documents must be in the corpus; fail listing the first ``show`` bad rows."""
    columns = ["prompt_id", "positive"] + (["positive_ids"] if "positive_ids" in dataset.column_names else [])
    errors = []
    for n, row in enumerate(dataset.select_columns(columns), start=1):
        try:
            resolve_gold(index, row.get("positive_ids"), row["positive"], where=f"row {n} ({row['prompt_id']})")
        except ValueError as err:
            errors.append(str(err))
    if errors:
        raise ValueError(
            f"{len(errors)} training row(s) have no gold document in the corpus:\n  " + "\n  ".join(errors[:show])
        )


class CorpusRefreshCallback(TrainerCallback):
    """Builds the corpus index when training starts, re-embeds ``fraction`` of it every ``every`` optimizer steps
    with the current weights, logs ``index/staleness_mean|max``, ``index/refreshed_frac``,
    ``index/refreshed_ever_frac`` and ``index/refresh_seconds`` each step, and saves it when training ends."""

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


def setup_corpus_index(trainer: Any) -> CorpusIndex | None:
    """Load the corpus of ``trainer.args.corpus_path``, attach the index to the reward, check every row's gold
    documents, and register the refresh callback. ``None`` when no corpus is configured."""
    args = trainer.args
    if not args.corpus_path:
        return None
    index = CorpusIndex(load_corpus(args.corpus_path), index_settings(args))
    trainer.grace_reward.attach(trainer.embedding_pool, corpus_index=index)
    if trainer.train_dataset is not None:
        check_gold_documents(index, trainer.train_dataset)
    trainer.add_callback(
        CorpusRefreshCallback(
            index,
            trainer.embedding_pool,
            args.refresh_every_steps,
            args.refresh_fraction,
            log_metric=lambda name, value: trainer._metrics["train"][name].append(value),  # averaged per log
            save_dir=Path(args.output_dir) / CORPUS_INDEX_DIR if args.save_corpus_index else None,
        )
    )
    return index
