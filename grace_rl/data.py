"""Training data: load rows from JSONL / parquet / a saved HF dataset, validate them, and build chat prompts."""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from grace_rl.errors import UserError
from grace_rl.run_files import DuplicateKeyError, JsonlError, check_regular_file, iter_jsonl, unique_keys

logger = logging.getLogger(__name__)

SUPERVISED_FIELDS = ("query", "positive")
OPTIONAL_FIELDS = ("negatives", "id", "source", "positive_ids")
MAX_TEXT_CHARS = 20_000  # a first cheap cut; the token limit from the model's context is checked in preflight
VISIBLE = ("L", "N", "P", "S", "M")  # Unicode categories that show: letters, numbers, punctuation, symbols, marks


class DataValidationError(UserError):
    """A training row is unusable; the message names the file, row number (1-based), field and fix."""


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows from a `.jsonl`/`.json` file, a `.parquet` file, or a directory saved by `save_to_disk`."""
    return load_rows_located(path)[0]


def load_rows_located(path: str | Path) -> tuple[list[Any], list[str]]:
    """Rows (as :func:`load_rows`) and where each one is, for error messages: `file:line: row N` for JSONL,
    `file: row N` otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Dataset {path} does not exist; fix dataset_path.")
    check_regular_file(path, "dataset_path")
    suffix = path.suffix.lower()
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise DataValidationError(f"{path}: a DatasetDict needs a 'train' split, found {list(ds)}.")
            ds = ds["train"]
        rows = ds.to_list()
    elif suffix == ".parquet":
        rows = datasets.Dataset.from_parquet(str(path)).to_list()
    elif suffix == ".json" and _starts_with(path, b"["):
        rows = _read_json_array(path)
    elif suffix in (".jsonl", ".json"):
        try:
            located = list(iter_jsonl(path))
        except JsonlError as err:
            raise DataValidationError(str(err)) from err
        return [row for _, row in located], [f"{path}:{line}: row {n}" for n, (line, _) in enumerate(located, 1)]
    else:
        raise DataValidationError(
            f"{path}: unsupported format {suffix!r}; use .jsonl, .json, .parquet or a saved dataset dir."
        )
    return rows, [f"{path}: row {n}" for n in range(1, len(rows) + 1)]


def _starts_with(path: Path, prefix: bytes) -> bool:
    with path.open("rb") as f:
        return f.read(4096).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip().startswith(prefix)


