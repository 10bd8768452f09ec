"""Trainer wiring: TRL's GRPOTrainer with the GRACE reward, the embedding pool and the rationale log."""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers.integrations import is_deepspeed_zero3_enabled
from trl import GRPOTrainer
from trl.models.utils import unwrap_model_for_generation

from grace_rl.config import GraceConfig
from grace_rl.corpus_setup import CorpusRefreshCallback, build_corpus_index
from grace_rl.embedding_loss import GradCapture, embedding_loss
from grace_rl.prompts import RationaleTemplate
from grace_rl.rationale_log import MetricsLogCallback, RationaleLog, use_compact_console_log
from grace_rl.resume import (
    checkpoint_guard,
    load_checkpoint_index,
    resolve_checkpoint,
    save_checkpoint_extras,
    truncate_logs,
)
from grace_rl.run_files import CORPUS_INDEX_DIR, RATIONALE_LOG
from reward.grace_reward import GraceReward, ScoredBatch
from rollout.actor import ModelSpec
from rollout.anchor_rows import AnchorRowsProcessor, adding_logits_processor, ride_along_blocker
from rollout.capture import HiddenStateCapture, pool_captured, pool_captured_prefixes
from rollout.captured_pool import CapturingPool
from rollout.corpus import Corpus
from rollout.corpus_index import CorpusIndex
from rollout.distributed import MainProcessPool, ShardedPool
from rollout.embedder import Embedder, EmbedRequest, backbone_of, eval_mode, rationale_end_ids
from rollout.frozen import FROZEN_POLICY, SentenceTransformerPool, frozen_policy_pool
from rollout.pool import EmbeddingPool, LocalEmbeddingPool
from rollout.ray_pool import RayEmbeddingPool, RayPoolOptions
from rollout.weight_sync import WeightSyncCallback

logger = logging.getLogger(__name__)


def build_reward(args: GraceConfig, tokenizer, generation_config=None) -> GraceReward:
    """The GRACE reward callable configured from `args` (pool attached later by the trainer).

    A rationale ends at the tokenizer's EOS or pad or at any of `generation_config.eos_token_id` (an id or a list:
    TRL stops generation on each), or at an `eos_token_id` given in `args.generation_kwargs`.
    """
    override = (args.generation_kwargs or {}).get("eos_token_id")
    end_ids = rationale_end_ids(tokenizer, getattr(generation_config, "eos_token_id", None), override)
    return GraceReward(
        terms=args.reward_terms,
        weights=args.term_weights,
        temperature=args.contrastive_temperature,
        hard_negative_weight=args.hard_negative_weight,
        anchor_mode=args.anchor_mode,
        anchor_rationale_tokens=args.anchor_rationale_tokens,
        anchor_temperature=args.anchor_temperature,
        pooling=args.pooling,
        end_token_ids=end_ids,
        dcg_k=args.dcg_k,
        search_depth=args.search_depth,
        max_weight_staleness=args.max_weight_staleness,
        refinement_prefixes=args.refinement_prefixes,
        mined_negatives=args.mined_negatives,
        mined_negative_max_ratio=args.mined_negative_max_ratio,
    )


class RewardHandOff:
    """The reward callable TRL calls: scores with :meth:`GraceReward.score_batch`, hands the :class:`ScoredBatch`
    (context, offset, records) to `receive` and gives TRL the rewards. TRL logs it under the reward's name.

    Args:
        reward (`GraceReward`):
            The GRACE reward.
        receive (`Callable[[ScoredBatch], None]`):
            Called with each batch's result before TRL sees the rewards.
    """

    def __init__(self, reward: GraceReward, receive: Callable[[ScoredBatch], None]) -> None:
        self.reward, self.receive = reward, receive
        self.__name__ = reward.__name__

    def __call__(self, **kwargs: Any) -> list[float | None]:
        scored = self.reward.score_batch(**kwargs)
        self.receive(scored)
        return scored.rewards


@dataclass(frozen=True)
class RolloutBatch:
    """The rows of the generation batch being sampled, for `_generate_single_turn` (whose arguments TRL fixes).

    Args:
        queries (`list[str]`):
            each row's text, in prompt order (its rollouts are pooled over it).
        anchors (`list[str]`):
            this rank's anchor texts whose rationales are written in the rollouts' generate call (may be empty).
    """

    queries: list[str]
    anchors: list[str]


