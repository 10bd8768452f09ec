"""FAISS corpus index for the DCG reward: stable ids, per-row weight versions, partial refresh, atomic save/load.

Each document's row number in its :class:`~rollout.corpus.Corpus` is its int64 FAISS id, so an id survives a
remove + re-add. The master index lives on the CPU (GPU indexes cannot remove ids); when the installed faiss has GPUs a
search copy is cloned to GPU 0 after every change, otherwise searches run on the master and that is logged once.

A refresh embeds the chosen rows first (slow, no lock held), then swaps them in under a lock (remove + add, fast),
so a concurrent :meth:`CorpusIndex.search` sees either the old or the new index, never a mix.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from rollout.corpus import Corpus
from rollout.embedder import EmbedRequest
from rollout.files import atomic_write
from rollout.index_settings import IndexSettings
from rollout.pool import EmbeddingPool

logger = logging.getLogger(__name__)

SIDECAR_NAME = "corpus_index.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh did: `rows` documents re-embedded at optimizer step `step`."""

    step: int
    rows: int
    fraction: float
    embed_seconds: float
    swap_seconds: float


def select_refresh_rows(
    versions: np.ndarray, cursor: int, count: int, priority: np.ndarray | None = None
) -> np.ndarray:
    """The `count` rows to re-embed next.

    Order: prioritised rows first (`priority` True), then the oldest weight version, ties broken round robin from
    `cursor`. With no priority and one refresh of the same size every time this is plain round robin.

    Args:
        versions (`np.ndarray`):
            `(N,)` int64 optimizer step each row was embedded at.
        cursor (`int`):
            round-robin start row.
        count (`int`):
            rows to pick (clipped to `[0, N]`).
        priority (`np.ndarray`, *optional*):
            optional `(N,)` bool.

    Returns:
        `(count,)` int64 rows in selection order.
    """
    n = versions.shape[0]
    offset = (np.arange(n) - cursor) % n  # (N,) round-robin distance from the cursor
    keys = [offset, versions] if priority is None else [offset, versions, ~priority]
    order = np.lexsort(keys)  # (N,) the last key is the primary one
    return order[: min(max(count, 0), n)].astype(np.int64)


def staleness(versions: np.ndarray, step: int) -> dict[str, float]:
    """Age in optimizer steps of the rows' embeddings at `step`: mean and max."""
    ages = step - versions  # (N,)
    return {"staleness_mean": float(ages.mean()), "staleness_max": float(ages.max())}