def read_text_lines(path: Path) -> str:
    """A text file as UTF-8; a byte that is not UTF-8 raises naming `file:line`."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataValidationError(
            f"{path}:{line}: not UTF-8 text (byte {err.start + 1}: {err.reason}); save the file as UTF-8."
        ) from err


def _read_json_array(path: Path) -> list[Any]:
    try:
        rows = json.loads(read_text_lines(path), object_pairs_hook=unique_keys)
    except DuplicateKeyError as err:
        raise DataValidationError(
            f"{path}: field {err.key!r} is given twice in one object (JSON would keep the last value silently) - "
            "keep one."
        ) from err
    except json.JSONDecodeError as err:
        raise DataValidationError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno}); fix the file (a truncated "
            "copy?) or write one JSON object per line (.jsonl)."
        ) from err
    if not isinstance(rows, list):
        raise DataValidationError(
            f"{path}: a .json dataset must be an array of row objects, got {type(rows).__name__}."
        )
    return rows


def _check_text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise DataValidationError(f"{where}: field '{field}' must be a string, got {type(value).__name__}.")
    if not value.strip():
        raise DataValidationError(f"{where}: field '{field}' is empty or whitespace; remove the row or fill it in.")
    if len(value) > MAX_TEXT_CHARS:
        raise DataValidationError(
            f"{where}: field '{field}' has {len(value)} characters (max {MAX_TEXT_CHARS}); shorten it."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise DataValidationError(
            f"{where}: field '{field}' holds a lone surrogate {value[err.start]!r} at character {err.start} (a broken "
            "escape like \\ud800 in the JSON); fix or remove that character."
        ) from err
    if not any(unicodedata.category(c)[0] in VISIBLE for c in value):
        raise DataValidationError(
            f"{where}: field '{field}' has no visible character (only spaces, controls or zero-width characters); "
            "remove the row or fill it in."
        )
    return value


def check_max_rows(max_rows: Any, where: str = "max_train_rows") -> None:
    """`max_train_rows`: `None` (all rows) or an integer >= 1."""
    if max_rows is None:
        return
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise DataValidationError(
            f"{where} must be an integer >= 1 (or null for all rows), got {max_rows!r}; fix it in the config or on "
            "the command line."
        )


def validate_supervised(
    rows: list[dict[str, Any]], source: str = "dataset", wheres: list[str] | None = None
) -> list[dict[str, Any]]:
    """Check every row before training; return normalised rows `{prompt_id, query, positive, negatives}` (plus
    `positive_ids` on every row when any row has them: gold document ids for the `dcg` term)."""
    if not rows:
        raise DataValidationError(f"{source}: no rows.")
    out, seen_ids = [], set()
    for n, row in enumerate(rows, start=1):
        where = wheres[n - 1] if wheres else f"{source}: row {n}"
        if not isinstance(row, dict):
            raise DataValidationError(
                f"{where}: expected an object with 'query' and 'positive', got {type(row).__name__}."
            )
        for f in SUPERVISED_FIELDS:
            if f not in row:
                raise DataValidationError(f"{where}: missing field '{f}' (supervised rows need {SUPERVISED_FIELDS}).")
        extra = sorted(set(row) - set(SUPERVISED_FIELDS) - set(OPTIONAL_FIELDS))
        if extra:
            raise DataValidationError(
                f"{where}: unknown field(s) {extra}; allowed: {SUPERVISED_FIELDS + OPTIONAL_FIELDS}."
            )
        query = _check_text(row["query"], where, "query")
        positive = _check_text(row["positive"], where, "positive")
        negatives = row.get("negatives")
        negatives = [] if negatives is None else negatives
        if not isinstance(negatives, list):
            raise DataValidationError(
                f"{where}: field 'negatives' must be a list of strings, got {type(negatives).__name__}."
            )
        negatives = [_check_text(x, where, f"negatives[{k}]") for k, x in enumerate(negatives)]
        if "id" in row and (row["id"] is None or not str(row["id"]).strip()):
            raise DataValidationError(
                f"{where}: field 'id' is {'null' if row['id'] is None else 'empty'}; give the row a unique id or drop "
                "the field (rows without one are numbered)."
            )
        row_id = str(row.get("id", f"row-{n}"))
        if row_id in seen_ids:
            raise DataValidationError(f"{where}: duplicate id {row_id!r}; ids must be unique.")
        seen_ids.add(row_id)
        out.append({"prompt_id": row_id, "query": query, "positive": positive, "negatives": negatives})
        if row.get("positive_ids") is not None:
            out[-1]["positive_ids"] = _check_ids(row["positive_ids"], where)
    if any("positive_ids" in r for r in out):  # one schema for the HF dataset: [] = match the positive's text
        for r in out:
            r.setdefault("positive_ids", [])
    return out


def _check_ids(value: Any, where: str) -> list[str]:
    """`positive_ids`: gold document ids of the row in the DCG corpus (a list of strings or ints)."""
    if not isinstance(value, list) or not all(isinstance(x, (str, int)) and str(x).strip() for x in value):
        raise DataValidationError(
            f"{where}: field 'positive_ids' must be a list of corpus document ids, got {value!r}."
        )
    return [str(x) for x in value]


def load_texts(path: str | Path, text_column: str = "text") -> list[Any]:
    """Plain texts for the unsupervised variant: a `.txt` file (one text per line, blank lines skipped), or rows
    (JSONL / parquet / saved dataset) whose `text_column` holds the text."""
    return load_texts_located(path, text_column)[0]


def load_texts_located(path: str | Path, text_column: str = "text") -> tuple[list[Any], list[str]]:
    """Texts (as :func:`load_texts`) and where each one is (`file:line: row N`)."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise FileNotFoundError(f"Dataset {path} does not exist; fix dataset_path.")
        check_regular_file(path, "dataset_path")
        lines = [(i, line.rstrip("\r")) for i, line in enumerate(read_text_lines(path).split("\n"), start=1)]
        kept = [(i, line) for i, line in lines if line.strip()]
        return [line for _, line in kept], [f"{path}:{i}: row {n}" for n, (i, _) in enumerate(kept, start=1)]
    rows, wheres = load_rows_located(path)
    for row, where in zip(rows, wheres, strict=True):
        if not isinstance(row, dict) or text_column not in row:
            raise DataValidationError(
                f"{where}: missing field {text_column!r} (set text_column to the text's column)."
            )
    return [row[text_column] for row in rows], wheres


def validate_unsupervised(
    texts: list[Any], source: str = "dataset", wheres: list[str] | None = None
) -> list[dict[str, Any]]:
    """Check plain texts; return rows in the supervised layout with the text as its own positive.

    The reward then embeds the positive with an independent rationale of the same text (`anchor_mode: rationale`)
    and uses the other texts of the batch as negatives.
    """
    if not texts:
        raise DataValidationError(f"{source}: no texts.")
    rows = []
    for n, text in enumerate(texts, start=1):
        text = _check_text(text, wheres[n - 1] if wheres else f"{source}: row {n}", "text")
        rows.append({"prompt_id": f"text-{n}", "query": text, "positive": text, "negatives": []})
    return rows


def load_unsupervised(
    path: str | Path, text_column: str = "text", max_rows: int | None = None
) -> list[dict[str, Any]]:
    """Load and validate plain texts (all validated, then the first `max_rows` kept)."""
    check_max_rows(max_rows)
    texts, wheres = load_texts_located(path, text_column)
    rows = validate_unsupervised(texts, source=str(path), wheres=wheres)
    if max_rows is not None:
        rows = rows[:max_rows]
    logger.info("Loaded %d unsupervised texts from %s", len(rows), path)
    return rows


def build_dataset(rows: list[dict[str, Any]], messages_fn: Callable[[str], list[dict[str, str]]]) -> datasets.Dataset:
    """HF dataset with TRL's `prompt` column (chat messages) next to the GRACE columns the reward reads."""
    records = [{"prompt": messages_fn(r["query"]), **r} for r in rows]
    return datasets.Dataset.from_list(records)


def load_supervised(path: str | Path, max_rows: int | None = None) -> list[dict[str, Any]]:
    """Load and validate supervised rows (all rows are validated, then the first `max_rows` kept)."""
    check_max_rows(max_rows)
    rows, wheres = load_rows_located(path)
    rows = validate_supervised(rows, source=str(path), wheres=wheres)
    if max_rows is not None:
        rows = rows[:max_rows]
    logger.info("Loaded %d supervised rows from %s", len(rows), path)
    return rows
