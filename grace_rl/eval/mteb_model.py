"""mteb 2.x integration: a GRACE model class for `mteb.evaluate` and offline tasks built from local files.

Example:
    >>> import mteb  # doctest: +SKIP
    >>> from grace_rl.eval.mteb_model import GraceMtebModel, local_sts_task
    >>> model = GraceMtebModel("runs/grace_smollm2_cpu", max_rationale_tokens=32)  # doctest: +SKIP
    >>> task = local_sts_task("data/stsb_dev_sample.tsv", fmt="stsb", limit=50)  # doctest: +SKIP
    >>> mteb.evaluate(model, [task], cache=None)  # doctest: +SKIP

Any registered mteb task works too (`mteb.get_tasks(["STSBenchmark"])`) when its dataset is reachable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta

from grace_rl.encoder import GraceEncoder
from grace_rl.eval.retrieval import read_qrels, read_texts
from grace_rl.eval.sts import read_sts
from grace_rl.models import DEFAULT_MODEL_ID

logger = logging.getLogger(__name__)


def _load(model_name: str, revision: str | None = None, **kwargs: Any) -> GraceMtebModel:
    """mteb loader signature: `loader(name, revision, **loader_kwargs)`."""
    return GraceMtebModel(kwargs.pop("model_name_or_path", model_name), **kwargs)


class GraceMtebModel(AbsEncoder):
    """A :class:`~grace_rl.encoder.GraceEncoder` behind mteb's encoder interface.

    Every text (sentence, query or document) gets a rationale and is pooled as `GraceEncoder.encode` does; mteb's
    task prompts are not used (the rationale instruction plays that role).

    Args:
        model_name_or_path (`str`, *optional*, defaults to `DEFAULT_MODEL_ID`):
            the default id, a local HF dir, or a GRACE output dir.
        encoder: an already-built encoder (then `model_name_or_path` only names the model in the results).
        max_rationale_tokens (`int`, *optional*):
            rationale budget (`None`: the trained model's own, 0: no rationale).
        num_rationales (`int`, *optional*, defaults to `1`):
            sampled rationales averaged per text (needs `temperature > 0`).
        temperature (`float`, *optional*, defaults to `0.0`):
            rationale sampling temperature (0 = greedy).
        pooling (`str`, *optional*):
            pooling mode (`None`: the model's own).
        name (`str`, *optional*):
            the `organization/name` mteb files results under (default `grace-rl/<directory name>`).
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_MODEL_ID,
        encoder=None,
        max_rationale_tokens: int | None = None,
        num_rationales: int = 1,
        temperature: float = 0.0,
        pooling: str | None = None,
        name: str | None = None,
    ) -> None:
        if encoder is None:
            encoder = GraceEncoder.from_pretrained(model_name_or_path)
        self.model = encoder
        self.encode_options = {
            "max_rationale_tokens": encoder.max_rationale_tokens
            if max_rationale_tokens is None
            else max_rationale_tokens,
            "num_rationales": num_rationales,
            "temperature": temperature,
            "pooling": pooling or encoder.pooling,
        }
        config = encoder.model.config
        self.mteb_model_meta = ModelMeta(
            loader=_load,
            loader_kwargs={"model_name_or_path": str(model_name_or_path), **self.encode_options},
            name=name or f"grace-rl/{Path(str(model_name_or_path)).name}",
            revision="local",
            release_date=None,
            languages=["eng-Latn"],
            n_parameters=sum(p.numel() for p in encoder.model.parameters()),
            memory_usage_mb=None,
            max_tokens=float(getattr(config, "max_position_embeddings", 0) or 0) or None,
            embed_dim=int(config.hidden_size),
            license=None,
            open_weights=True,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch", "Transformers"],
            similarity_fn_name="cosine",
            use_instructions=True,
            training_datasets=None,
            experiment_kwargs=dict(self.encode_options),
        )

    def encode(
        self,
        inputs,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type=None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed every `text` of the batches of `inputs` (a DataLoader): `(N, H)` float32, L2-normalised."""
        texts = [text for batch in inputs for text in batch["text"]]
        return self.model.encode(
            texts,
            batch_size=int(kwargs.get("batch_size", 16)),
            show_progress_bar=bool(kwargs.get("show_progress_bar", False)),
            **self.encode_options,
        )


def _metadata(name: str, task_type: str, main_score: str, description: str) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=description,
        dataset={"path": "local", "revision": "local"},
        type=task_type,
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=None,
        domains=[],
        task_subtypes=[],
        license=None,
        annotations_creators=None,
        dialect=[],
        sample_creation=None,
        bibtex_citation="",
    )


class LocalSTSTask(AbsTaskSTS):
    """An mteb STS task over a local file (formats of :func:`grace_rl.eval.sts.read_sts`); split `test`.

    Build one with :func:`local_sts_task` (mteb reads `metadata` from the class, so each task is its own subclass).
    """

    metadata: TaskMetadata
    source: tuple[Path, str, int | None]

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        path, fmt, limit = self.source
        a, b, scores = read_sts(path, fmt, limit)
        self.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": a, "sentence2": b, "score": scores})})
        if min(scores) < max(scores):  # score normalisation only; Spearman and Pearson do not depend on it
            self.min_score, self.max_score = min(scores), max(scores)
        self.data_loaded = True


class LocalRetrievalTask(AbsTaskRetrieval):
    """An mteb retrieval task over local corpus / queries / qrels files (formats of :mod:`grace_rl.eval.retrieval`);
    split `test`, main score `ndcg_at_10`. Build one with :func:`local_retrieval_task`."""

    metadata: TaskMetadata
    source: tuple[Path, Path, Path]

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        corpus, queries, qrels = (read(p) for read, p in zip((read_texts, read_texts, read_qrels), self.source))
        split = RetrievalSplitData(
            corpus=Dataset.from_list([{"id": k, "text": v} for k, v in corpus.items()]),
            queries=Dataset.from_list([{"id": k, "text": v} for k, v in queries.items() if k in qrels]),
            relevant_docs=qrels,
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


def local_sts_task(
    path: str | Path, fmt: str = "stsb", limit: int | None = None, name: str = "LocalSTS"
) -> AbsTaskSTS:
    """An offline mteb STS task (main score `cosine_spearman`) over `path`."""
    attrs = {
        "metadata": _metadata(name, "STS", "cosine_spearman", f"STS pairs from {Path(path).name}."),
        "source": (Path(path), fmt, limit),
    }
    return type(name, (LocalSTSTask,), attrs)()


def local_retrieval_task(
    corpus: str | Path, queries: str | Path, qrels: str | Path, name: str = "LocalRetrieval"
) -> AbsTaskRetrieval:
    """An offline mteb retrieval task (main score `ndcg_at_10`) over local files."""
    attrs = {
        "metadata": _metadata(name, "Retrieval", "ndcg_at_10", f"Retrieval over {Path(corpus).name}."),
        "source": (Path(corpus), Path(queries), Path(qrels)),
    }
    return type(name, (LocalRetrievalTask,), attrs)()