class GraceTrainer(GRPOTrainer):
    """GRPOTrainer + GRACE: attaches an embedding pool over the live policy to the reward, and after scoring each
    generation batch appends one record per rollout (with its GRPO advantage) to `rationales.jsonl`.

    TRL has no hook that sees both the reward terms and the advantages, so `_generate_and_score_completions` is
    wrapped (it calls TRL's own implementation unchanged).

    Args:
        args (`GraceConfig`):
            The training config.
        processing_class (`PreTrainedTokenizerBase`):
            The policy's tokenizer.
        grace_reward (`GraceReward`):
            The reward callable (see `build_reward`); the trainer attaches its embedding pool and corpus index.
        corpus (`Corpus`, *optional*):
            The corpus of `args.corpus_path` when already loaded (by the preflight); loaded here otherwise.
        **kwargs:
            Passed to `trl.GRPOTrainer` (`model`, `train_dataset`, `peft_config`, ...).
    """

    weight_sync: WeightSyncCallback | None = None  # ray backend: pushes policy weights to the actors
    ray_pool: RayEmbeddingPool | None = None  # ray backend, on rank 0

    def __init__(
        self,
        *,
        args: GraceConfig,
        processing_class,
        grace_reward: GraceReward,
        corpus: Corpus | None = None,
        **kwargs: Any,
    ) -> None:
        self._grace_metrics: dict[str, list[float]] = defaultdict(list)  # averaged into the next training log
        reward_funcs = [RewardHandOff(grace_reward, self._receive_scored)]
        super().__init__(args=args, processing_class=processing_class, reward_funcs=reward_funcs, **kwargs)
        self.grace_reward = grace_reward
        self.template = RationaleTemplate(args.instruction)
        self._rollout_batch: RolloutBatch | None = None  # set by _generate_and_score_completions around TRL's call
        self._scored: ScoredBatch | None = None  # the latest generation batch's reward result (RewardHandOff)
        self._ride_along_warned = False
        override = (args.generation_kwargs or {}).get("eos_token_id")  # what generate stops on, besides TRL's list
        end_ids = rationale_end_ids(processing_class, self.eos_token_ids, override)
        grace_reward.end_token_ids |= set(end_ids)  # a rationale TRL ended is never scored as truncated
        # prompt/text spans, rationale ends and text fitting for the rollouts (the pool's embedders agree)
        self._span_embedder = Embedder(
            self.model, processing_class, self.template, max_text_tokens=args.max_text_tokens, end_token_ids=end_ids
        )
        # The reward only calls pool.embed*; rollouts captured during generation are offered to this wrapper (with
        # several processes it gathers every rank's offer, as the reward gathers every rank's rollouts).
        collective = self.accelerator.num_processes > 1
        self.embedding_pool = CapturingPool(self._build_pool(args, processing_class), collective=collective)
        grace_reward.attach(self.embedding_pool)
        self.corpus_index: CorpusIndex | None = None
        self.corpus_refresh: CorpusRefreshCallback | None = None
        self._setup_corpus_index(args, corpus)
        self.rationale_log = RationaleLog(Path(args.output_dir) / RATIONALE_LOG) if args.rationale_log else None
        self.add_callback(MetricsLogCallback(args.output_dir))  # every key of every log
        use_compact_console_log(self, args.reward_terms)  # the console: one line per log

    def _setup_corpus_index(self, args: GraceConfig, corpus: Corpus | None) -> None:
        """Build the corpus index (none without `corpus_path`), attach it to the reward, and register its refresh."""
        index = build_corpus_index(args, corpus)
        if index is None:
            return
        self.corpus_refresh = CorpusRefreshCallback(
            index,
            self.embedding_pool,
            0 if args.frozen_embedder else args.refresh_every_steps,  # a frozen embedder's vectors never go stale
            args.refresh_fraction,
            log_metric=self.log_metric,
            save_dir=Path(args.output_dir) / CORPUS_INDEX_DIR if args.save_corpus_index else None,
        )
        self.add_callback(self.corpus_refresh)
        self.use_corpus_index(index)

    def use_corpus_index(self, index: CorpusIndex) -> None:
        """Make `index` the one the reward searches and the refresh callback refreshes (e.g. a checkpoint's)."""
        self.corpus_index = index
        self.grace_reward.attach(self.embedding_pool, corpus_index=index)
        if self.corpus_refresh is not None:
            self.corpus_refresh.index = index

    def log_metric(self, name: str, value: float) -> None:
        """Record a scalar for the next training log (values since the last log are averaged), like the
        `log_metric` TRL hands to reward functions; written out by `log`, HF's public logging method."""
        self._grace_metrics[name].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, plus the averages of the metrics recorded with `log_metric` since the last training log."""
        if self.model.training and self._grace_metrics:
            logs = {**logs, **{k: sum(v) / len(v) for k, v in self._grace_metrics.items() if v}}
            self._grace_metrics.clear()
        super().log(logs, start_time)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """HF/TRL training; on resume (`true` = the latest complete checkpoint) the checkpoint's corpus index is
        restored and the logs are cut back to the checkpoint first (`grace_rl.resume`); HF restores the rest."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if checkpoint is not None:
            if self.corpus_index is not None:  # first: it may refuse, and then the logs stay as they are
                loaded = load_checkpoint_index(self.corpus_index, checkpoint, self.args.rebuild_index_on_resume)
                if loaded is not None:
                    self.use_corpus_index(loaded)
            if self.args.should_save:
                truncate_logs(self.args.output_dir, checkpoint)
        return super().train(resume_from_checkpoint=str(checkpoint) if checkpoint else None, **kwargs)

    def _save_checkpoint(self, model, trial) -> None:
        """HF's checkpoint plus the corpus index and the commit marker; a failed write (disk full) removes the
        partial checkpoint and names the last complete one."""
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        with checkpoint_guard(folder, is_main=self.args.should_save):
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                save_checkpoint_extras(folder, self.args.output_dir, self.state.global_step, self.corpus_index)

    def _build_pool(self, args: GraceConfig, tokenizer) -> EmbeddingPool:
        """`local`: the live policy (with several processes each rank embeds a share); `ray`: see below; a frozen
        `reward_embedder`: a frozen copy of the starting policy or a sentence-transformers encoder
        (`rollout.frozen`)."""
        if args.frozen_embedder:
            return self._build_frozen_pool(args, tokenizer)
        if args.embedding_backend == "ray":
            return self._build_ray_pool(args, tokenizer)
        embedder = Embedder(
            self.model,
            tokenizer,
            self.template,
            max_text_tokens=args.max_text_tokens,
            end_token_ids=self._span_embedder.end_ids,
        )
        pool = LocalEmbeddingPool(embedder, batch_size=args.embedding_batch_size)
        if is_deepspeed_zero3_enabled():  # the embedder reads full weights: gathered once per call on every rank
            return ShardedPool(pool, full_weights=self._full_weights)
        return ShardedPool(pool) if self.accelerator.num_processes > 1 else pool

    def _build_frozen_pool(self, args: GraceConfig, tokenizer) -> EmbeddingPool:
        """The reward's frozen embedder: only the policy's rationales can change its embeddings."""
        end_ids = self._span_embedder.end_ids
        if args.reward_embedder == FROZEN_POLICY:
            logger.info("Reward embedder: a frozen copy of the starting policy (the index is built once).")
            unwrapped = self.accelerator.unwrap_model(self.model)
            return frozen_policy_pool(
                unwrapped,
                tokenizer,
                self.template,
                end_ids,
                batch_size=args.embedding_batch_size,
                max_text_tokens=args.max_text_tokens,
            )
        logger.info(
            "Reward embedder: sentence-transformers %s (frozen; the index is built once).", args.reward_embedder
        )
        return SentenceTransformerPool(args.reward_embedder, tokenizer, end_ids, batch_size=args.embedding_batch_size)

    def _full_weights(self):
        """TRL's unwrap for generation: under ZeRO-3 every rank gathers the full parameters (hooks off) until exit."""
        return unwrap_model_for_generation(self.model_wrapped, self.accelerator, gather_deepspeed3_params=True)

    def _build_ray_pool(self, args: GraceConfig, tokenizer) -> EmbeddingPool:
        """Rank 0 owns the Ray pool (one set of actors and one weight sender per run); the other ranks receive its
        results by broadcast. Weights are synced at train start and every `weight_sync_every` optimizer steps."""
        unwrap = lambda: self.accelerator.unwrap_model(self.model)  # noqa: E731
        if self.accelerator.is_main_process:
            spec = ModelSpec.from_model(unwrap(), tokenizer, self.template, trust_remote_code=args.trust_remote_code)
            options = RayPoolOptions(
                address=args.ray_address,
                namespace=args.ray_namespace,
                num_actors=args.ray_num_actors,
                num_cpus=args.ray_actor_num_cpus,
                num_gpus=args.ray_actor_num_gpus,
                max_restarts=args.ray_max_restarts,
                batch_size=args.embedding_batch_size,
            )
            self.ray_pool = RayEmbeddingPool(spec, options)
        self.weight_sync = WeightSyncCallback(self.ray_pool, unwrap, args.weight_sync_every)
        self.add_callback(self.weight_sync)
        return MainProcessPool(self.ray_pool, tokenizer) if self.accelerator.num_processes > 1 else self.ray_pool

    def direction_for(self, row: dict[str, Any]) -> str:
        """The direction (`q2d` / `d2q`) a row is rolled out in at the current step."""
        directions = self.args.directions
        if len(directions) == 1:
            return directions[0]
        if self.args.direction_schedule == "row":
            return directions[zlib.crc32(str(row["prompt_id"]).encode()) % len(directions)]
        generation_round = self.state.global_step // max(self.args.steps_per_generation, 1)
        return directions[generation_round % len(directions)]

    def completion_length(self) -> int:
        """The rationale budget of the current generation round (`completion_length_schedule`, cycled)."""
        schedule = self.args.completion_length_schedule
        if not schedule:
            return self.max_completion_length
        generation_round = self.state.global_step // max(self.args.steps_per_generation, 1)
        return int(schedule[generation_round % len(schedule)])

    def _apply_length_schedule(self) -> None:
        """Set HF generate's `max_new_tokens` for this round; `max_completion_length` (loss normalisation) stays."""
        if not self.args.completion_length_schedule or self.use_vllm:
            return
        budget = self.completion_length()
        self.generation_config.max_new_tokens = budget
        self.generation_kwargs["max_new_tokens"] = budget
        if self.model.training:
            self.log_metric("grace/completion_length_budget", float(budget))

    def _apply_directions(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """In `d2q` the positive document becomes the rollout prompt and the query its anchor."""
        out = []
        for row in inputs:
            direction = self.direction_for(row)
            if direction == "d2q":
                row = {**row, "query": row["positive"], "positive": row["query"]}
                row["negatives"] = []  # hard negatives are documents: no counterpart on the query side
            fitted = self._span_embedder.fit_text(row["query"])  # cut beyond max_text_tokens, as the embedders cut
            if direction == "d2q" or fitted != row["query"]:
                row["prompt"] = self.template(fitted)  # the rollout sees the text the embeddings are pooled over
            out.append({**row, "direction": direction})
        return out

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's generation with dropout off, and the policy's hidden states recorded so the rollouts need no
        separate embedding pass (``embed_from_generation``; HF generate only: vLLM and continuous batching keep the
        embedding pass).

        Eval mode holds for the generate call only (the previous mode is restored before TRL computes log-probs, in
        train mode as before): rollouts are sampled as vLLM would, and their captured states equal a clean eval-mode
        pass, as the anchors are embedded. After ``generate`` one decode step feeds the last sampled token, so a
        rationale cut by ``max_completion_length`` is pooled whole.

        With ``anchor_generation: with_rollouts`` the batch's anchor texts (positives, hard negatives) ride along as
        extra rows of the same call, decoded greedily / at ``anchor_temperature`` (:mod:`rollout.anchor_rows`); their
        rationales and embeddings are offered to the pool and TRL only sees the rollouts' rows.
        """
        if self.use_vllm or self.use_transformers_continuous_batching:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        batch = self._rollout_batch
        queries = batch.queries if batch is not None else None
        ours = images is None and queries is not None and len(queries) == len(prompt_ids)
        use = self.args.embed_from_generation and ours and not self.args.frozen_embedder  # frozen: its own pass
        anchors = batch.anchors if ours else []
        rows = list(prompt_ids) + [list(self._span_embedder.prompt_tokens(t).ids) for t in anchors]
        n = len(prompt_ids)
        model = self.accelerator.unwrap_model(self.model_wrapped)
        with contextlib.ExitStack() as stack:
            stack.enter_context(eval_mode(self.model))
            if anchors:
                processor = AnchorRowsProcessor(n, len(anchors), self.args.anchor_temperature, self.temperature)
                stack.enter_context(adding_logits_processor(model, processor))
            capture = None
            if use:
                capture = stack.enter_context(HiddenStateCapture(backbone_of(self.model), self._span_embedder.end_ids))
                stack.enter_context(capture.feeding_last_token(model))
            completion_ids, logprobs = super()._generate_single_turn(
                rows, images, multimodal_fields, num_generations, has_tool_images
            )
            complete = capture is not None and capture.complete
        anchor_ids: list[tuple[int, ...]] = []
        if anchors:
            budget = int(self.args.anchor_rationale_tokens)
            anchor_ids = [tuple(self._span_embedder.rationale_tokens(c)[:budget]) for c in completion_ids[n:]]
            self.embedding_pool.offer_rationales(anchors, anchor_ids, budget, self.args.anchor_temperature)
            completion_ids = completion_ids[:n]
            logprobs = logprobs[:n] if logprobs is not None else None
        if complete:
            self._offer_captured(capture, rows, completion_ids, queries, anchors, anchor_ids)
        elif use:
            logger.debug("The last generated token was not fed forward; the rollouts will be embedded separately.")
        return completion_ids, logprobs

    def _anchors_to_write(self, inputs: list[dict[str, Any]]) -> list[str]:
        """This rank's anchor texts (positives, hard negatives; first occurrence order) when their rationales are
        written in the rollouts' generate call, else `[]` (the reward then writes them in a call of their own)."""
        args = self.args
        wanted = args.anchor_mode == "rationale" and args.anchor_rationale_tokens > 0
        if not wanted or args.anchor_generation != "with_rollouts":
            return []
        reason = None
        if self.use_vllm or self.use_transformers_continuous_batching:
            reason = "the rollouts are generated by vLLM / continuous batching"
        else:
            budget = int(self.generation_kwargs.get("max_new_tokens") or self.max_completion_length)
            reason = ride_along_blocker(self.generation_kwargs, int(args.anchor_rationale_tokens), budget)
        if reason is not None:
            if not self._ride_along_warned:
                logger.warning("Anchor rationales are written in a generate call of their own: %s.", reason)
                self._ride_along_warned = True
            return []
        texts = [t for row in inputs for t in [row["positive"], *(row.get("negatives") or [])]]
        return list(dict.fromkeys(texts))

    def _offer_captured(
        self,
        capture: HiddenStateCapture,
        prompt_ids,
        completion_ids,
        queries: list[str],
        anchors: list[str] = (),
        anchor_ids: list[tuple[int, ...]] = (),
    ) -> None:
        """Pool the rollouts (and the anchors that rode along, `prompt_ids`' last rows) from the captured states and
        offer them to the embedding pool; the rollouts' prefix embeddings too when `refinement` is on."""
        states = capture.states(max(len(p) for p in prompt_ids), len(prompt_ids))
        texts = list(queries) + list(anchors)
        spans = [self._span_embedder.prompt_tokens(t) for t in texts]
        if states is None or any(tuple(s.ids) != tuple(p) for s, p in zip(spans, prompt_ids, strict=True)):
            logger.debug("Generation states unusable for this batch; the rollouts will be embedded separately.")
            return
        n = len(queries)
        rationale_lengths = [len(self._span_embedder.rationale_tokens(c)) for c in completion_ids]
        rationale_lengths += [len(ids) for ids in anchor_ids]  # anchors cut to their own budget
        layout = ([len(p) for p in prompt_ids], [(s.start, s.end) for s in spans], rationale_lengths)
        embeddings = pool_captured(states.float(), *layout, mode=self.args.pooling)  # (n + A, H)
        prefixes, fractions = None, self.grace_reward.refinement_prefixes
        if "refinement" in self.grace_reward.terms:  # the same states at prefixes of each rationale (cumsums)
            rollout_layout = [part[:n] for part in layout]
            prefixes = pool_captured_prefixes(states[:n].float(), *rollout_layout, fractions, mode=self.args.pooling)
        requests = [EmbedRequest(q, tuple(int(t) for t in c)) for q, c in zip(queries, completion_ids, strict=True)]
        self.embedding_pool.offer(requests, embeddings[:n], self.args.pooling, prefixes, fractions)
        if anchors:
            anchor_requests = [EmbedRequest(t, r) for t, r in zip(anchors, anchor_ids, strict=True)]
            self.embedding_pool.offer_anchors(anchor_requests, embeddings[n:], self.args.pooling)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.weight_sync is not None:
            self.weight_sync.ensure_synced(self.state.global_step)  # e.g. evaluate() before any training
        inputs = self._apply_directions(inputs)
        self._apply_length_schedule()
        with self._sampling(RolloutBatch([row["query"] for row in inputs], self._anchors_to_write(inputs))):
            output = super()._generate_and_score_completions(inputs)
        scored = self._scored
        if self.model.training:  # counts over the global generation batch (all ranks), as the reward scores it
            self.log_metric("grace/rollouts", float(len(inputs) * self.accelerator.num_processes))
            self.log_metric("grace/rollouts_from_generation", float(self.embedding_pool.last_served))
            if self.args.anchor_mode == "rationale":  # anchor rationales written in the rollouts' generate call
                served = float(self.embedding_pool.last_rationales_served)
                self.log_metric("grace/anchor_rationales_with_rollouts", served)
        if self.rationale_log is not None and self.model.training:
            self._log_rationales(scored.records, output["advantages"].tolist())
        if self.args.embedding_loss_weight > 0 and self.model.training:
            output.update(self._embedding_loss_inputs(output, [row["query"] for row in inputs], scored.offset))
        return output

    @contextlib.contextmanager
    def _sampling(self, batch: RolloutBatch) -> Iterator[None]:
        """`batch` is the generation batch's rows while TRL samples and scores it."""
        self._rollout_batch = batch
        try:
            yield
        finally:
            self._rollout_batch = None

    def _receive_scored(self, scored: ScoredBatch) -> None:
        self._scored = scored

    def _embedding_loss_inputs(self, output: dict[str, Any], queries: list[str], offset: int) -> dict[str, Any]:
        """Per-rollout tensors the embedding loss needs (they survive TRL's shuffle and split of the batch)."""
        prompt_mask, completion_ids = output["prompt_mask"], output["completion_ids"]
        n, width = prompt_mask.shape
        text_mask = torch.zeros_like(prompt_mask)  # (n, P), prompts are left-padded
        for i, (q, length) in enumerate(zip(queries, prompt_mask.sum(dim=1).tolist(), strict=True)):
            span = self._span_embedder.prompt_tokens(q)
            pad = width - int(length)
            text_mask[i, pad + span.start : pad + span.end] = 1
        end = torch.tensor(sorted(self.grace_reward.end_token_ids), device=completion_ids.device)
        rationale_mask = output["completion_mask"] * (~torch.isin(completion_ids, end)).long()  # (n, C)
        index = torch.arange(offset, offset + n, device=completion_ids.device)  # rows of the scored context
        return {"grace_index": index, "grace_text_mask": text_mask, "grace_rationale_mask": rationale_mask}

    def _compute_loss(self, model, inputs):
        """TRL's GRPO loss times `policy_loss_weight` (evaluation: TRL's loss as it is), plus the embedding loss
        (`embedding_loss_weight > 0`) pooled from the same forward pass."""
        if not self.model.training:
            return super()._compute_loss(model, inputs)
        if self.args.embedding_loss_weight <= 0 or "grace_index" not in inputs:
            return self.args.policy_loss_weight * super()._compute_loss(model, inputs)
        with GradCapture(backbone_of(self.model)) as capture:
            policy = self.args.policy_loss_weight * super()._compute_loss(model, inputs)
        hidden = torch.cat(capture.chunks, dim=0)  # (n, P + C, H)
        text = torch.cat([inputs["grace_text_mask"], torch.zeros_like(inputs["completion_mask"])], dim=1)
        rationale = torch.cat([torch.zeros_like(inputs["prompt_mask"]), inputs["grace_rationale_mask"]], dim=1)
        aux = embedding_loss(
            hidden,
            text,
            rationale,
            self._scored.context,  # the generation batch these inputs come from
            inputs["grace_index"],
            self.args.pooling,
            self.args.embedding_loss_prefixes,
        )
        self.log_metric("grace/embedding_loss", float(aux.detach()))
        self.log_metric("grace/policy_loss", float(policy.detach()))  # weighted: exactly 0 when switched off
        return policy + self.args.embedding_loss_weight * aux / self.current_gradient_accumulation_steps

    def _log_rationales(self, records: list[dict[str, Any]], advantages: list[float]) -> None:
        if len(records) != len(advantages):
            raise RuntimeError(f"{len(records)} reward records but {len(advantages)} advantages in this batch.")
        step = self.state.global_step + 1  # the optimizer step these rollouts train
        local = [{"step": step, **rec, "advantage": adv} for rec, adv in zip(records, advantages, strict=True)]
        everything = gather_object(local) if self.accelerator.num_processes > 1 else local
        if self.accelerator.is_main_process:
            self.rationale_log.append(everything)
