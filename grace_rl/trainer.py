"""Trainer wiring: TRL's GRPOTrainer with the GRACE reward, the embedding pool and the rationale log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from accelerate.utils import gather_object
from trl import GRPOTrainer

from grace_rl.config import GraceConfig
from grace_rl.prompts import RationaleTemplate
from grace_rl.rationale_log import LOG_NAME, MetricsLogCallback, RationaleLog
from reward.grace_reward import GraceReward
from rollout.embedder import Embedder
from rollout.pool import EmbeddingPool, LocalEmbeddingPool

logger = logging.getLogger(__name__)


def build_reward(args: GraceConfig, tokenizer) -> GraceReward:
    """The GRACE reward callable configured from ``args`` (pool attached later by the trainer)."""
    end_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    return GraceReward(
        terms=args.reward_terms,
        weights=args.term_weights,
        temperature=args.contrastive_temperature,
        anchor_mode=args.anchor_mode,
        anchor_rationale_tokens=args.anchor_rationale_tokens,
        anchor_temperature=args.anchor_temperature,
        pooling=args.pooling,
        end_token_ids=sorted(end_ids),
    )


class GraceTrainer(GRPOTrainer):
    """GRPOTrainer + GRACE: attaches an embedding pool over the live policy to the reward, and after scoring each
    generation batch appends one record per rollout (with its GRPO advantage) to ``rationales.jsonl``.

    TRL has no hook that sees both the reward terms and the advantages, so ``_generate_and_score_completions`` is
    wrapped (it calls TRL's own implementation unchanged).
    """

    def __init__(self, *, args: GraceConfig, processing_class, grace_reward: GraceReward, **kwargs: Any) -> None:
        super().__init__(args=args, processing_class=processing_class, reward_funcs=[grace_reward], **kwargs)
        self.grace_reward = grace_reward
        self.template = RationaleTemplate(args.instruction)
        self.embedding_pool = self._build_pool(args, processing_class)
        grace_reward.attach(self.embedding_pool)
        self.rationale_log = RationaleLog(Path(args.output_dir) / LOG_NAME) if args.rationale_log else None
        self.add_callback(MetricsLogCallback(args.output_dir))

    def _build_pool(self, args: GraceConfig, tokenizer) -> EmbeddingPool:
        embedder = Embedder(self.model, tokenizer, self.template)
        return LocalEmbeddingPool(embedder, batch_size=args.embedding_batch_size)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.rationale_log is not None and self.model.training:
            self._log_rationales(output["advantages"].tolist())
        return output

    def _log_rationales(self, advantages: list[float]) -> None:
        records = self.grace_reward.last_records
        if len(records) != len(advantages):
            raise RuntimeError(f"{len(records)} reward records but {len(advantages)} advantages in this batch.")
        step = self.state.global_step + 1  # the optimizer step these rollouts train
        local = [{"step": step, **rec, "advantage": adv} for rec, adv in zip(records, advantages, strict=True)]
        everything = gather_object(local) if self.accelerator.num_processes > 1 else local
        if self.accelerator.is_main_process:
            self.rationale_log.append(everything)
