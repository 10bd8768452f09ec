"""The contrastive baseline: the same base LLM fine-tuned as an embedder with sentence-transformers and
MultipleNegativesRankingLoss (MNRL: InfoNCE over the in-batch positives and the rows' hard negatives), same rows.

The training loop and the loss are sentence-transformers' own (``SentenceTransformerTrainer``, ``MNRL``); this module
adds only the input module that says what a text's embedding is, so the baseline is trained exactly as it is then
evaluated:

- ``plain``: the text's tokens alone (no chat template, no special tokens), mean-pooled: the classic
  sentence-transformers recipe (Transformer + mean Pooling).
- ``template``: the text inside the recipe's chat template (instruction as the system turn), the text tokens pooled:
  what :class:`grace_rl.encoder.GraceEncoder` computes at rationale budget 0.
- ``echo``: the template with the text repeated in the rationale slot, text + repeat pooled
  (:func:`grace_rl.encoder.echo_requests`): GraceEncoder's ``embedding="echo"``.

A saved baseline is a sentence-transformers directory whose root is also a Hugging Face causal-LM directory and holds a
``grace_config.json`` (budget 0 and its ``embedding``), so ``grace-rl eval protocol --trained DIR`` evaluates it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules import InputModule

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.encoder import echo_requests, save_grace_meta
from grace_rl.errors import UserError
from grace_rl.prompts import PARAPHRASE_INSTRUCTION, RationaleTemplate
from rollout.embedder import Embedder, EmbedRequest, backbone_of
from rollout.pooling import pool_hidden_states

logger = logging.getLogger(__name__)

MODES = ("plain", "template", "echo")
GRACE_EMBEDDING = {"plain": "plain", "template": "rationale", "echo": "echo"}  # grace_config.json's `embedding`
BASELINE_FILE = "baseline.json"


class GraceTextEmbedding(InputModule):
    """A sentence-transformers input module: a causal LM's last hidden states, mean-pooled over the text as `mode`
    says (see the module docstring). Outputs `sentence_embedding` `(B, H)`, unnormalised.

    Args:
        model: a causal LM (its decoder stack is run; the LM head is not).
        tokenizer: its tokenizer (a pad token set).
        mode (`str`): `plain`, `template` or `echo`.
        instruction (`str`): the system turn of `template` / `echo`.
        max_text_tokens (`int`): text tokens kept (cut at the end), as the GRACE embedder cuts.
    """

    config_keys = ["mode", "instruction", "max_text_tokens"]
    config_file_name = "grace_text_embedding.json"
    save_in_root = True

    def __init__(
        self, model, tokenizer, mode: str = "plain", instruction: str = PARAPHRASE_INSTRUCTION, max_text_tokens=512
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise UserError(f"mode must be one of {MODES}, got {mode!r}.")
        self.auto_model = model
        self.tokenizer = tokenizer
        self.mode, self.instruction, self.max_text_tokens = mode, instruction, int(max_text_tokens)
        self.embedder = Embedder(
            model, tokenizer, RationaleTemplate(instruction), max_text_tokens=self.max_text_tokens
        )

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        """Token ids, attention mask and the text / rationale masks pooled, `(B, T)` each (right-padded)."""
        if prompt:
            raise UserError("GraceTextEmbedding takes no sentence-transformers prompt: the instruction is its own.")
        texts = [str(t) for t in inputs]
        if self.mode == "template":
            return self.embedder.batch([EmbedRequest(t) for t in texts])
        if self.mode == "echo":
            return self.embedder.batch(echo_requests(self.embedder, texts))
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_text_tokens)
        width = max(len(row) for row in ids["input_ids"])
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in ids["input_ids"]])  # (B, T)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids["input_ids"]])  # (B, T)
        return {"input_ids": input_ids, "attention_mask": mask, "text_mask": mask, "rationale_mask": 0 * mask}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        hidden = backbone_of(self.auto_model)(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"]
        ).last_hidden_state  # (B, T, H)
        features["token_embeddings"] = hidden
        features["sentence_embedding"] = pool_hidden_states(
            hidden, features["text_mask"], features["rationale_mask"], "mean", normalize=False
        )  # (B, H)
        return features

    def get_embedding_dimension(self) -> int:
        return int(self.auto_model.config.hidden_size)

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.auto_model.save_pretrained(output_path, safe_serialization=True)
        self.tokenizer.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> GraceTextEmbedding:
        from grace_rl.models import load_model, load_tokenizer

        path = Path(model_name_or_path, subfolder)
        config = json.loads((path / cls.config_file_name).read_text(encoding="utf-8"))
        trust = bool(kwargs.get("trust_remote_code", False))
        return cls(load_model(path, trust_remote_code=trust), load_tokenizer(path, trust), **config)


def load_contrastive(path: str | Path, trust_remote_code: bool = False):
    """A saved baseline as a `SentenceTransformer` (its module built here: no import of a class named by the
    directory); another sentence-transformers directory is loaded by sentence-transformers itself."""
    from sentence_transformers import SentenceTransformer

    path = Path(path)
    modules = (
        json.loads((path / "modules.json").read_text(encoding="utf-8")) if (path / "modules.json").is_file() else []
    )
    if [m.get("type") for m in modules] == [f"{__name__}.{GraceTextEmbedding.__name__}"]:
        module = GraceTextEmbedding.load(str(path), trust_remote_code=trust_remote_code)
        return SentenceTransformer(modules=[module], device="cpu")
    return SentenceTransformer(str(path), device="cpu", trust_remote_code=trust_remote_code)


# --- data ----------------------------------------------------------------------------------------------------------


def contrastive_datasets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows as sentence-transformers datasets, one per number of hard negatives (`pairs`: anchor, positive;
    `negatives_k`: anchor, positive, negative_1..k), since a batch's rows must share their columns: every batch is
    drawn from one of them (MNRL: in-batch positives and every hard negative of the batch are the candidates)."""
    from datasets import Dataset

    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[len(row.get("negatives") or [])].append(row)
    out = {}
    for k in sorted(groups):
        columns: dict[str, list[str]] = {"anchor": [], "positive": []}
        columns.update({f"negative_{j + 1}": [] for j in range(k)})
        for row in groups[k]:
            columns["anchor"].append(row["query"])
            columns["positive"].append(row["positive"])
            for j, negative in enumerate(row.get("negatives") or []):
                columns[f"negative_{j + 1}"].append(negative)
        out["pairs" if k == 0 else f"negatives_{k}"] = Dataset.from_dict(columns)
    return out