def _as_matrix(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """`(Q, H)` C-contiguous float32 numpy copy-or-view of `x`."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"Expected a (rows, dim) matrix, got shape {x.shape}.")
    return x


class CorpusIndex:
    """A corpus embedded with the policy, in FAISS, refreshed a fraction at a time.

    Args:
        corpus (`Corpus`):
            the documents (row `r` = FAISS id `r`).
        settings (`IndexSettings`, *optional*):
            index, embedding and refresh settings.

    Example:
        >>> index = CorpusIndex(load_corpus("data/demo_corpus.jsonl"))  # doctest: +SKIP
        >>> index.build(pool, step=0)  # doctest: +SKIP
        >>> scores, doc_ids = index.search(embeddings, k=10)  # doctest: +SKIP
        >>> index.refresh(pool, step=5, fraction=0.1)  # doctest: +SKIP
    """

    def __init__(self, corpus: Corpus, settings: IndexSettings | None = None) -> None:
        self.corpus = corpus
        self.settings = settings or IndexSettings()
        n = len(corpus)
        self.versions = np.full(n, -1, dtype=np.int64)  # (N,) optimizer step each row was embedded at
        self.refreshed = np.zeros(n, dtype=bool)  # (N,) re-embedded at least once since the build
        self.cursor = 0
        self.last_refresh: RefreshReport | None = None
        self._recent: set[int] = set()
        self._lock = threading.Lock()
        self._master: faiss.Index | None = None
        self._searcher: faiss.Index | None = None
        self._gpu_resources: Any = None
        self._gpu_off = not self.settings.use_gpu

    def __len__(self) -> int:
        return len(self.corpus)

    @property
    def is_built(self) -> bool:
        return self._master is not None

    @property
    def dim(self) -> int:
        return self._require().d

    @property
    def on_gpu(self) -> bool:
        return self._searcher is not None and self._searcher is not self._master

    def _require(self) -> faiss.Index:
        if self._master is None:
            raise RuntimeError("The corpus index is not built yet; call build(pool) or CorpusIndex.load(dir) first.")
        return self._master

    # ---- embedding -------------------------------------------------------------------------------------------

    def _requests(self, pool: EmbeddingPool, rows: Sequence[int]) -> list[EmbedRequest]:
        texts = [self.corpus.texts[r] for r in rows]
        s = self.settings
        if s.embed_mode == "plain" or s.rationale_tokens <= 0:
            return [EmbedRequest(t) for t in texts]
        rationales = pool.generate_rationales(texts, s.rationale_tokens, s.rationale_temperature)
        return [EmbedRequest(t, tuple(r)) for t, r in zip(texts, rationales, strict=True)]

    def _embed_chunk(self, pool: EmbeddingPool, rows: Sequence[int]) -> np.ndarray:
        """``(C, H)``: with rationales and a pool that can ``encode``, each rationale is written and pooled in one
        pass (no second embedding pass); otherwise rationales are generated, then embedded."""
        s = self.settings
        encode = getattr(pool, "encode", None)
        if encode is not None and s.embed_mode == "rationale" and s.rationale_tokens > 0:
            texts = [self.corpus.texts[r] for r in rows]
            return _as_matrix(encode(texts, s.rationale_tokens, s.rationale_temperature, pooling=s.pooling))
        return _as_matrix(pool.embed(self._requests(pool, rows), pooling=s.pooling))

    def embed_rows(self, pool: EmbeddingPool, rows: Sequence[int], show_progress_bar: bool = False) -> np.ndarray:
        """Embed the documents at `rows` with the pool's current weights: `(R, H)` float32."""
        rows = [int(r) for r in rows]
        chunks, size = [], self.settings.chunk_size
        with tqdm(total=len(rows), desc="Embedding corpus", unit="doc", disable=not show_progress_bar) as bar:
            for s in range(0, len(rows), size):
                part = rows[s : s + size]
                chunks.append(self._embed_chunk(pool, part))  # (C, H)
                bar.update(len(part))
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)  # (R, H)
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1)) if len(vectors) else []
        if len(bad):
            ids = [self.corpus.doc_ids[rows[i]] for i in bad[:5]]
            raise RuntimeError(
                f"{len(bad)} corpus document(s) got non-finite embeddings (e.g. {ids}); check the model."
            )
        return vectors

    # ---- building ---------------------------------------------------------------------------------------------

    def build(self, pool: EmbeddingPool, step: int = 0, show_progress_bar: bool = True) -> None:
        """Embed the whole corpus with the pool's current weights (version `step`) and index it."""
        start = time.perf_counter()
        vectors = self.embed_rows(pool, range(len(self)), show_progress_bar=show_progress_bar)
        self.build_from_vectors(vectors, step)
        logger.info(
            "Corpus index: %d documents (dim %d, %s, %s) embedded at step %d in %.1f s",
            len(self),
            vectors.shape[1],
            self.settings.index_type,
            "GPU" if self.on_gpu else "CPU",
            step,
            time.perf_counter() - start,
        )

    def build_from_vectors(self, vectors: torch.Tensor | np.ndarray, step: int = 0) -> None:
        """Index precomputed `(N, H)` vectors (row `r` = document `r`), all at weight version `step`."""
        vectors = _as_matrix(vectors)
        if vectors.shape[0] != len(self):
            raise ValueError(f"Got {vectors.shape[0]} vectors for a corpus of {len(self)} documents.")
        master = self._new_master(vectors)
        master.add_with_ids(vectors, np.arange(len(self), dtype=np.int64))
        searcher = self._search_copy(master)
        with self._lock:
            self._master, self._searcher = master, searcher
            self.versions[:] = step
            self.refreshed[:] = False
            self.cursor, self.last_refresh = 0, None
            self._recent.clear()

    def _nlist(self, n: int) -> int:
        auto = max(1, min(int(4 * math.sqrt(n)), n // 39))
        nlist = self.settings.ivf_nlist or auto
        if nlist > n:
            logger.warning("ivf_nlist=%d exceeds the corpus size %d; using %d cells.", nlist, n, auto)
            nlist = auto
        return nlist

    def _new_master(self, vectors: np.ndarray) -> faiss.Index:
        d = vectors.shape[1]
        if self.settings.index_type == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        nlist = self._nlist(vectors.shape[0])
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids + reconstruct by id
        ivf.nprobe = min(self.settings.ivf_nprobe, nlist)
        return ivf

    def _search_copy(self, master: faiss.Index) -> faiss.Index:
        """A GPU clone of `master` when faiss has GPUs; otherwise (or if cloning fails) `master` itself."""
        if self._gpu_off:
            return master
        n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if n_gpus < 1 or not hasattr(faiss, "StandardGpuResources"):
            logger.info("faiss reports no GPU (CPU build or no device): the corpus index searches on the CPU.")
            self._gpu_off = True
            return master
        try:
            if self._gpu_resources is None:
                self._gpu_resources = faiss.StandardGpuResources()
            clone = faiss.index_cpu_to_gpu(self._gpu_resources, 0, master)
            if self.settings.index_type == "ivf":
                faiss.GpuParameterSpace().set_index_parameter(clone, "nprobe", faiss.extract_index_ivf(master).nprobe)
        except (AttributeError, RuntimeError) as err:
            logger.warning("Could not copy the corpus index to the GPU (%s); searching on the CPU instead.", err)
            self._gpu_off = True
            return master
        return clone

    # ---- refresh ----------------------------------------------------------------------------------------------

    def refresh_count(self, fraction: float) -> int:
        """Rows re-embedded by a refresh of `fraction` (in (0, 1]): `ceil(fraction * N)`."""
        if not 0 < fraction <= 1:  # a direct caller's guard (GraceConfig checks refresh_fraction for a recipe)
            raise ValueError(f"refresh fraction must be in (0, 1], got {fraction}.")
        return max(1, math.ceil(fraction * len(self) - 1e-9))

    def select_rows(self, count: int) -> np.ndarray:
        """The next `count` rows under the refresh policy (see :func:`select_refresh_rows`)."""
        priority = None
        if self.settings.refresh_policy == "recent" and self._recent:
            priority = np.zeros(len(self), dtype=bool)
            priority[list(self._recent)] = True
        return select_refresh_rows(self.versions, self.cursor, count, priority)

    def refresh(self, pool: EmbeddingPool, step: int, fraction: float) -> RefreshReport:
        """Re-embed `ceil(fraction * N)` documents with the pool's current weights (version `step`)."""
        self._require()
        rows = self.select_rows(self.refresh_count(fraction))
        start = time.perf_counter()
        vectors = self.embed_rows(pool, rows)  # (R, H): built before the swap, searches still see the old index
        embedded = time.perf_counter()
        self.replace_rows(rows, vectors, step)
        report = RefreshReport(
            step, len(rows), len(rows) / len(self), embedded - start, time.perf_counter() - embedded
        )
        self.cursor = (self.cursor + len(rows)) % len(self)
        self.last_refresh = report
        return report

    def replace_rows(self, rows: Sequence[int] | np.ndarray, vectors: torch.Tensor | np.ndarray, step: int) -> None:
        """Swap in new `(R, H)` vectors for `rows` (weight version `step`) atomically w.r.t. searches."""
        master = self._require()
        rows = np.asarray(rows, dtype=np.int64)
        vectors = _as_matrix(vectors)
        if vectors.shape != (len(rows), master.d):
            raise ValueError(f"Expected ({len(rows)}, {master.d}) vectors for {len(rows)} rows, got {vectors.shape}.")
        if len(np.unique(rows)) != len(rows) or (len(rows) and (rows.min() < 0 or rows.max() >= len(self))):
            raise ValueError(f"rows must be distinct corpus rows in [0, {len(self)}), got {rows.tolist()[:10]}...")
        with self._lock:
            removed = master.remove_ids(rows)
            if removed != len(rows):
                raise RuntimeError(f"Removed {removed} of {len(rows)} rows: the index lost track of some ids.")
            master.add_with_ids(vectors, rows)
            self.versions[rows] = step
            self.refreshed[rows] = True
            self._recent.difference_update(rows.tolist())
            self._searcher = self._search_copy(master)

    # ---- search -----------------------------------------------------------------------------------------------

    def search(self, queries: torch.Tensor | np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-`k` documents by inner product for each `(Q, H)` query: `(scores (Q, k'), doc id lists)`."""
        master = self._require()
        q = _as_matrix(queries)  # (Q, H)
        if q.shape[1] != master.d:
            raise ValueError(f"Query dim {q.shape[1]} != index dim {master.d}; embed with the same model and pooling.")
        k = min(int(k), len(self))
        with self._lock:
            scores, ids = self._searcher.search(q, k)  # (Q, k) each
        doc_ids = self.corpus.doc_ids
        return scores, [[doc_ids[i] for i in row if i >= 0] for row in ids.tolist()]

    def vectors(self, rows: Iterable[int] | None = None) -> np.ndarray:
        """Stored vectors of `rows` (all by default): `(R, H)` float32."""
        master = self._require()
        rows = range(len(self)) if rows is None else rows
        with self._lock:
            return np.stack([master.reconstruct(int(r)) for r in rows])

    def note_used(self, doc_ids: Iterable[str]) -> None:
        """Mark documents as gold or retrieved (the `recent` refresh policy re-embeds them first)."""
        rows = {self.corpus.row_of(d) for d in doc_ids} - {None}
        with self._lock:
            self._recent.update(rows)

    def stats(self, step: int) -> dict[str, float]:
        """Staleness at `step` (mean/max age in steps), the fraction re-embedded at `step` and ever."""
        this_step = self.last_refresh is not None and self.last_refresh.step == step
        return {
            **staleness(self.versions, step),
            "refreshed_frac": self.last_refresh.fraction if this_step else 0.0,
            "refreshed_ever_frac": float(self.refreshed.mean()),
            "refresh_seconds": self.last_refresh.embed_seconds + self.last_refresh.swap_seconds if this_step else 0.0,
        }

    # ---- persistence ------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write `index-<token>.faiss` then `corpus_index.json` (the commit point), each atomically; older
        index files in `directory` are removed afterwards. Returns the sidecar path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        master = self._require()
        with self._lock:
            blob = faiss.serialize_index(master).tobytes()
            meta = {
                "format_version": FORMAT_VERSION,
                "index_file": f"index-{uuid.uuid4().hex[:12]}.faiss",
                "dim": master.d,
                "ntotal": master.ntotal,
                "settings": asdict(self.settings),
                "cursor": self.cursor,
                "versions": self.versions.tolist(),
                "refreshed": self.refreshed.astype(int).tolist(),
                "recent": sorted(self._recent),
                "doc_ids": list(self.corpus.doc_ids),
                "texts": list(self.corpus.texts),
            }
        atomic_write(directory / meta["index_file"], blob)
        sidecar = directory / SIDECAR_NAME
        atomic_write(sidecar, json.dumps(meta, ensure_ascii=False).encode("utf-8"))
        for old in directory.glob("index-*.faiss"):
            if old.name != meta["index_file"]:
                old.unlink()
        logger.info("Saved the corpus index (%d documents) to %s", len(self), directory)
        return sidecar

    @classmethod
    def load(cls, directory: str | Path, use_gpu: bool | None = None) -> CorpusIndex:
        """Load an index written by :meth:`save` (`use_gpu` overrides the saved setting)."""
        directory = Path(directory)
        sidecar = directory / SIDECAR_NAME
        if not sidecar.is_file():
            raise FileNotFoundError(f"{sidecar} not found; is {directory} a directory written by CorpusIndex.save?")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{sidecar}: format_version {meta.get('format_version')}, expected {FORMAT_VERSION}.")
        settings = IndexSettings(**meta["settings"])
        if use_gpu is not None:
            settings = IndexSettings(**{**asdict(settings), "use_gpu": use_gpu})
        index = cls(Corpus(tuple(meta["doc_ids"]), tuple(meta["texts"]), source=str(directory)), settings)
        master = faiss.read_index(str(directory / meta["index_file"]))
        if master.ntotal != len(index) or master.d != meta["dim"]:
            raise ValueError(
                f"{directory}: index holds {master.ntotal} vectors of dim {master.d}, the sidecar says "
                f"{len(index)} of dim {meta['dim']}; the directory is corrupt, rebuild it."
            )
        index._master, index._searcher = master, index._search_copy(master)
        index.versions = np.asarray(meta["versions"], dtype=np.int64)
        index.refreshed = np.asarray(meta["refreshed"], dtype=bool)
        index.cursor = int(meta["cursor"])
        index._recent = set(meta["recent"])
        return index
