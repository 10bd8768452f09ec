"""The one corpus reader: `{id, text}` documents from JSONL, TSV or a saved HF dataset, for the FAISS index of the
`dcg` term and for `grace-rl eval retrieval` alike.

BEIR's layout is accepted too: the id may be `_id`, and a non-empty `title` is prepended to the text (as mteb does).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout.errors import UserError
from rollout.files import JsonlError, check_regular_file, iter_jsonl

logger = logging.getLogger(__name__)

MAX_DOC_CHARS = 20_000
ID_FIELDS = ("id", "_id")  # BEIR corpora and queries use `_id`
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TSV_SUFFIXES = (".tsv", ".tab", ".txt")


class CorpusError(UserError):
    """A corpus file is unusable; the message names the file, the row (1-based) and the fix."""


@dataclass(frozen=True)
class Corpus:
    """Documents in a fixed order: row `r` has string id `doc_ids[r]` and text `texts[r]`.

    The row number is the document's stable int64 id in the FAISS index.
    """

    doc_ids: tuple[str, ...]
    texts: tuple[str, ...]
    source: str = field(default="corpus", compare=False)
    _row_of: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _rows_of_text: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.doc_ids) != len(self.texts):
            raise CorpusError(f"{self.source}: {len(self.doc_ids)} ids but {len(self.texts)} texts.")
        if not self.doc_ids:
            raise CorpusError(f"{self.source}: the corpus is empty; give at least one {{id, text}} document.")
        for row, doc_id in enumerate(self.doc_ids):
            if doc_id in self._row_of:
                raise CorpusError(
                    f"{self.source}: row {row + 1}: duplicate id {doc_id!r} (first at row {self._row_of[doc_id] + 1});"
                    " ids must be unique."
                )
            self._row_of[doc_id] = row
        by_text: dict[str, list[int]] = {}
        for row, text in enumerate(self.texts):
            by_text.setdefault(text, []).append(row)
        self._rows_of_text.update({t: tuple(rows) for t, rows in by_text.items()})

    def __len__(self) -> int:
        return len(self.doc_ids)

    def row_of(self, doc_id: str) -> int | None:
        """Row (= FAISS id) of `doc_id`, or `None` when it is not in the corpus."""
        return self._row_of.get(doc_id)

    def ids_with_text(self, text: str) -> list[str]:
        """Ids of the documents whose text is exactly `text`."""
        return [self.doc_ids[r] for r in self._rows_of_text.get(text, ())]


def _check_doc(raw: Any, where: str) -> tuple[str, str]:
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: expected an object {{id, text}}, got {type(raw).__name__}.")
    id_field = next((k for k in ID_FIELDS if raw.get(k) is not None), None)
    missing = ([] if id_field else ["id"]) + ([] if raw.get("text") is not None else ["text"])
    if missing:
        raise CorpusError(
            f"{where}: missing field(s) {missing}; every document needs 'id' (or BEIR's '_id') and 'text'."
        )
    doc_id, text, title = str(raw[id_field]), raw["text"], raw.get("title")
    if not isinstance(text, str) or not text.strip():
        raise CorpusError(f"{where}: field 'text' must be a non-empty string, got {text!r}.")
    if isinstance(title, str) and title.strip():
        text = f"{title.strip()} {text}"
    if len(text) > MAX_DOC_CHARS:
        raise CorpusError(f"{where}: 'text' has {len(text)} characters (max {MAX_DOC_CHARS}); split or shorten it.")
    if not doc_id.strip():
        raise CorpusError(f"{where}: field '{id_field}' is empty; give every document a unique id.")
    return doc_id, text


def _read_jsonl(path: Path) -> list[tuple[str, str]]:
    try:
        return [_check_doc(raw, f"{path}: line {n}") for n, raw in iter_jsonl(path)]
    except JsonlError as err:
        raise CorpusError(str(err)) from err


def _is_header(cells: list[str]) -> bool:
    return "text" in cells and any(k in cells for k in ID_FIELDS)


def _read_tsv(path: Path) -> list[tuple[str, str]]:
    """`id<TAB>text` lines, or any columns under a header row naming `id` (or `_id`), `text` and optionally `title`."""
    docs, header = [], None
    with path.open(encoding="utf-8", newline="") as f:
        for n, cells in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not cells or not any(c.strip() for c in cells):
                continue
            if header is None and not docs and _is_header(cells):
                header = cells
                continue
            if header is not None:
                raw = dict(zip(header, cells, strict=False))
            elif len(cells) == 2:
                raw = {"id": cells[0], "text": cells[1]}
            else:
                raise CorpusError(
                    f"{path}: line {n} has {len(cells)} tab-separated fields; use id<TAB>text lines or add a header "
                    "row naming the id, text (and title) columns."
                )
            docs.append(_check_doc(raw, f"{path}: line {n}"))
    return docs


def _read_saved_dataset(path: Path) -> list[tuple[str, str]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        split = "corpus" if "corpus" in ds else "train" if "train" in ds else None
        if split is None:
            raise CorpusError(f"{path}: a DatasetDict needs a 'corpus' or 'train' split, found {list(ds)}.")
        ds = ds[split]
    return [_check_doc(raw, f"{path}: row {n}") for n, raw in enumerate(ds.to_list(), start=1)]


def load_corpus(path: str | Path) -> Corpus:
    """Load `{id, text}` documents (the id may be `_id`; a `title` is prepended to the text).

    Args:
        path (`str` or `Path`):
            A JSONL file (`.jsonl`, `.json`, `.ndjson`: one object per line), a TSV file (`.tsv`, `.tab`, `.txt`:
            `id<TAB>text` lines, or a header row naming the columns), or a directory saved with
            `datasets.save_to_disk` (columns `id` or `_id`, `text`, optional `title`).

    Returns:
        `Corpus`: the documents in file order; a bad row raises :class:`CorpusError` naming the file and row.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Corpus {path} does not exist; set corpus_path to a JSONL/TSV file or a saved dataset."
        )
    check_regular_file(path, "corpus_path")
    if path.is_dir():
        docs = _read_saved_dataset(path)
    elif path.suffix.lower() in JSONL_SUFFIXES:
        docs = _read_jsonl(path)
    elif path.suffix.lower() in TSV_SUFFIXES:
        docs = _read_tsv(path)
    else:
        raise CorpusError(
            f"{path}: unsupported corpus format {path.suffix!r}; use one of {JSONL_SUFFIXES + TSV_SUFFIXES} or a "
            "saved dataset directory."
        )
    corpus = Corpus(tuple(d for d, _ in docs), tuple(t for _, t in docs), source=str(path))
    logger.info("Loaded a corpus of %d documents from %s", len(corpus), path)
    return corpus