# --- training -------------------------------------------------------------------------------------------------------


@dataclass
class BaselineSettings:
    """How the baseline trains (the defaults match the shipped recipe's rows per step, learning rate and InfoNCE
    temperature: 4 prompts a step, lr 2e-5, scale 20 = 1 / 0.05, constant schedule, full fine-tuning).

    Args:
        output_dir (`str`): where the sentence-transformers directory is saved.
        model (`str`): the base model: the default id or a local HF directory.
        data (`str`): supervised rows `{query, positive, negatives?}`.
        embedding (`str`): `plain`, `template` or `echo` (module docstring).
        instruction (`str`): the system turn of `template` / `echo` (default: the shipped recipe's).
        max_steps (`int`): optimizer steps (the run stops earlier at `max_seconds`).
        max_seconds (`float` or `None`): wall-clock budget of the training loop (equal wall-clock rungs).
        batch_size (`int`): rows per step; learning_rate (`float`); scale (`float`): MNRL's 1 / temperature.
        seed (`int`): shuffling and initialisation seed; max_rows (`int` or `None`): use the first N rows only.
    """

    output_dir: str
    model: str = DEFAULT_MODEL_ID
    data: str = "data/demo_train.jsonl"
    embedding: str = "plain"
    instruction: str = PARAPHRASE_INSTRUCTION
    max_steps: int = 20
    max_seconds: float | None = None
    batch_size: int = 4
    learning_rate: float = 2e-5
    scale: float = 20.0
    seed: int = 0
    max_rows: int | None = None

    def __post_init__(self) -> None:
        if self.embedding not in MODES:
            raise UserError(f"embedding must be one of {MODES}, got {self.embedding!r}.")
        if self.max_steps < 1 or self.batch_size < 2:
            raise UserError(
                f"max_steps must be >= 1 and batch_size >= 2 (in-batch negatives), got {self.max_steps}, "
                f"{self.batch_size}."
            )
        if not (self.learning_rate > 0 and self.scale > 0 and math.isfinite(self.scale)):
            raise UserError(f"learning_rate and scale must be > 0, got {self.learning_rate}, {self.scale}.")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise UserError(f"max_seconds must be > 0 (or None: no wall-clock budget), got {self.max_seconds}.")


def build_model(settings: BaselineSettings, trust_remote_code: bool = False):
    """The base model wrapped for sentence-transformers (`GraceTextEmbedding` in `settings.embedding` mode)."""
    from sentence_transformers import SentenceTransformer

    from grace_rl.models import load_model, load_tokenizer, resolve_model_path

    path = resolve_model_path(settings.model)
    module = GraceTextEmbedding(
        load_model(path, trust_remote_code=trust_remote_code),
        load_tokenizer(path, trust_remote_code),
        mode=settings.embedding,
        instruction=settings.instruction,
    )
    return SentenceTransformer(modules=[module], device="cpu")


def mnrl_loss(model, scale: float):
    """sentence-transformers' MultipleNegativesRankingLoss (query -> documents, cosine, `scale` = 1 / temperature)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, scale=scale)


def train_baseline(settings: BaselineSettings, trust_remote_code: bool = False) -> dict[str, Any]:
    """Fine-tune, save the sentence-transformers directory (+ `grace_config.json`, `baseline.json`); the summary."""
    from datasets import DatasetDict
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
    from transformers import TrainerCallback

    from grace_rl.data import load_supervised

    class WallClock(TrainerCallback):
        """Stops the loop once `max_seconds` have passed since training began (checked after each step)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if settings.max_seconds is not None and time.perf_counter() - self.start >= settings.max_seconds:
                control.should_training_stop = True

    torch.manual_seed(settings.seed)
    rows = load_supervised(settings.data, settings.max_rows)
    model = build_model(settings, trust_remote_code)
    datasets = contrastive_datasets(rows)
    out = Path(settings.output_dir)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        seed=settings.seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        dataloader_drop_last=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=DatasetDict(datasets) if len(datasets) > 1 else next(iter(datasets.values())),
        loss=mnrl_loss(model, settings.scale),
        callbacks=[WallClock()],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    if trainer.state.global_step == 0:
        raise UserError(
            f"The baseline trained no step: {settings.data} has too few distinct rows for batches of "
            f"{settings.batch_size} without duplicates; lower --batch-size or give more rows."
        )
    model.save(str(out))
    save_grace_meta(out, settings.instruction, "mean", 0, embedding=GRACE_EMBEDDING[settings.embedding])
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    summary = {
        "settings": asdict(settings),
        "rows": len(rows),
        "datasets": {name: len(ds) for name, ds in datasets.items()},
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
        "losses": losses,
    }
    (out / BASELINE_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("Baseline: %d steps in %.1f s, saved to %s", summary["steps"], seconds, out)
    return summary
