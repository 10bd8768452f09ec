"""Dev sets of the evaluation protocol, deduplicated against every training text the project ships.

- `stsb-dev`: STS Benchmark dev, every usable pair (tab-separated, read with `csv.QUOTE_NONE`, first 7 fields).
- `sick-trial`: the TRIAL rows of SICK, relatedness score 1-5 (the demo trains on SICK TRAIN only).

The full public files are read from the shared data folder when it has them: `shared` argument (`--shared-data`),
else `$GRACE_RL_SHARED_DATA`, else `<repo>/../shared/data`. Otherwise the small samples shipped in `data/`
(`stsb_dev_sample.tsv`, `sick_trial_sample.tsv`; already deduplicated) are used, and the dev set says so
(`kind`). Training texts: every query, positive, negative and text of `data/demo_train.jsonl`,
`demo_train_dcg.jsonl`, `demo_corpus.jsonl` and every line of `demo_unsup.txt`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grace_rl.errors import UserError
from grace_rl.eval.protocol import dedup_pairs
from grace_rl.eval.stats import DevSet, Pair
from grace_rl.run_files import iter_jsonl

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "data"
SHARED_ENV = "GRACE_RL_SHARED_DATA"
DEFAULT_SHARED = REPO.parent / "shared" / "data"
TRAINING_FILES = ("demo_train.jsonl", "demo_train_dcg.jsonl", "demo_unsup.txt", "demo_corpus.jsonl")
_TEXT_FIELDS = ("query", "positive", "text")


def read_stsb_rows(path: str | Path) -> list[list[str]]:
    """The usable rows of an STS-B TSV file, first 7 fields each (genre, file, year, id, score, sentence 1,
    sentence 2). Rows with fewer fields, a non-numeric score or an empty sentence are skipped (logged)."""
    rows, skipped = [], 0
    with Path(path).open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            row = [c.strip() for c in row[:7]]
            if len(row) == 7 and row[5] and row[6] and _is_number(row[4]):
                rows.append(row)
            else:
                skipped += 1
    if skipped:
        logger.info("%s: skipped %d rows that are not usable STS-B pairs", path, skipped)
    return rows


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_stsb(path: str | Path) -> list[Pair]:
    """Every usable pair of an STS-B file (see :func:`read_stsb_rows`)."""
    return [Pair(r[5], r[6], float(r[4])) for r in read_stsb_rows(path)]


def read_sick_rows(path: str | Path, split: str = "TRIAL") -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of `split` (`SemEval_set` column) of a SICK TSV file."""
    with Path(path).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(reader.fieldnames or [])
        missing = {"sentence_A", "sentence_B", "relatedness_score", "SemEval_set"} - set(header)
        if missing:
            raise UserError(f"{path}: not a SICK file with a split column (missing {sorted(missing)}).")
        return header, [r for r in reader if r["SemEval_set"].strip() == split]


def read_sick_trial(path: str | Path) -> list[Pair]:
    """The TRIAL pairs of a SICK file, scored by relatedness (1-5)."""
    _, rows = read_sick_rows(path, "TRIAL")
    return [Pair(r["sentence_A"].strip(), r["sentence_B"].strip(), float(r["relatedness_score"])) for r in rows]


@dataclass(frozen=True)
class DevSetFiles:
    full: str  # relative to the shared data folder
    sample: str  # relative to the repo's data/ folder
    reader: Callable[[Path], list[Pair]]


DEV_SETS = {
    "stsb-dev": DevSetFiles("stsb/sts-dev.csv", "stsb_dev_sample.tsv", read_stsb),
    "sick-trial": DevSetFiles("sick/SICK_train_trial.txt", "sick_trial_sample.tsv", read_sick_trial),
}


def parse_dataset_names(spec: str) -> list[str]:
    """`"stsb-dev,sick-trial"` -> the names, checked."""
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    unknown = [n for n in names if n not in DEV_SETS]
    if not names or unknown:
        raise UserError(f"Unknown dev set(s) {unknown or spec!r}; choose from {', '.join(DEV_SETS)}.")
    return names


def training_texts(data_dir: str | Path = DATA_DIR) -> list[str]:
    """Every text of the project's training files (see the module docstring); a missing file is an error."""
    texts: list[str] = []
    for name in TRAINING_FILES:
        path = Path(data_dir) / name
        if not path.is_file():
            raise FileNotFoundError(
                f"Training file {path} not found: dev sets are deduplicated against {', '.join(TRAINING_FILES)}; "
                "pass the repo's data/ folder (--data-dir)."
            )
        if path.suffix != ".jsonl":
            texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            continue
        for _, row in iter_jsonl(path):
            texts += [row[k] for k in _TEXT_FIELDS if isinstance(row.get(k), str)]
            texts += [t for t in row.get("negatives") or [] if isinstance(t, str)]
    return texts


def shared_data_dir(shared: str | Path | None = None) -> tuple[Path, bool]:
    """The shared data folder and whether it was asked for explicitly (argument or environment variable)."""
    explicit = shared or os.environ.get(SHARED_ENV)
    return (Path(explicit).expanduser(), True) if explicit else (DEFAULT_SHARED, False)


def evenly_spaced(items: Sequence, n: int | None) -> list:
    """`n` items at evenly spaced positions (all of them when `n` is `None` or >= `len(items)`)."""
    if n is None or n >= len(items):
        return list(items)
    if n < 2:
        raise UserError(f"--limit must be >= 2 (a Spearman needs 2 pairs), got {n}.")
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


def locate(name: str, shared: str | Path | None = None, data_dir: str | Path = DATA_DIR) -> tuple[Path, str]:
    """The file a dev set is read from and its kind (`full` or `sample`)."""
    files = DEV_SETS[name]
    folder, explicit = shared_data_dir(shared)
    if (folder / files.full).is_file():
        return folder / files.full, "full"
    if explicit:
        raise FileNotFoundError(
            f"{folder / files.full} not found: the shared data folder ({folder}, from --shared-data or "
            f"${SHARED_ENV}) lacks {files.full}; fix the path or unset it to use the shipped sample."
        )
    sample = Path(data_dir) / files.sample
    if not sample.is_file():
        raise FileNotFoundError(f"Neither {folder / files.full} nor the shipped sample {sample} exists.")
    return sample, "sample"


def load_dev_sets(
    names: Sequence[str],
    shared: str | Path | None = None,
    data_dir: str | Path = DATA_DIR,
    limit: int | None = None,
) -> list[DevSet]:
    """Read, deduplicate against :func:`training_texts` and (with `limit`) thin each named dev set."""
    texts = training_texts(data_dir)
    out = []
    for name in names:
        path, kind = locate(name, shared, data_dir)
        pairs = DEV_SETS[name].reader(path)
        kept, dropped = dedup_pairs(pairs, texts)
        logger.info("%s: %s file %s, %d pairs, %d dropped (shared a sentence with training)", name, kind, path,
                    len(pairs), dropped)  # fmt: skip
        if len(kept) < 2:
            raise UserError(f"{name}: only {len(kept)} of {len(pairs)} pairs of {path} are held out; need >= 2.")
        out.append(DevSet(name, evenly_spaced(kept, limit), str(path), kind, len(pairs), dropped, limit))
    return out
